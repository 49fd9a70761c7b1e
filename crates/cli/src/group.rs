//! `--group GROUP` (and a node name) on a sharded cluster: every command
//! that works on a cluster works on one group of a sharded cluster, the
//! cluster `NAME_GROUP`. Done on the command line before clap reads it, so
//! no command needs to know.

use ops::error::{invalid, OpError};

/// `-n NAME --group G` → `-n NAME_G` (`coordinator` names NAME itself).
pub fn rewrite(mut argv: Vec<String>) -> Result<Vec<String>, String> {
    let Some(i) = argv.iter().position(|a| a == "--group" || a.starts_with("--group=")) else {
        return Ok(argv);
    };
    // Only before a `--` (what follows goes to psql and the like).
    if argv.iter().position(|a| a == "--").is_some_and(|d| d < i) {
        return Ok(argv);
    }
    let group = match argv[i].strip_prefix("--group=") {
        Some(g) => {
            let g = g.to_string();
            argv.remove(i);
            g
        }
        None => {
            if i + 1 >= argv.len() {
                return Err("--group needs a group name".into());
            }
            let g = argv.remove(i + 1);
            argv.remove(i);
            g
        }
    };
    if !model::valid_name(&group) {
        return Err(format!("`{group}` is not a group name: 1 to 26 of a-z, 0-9, _"));
    }
    let end = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    for j in 0..end {
        if (argv[j] == "-n" || argv[j] == "--name") && j + 1 < end {
            argv[j + 1] = model::group_cluster(&argv[j + 1], &group);
            return Ok(argv);
        }
        if let Some(v) = argv[j].strip_prefix("--name=") {
            argv[j] = format!("--name={}", model::group_cluster(v, &group));
            return Ok(argv);
        }
    }
    Err("--group GROUP needs -n NAME (the sharded cluster)".into())
}

/// Commands whose `--node`/`--to` name a node of the cluster.
const NODE_COMMANDS: &[&str] =
    &["psql", "hba", "check", "scale-in", "switchover", "failover", "rejoin", "agent", "host"];

/// `-n NAME --node N` where N is a node of one of NAME's data groups (NAME
/// a sharded cluster): the command line for that group's cluster.
pub async fn infer(stores: &store::Stores, argv: &[String]) -> Result<Option<Vec<String>>, OpError> {
    let end = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    let args = &argv[..end];
    if !args.get(1).is_some_and(|c| NODE_COMMANDS.contains(&c.as_str())) {
        return Ok(None);
    }
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let (Some(name), Some(node)) = (value("-n").or(value("--name")), value("--node").or(value("--to"))) else {
        return Ok(None);
    };
    let Ok(store) = stores.for_cluster(&name).await else { return Ok(None) };
    let Ok(inv) = store.load(&name).await else { return Ok(None) };
    let Some(sh) = inv.sharding.filter(|s| s.is_coordinator()) else { return Ok(None) };
    if inv.nodes.iter().any(|n| n.name == node) {
        return Ok(None);
    }
    for g in &sh.groups {
        let c = model::group_cluster(&name, g);
        let has = match stores.for_cluster(&c).await {
            Ok(s) => s.load(&c).await.map(|i| i.node(&node).is_some()).unwrap_or(false),
            Err(_) => false,
        };
        if has {
            let mut v = argv.to_vec();
            for a in v.iter_mut().take(end) {
                if *a == name {
                    *a = c.clone();
                    break;
                }
            }
            return Ok(Some(v));
        }
    }
    Err(invalid(format!("`{node}` is not a node of sharded cluster {name} (its coordinator or any data group)")))
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn group_names_the_group_cluster() {
        assert_eq!(rewrite(v("pgscale status -n shop --group dg1")).unwrap(), v("pgscale status -n shop_dg1"));
        assert_eq!(rewrite(v("pgscale status --group=dg2 --name shop")).unwrap(), v("pgscale status --name shop_dg2"));
        assert_eq!(rewrite(v("pgscale status -n shop --group coordinator")).unwrap(), v("pgscale status -n shop"));
        assert_eq!(rewrite(v("pgscale psql -n shop -- --group x")).unwrap(), v("pgscale psql -n shop -- --group x"));
        assert!(rewrite(v("pgscale status --group dg1")).is_err());
        assert!(rewrite(v("pgscale status -n shop --group Bad")).is_err());
    }
}
