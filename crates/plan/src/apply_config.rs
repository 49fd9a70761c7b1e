//! `apply-config`: roll `postgres.hba` and `postgres.parameters` out to every
//! node. Desired = what the inventory renders for each node; observed = the
//! node's pg_hba.conf and postgresql.auto.conf as the server reads them. The
//! plan holds only the differences, so an interrupted roll-out re-runs to the
//! end.

use crate::steps::{Action, Ctx, Plan};
use crate::{argv, conf, destroy::node_order, hba, sql};
pub use model::ConfigObs;
use model::{Inventory, Phase};
use std::collections::BTreeMap;

/// Refusals: the file changes more than configuration, or names a parameter
/// the server does not know.
pub fn check_only_config_changed(old: &Inventory, new: &Inventory) -> Result<(), String> {
    if old.name != new.name {
        return Err(format!("the file describes cluster `{}`, not `{}`", new.name, old.name));
    }
    let key = |i: &Inventory| {
        i.nodes
            .iter()
            .map(|n| (n.name.clone(), n.host.clone(), n.port, n.data_dir.clone(), n.upstream.clone(), n.sync))
            .collect::<Vec<_>>()
    };
    if key(old) != key(new) {
        return Err("the file changes nodes (names, hosts, ports, data_dir, upstream or sync); apply-config changes only `postgres.hba` and `postgres.parameters`: use scale-out/scale-in for nodes".into());
    }
    let (a, b) = (&old.postgres, &new.postgres);
    if a.admin_user != b.admin_user || a.replication_user != b.replication_user || a.os_user != b.os_user {
        return Err("admin_user, replication_user and os_user cannot change after init".into());
    }
    Ok(())
}

pub fn plan_apply_config(new: &Inventory, ctx: &Ctx, obs: &BTreeMap<String, ConfigObs>) -> Result<Plan, Vec<String>> {
    let mut p = Plan::new(&new.name, "apply-config");
    p.keep_going = true;
    let mut errors = Vec::new();
    let want_hba = hba::render(new, &ctx.os_user, &ctx.peers);
    // Standbys first, the primary last: a bad setting shows on a standby
    // before it can take the primary down.
    for n in node_order(new) {
        let Some(o) = obs.get(&n.name).filter(|o| o.running) else {
            p.notes.push(format!("{} is not running: skipped; start it and run apply-config again", n.name));
            continue;
        };
        let mut reload = false;
        let mut restart = o.pending_restart;
        if o.hba.as_deref() != Some(want_hba.as_str()) {
            p.push(
                &n.name,
                "hba",
                Action::WriteFile { path: n.data_dir.join("pg_hba.conf"), mode: 0o600, contents: want_hba.clone() },
                "pg_hba.conf differs from the inventory",
            );
            p.push(&n.name, "check-hba", Action::CheckHba, "refuse to reload a pg_hba.conf the server cannot read");
            reload = true;
        }
        let want: BTreeMap<String, String> = conf::managed_settings(new, n).into_iter().collect();
        for (k, v) in &want {
            if o.auto_conf.get(k) == Some(v) {
                continue;
            }
            let Some(context) = o.contexts.get(k) else {
                errors.push(format!("{}: unknown parameter `{k}` (not in pg_settings)", n.name));
                continue;
            };
            p.push(
                &n.name,
                &format!("set-{k}"),
                Action::Sql { sql: sql::alter_system_set(k, v) },
                match o.auto_conf.get(k) {
                    Some(old) => format!("{k} is '{old}', the inventory says '{v}' ({context})"),
                    None => format!("{k} is not set, the inventory says '{v}' ({context})"),
                },
            );
            reload = true;
            restart |= context == "postmaster";
        }
        for k in o.auto_conf.keys().filter(|k| !want.contains_key(*k)) {
            p.push(
                &n.name,
                &format!("reset-{k}"),
                Action::Sql { sql: sql::alter_system_reset(k) },
                format!("{k} is set by ALTER SYSTEM but not in the inventory"),
            );
            reload = true;
            restart |= o.contexts.get(k).is_some_and(|c| c == "postmaster");
        }
        if reload {
            p.push(&n.name, "reload", Action::Reload, "make the server read its files again");
        }
        if restart {
            p.push(
                &n.name,
                "restart",
                Action::Restart {
                    data_dir: n.data_dir.clone(),
                    argv: argv::pg_ctl_restart(&ctx.bin_dir, &n.data_dir, &n.socket_dir(), ctx.wait_secs),
                },
                "a changed parameter takes effect only at server start",
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if !p.is_empty() {
        p.push(
            "",
            "record",
            Action::SaveInventory { phase: Phase::Ready },
            "the inventory's configuration is rolled out",
        );
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_inventory;
    use model::ParamValue;

    fn setup() -> (Inventory, Ctx, BTreeMap<String, ConfigObs>) {
        let y = "name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 5501\n    data_dir: /d/pg1\n  - name: pg2\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /d/pg2\n";
        let inv = parse_inventory("c.yaml", y).unwrap().0;
        let ctx = Ctx {
            bin_dir: "/b".into(),
            os_user: "postgres".into(),
            peers: vec!["127.0.0.1".parse().unwrap()],
            wait_secs: 10,
            unreachable: vec![],
        };
        let mut obs = BTreeMap::new();
        for n in &inv.nodes {
            let o = ConfigObs {
                running: true,
                hba: Some(hba::render(&inv, "postgres", &ctx.peers)),
                auto_conf: conf::managed_settings(&inv, n).into_iter().collect(),
                pending_restart: false,
                contexts: [("work_mem", "user"), ("shared_buffers", "postmaster"), ("port", "postmaster")]
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .chain(conf::managed_settings(&inv, n).into_iter().map(|(k, _)| (k, "sighup".to_string())))
                    .collect(),
            };
            obs.insert(n.name.clone(), o);
        }
        (inv, ctx, obs)
    }

    fn ids(p: &Plan) -> Vec<&str> {
        p.steps.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn nothing_changed_nothing_to_do() {
        let (inv, ctx, obs) = setup();
        assert!(plan_apply_config(&inv, &ctx, &obs).unwrap().is_empty());
    }

    #[test]
    fn reloadable_parameter_standbys_first_no_restart() {
        let (mut inv, ctx, obs) = setup();
        inv.postgres.parameters.insert("work_mem".into(), ParamValue::Str("8MB".into()));
        let p = plan_apply_config(&inv, &ctx, &obs).unwrap();
        assert_eq!(ids(&p), ["pg2:set-work_mem", "pg2:reload", "pg1:set-work_mem", "pg1:reload", "record"]);
    }

    #[test]
    fn postmaster_parameter_restarts_standbys_then_primary() {
        let (mut inv, ctx, obs) = setup();
        inv.postgres.parameters.insert("shared_buffers".into(), ParamValue::Str("256MB".into()));
        let p = plan_apply_config(&inv, &ctx, &obs).unwrap();
        assert_eq!(
            ids(&p),
            [
                "pg2:set-shared_buffers",
                "pg2:reload",
                "pg2:restart",
                "pg1:set-shared_buffers",
                "pg1:reload",
                "pg1:restart",
                "record"
            ]
        );
    }

    #[test]
    fn hba_change_is_checked_before_reload_and_removed_param_is_reset() {
        let (mut inv, ctx, mut obs) = setup();
        inv.postgres.hba.push("host all app 10.1.0.0/16 scram-sha-256".into());
        obs.get_mut("pg2").unwrap().auto_conf.insert("work_mem".into(), "8MB".into());
        let p = plan_apply_config(&inv, &ctx, &obs).unwrap();
        assert_eq!(
            ids(&p),
            [
                "pg2:hba",
                "pg2:check-hba",
                "pg2:reset-work_mem",
                "pg2:reload",
                "pg1:hba",
                "pg1:check-hba",
                "pg1:reload",
                "record"
            ]
        );
    }

    #[test]
    fn unknown_parameter_refused_and_stopped_node_skipped() {
        let (mut inv, ctx, mut obs) = setup();
        inv.postgres.parameters.insert("work_meme".into(), ParamValue::Str("8MB".into()));
        let e = plan_apply_config(&inv, &ctx, &obs).unwrap_err();
        assert!(e[0].contains("unknown parameter `work_meme`"), "{e:?}");
        inv.postgres.parameters.clear();
        inv.postgres.parameters.insert("work_mem".into(), ParamValue::Str("8MB".into()));
        obs.get_mut("pg2").unwrap().running = false;
        let p = plan_apply_config(&inv, &ctx, &obs).unwrap();
        assert_eq!(ids(&p), ["pg1:set-work_mem", "pg1:reload", "record"]);
        assert!(p.notes[0].contains("pg2 is not running"));
    }

    #[test]
    fn only_config_may_change() {
        let (inv, _, _) = setup();
        let mut b = inv.clone();
        b.nodes[1].port = 6000;
        assert!(check_only_config_changed(&inv, &b).unwrap_err().contains("scale-out"));
        let mut c = inv.clone();
        c.postgres.hba.push("host all app 10.1.0.0/16 scram-sha-256".into());
        assert!(check_only_config_changed(&inv, &c).is_ok());
    }
}
