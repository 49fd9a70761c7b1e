//! `destroy`: stop every node, remove what pgscale created, forget the cluster.

use crate::steps::{Action, Ctx, Plan};
use model::{Inventory, Observed, RunState};

/// Standbys first, the primary last (it serves the others until the end).
pub fn node_order(inv: &Inventory) -> Vec<&model::NodeSpec> {
    let mut v: Vec<_> = inv.nodes.iter().filter(|n| !inv.is_primary(&n.name)).collect();
    v.extend(inv.primary());
    v
}

pub fn plan_destroy(inv: &Inventory, ctx: &Ctx, obs: &Observed) -> Plan {
    let mut p = Plan::new(&inv.name, "destroy");
    // A node that cannot be reached keeps its own steps failing; the others
    // are still cleaned, and the record is kept until everything is done.
    p.keep_going = true;
    for n in node_order(inv) {
        if obs.get(&n.name).is_some_and(|o| o.state == RunState::Unreachable) {
            p.notes.push(format!(
                "{} did not answer the probe: its steps may fail at their deadline; the cluster record is kept until they succeed (re-run destroy)",
                n.name
            ));
        }
        p.push(
            &n.name,
            "stop",
            Action::stop(ctx, &n.data_dir, "fast", ctx.wait_secs),
            "stop the server (fast: open transactions are rolled back)",
        );
        for d in &n.state.created_dirs {
            p.push(&n.name, "remove-dir", Action::RemoveDir { path: d.clone() }, "pgscale created it");
        }
        for d in adopted(n) {
            p.push(
                &n.name,
                "empty-dir",
                Action::EmptyDir { path: d },
                "it was empty when pgscale took it over; the directory itself stays",
            );
        }
    }
    p.push("", "forget", Action::ForgetCluster, "the cluster no longer exists");
    p
}

/// Directories of a node pgscale uses but did not create.
fn adopted(n: &model::NodeSpec) -> Vec<std::path::PathBuf> {
    [n.data_dir.clone(), n.socket_dir()]
        .into_iter()
        .filter(|d| !n.state.created_dirs.contains(d) && n.state.adopted_dirs.contains(d))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_inventory;

    #[test]
    fn destroy_removes_only_what_pgscale_created_or_adopted() {
        let y = "name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 5501\n    data_dir: /d/pg1\n  - name: pg2\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /d/pg2\n";
        let mut inv = parse_inventory("c.yaml", y).unwrap().0;
        inv.nodes[0].state.created_dirs = vec!["/d/pg1".into()];
        inv.nodes[0].state.adopted_dirs = vec!["/d/pg1.sock".into()];
        let ctx =
            Ctx { bin_dir: "/b".into(), os_user: "postgres".into(), peers: vec![], wait_secs: 10, unreachable: vec![] };
        let p = plan_destroy(&inv, &ctx, &Observed::default());
        let ids: Vec<_> = p.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["pg2:stop", "pg1:stop", "pg1:remove-dir", "pg1:empty-dir", "forget"]);
        assert!(p.keep_going);
    }
}
