//! What a probe saw on each node. Built by the `pg` crate, read by planners.

use postgres_types::PgLsn;
use std::collections::BTreeMap;

/// What a directory looks like on a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirState {
    Missing,
    Empty,
    NotEmpty,
    NotADirectory,
}

/// Whether the server answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Running,
    /// Connection refused: nothing listens on the node's address.
    Stopped,
    /// No answer before the deadline, or the host could not be reached.
    Unreachable,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Stopped => "stopped",
            RunState::Unreachable => "unreachable",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObservedRole {
    Primary,
    Standby,
    Unknown,
}

impl ObservedRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ObservedRole::Primary => "primary",
            ObservedRole::Standby => "standby",
            ObservedRole::Unknown => "unknown",
        }
    }
}

/// One row of `pg_stat_replication` on a sending server.
#[derive(Clone, Debug, PartialEq)]
pub struct Downstream {
    pub application_name: String,
    pub client_addr: Option<String>,
    pub state: String,
    pub sync_state: String,
    pub replay_lsn: Option<PgLsn>,
    pub flush_lsn: Option<PgLsn>,
    /// Streams on paper, but the standby has not answered for 2 s while
    /// WAL waits for it: a cut-off standby, which its WAL sender notices
    /// only at wal_sender_timeout (60 s by default) while commits wait.
    pub silent: bool,
}

/// One row of `pg_replication_slots`.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    pub name: String,
    pub active: bool,
    pub restart_lsn: Option<PgLsn>,
    /// WAL the slot keeps from being recycled, in bytes.
    pub retained_bytes: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NodeObservation {
    pub name: String,
    pub state: RunState,
    pub role: ObservedRole,
    pub timeline: Option<u32>,
    /// Primary: current WAL write position. Standby: last replayed position.
    pub lsn: Option<PgLsn>,
    /// Standby: last received position (`pg_last_wal_receive_lsn`).
    pub receive_lsn: Option<PgLsn>,
    /// Standby: where its WAL receiver streams from.
    pub upstream_host: Option<String>,
    pub upstream_port: Option<u16>,
    /// Standby: its WAL receiver is in state `streaming` (not starting or
    /// retrying, as it does forever when its upstream's timeline forked
    /// before what it already has).
    pub upstream_streaming: bool,
    pub downstreams: Vec<Downstream>,
    pub slots: Vec<Slot>,
    pub synchronous_standby_names: Option<String>,
    pub server_version: Option<String>,
    pub max_wal_senders: Option<i32>,
    pub max_replication_slots: Option<i32>,
    /// Why the node could not be probed (connection error, deadline).
    pub error: Option<String>,
}

impl NodeObservation {
    pub fn unanswered(name: &str, state: RunState, error: impl Into<String>) -> Self {
        NodeObservation {
            name: name.to_string(),
            state,
            role: ObservedRole::Unknown,
            timeline: None,
            lsn: None,
            receive_lsn: None,
            upstream_host: None,
            upstream_streaming: false,
            upstream_port: None,
            downstreams: Vec::new(),
            slots: Vec::new(),
            synchronous_standby_names: None,
            server_version: None,
            max_wal_senders: None,
            max_replication_slots: None,
            error: Some(error.into()),
        }
    }

    pub fn is_running(&self) -> bool {
        self.state == RunState::Running
    }
}

/// Observations of all nodes of a cluster, by node name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub nodes: BTreeMap<String, NodeObservation>,
}

impl Observed {
    pub fn get(&self, name: &str) -> Option<&NodeObservation> {
        self.nodes.get(name)
    }
}

/// What a running node told us about its configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigObs {
    pub running: bool,
    /// pg_hba.conf as it is on disk.
    pub hba: Option<String>,
    /// name → value of the entries in postgresql.auto.conf.
    pub auto_conf: BTreeMap<String, String>,
    /// Some setting waits for a restart (an earlier run reloaded but did not
    /// restart, or someone else changed it).
    pub pending_restart: bool,
    /// name → context (`postmaster`, `sighup`, …) from pg_settings, for the
    /// names pgscale sets.
    pub contexts: BTreeMap<String, String>,
}

/// What `adopt` reads from a running server it did not create: identity,
/// layout and the settings a replicated cluster depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerFacts {
    /// pg_control's system identifier: every node of one cluster shares it.
    pub system_identifier: String,
    pub in_recovery: bool,
    pub server_version: String,
    pub server_version_num: i32,
    pub data_directory: String,
    pub config_file: String,
    pub hba_file: String,
    pub port: u16,
    pub unix_socket_directories: String,
    pub wal_level: String,
    pub hot_standby: String,
    pub wal_log_hints: String,
    pub data_checksums: String,
    /// pg_config's BINDIR of the running server.
    pub bin_dir: Option<String>,
    /// The WAL receiver's upstream, when streaming.
    pub sender_host: Option<String>,
    pub sender_port: Option<u16>,
    /// The admin role's password is stored as a SCRAM verifier.
    pub admin_scram: bool,
    /// The replication role exists (its attributes: login, replication).
    pub replication_role: Option<(bool, bool)>,
    /// postgresql.auto.conf: name → value.
    pub auto_conf: BTreeMap<String, String>,
    /// pg_hba.conf as the server reads it.
    pub hba: String,
    /// Settings pgscale manages that someone configured (not the built-in
    /// default): name → current value, so a generated spec keeps them.
    pub configured: BTreeMap<String, String>,
}
