use super::*;
use crate::load::parse_inventory;
use model::{Downstream, NodeObservation, Slot};

fn ctx() -> Ctx {
    Ctx {
        bin_dir: "/b".into(),
        os_user: "postgres".into(),
        peers: vec!["127.0.0.1".parse().unwrap()],
        wait_secs: 60,
        unreachable: vec![],
    }
}

fn opts() -> HaOpts {
    HaOpts {
        max_lag_bytes: 16 << 20,
        catchup_secs: 60,
        promote_secs: 30,
        stop_secs: 10,
        copy_max_rate: None,
        agents_follow: false,
    }
}

/// pg1 primary; pg2 sync; pg3 potential; pg4 cascaded from pg3.
fn inv() -> Inventory {
    let y = "name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 5501\n    data_dir: /d/pg1\n    role: primary\n\
             \x20 - name: pg2\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /d/pg2\n    sync: sync\n\
             \x20 - name: pg3\n    host: 127.0.0.3\n    port: 5501\n    data_dir: /d/pg3\n    sync: potential\n\
             \x20 - name: pg4\n    host: 127.0.0.4\n    port: 5501\n    data_dir: /d/pg4\n    upstream: pg3\n";
    parse_inventory("c.yaml", y).unwrap().0
}

fn standby(name: &str, up: &str, received: u64) -> NodeObservation {
    let mut o = NodeObservation::unanswered(name, RunState::Running, "");
    o.error = None;
    o.role = ObservedRole::Standby;
    o.timeline = Some(1);
    o.receive_lsn = Some(PgLsn::from(received));
    o.lsn = Some(PgLsn::from(received));
    o.upstream_host = Some(up.into());
    o.upstream_port = Some(5501);
    o.synchronous_standby_names = Some(String::new());
    o
}

fn row(name: &str, flush: u64) -> Downstream {
    Downstream {
        application_name: name.into(),
        client_addr: None,
        state: "streaming".into(),
        sync_state: "async".into(),
        replay_lsn: Some(PgLsn::from(flush)),
        flush_lsn: Some(PgLsn::from(flush)),
        silent: false,
    }
}

fn observed() -> Observed {
    let mut p = NodeObservation::unanswered("pg1", RunState::Running, "");
    p.error = None;
    p.role = ObservedRole::Primary;
    p.lsn = Some(PgLsn::from(1000));
    p.timeline = Some(1);
    p.synchronous_standby_names = Some("FIRST 1 (\"pg2\", \"pg3\")".into());
    p.downstreams = vec![row("pg2", 1000), row("pg3", 900)];
    p.slots = vec![
        Slot { name: "pg2".into(), active: true, restart_lsn: None, retained_bytes: Some(0) },
        Slot { name: "pg3".into(), active: true, restart_lsn: None, retained_bytes: Some(0) },
    ];
    let mut o = Observed::default();
    o.nodes.insert("pg1".into(), p);
    o.nodes.insert("pg2".into(), standby("pg2", "127.0.0.1", 1000));
    o.nodes.insert("pg3".into(), standby("pg3", "127.0.0.1", 900));
    o.nodes.insert("pg4".into(), standby("pg4", "127.0.0.3", 900));
    o
}

fn ids(p: &Plan) -> Vec<&str> {
    p.steps.iter().map(|s| s.id.as_str()).collect()
}

fn pos(p: &Plan, id: &str) -> usize {
    p.steps.iter().position(|s| s.id == id).unwrap_or_else(|| panic!("{id} not in {:?}", ids(p)))
}

#[test]
fn candidates_rank_by_timeline_then_lsn_then_sync() {
    let mut o = observed();
    let c = rank_candidates(&inv(), &o, "pg1");
    assert_eq!(c.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["pg2", "pg3", "pg4"]);
    assert!(c[0].why.contains("synchronous"));
    // an async standby that received more wins: nothing it has is lost
    o.nodes.get_mut("pg3").unwrap().receive_lsn = Some(PgLsn::from(2000));
    assert_eq!(rank_candidates(&inv(), &o, "pg1")[0].name, "pg3");
    // a higher timeline beats a higher LSN
    o.nodes.get_mut("pg4").unwrap().timeline = Some(2);
    assert_eq!(rank_candidates(&inv(), &o, "pg1")[0].name, "pg4");
    // stopped nodes are not candidates
    o.nodes.insert("pg4".into(), NodeObservation::unanswered("pg4", RunState::Stopped, "x"));
    assert!(rank_candidates(&inv(), &o, "pg1").iter().all(|c| c.name != "pg4"));
}

#[test]
fn promoting_the_sync_standby_makes_the_potential_one_sync() {
    let (d, notes) = promote_in_inventory(&inv(), "pg2", &observed(), false);
    assert!(d.is_primary("pg2"));
    assert_eq!(d.node("pg3").unwrap().sync, Some(SyncMode::Sync));
    assert_eq!(d.node("pg2").unwrap().sync, None);
    assert_eq!(d.upstream_of("pg1").unwrap().name, "pg2");
    assert_eq!(d.upstream_of("pg4").unwrap().name, "pg3", "cascaded stays under its upstream");
    assert!(notes[0].contains("pg3 becomes synchronous"));
    assert_eq!(crate::sync::standby_names(&d), "FIRST 1 (\"pg3\")");
    let (f, _) = promote_in_inventory(&inv(), "pg2", &observed(), true);
    assert!(f.node("pg1").unwrap().state.needs_rejoin);
}

#[test]
fn switchover_order_keeps_commits_safe() {
    let (d, _) = promote_in_inventory(&inv(), "pg2", &observed(), false);
    let p = plan_switchover("pg1", &d, &ctx(), &observed(), &opts()).unwrap();
    // stop cleanly, wait until the target replayed the shutdown checkpoint, promote
    assert!(pos(&p, "pg1:checkpoint") < pos(&p, "pg1:stop"));
    assert!(pos(&p, "pg1:stop") < pos(&p, "pg1:wait-replay"));
    assert!(pos(&p, "pg2:fast-retry-reload") < pos(&p, "pg1:stop"), "ready before the downtime starts");
    assert!(pos(&p, "pg1:wait-replay") < pos(&p, "pg2:promote"));
    // the old primary comes back as a standby of the new one, through its slot, no rewind
    assert!(pos(&p, "pg2:promote") < pos(&p, "pg1:slot"));
    assert!(!ids(&p).iter().any(|i| i.contains("rewind")));
    assert!(pos(&p, "pg1:standby-signal") < pos(&p, "pg1:start"));
    // pg3 re-pointed; it becomes sync only after it streams from pg2
    assert!(pos(&p, "pg3:wait-streaming") < pos(&p, "sync-names"));
    assert!(pos(&p, "pg1:start") < pos(&p, "drop-old-slots"));
    let Action::Sql { sql } = &p.steps[pos(&p, "drop-old-slots")].action else { panic!() };
    assert!(sql.contains("AND true LOOP"), "pg1 has no downstream left: all its slots go: {sql}");
}

#[test]
fn switchover_refusals() {
    let (d, _) = promote_in_inventory(&inv(), "pg3", &observed(), false);
    let mut o = observed();
    o.nodes.get_mut("pg1").unwrap().downstreams[1].flush_lsn = Some(PgLsn::from(0));
    let mut small = opts();
    small.max_lag_bytes = 10;
    let e = plan_switchover("pg1", &d, &ctx(), &o, &small).unwrap_err();
    assert!(e.contains("bytes behind") && e.contains("--max-lag"), "{e}");
    o.nodes.get_mut("pg1").unwrap().downstreams.remove(1);
    assert!(plan_switchover("pg1", &d, &ctx(), &o, &opts()).unwrap_err().contains("not streaming"));
    let mut dead = observed();
    dead.nodes.insert("pg1".into(), NodeObservation::unanswered("pg1", RunState::Unreachable, "deadline"));
    assert!(plan_switchover("pg1", &d, &ctx(), &dead, &opts()).unwrap_err().contains("failover"));
}

#[test]
fn failover_stops_what_answers_and_never_rewinds() {
    let mut o = observed();
    o.nodes.insert("pg1".into(), NodeObservation::unanswered("pg1", RunState::Stopped, "refused"));
    let (d, _) = promote_in_inventory(&inv(), "pg2", &o, true);
    let p = plan_failover("pg1", &d, &ctx(), &o, &opts()).unwrap();
    assert!(p.steps[pos(&p, "pg1:stop")].best_effort);
    assert!(pos(&p, "pg2:promote") < pos(&p, "pg1:stop"), "a refusing old primary costs no downtime");
    assert!(pos(&p, "pg2:promote") < pos(&p, "pg3:conninfo"));
    assert!(!ids(&p).iter().any(|i| i.starts_with("pg1:") && i != &"pg1:stop"), "{:?}", ids(&p));
    o.nodes.insert("pg1".into(), NodeObservation::unanswered("pg1", RunState::Unreachable, "deadline"));
    let p = plan_failover("pg1", &d, &ctx(), &o, &opts()).unwrap();
    assert!(!ids(&p).contains(&"pg1:stop"));
    assert!(p.notes[0].contains("needing a rejoin"));
}

#[test]
fn failover_recorded_for_an_agent_leaves_the_standbys_to_their_agents() {
    let mut o = observed();
    o.nodes.insert("pg1".into(), NodeObservation::unanswered("pg1", RunState::Unreachable, "known down"));
    // The agent promoted pg2 already.
    o.nodes.get_mut("pg2").unwrap().role = ObservedRole::Primary;
    let (d, _) = promote_in_inventory(&inv(), "pg2", &o, true);
    let p = plan_failover("pg1", &d, &ctx(), &o, &HaOpts { agents_follow: true, ..opts() }).unwrap();
    // Record, then clear the intent: no promotion, no re-pointing, no wait
    // under the lock for a standby that may have to be rewound first.
    assert_eq!(ids(&p), vec!["record", "done"], "{:?}", ids(&p));
    assert!(p.notes.iter().any(|n| n.contains("agents re-point")));
    let p = plan_failover("pg1", &d, &ctx(), &o, &opts()).unwrap();
    assert!(ids(&p).contains(&"pg3:conninfo"), "{:?}", ids(&p));
}

#[test]
fn rejoin_rewinds_or_reclones() {
    let mut o = observed();
    o.nodes.insert("pg1".into(), NodeObservation::unanswered("pg1", RunState::Stopped, "refused"));
    let (mut d, _) = promote_in_inventory(&inv(), "pg2", &o, true);
    d.node_mut("pg1").unwrap().state.needs_rejoin = true;
    o.nodes.get_mut("pg2").unwrap().role = ObservedRole::Primary;
    let f = RejoinFacts { initialized: true };
    let p = plan_rejoin(&d, "pg1", &ctx(), &o, &f, false, &opts()).unwrap();
    assert!(pos(&p, "pg1:stop") < pos(&p, "pg1:rewind"));
    assert!(pos(&p, "pg1:slot") < pos(&p, "pg1:start"));
    assert!(pos(&p, "pg1:rewind") < pos(&p, "pg1:conf"));
    assert_eq!(p.steps[pos(&p, "pg1:slot")].node, "pg2");
    let Action::Rewind { argv, .. } = &p.steps[pos(&p, "pg1:rewind")].action else { panic!() };
    assert!(argv.iter().any(|a| a.contains("passfile=") && !a.contains("password")));
    let p = plan_rejoin(&d, "pg1", &ctx(), &o, &f, true, &opts()).unwrap();
    assert!(pos(&p, "pg1:empty") < pos(&p, "pg1:basebackup"));
    // a copy left running by a killed `rejoin --reclone` is ended on the
    // upstream before the directory is emptied
    assert!(pos(&p, "pg1:end-copy") < pos(&p, "pg1:empty"));
    assert_eq!(p.steps[pos(&p, "pg1:end-copy")].node, "pg2");
    let Action::BaseBackup { argv, .. } = &p.steps[pos(&p, "pg1:basebackup")].action else { panic!() };
    assert!(argv.contains(&"--no-clean".to_string()), "{argv:?}");
    assert!(!ids(&p).contains(&"pg1:rewind"));
    assert!(plan_rejoin(&d, "pg2", &ctx(), &o, &f, false, &opts()).is_err());
}

#[test]
fn failover_is_safe_when_not_behind_a_sync_standby() {
    let mut o = observed();
    // pg3 (async) received more than pg2 (sync): promoting pg3 loses nothing
    o.nodes.get_mut("pg3").unwrap().receive_lsn = Some(PgLsn::from(2000));
    let c = rank_candidates(&inv(), &o, "pg1");
    assert_eq!(c[0].name, "pg3");
    assert_eq!(failover_safety(&c, "pg3"), Ok(()));
    assert_eq!(failover_safety(&c, "pg2"), Ok(()));
    // pg4 is behind the sync standby
    let e = failover_safety(&c, "pg4").unwrap_err();
    assert!(e.contains("behind the synchronous standby pg2"), "{e}");
    // no sync standby running: unsafe whoever is chosen
    o.nodes.insert("pg2".into(), NodeObservation::unanswered("pg2", RunState::Stopped, "x"));
    let c = rank_candidates(&inv(), &o, "pg1");
    assert!(failover_safety(&c, "pg3").unwrap_err().contains("no standby was synchronous"));
}
