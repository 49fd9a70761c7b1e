//! Automatic failover's cluster-wide setting (`pgscale ha`), kept in etcd
//! beside the inventory.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HaMode {
    /// Agents act: fence, promote, re-point, rejoin.
    Enabled,
    /// Agents only observe and publish; nobody acts (until `pgscale ha enable`).
    #[default]
    Disabled,
    /// Maintenance: agents observe and report, never act; the leader keeps its key.
    Paused,
}

impl HaMode {
    pub fn as_str(self) -> &'static str {
        match self {
            HaMode::Enabled => "enabled",
            HaMode::Disabled => "disabled",
            HaMode::Paused => "paused",
        }
    }
}

/// The mode, and who set it when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaSetting {
    pub mode: HaMode,
    /// `host pid command`.
    pub by: String,
    /// RFC 3339.
    pub at: String,
}

/// The spec's `ha:` section: what the agents may do. An agent's flags
/// (`--failsafe`, `--auto-reclone`, `--max-lag-on-failover`) override it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HaSpec {
    /// Keep a synchronous primary running while etcd is unreachable (its
    /// standbys' quorum protects the data); default: fence it.
    pub failsafe: bool,
    /// Asynchronous mode: the most a standby may lag the last recorded
    /// primary position, in bytes, and still be promoted (Patroni's name
    /// and unit; default 1 MiB).
    pub maximum_lag_on_failover: u64,
    /// A former primary that pg_rewind cannot bring back is recloned from
    /// the new primary; default: it stays down until `rejoin --reclone`.
    pub auto_reclone: bool,
}

/// Patroni's default `maximum_lag_on_failover`.
pub const DEFAULT_MAX_LAG_ON_FAILOVER: u64 = 1 << 20;

impl Default for HaSpec {
    fn default() -> Self {
        HaSpec { failsafe: false, maximum_lag_on_failover: DEFAULT_MAX_LAG_ON_FAILOVER, auto_reclone: false }
    }
}

impl HaSpec {
    pub fn is_default(&self) -> bool {
        *self == HaSpec::default()
    }
}

impl std::fmt::Display for HaSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "failsafe {}, maximum_lag_on_failover {} bytes, auto_reclone {}",
            self.failsafe, self.maximum_lag_on_failover, self.auto_reclone
        )
    }
}
