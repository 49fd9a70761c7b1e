//! A sharded cluster: a coordinator group and data groups, each an
//! ordinary primary/standby cluster of its own. The coordinator's cluster
//! carries the sharded cluster's name; a data group `dg1` of cluster `shop`
//! is the cluster `shop_dg1`. Which group holds which shard is not kept
//! here: it lives in the coordinator's database (`pgscale.shards`), changed
//! in the same transaction as the routing, so it can never disagree with it.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

pub const DEFAULT_SHARDS: u32 = 64;
pub const COORDINATOR: &str = "coordinator";

/// Kept in every group's inventory (written by pgscale, refused in user files).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Sharding {
    /// The sharded cluster's name (= the coordinator group's cluster name).
    pub cluster: String,
    /// `coordinator`, or the data group's name.
    pub group: String,
    /// Number of shards (hash partitions) of every sharded table.
    pub shards: u32,
    /// The database holding the sharded tables, on every group.
    pub database: String,
    /// In the coordinator's inventory: the data groups, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Node addresses of the other groups: pg_hba.conf lets them in (the
    /// coordinator's postgres_fdw, the moves' subscriptions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<IpAddr>,
}

impl Sharding {
    pub fn is_coordinator(&self) -> bool {
        self.group == COORDINATOR
    }
}

/// The cluster name of a group of sharded cluster `cluster`.
pub fn group_cluster(cluster: &str, group: &str) -> String {
    if group == COORDINATOR {
        cluster.to_string()
    } else {
        format!("{cluster}_{group}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn group_clusters_are_named_after_the_sharded_cluster() {
        assert_eq!(super::group_cluster("shop", "coordinator"), "shop");
        assert_eq!(super::group_cluster("shop", "dg1"), "shop_dg1");
    }
}
