//! `init`: create the primary of a new cluster. The plan holds only what is
//! left to do, judged from the facts, so an interrupted init re-runs to the
//! same end.

use crate::steps::{Action, Ctx, Plan};
use crate::validate::{DirState, NodeFacts};
use crate::{argv, conf, hba};
use model::{Inventory, NodeObservation, Observed, ObservedRole, Phase, RunState};

/// What init found on the primary's host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitFacts {
    pub dirs: NodeFacts,
    /// PG_VERSION exists in the data directory.
    pub initialized: bool,
    /// The server answers.
    pub running: bool,
}

/// Inside the node's own socket directory (0700, owned by the OS user), so
/// initdb can read it and nobody else can.
fn pwfile(n: &model::NodeSpec) -> std::path::PathBuf {
    n.socket_dir().join(".pgscale-pwfile")
}

/// The primary as init leaves it: running, no slots, no synchronous
/// standbys, pg_hba with every peer. A new cluster's standbys are planned
/// against this before the primary exists (init's dry run, and a re-run
/// that finds the primary not started yet).
pub fn primary_after_init(inv: &Inventory) -> Observed {
    let mut obs = Observed::default();
    if let Some(p) = inv.primary() {
        let mut o = NodeObservation::unanswered(&p.name, RunState::Running, "");
        o.error = None;
        o.role = ObservedRole::Primary;
        o.synchronous_standby_names = Some(String::new());
        let settings = conf::managed_settings(inv, p);
        let get = |k: &str| settings.iter().find(|(n, _)| n == k).and_then(|(_, v)| v.parse().ok());
        o.max_wal_senders = get("max_wal_senders");
        o.max_replication_slots = get("max_replication_slots");
        obs.nodes.insert(p.name.clone(), o);
    }
    obs
}

pub fn plan_init(inv: &Inventory, ctx: &Ctx, f: &InitFacts) -> Plan {
    let mut p = Plan::new(&inv.name, "init");
    let Some(n) = inv.primary() else { return p };
    let node = n.name.as_str();
    p.push(
        "",
        "record",
        Action::SaveInventory { phase: Phase::Initializing },
        "record the intent first: an interrupted init can be re-run or destroyed",
    );
    for (verb, path, st) in
        [("data-dir", n.data_dir.clone(), f.dirs.data_dir), ("socket-dir", n.socket_dir(), f.dirs.socket_dir)]
    {
        match st {
            DirState::Missing => p.push(
                node,
                verb,
                Action::CreateDir { path, adopt: false },
                format!("missing; created owned by {}", ctx.os_user),
            ),
            DirState::Empty => p.push(
                node,
                verb,
                Action::CreateDir { path, adopt: true },
                format!("exists and is empty; made mode 0700, owned by {}", ctx.os_user),
            ),
            // Not empty: ours from an interrupted run (validation refused
            // anything else). Nothing to create.
            DirState::NotEmpty | DirState::NotADirectory => {}
        }
    }
    if !f.initialized {
        p.push(
            node,
            "initdb",
            Action::InitDb {
                data_dir: n.data_dir.clone(),
                pwfile: pwfile(n),
                argv: argv::initdb(&ctx.bin_dir, &n.data_dir, &inv.postgres.admin_user, &pwfile(n)),
            },
            "new data directory with checksums and a scram-sha-256 admin password",
        );
    }
    if !f.running {
        p.push(
            node,
            "conf",
            Action::WriteFile {
                path: n.data_dir.join("postgresql.auto.conf"),
                mode: 0o600,
                contents: conf::auto_conf(inv, n),
            },
            "settings a replicated cluster needs, written before the first start (later changes use ALTER SYSTEM)",
        );
        p.push(
            node,
            "hba",
            Action::WriteFile {
                path: n.data_dir.join("pg_hba.conf"),
                mode: 0o600,
                contents: hba::render(inv, &ctx.os_user, &ctx.peers),
            },
            "pg_hba generated whole: one scram-sha-256 line per peer address",
        );
        p.push(
            node,
            "start",
            Action::Start {
                data_dir: n.data_dir.clone(),
                argv: argv::pg_ctl_start(&ctx.bin_dir, &n.data_dir, &n.socket_dir(), ctx.wait_secs),
            },
            "start and wait until it accepts connections",
        );
    }
    p.push(node, "check-hba", Action::CheckHba, "the server must read pg_hba.conf without errors");
    p.push(
        node,
        "replication-role",
        Action::EnsureRole { role: inv.postgres.replication_user.clone(), replication: true },
        "standbys stream WAL as this role",
    );
    p.push("", "ready", Action::SaveInventory { phase: Phase::Ready }, "the cluster is created");
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_inventory;

    fn ctx() -> Ctx {
        Ctx {
            bin_dir: "/usr/lib/postgresql/15/bin".into(),
            os_user: "postgres".into(),
            peers: vec!["127.0.0.1".parse().unwrap()],
            wait_secs: 60,
            unreachable: vec![],
        }
    }

    fn inv() -> Inventory {
        parse_inventory(
            "c.yaml",
            "name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 5501\n    data_dir: /d/pg1\n",
        )
        .unwrap()
        .0
    }

    fn ids(p: &Plan) -> Vec<&str> {
        p.steps.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn fresh_init_has_every_step_in_order() {
        let f = InitFacts {
            dirs: NodeFacts { data_dir: DirState::Missing, socket_dir: DirState::Missing, port_in_use: false },
            initialized: false,
            running: false,
        };
        let p = plan_init(&inv(), &ctx(), &f);
        assert_eq!(
            ids(&p),
            [
                "record",
                "pg1:data-dir",
                "pg1:socket-dir",
                "pg1:initdb",
                "pg1:conf",
                "pg1:hba",
                "pg1:start",
                "pg1:check-hba",
                "pg1:replication-role",
                "ready"
            ]
        );
    }

    #[test]
    fn rerun_after_start_holds_only_what_is_left() {
        let f = InitFacts {
            dirs: NodeFacts { data_dir: DirState::NotEmpty, socket_dir: DirState::NotEmpty, port_in_use: true },
            initialized: true,
            running: true,
        };
        let p = plan_init(&inv(), &ctx(), &f);
        assert_eq!(ids(&p), ["record", "pg1:check-hba", "pg1:replication-role", "ready"]);
    }

    #[test]
    fn rerun_after_initdb_adopts_nothing_and_skips_initdb() {
        let f = InitFacts {
            dirs: NodeFacts { data_dir: DirState::NotEmpty, socket_dir: DirState::Empty, port_in_use: false },
            initialized: true,
            running: false,
        };
        let p = plan_init(&inv(), &ctx(), &f);
        assert!(!ids(&p).contains(&"pg1:initdb"));
        assert!(ids(&p).contains(&"pg1:start"));
        assert_eq!(p.steps[1].action, Action::CreateDir { path: "/d/pg1.sock".into(), adopt: true });
    }

    #[test]
    fn a_whole_cluster_is_one_plan_primary_first_then_standbys_sync_names_last() {
        let y = "name: demo\nnodes:\n  - name: pg3\n    host: 127.0.0.3\n    port: 5501\n    data_dir: /d/pg3\n    upstream: pg2\n  - name: pg1\n    host: 127.0.0.1\n    port: 5501\n    data_dir: /d/pg1\n    role: primary\n  - name: pg2\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /d/pg2\n    sync: sync\n";
        let mut i = parse_inventory("c.yaml", y).unwrap().0;
        for n in i.nodes.iter_mut().filter(|n| n.name != "pg1") {
            n.state.joining = true;
        }
        let missing = NodeFacts { data_dir: DirState::Missing, socket_dir: DirState::Missing, port_in_use: false };
        let init = plan_init(&i, &ctx(), &InitFacts { dirs: missing.clone(), initialized: false, running: false });
        // The new primary names no joining standby: its first commits never wait.
        let conf = init.steps.iter().find(|s| s.id == "pg1:conf").unwrap();
        let crate::Action::WriteFile { contents, .. } = &conf.action else { panic!() };
        assert!(contents.contains("synchronous_standby_names = ''"), "{contents}");
        let obs = primary_after_init(&i);
        let facts = ["pg2", "pg3"]
            .map(|n| (n.to_string(), crate::scale::JoinFacts { dirs: missing.clone(), copied: false, running: false }))
            .into_iter()
            .collect();
        let hba = [("pg1".to_string(), hba::render(&i, "postgres", &ctx().peers))].into_iter().collect();
        let opts = crate::scale::ScaleOpts { parallel: 2, catchup_secs: 60, stop_secs: 10, copy_max_rate: None };
        let standbys = crate::scale::plan_scale_out(&i, &ctx(), &obs, &hba, &facts, &opts).unwrap();
        let p = init.then(standbys);
        let ids = ids(&p);
        let pos = |id: &str| ids.iter().position(|x| *x == id).unwrap_or_else(|| panic!("{id}: {ids:?}"));
        assert_eq!(ids.iter().filter(|x| **x == "record").count(), 1, "one record step: {ids:?}");
        assert!(pos("pg1:replication-role") < pos("pg2:basebackup"));
        // the cascaded node, listed first in the file, is copied from pg2 after pg2 streams
        assert!(pos("pg2:wait-streaming") < pos("pg3:basebackup"));
        assert!(pos("pg3:wait-streaming") < pos("sync-names"));
        assert!(pos("sync-names") < pos("member-pg2") && pos("member-pg3") < pos("done"));
        // the primary's steps run alone and first
        assert!(p.steps[..pos("ready")].iter().all(|s| s.wave == 0 && s.lane.is_empty()));
        assert!(p.steps[pos("ready") + 1..].iter().all(|s| s.wave >= 1));
    }
}
