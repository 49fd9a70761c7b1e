//! The sharded spec file: a coordinator group and data groups sharing one
//! `postgres:` section, split into one ordinary inventory per group.

use crate::load::{Locations, Problem};
use model::sharding::{COORDINATOR, DEFAULT_SHARDS};
use model::{Inventory, NodeSpec, Sharding};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ShardedFile {
    pub name: String,
    #[serde(default)]
    pub postgres: model::PostgresSpec,
    #[serde(default)]
    pub dcs: Option<model::Dcs>,
    #[serde(default)]
    pub ha: model::HaSpec,
    /// Hash partitions of every sharded table (default 64).
    #[serde(default = "default_shards")]
    pub shards: u32,
    /// The database holding the sharded tables (default `postgres`).
    #[serde(default = "default_database")]
    pub database: String,
    pub coordinator: CoordinatorFile,
    #[serde(default)]
    pub data: Vec<DataGroupFile>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorFile {
    pub nodes: Vec<NodeSpec>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct DataGroupFile {
    pub name: String,
    pub nodes: Vec<NodeSpec>,
}

/// An `expand` file: the data groups to add.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct AddFile {
    pub data: Vec<DataGroupFile>,
}

fn default_shards() -> u32 {
    DEFAULT_SHARDS
}

fn default_database() -> String {
    "postgres".into()
}

pub const MAX_SHARDS: u32 = 1024;
/// Longest group name: object names `<table>_<shard>_<group>` fit in 63 bytes.
pub const MAX_GROUP: usize = 26;

/// One group of the file, as an inventory of its own, with the locations
/// of its fields renamed as if it were a file of its own.
pub struct GroupInv {
    pub group: String,
    pub inv: Inventory,
    pub locs: Locations,
}

/// Whether a YAML text is a sharded spec (it has a top-level `coordinator:`).
pub fn is_sharded(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("coordinator:"))
}

/// Problems of the whole file: names, counts, and what must differ across
/// groups (node names, host:port, data directories).
pub fn problems(f: &ShardedFile, locs: &Locations) -> Vec<Problem> {
    let mut out = Vec::new();
    if !model::valid_name(&f.name) || f.name.len() > 30 {
        out.push(locs.problem("name", "a sharded cluster's name: 1 to 30 of a-z, 0-9, _"));
    }
    if f.shards == 0 || f.shards > MAX_SHARDS {
        out.push(locs.problem("shards", format!("shards must be 1 to {MAX_SHARDS} (Citus advises 32 to 128)")));
    }
    if !model::valid_name(&f.database) {
        out.push(locs.problem("database", "a database name: 1 to 63 of a-z, 0-9, _"));
    }
    if f.data.is_empty() {
        out.push(locs.problem("data", "a sharded cluster needs at least one data group under `data:`"));
    }
    out.extend(group_problems(&f.data, &[], locs));
    let mut all: Vec<(String, &NodeSpec)> =
        f.coordinator.nodes.iter().enumerate().map(|(i, n)| (format!("coordinator.nodes[{i}]"), n)).collect();
    for (g, d) in f.data.iter().enumerate() {
        all.extend(d.nodes.iter().enumerate().map(|(i, n)| (format!("data[{g}].nodes[{i}]"), n)));
    }
    out.extend(cross_node_problems(&all, locs));
    out
}

/// Data group names: valid, unique, not `coordinator`, not already taken.
pub fn group_problems(data: &[DataGroupFile], existing: &[String], locs: &Locations) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, d) in data.iter().enumerate() {
        let at = format!("data[{i}].name");
        if !model::valid_name(&d.name) || d.name.len() > MAX_GROUP {
            out.push(locs.problem(&at, format!("a group name: 1 to {MAX_GROUP} of a-z, 0-9, _")));
        } else if d.name == COORDINATOR {
            out.push(locs.problem(&at, "`coordinator` is the coordinator group's name"));
        } else if seen.contains(&d.name.as_str()) || existing.contains(&d.name) {
            out.push(locs.problem(&at, format!("group `{}` is named twice", d.name)));
        }
        if d.nodes.is_empty() {
            out.push(locs.problem(format!("data[{i}].nodes"), "a group needs at least one node"));
        }
        seen.push(&d.name);
    }
    out
}

/// Node names, addresses and data directories must differ across groups
/// (each group's own file is checked by the ordinary validation).
pub fn cross_node_problems(all: &[(String, &NodeSpec)], locs: &Locations) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    let mut addrs: BTreeMap<String, &str> = BTreeMap::new();
    let mut dirs: BTreeMap<String, &str> = BTreeMap::new();
    for (at, n) in all {
        if let Some(first) = names.insert(&n.name, at) {
            if first != at.as_str() {
                out.push(locs.problem(format!("{at}.name"), format!("node `{}` is also {first}", n.name)));
            }
        }
        if let Some(first) = addrs.insert(n.addr(), at) {
            out.push(locs.problem(format!("{at}.port"), format!("{} is also {first}'s address", n.addr())));
        }
        let d = format!("{}:{}", n.host, n.data_dir.display());
        if let Some(first) = dirs.insert(d, at) {
            out.push(locs.problem(format!("{at}.data_dir"), format!("the data directory is also {first}'s")));
        }
    }
    out
}

/// The inventory of one group: the file's shared sections, its nodes, and
/// its place in the sharded cluster.
pub fn group_inventory(
    base: &Inventory,
    cluster: &str,
    group: &str,
    nodes: Vec<NodeSpec>,
    shards: u32,
    database: &str,
) -> Inventory {
    let mut inv = base.clone();
    inv.name = model::group_cluster(cluster, group);
    inv.nodes = nodes;
    inv.state = Default::default();
    inv.sharding = Some(Sharding {
        cluster: cluster.to_string(),
        group: group.to_string(),
        shards,
        database: database.to_string(),
        groups: Vec::new(),
        peers: Vec::new(),
    });
    inv
}

/// Split the file: the coordinator first, then the data groups in order.
pub fn split(f: &ShardedFile, locs: &Locations) -> Vec<GroupInv> {
    let base = Inventory {
        name: f.name.clone(),
        postgres: f.postgres.clone(),
        nodes: Vec::new(),
        dcs: f.dcs.clone(),
        ha: f.ha.clone(),
        sharding: None,
        state: Default::default(),
    };
    let mut out = Vec::new();
    let mut coord = group_inventory(&base, &f.name, COORDINATOR, f.coordinator.nodes.clone(), f.shards, &f.database);
    if let Some(s) = coord.sharding.as_mut() {
        s.groups = f.data.iter().map(|d| d.name.clone()).collect();
    }
    out.push(GroupInv { group: COORDINATOR.into(), inv: coord, locs: locs.group("coordinator.") });
    for (i, d) in f.data.iter().enumerate() {
        out.push(GroupInv {
            group: d.name.clone(),
            inv: group_inventory(&base, &f.name, &d.name, d.nodes.clone(), f.shards, &f.database),
            locs: locs.group(&format!("data[{i}].")),
        });
    }
    out
}

/// A commented sharded spec: a coordinator and two data groups, each a
/// primary and a standby, on loopback addresses.
pub fn template() -> String {
    let mut s = String::from(
        "# A sharded cluster for `pgscale init -c THIS_FILE`: a coordinator group and data groups,\n\
         # each an ordinary primary/standby group (every pgscale command works on each: -n shop,\n\
         # -n shop_dg1, ...). Applications connect to the coordinator's primary.\n\
         name: shop\n\
         shards: 64                       # hash partitions of every sharded table\n\
         database: postgres               # where the sharded tables live, on every group\n\
         postgres:\n\
         \x20 parameters:\n\
         \x20   shared_buffers: 128MB\n\
         coordinator:\n\
         \x20 nodes:\n",
    );
    let node = |ind: &str, n: &str, ip: &str, group: &str, sync: bool| {
        let mut t = format!(
            "{ind}- name: {n}\n{ind}  host: {ip}\n{ind}  port: 5432\n{ind}  data_dir: /var/lib/pgscale/shop/{group}/{n}\n"
        );
        if sync {
            t += &format!("{ind}  sync: sync\n");
        }
        t
    };
    s += &node("    ", "c1", "127.0.0.11", "coordinator", false);
    s += &node("    ", "c2", "127.0.0.12", "coordinator", true);
    s += "data:\n";
    for (g, a, b) in [("dg1", 21, 22), ("dg2", 31, 32)] {
        s += &format!("  - name: {g}\n    nodes:\n");
        s += &node("      ", &format!("{g}a"), &format!("127.0.0.{a}"), g, false);
        s += &node("      ", &format!("{g}b"), &format!("127.0.0.{b}"), g, true);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_splits_into_valid_groups() {
        let t = template();
        assert!(is_sharded(&t));
        let (f, locs) = crate::load::parse_sharded("s.yaml", &t).expect("parses");
        assert!(problems(&f, &locs).is_empty(), "{:?}", problems(&f, &locs));
        let groups = split(&f, &locs);
        assert_eq!(groups.iter().map(|g| g.inv.name.as_str()).collect::<Vec<_>>(), ["shop", "shop_dg1", "shop_dg2"]);
        for g in &groups {
            let ps = crate::validate::validate_static(&g.inv, &g.locs);
            assert!(ps.is_empty(), "{}: {ps:?}", g.group);
        }
        assert_eq!(groups[0].inv.sharding.as_ref().unwrap().groups, ["dg1", "dg2"]);
        // A group's problem points at its place in the sharded file.
        let p = groups[2].locs.problem("nodes[1].port", "x");
        assert_eq!(p.field, "nodes[1].port");
        assert!(p.line.is_some_and(|l| l > 20), "{p:?}");
    }

    #[test]
    fn nodes_must_differ_across_groups() {
        let t = template().replace("127.0.0.31", "127.0.0.21").replace("name: dg2b", "name: dg1b");
        let (f, locs) = crate::load::parse_sharded("s.yaml", &t).expect("parses");
        let ps: Vec<String> = problems(&f, &locs).iter().map(|p| p.to_string()).collect();
        assert!(ps.iter().any(|p| p.contains("also data[0].nodes[0]'s address")), "{ps:?}");
        assert!(ps.iter().any(|p| p.contains("node `dg1b` is also")), "{ps:?}");
        let t = template().replace("name: dg2", "name: coordinator");
        let (f, locs) = crate::load::parse_sharded("s.yaml", &t).expect("parses");
        assert!(problems(&f, &locs).iter().any(|p| p.message.contains("coordinator group")));
    }
}
