use super::*;
use crate::load::parse_inventory;
use model::{Downstream, NodeObservation, Slot, SyncMode};

/// Peers as the CLI derives them: the staying nodes' addresses.
fn ctx_for(i: &Inventory) -> Ctx {
    let mut peers: Vec<std::net::IpAddr> = i.staying().map(|n| n.host.parse().unwrap()).collect();
    peers.sort();
    peers.dedup();
    Ctx { bin_dir: "/b".into(), os_user: "postgres".into(), peers, wait_secs: 60, unreachable: vec![] }
}

fn opts() -> ScaleOpts {
    ScaleOpts { parallel: 4, catchup_secs: 300, stop_secs: 10, copy_max_rate: None }
}

/// pg1 primary, pg2 standby of pg1; `extra` appended.
fn inv(extra: &str) -> Inventory {
    let y = format!(
        "name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 5501\n    data_dir: /d/pg1\n  - name: pg2\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /d/pg2\n{extra}"
    );
    parse_inventory("c.yaml", &y).unwrap().0
}

fn node(name: &str, more: &str) -> String {
    format!(
        "  - name: {name}\n    host: 127.0.0.3\n    port: {}\n    data_dir: /d/{name}\n{more}",
        5500 + name.len() as u16 + name.as_bytes()[2] as u16
    )
}

fn up(name: &str, role: ObservedRole) -> NodeObservation {
    let mut o = NodeObservation::unanswered(name, RunState::Running, "");
    o.error = None;
    o.role = role;
    o.max_wal_senders = Some(10);
    o.max_replication_slots = Some(10);
    o.synchronous_standby_names = Some(String::new());
    o
}

fn slot(name: &str) -> Slot {
    Slot { name: name.into(), active: true, restart_lsn: None, retained_bytes: Some(0) }
}

/// pg1 primary with pg2 streaming through its slot; hba as rendered for `i`.
fn observed(i: &Inventory) -> (Observed, BTreeMap<String, String>) {
    let mut p = up("pg1", ObservedRole::Primary);
    p.slots.push(slot("pg2"));
    p.downstreams.push(Downstream {
        application_name: "pg2".into(),
        client_addr: None,
        state: "streaming".into(),
        sync_state: "async".into(),
        replay_lsn: None,
        flush_lsn: None,
        silent: false,
    });
    let mut s = up("pg2", ObservedRole::Standby);
    s.upstream_host = Some("127.0.0.1".into());
    s.upstream_port = Some(5501);
    let mut o = Observed::default();
    o.nodes.insert("pg1".into(), p);
    o.nodes.insert("pg2".into(), s);
    let h = hba::render(i, "postgres", &ctx_for(i).peers);
    let hba = i.nodes.iter().map(|n| (n.name.clone(), h.clone())).collect();
    (o, hba)
}

fn fresh() -> JoinFacts {
    JoinFacts {
        dirs: NodeFacts { data_dir: DirState::Missing, socket_dir: DirState::Missing, port_in_use: false },
        copied: false,
        running: false,
    }
}

fn ids(p: &Plan) -> Vec<&str> {
    p.steps.iter().map(|s| s.id.as_str()).collect()
}

fn pos(p: &Plan, id: &str) -> usize {
    p.steps.iter().position(|s| s.id == id).unwrap_or_else(|| panic!("{id} not in {:?}", ids(p)))
}

#[test]
fn scale_out_sync_node_joins_async_first_and_enters_sync_names_last() {
    let base = inv("");
    let (obs, hba) = observed(&base);
    let mut d = inv(&node("pg3", "    sync: sync\n"));
    d.nodes[2].state.joining = true;
    let facts = BTreeMap::from([("pg3".to_string(), fresh())]);
    let p = plan_scale_out(&d, &ctx_for(&d), &obs, &hba, &facts, &opts()).unwrap();
    assert_eq!(
        ids(&p),
        [
            "record",
            "pg1:hba",
            "pg1:check-hba",
            "pg1:reload-hba",
            "pg2:hba",
            "pg2:check-hba",
            "pg2:reload-hba",
            "pg3:slot",
            "pg3:data-dir",
            "pg3:socket-dir",
            "pg3:passfile",
            "pg3:basebackup",
            "pg3:conf",
            "pg3:standby-signal",
            "pg3:hba",
            "pg3:start",
            "pg3:wait-streaming",
            "sync-names",
            "sync-reload",
            "member-pg3",
            "done"
        ]
    );
    // the slot is made on the upstream, the copy runs on the new node
    assert_eq!(p.steps[pos(&p, "pg3:slot")].node, "pg1");
    assert_eq!(p.steps[pos(&p, "pg3:basebackup")].node, "pg3");
    assert_eq!(p.steps[pos(&p, "pg3:wait-streaming")].node, "pg1");
    match &p.steps[pos(&p, "sync-names")].action {
        Action::Sql { sql } => assert!(sql.contains("FIRST 1 (\"pg3\")"), "{sql}"),
        a => panic!("{a:?}"),
    }
    let Action::BaseBackup { argv, .. } = &p.steps[pos(&p, "pg3:basebackup")].action else { panic!() };
    assert!(argv.windows(2).any(|w| w == ["--slot", "pg3"]));
    assert!(argv.contains(&"--wal-method=stream".to_string()) && argv.contains(&"--checkpoint=fast".to_string()));
    let Action::WriteFile { contents, .. } = &p.steps[pos(&p, "pg3:conf")].action else { panic!() };
    assert!(
        contents.contains("primary_slot_name = 'pg3'") && contents.contains("application_name=''pg3''"),
        "{contents}"
    );
    assert!(!contents.contains("password="), "no password in the conninfo");
    assert!(contents.contains("passfile="));
}

#[test]
fn cascaded_node_waits_for_its_new_upstream() {
    let base = inv("");
    let (obs, hba) = observed(&base);
    let mut d = inv(&(node("pg3", "") + &node("pg4", "    upstream: pg3\n")));
    d.nodes[2].state.joining = true;
    d.nodes[3].state.joining = true;
    let facts = BTreeMap::from([("pg3".to_string(), fresh()), ("pg4".to_string(), fresh())]);
    let p = plan_scale_out(&d, &ctx_for(&d), &obs, &hba, &facts, &opts()).unwrap();
    assert_eq!(p.steps[pos(&p, "pg3:basebackup")].wave, 1);
    assert_eq!(p.steps[pos(&p, "pg4:basebackup")].wave, 2);
    assert!(pos(&p, "pg3:wait-streaming") < pos(&p, "pg4:slot"));
    assert_eq!(p.steps[pos(&p, "pg4:slot")].node, "pg3");
    assert!(!ids(&p).contains(&"sync-names"), "no sync node: no change");
}

#[test]
fn rerun_after_copy_and_start_holds_only_what_is_left() {
    let base = inv("");
    let (mut obs, _) = observed(&base);
    let mut d = inv(&node("pg3", ""));
    d.nodes[2].state.joining = true;
    obs.nodes.get_mut("pg1").unwrap().slots.push(slot("pg3"));
    let h = hba::render(&d, "postgres", &ctx_for(&d).peers);
    let hba = BTreeMap::from([("pg1".to_string(), h.clone()), ("pg2".to_string(), h)]);
    let f = JoinFacts {
        dirs: NodeFacts { data_dir: DirState::NotEmpty, socket_dir: DirState::NotEmpty, port_in_use: true },
        copied: true,
        running: true,
    };
    let p = plan_scale_out(&d, &ctx_for(&d), &obs, &hba, &BTreeMap::from([("pg3".to_string(), f)]), &opts()).unwrap();
    assert_eq!(ids(&p), ["record", "pg3:passfile", "pg3:wait-streaming", "member-pg3", "done"]);
    // a partial copy is cleaned before copying again
    let f = JoinFacts {
        dirs: NodeFacts { data_dir: DirState::NotEmpty, socket_dir: DirState::NotEmpty, port_in_use: false },
        copied: false,
        running: false,
    };
    let p = plan_scale_out(&d, &ctx_for(&d), &obs, &hba, &BTreeMap::from([("pg3".to_string(), f)]), &opts()).unwrap();
    assert!(pos(&p, "pg3:clean-partial-copy") + 1 == pos(&p, "pg3:basebackup"));
}

#[test]
fn scale_out_refusals_say_what_to_do() {
    let base = inv("");
    let (mut obs, hba) = observed(&base);
    let mut d = inv(&node("pg3", "    upstream: pg2\n"));
    d.nodes[2].state.joining = true;
    let facts = BTreeMap::from([("pg3".to_string(), fresh())]);
    obs.nodes.insert("pg2".into(), NodeObservation::unanswered("pg2", RunState::Stopped, "refused"));
    let e = plan_scale_out(&d, &ctx_for(&d), &obs, &hba, &facts, &opts()).unwrap_err();
    assert!(e.contains("upstream pg2 of pg3 is not running"), "{e}");
    let (mut obs, hba) = observed(&base);
    obs.nodes.get_mut("pg1").unwrap().max_wal_senders = Some(2);
    let mut d = inv(&node("pg3", ""));
    d.nodes[2].state.joining = true;
    let e = plan_scale_out(&d, &ctx_for(&d), &obs, &hba, &facts, &opts()).unwrap_err();
    assert!(e.contains("max_wal_senders") && e.contains("apply-config"), "{e}");
    obs.nodes.insert("pg1".into(), NodeObservation::unanswered("pg1", RunState::Unreachable, "deadline"));
    let e = plan_scale_out(&d, &ctx_for(&d), &obs, &hba, &facts, &opts()).unwrap_err();
    assert!(e.contains("primary pg1 is not running"), "{e}");
}

#[test]
fn scale_in_of_sync_node_swaps_sync_names_before_stopping() {
    // pg2 sync, pg3 potential; pg2 leaves, pg3 takes its place
    let before = inv(&node("pg3", "    sync: potential\n"));
    let mut before2 = before.clone();
    before2.nodes[1].sync = Some(SyncMode::Sync);
    let (mut obs, hba) = observed(&before2);
    obs.nodes.get_mut("pg1").unwrap().synchronous_standby_names = Some(sync::standby_names(&before2));
    let mut s3 = up("pg3", ObservedRole::Standby);
    s3.upstream_host = Some("127.0.0.1".into());
    s3.upstream_port = Some(5501);
    obs.nodes.insert("pg3".into(), s3);
    let mut d = before2.clone();
    d.nodes[1].state.leaving = true;
    let repl = sync::replacement(&d, &["pg2".into()], &obs).unwrap();
    assert_eq!(repl.as_deref(), Some("pg3"));
    d.nodes[2].sync = Some(SyncMode::Sync);
    let p = plan_scale_in(&d, &ctx_for(&d), &obs, &hba, &opts()).unwrap();
    assert!(pos(&p, "sync-reload") < pos(&p, "pg2:stop"), "{:?}", ids(&p));
    let Action::Sql { sql } = &p.steps[pos(&p, "sync-names")].action else { panic!() };
    assert!(sql.contains("FIRST 1 (\\\"pg3\\\")") || sql.contains("FIRST 1 (\"pg3\")"), "{sql}");
    assert!(pos(&p, "pg2:stop") < pos(&p, "pg1:drop-slot-pg2"));
    assert!(pos(&p, "pg1:drop-slot-pg2") < pos(&p, "forget-pg2"));
    assert!(p.steps[pos(&p, "pg2:stop")].best_effort, "without --clear-dir a stuck stop is only reported");
    assert!(!ids(&p).iter().any(|i| i.contains("remove-dir")), "data kept without --clear-dir");
}

#[test]
fn scale_in_repoints_children_first_and_skips_a_dead_node() {
    // pg3 streams from pg2; pg2 leaves: pg3 moves to pg1 before pg2 stops
    let before = inv(&node("pg3", "    upstream: pg2\n"));
    let (mut obs, hba) = observed(&before);
    let mut s3 = up("pg3", ObservedRole::Standby);
    s3.upstream_host = Some("127.0.0.2".into());
    s3.upstream_port = Some(5501);
    obs.nodes.insert("pg3".into(), s3);
    obs.nodes.get_mut("pg2").unwrap().slots.push(slot("pg3"));
    let mut d = before.clone();
    d.nodes[1].state.leaving = true;
    d.nodes[1].state.clear_dir = true;
    d.nodes[1].state.created_dirs = vec!["/d/pg2".into()];
    d.nodes[2].upstream = None;
    let p = plan_scale_in(&d, &ctx_for(&d), &obs, &hba, &opts()).unwrap();
    assert_eq!(p.steps[pos(&p, "pg3:slot")].node, "pg1");
    assert!(pos(&p, "pg3:wait-streaming") < pos(&p, "pg2:stop"));
    assert!(
        !p.steps[pos(&p, "pg2:stop")].best_effort,
        "--clear-dir: never remove a directory of a server that did not stop"
    );
    assert!(pos(&p, "pg2:stop") < pos(&p, "pg2:remove-dir"));
    // frozen: no stop, no removal, but pg_hba and slots are still cleaned
    obs.nodes.insert("pg2".into(), NodeObservation::unanswered("pg2", RunState::Unreachable, "deadline"));
    obs.nodes.get_mut("pg3").unwrap().upstream_host = Some("127.0.0.1".into());
    let p = plan_scale_in(&d, &ctx_for(&d), &obs, &hba, &opts()).unwrap();
    assert!(!ids(&p).contains(&"pg2:stop") && !ids(&p).contains(&"pg2:remove-dir"), "{:?}", ids(&p));
    assert!(
        ids(&p).contains(&"pg1:drop-slot-pg2") && ids(&p).contains(&"pg1:hba") && ids(&p).contains(&"pg3:hba"),
        "{:?}",
        ids(&p)
    );
    assert!(p.notes[0].contains("did not answer"));
}

#[test]
fn the_primary_cannot_leave() {
    let base = inv("");
    let (obs, hba) = observed(&base);
    let mut d = base.clone();
    d.nodes[0].state.leaving = true;
    assert!(plan_scale_in(&d, &ctx_for(&d), &obs, &hba, &opts()).unwrap_err().contains("switch over"));
}

#[test]
fn a_member_whose_host_cannot_be_reached_keeps_its_pg_hba_and_the_plan_says_so() {
    let mut i = inv(&node("pg3", ""));
    i.nodes[2].state.joining = true;
    let (o, mut hba) = observed(&i);
    // pg1 and pg2 still have the pg_hba without pg3's address
    let mut without = i.clone();
    without.nodes.truncate(2);
    let old = hba::render(&without, "postgres", &ctx_for(&without).peers);
    hba.insert("pg1".into(), old.clone());
    hba.insert("pg2".into(), old);
    let mut ctx = ctx_for(&i);
    ctx.unreachable = vec!["pg2".into()];
    let facts = BTreeMap::from([("pg3".to_string(), fresh())]);
    let p = plan_scale_out(&i, &ctx, &o, &hba, &facts, &opts()).unwrap();
    assert!(ids(&p).contains(&"pg1:hba"), "{:?}", ids(&p));
    assert!(!ids(&p).iter().any(|s| s.starts_with("pg2:")), "{:?}", ids(&p));
    assert!(p.notes.iter().any(|n| n.contains("pg2: its host cannot be reached")), "{:?}", p.notes);
}

#[test]
fn a_copy_left_running_is_ended_on_the_upstream_before_its_directory_is_emptied() {
    let mut i = inv(&node("pg3", "    upstream: pg2\n"));
    i.nodes[2].state.joining = true;
    let (o, hba) = observed(&i);
    let mut f = fresh();
    f.dirs.data_dir = DirState::NotEmpty;
    let facts = BTreeMap::from([("pg3".to_string(), f)]);
    let p = plan_scale_out(&i, &ctx_for(&i), &o, &hba, &facts, &opts()).unwrap();
    let pos = |id: &str| ids(&p).iter().position(|x| *x == id).unwrap_or_else(|| panic!("{id}: {:?}", ids(&p)));
    assert!(pos("pg3:end-copy") < pos("pg3:clean-partial-copy"));
    assert!(pos("pg3:clean-partial-copy") < pos("pg3:basebackup"));
    let end = &p.steps[pos("pg3:end-copy")];
    assert_eq!(end.node, "pg2", "ended on the upstream the copy reads from");
    assert_eq!(end.action, Action::EndCopy { node: "pg3".into() });
}
