//! What an agent sees: the cluster's keys in etcd and its own PostgreSQL.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use model::HaMode;

/// The leader key: who holds it, and its term (the key's create revision,
/// a fencing token that only grows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub name: String,
    pub term: i64,
}

/// What each agent publishes about its node (`members/<name>`, on the
/// agent's lease: a dead agent's entry disappears).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Member {
    pub primary: bool,
    pub timeline: u32,
    /// Primary: its current WAL position; standby: flushed (received) WAL.
    pub flush_lsn: u64,
    /// The PostgreSQL server answers fresh connections.
    pub healthy: bool,
}

/// The synchronous sets, written by the leader (`sync`).
/// `ackers`: nodes that *could* acknowledge a commit under the live
/// synchronous_standby_names (a superset: added before the setting, removed
/// after). `eligible`: nodes sure to hold every acknowledged commit (added
/// once caught up after the setting, removed before it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SyncSet {
    /// How many standbys acknowledge each commit (0: asynchronous).
    pub k: usize,
    pub ackers: Vec<String>,
    pub eligible: Vec<String>,
    /// Standbys streaming from the leader now: their WAL is the leader's
    /// history, so their positions compare with the ackers' (a standby
    /// further along than the synchronous one may be promoted instead, and
    /// then nobody has received WAL past the new timeline's fork).
    #[serde(default)]
    pub streaming: Vec<String>,
}

/// The local PostgreSQL as the agent sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PgRun {
    /// Answers fresh connections.
    #[default]
    Running,
    /// Nothing listens (stopped, crashed).
    Stopped,
    /// The postmaster is there but fresh connections fail or time out (a
    /// SIGSTOPped or wedged server): as dangerous as a running one.
    Hung,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Local {
    pub run: PgRun,
    pub in_recovery: bool,
    pub timeline: u32,
    pub flush_lsn: u64,
    /// A WAL receiver runs (a standby streaming or trying to).
    pub receiving: bool,
    /// The node it streams from (by name), when known.
    pub upstream: Option<String>,
    /// This node was a primary the last time it ran (recorded by the agent
    /// on disk): it never starts as a primary again on its own.
    pub was_primary: bool,
}

/// One tick's view for the agent of node `me`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct View {
    pub me: String,
    pub mode: HaMode,
    pub leader: Option<Leader>,
    /// The last leader term this agent saw (the race after a leader is gone
    /// is keyed by it).
    pub last_term: i64,
    /// The last leader's name (who to ask, whose timeline to follow).
    pub last_leader: Option<String>,
    /// Fresh member entries, by node name (me included).
    pub members: BTreeMap<String, Member>,
    pub sync: SyncSet,
    /// The last primary WAL position the leader recorded (`status`).
    pub last_leader_lsn: Option<u64>,
    /// Reports of the race for `last_term`: node → flushed LSN after its WAL
    /// receiver stopped.
    pub races: BTreeMap<String, u64>,
    /// The old primary's agent answered that its PostgreSQL still runs as a
    /// primary (None: no answer).
    pub old_primary_alive: Option<bool>,
    pub local: Local,
    /// Async mode: the most a standby may lag the last recorded primary LSN
    /// and still be promoted (`maximum_lag_on_failover`).
    pub max_lag_on_failover: u64,
    /// For the leader: milliseconds left before Fence A's deadline
    /// (negative: past it).
    pub lease_margin_ms: i64,
    /// Keep a primary whose synchronous standbys still stream when etcd is
    /// unreachable (`failsafe`).
    pub failsafe: bool,
    /// etcd answered this tick.
    pub store_ok: bool,
    /// How long this agent has seen the leader key gone for `last_term`
    /// (0 while there is a leader): candidates wait a bounded time for the
    /// reports of the standbys that streamed from the old primary.
    pub race_age_ms: u64,
    /// The primary the cluster's inventory names (a pgscale command such as
    /// a switchover records it under the cluster lock).
    pub inventory_primary: Option<String>,
    /// How long the leader's member key has not changed as this agent saw
    /// it (its agent has not reached etcd since; 0 when this node leads).
    pub leader_silent_ms: u64,
    /// The leader is lost before its lease expired: its agent silent for
    /// longer than a slow tick ([`silence_ms`]) and its PostgreSQL refuses
    /// or ignores connections from this node. Synchronous mode races for
    /// it at once (Fence B's proof does not need the lease).
    pub leader_lost: bool,
}

/// How long a leader's agent may stay silent before its standbys look at
/// its PostgreSQL: two ticks and a call that ran out its deadline (1 s by
/// default, 0.6 s fast). Only how soon a lost leader is noticed depends on
/// it: a leader taken over is also unreachable, and the promotion still
/// needs Fence B's proof.
pub fn silence_ms(p: &crate::fence::Profile) -> u64 {
    2 * p.period_ms + p.attempt_ms
}

impl View {
    pub fn is_sync(&self) -> bool {
        self.sync.k > 0
    }
}
