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
