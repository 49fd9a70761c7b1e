//! The inventory: which nodes should exist, where, and how they replicate.
//! The same types read the user's YAML file and the copy pgscale keeps in its
//! home; the `state` fields are written only by pgscale.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

pub const DEFAULT_ADMIN_USER: &str = "postgres";
pub const DEFAULT_REPLICATION_USER: &str = "pgscale_repl";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub name: String,
    #[serde(default)]
    pub postgres: PostgresSpec,
    pub nodes: Vec<NodeSpec>,
    /// Where the cluster's state lives (default: the home directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dcs: Option<crate::Dcs>,
    /// What the automatic-failover agents may do (they read it every tick).
    #[serde(default, skip_serializing_if = "crate::ha::HaSpec::is_default")]
    pub ha: crate::ha::HaSpec,
    /// A group of a sharded cluster (written by pgscale; refused in user files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharding: Option<crate::Sharding>,
    /// Written by pgscale in its home copy; refused in user files.
    #[serde(default, skip_serializing_if = "ClusterState::is_default")]
    pub state: ClusterState,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresSpec {
    /// Directory holding initdb, pg_ctl, postgres… Default: found on each host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<PathBuf>,
    /// OS user that owns data directories and runs the server. Default: the
    /// invoking user, `postgres` when invoked as root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_user: Option<String>,
    /// Superuser created by initdb; pgscale connects as this role.
    pub admin_user: String,
    /// Role standbys use to stream WAL.
    pub replication_user: String,
    /// Extra server parameters (`ALTER SYSTEM`), applied on every node.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, ParamValue>,
    /// The user's own pg_hba lines, kept after pgscale's lines on every node.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hba: Vec<String>,
    /// Accept `trust` on host lines in `hba` (refused otherwise).
    #[serde(skip_serializing_if = "is_false")]
    pub allow_trust: bool,
    /// Let `init`, `scale-out` and `rejoin` make hosts ready (install the
    /// server package, create the OS user and directories), as
    /// `--install` does.
    #[serde(skip_serializing_if = "is_false")]
    pub install: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for PostgresSpec {
    fn default() -> Self {
        PostgresSpec {
            bin_dir: None,
            os_user: None,
            admin_user: DEFAULT_ADMIN_USER.into(),
            replication_user: DEFAULT_REPLICATION_USER.into(),
            parameters: BTreeMap::new(),
            hba: Vec::new(),
            allow_trust: false,
            install: false,
        }
    }
}

/// A parameter value as written in YAML (`128MB`, `100`, `on`, `true`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(true) => f.write_str("on"),
            ParamValue::Bool(false) => f.write_str("off"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Str(s) => f.write_str(s),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Standby,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
        })
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    Sync,
    Potential,
    #[default]
    Async,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Local,
    Ssh,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SshSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// known_hosts file to check the host key against (default: ssh's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_hosts_file: Option<PathBuf>,
    /// An ssh_config file to use instead of ~/.ssh/config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    /// Where PostgreSQL listens and where its commands run.
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// Directory for the node's unix socket. Default: `<data_dir>.sock`, so
    /// nodes sharing a port number on different addresses never collide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_dir: Option<PathBuf>,
    /// Written by pgscale in its home copy; refused in user files.
    #[serde(default, skip_serializing_if = "NodeState::is_default")]
    pub state: NodeState,
}

impl NodeSpec {
    pub fn socket_dir(&self) -> PathBuf {
        match &self.socket_dir {
            Some(d) => d.clone(),
            None => {
                let mut s = self.data_dir.clone().into_os_string();
                s.push(".sock");
                PathBuf::from(s)
            }
        }
    }

    pub fn sync_mode(&self) -> SyncMode {
        self.sync.unwrap_or_default()
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NodeState {
    /// Directories pgscale created for this node (and only these may it remove).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub created_dirs: Vec<PathBuf>,
    /// Directories that existed empty and that pgscale took over: it may
    /// empty them again, never remove them (they may be mount points).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub adopted_dirs: Vec<PathBuf>,
    /// The node was a primary that was failed over: never start it as a
    /// primary again; it needs `pgscale rejoin`.
    #[serde(skip_serializing_if = "is_false")]
    pub needs_rejoin: bool,
    /// scale-out recorded this node and has not finished adding it.
    #[serde(skip_serializing_if = "is_false")]
    pub joining: bool,
    /// scale-in recorded that this node leaves and has not finished.
    #[serde(skip_serializing_if = "is_false")]
    pub leaving: bool,
    /// With `leaving`: remove the directories pgscale created.
    #[serde(skip_serializing_if = "is_false")]
    pub clear_dir: bool,
}

impl NodeState {
    pub fn is_default(&self) -> bool {
        *self == NodeState::default()
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `init` started but has not finished: re-run it or `destroy`.
    Initializing,
    #[default]
    Ready,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterState {
    pub phase: Phase,
    /// Nodes scale-in removed (the last few), so that re-running a finished
    /// scale-in says so instead of calling the node unknown.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// During a switchover or failover: the primary being replaced, so a
    /// re-run or `resume` knows where it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_primary: Option<String>,
    /// Addresses pgscale commands ran from that are not node addresses
    /// (the administrator's machines): pg_hba.conf keeps a line for each,
    /// whoever renders it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_addrs: Vec<std::net::IpAddr>,
}

impl ClusterState {
    pub fn is_default(&self) -> bool {
        *self == ClusterState::default()
    }
}

impl Inventory {
    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn node_mut(&mut self, name: &str) -> Option<&mut NodeSpec> {
        self.nodes.iter_mut().find(|n| n.name == name)
    }

    /// The node with `role: primary`, else the first node listed.
    pub fn primary(&self) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.role == Some(Role::Primary)).or_else(|| self.nodes.first())
    }

    /// Nodes that are (or are becoming) members: not leaving.
    pub fn staying(&self) -> impl Iterator<Item = &NodeSpec> {
        self.nodes.iter().filter(|n| !n.state.leaving)
    }

    /// Standbys streaming directly from `name`, per the inventory.
    pub fn downstreams_of(&self, name: &str) -> Vec<&NodeSpec> {
        self.nodes
            .iter()
            .filter(|n| n.name != name && self.upstream_of(&n.name).is_some_and(|u| u.name == name))
            .collect()
    }

    pub fn is_primary(&self, name: &str) -> bool {
        self.primary().is_some_and(|p| p.name == name)
    }

    /// Upstream of a standby: its `upstream`, else the primary.
    pub fn upstream_of(&self, name: &str) -> Option<&NodeSpec> {
        if self.is_primary(name) {
            return None;
        }
        let n = self.node(name)?;
        match &n.upstream {
            Some(u) => self.node(u),
            None => self.primary(),
        }
    }
}
