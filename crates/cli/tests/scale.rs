//! scale-out / scale-in against real servers on 127.0.0.x: sync, potential
//! and cascaded standbys; replacement of a leaving sync standby; bad input;
//! pgscale killed after every step and the operation re-run; a frozen node.

use serde_json::Value;
use std::time::{Duration, Instant};
use testkit::{free_port, postmaster_pid, Frozen, Kit};

fn kit() -> Kit {
    Kit::new(env!("CARGO_BIN_EXE_pgscale"))
}

fn status(k: &Kit, c: &str) -> Value {
    let out = k.cmd().args(["status", "-n", c, "--output", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn node<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).unwrap_or_else(|| panic!("{name} not in {s}"))
}

fn psql(k: &Kit, c: &str, n: &str, sql: &str) -> String {
    let out = k.cmd().args(["psql", "-n", c, "--node", n, "--", "-Atc", sql]).output().unwrap();
    assert!(out.status.success(), "{sql} on {n}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Poll (bounded) until `sql` on `n` returns `want`.
fn eventually(k: &Kit, c: &str, n: &str, sql: &str, want: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let out = k.cmd().args(["psql", "-n", c, "--node", n, "--", "-Atc", sql]).output().unwrap();
        let got =
            format!("{}{}", String::from_utf8_lossy(&out.stdout).trim(), String::from_utf8_lossy(&out.stderr).trim());
        if out.status.success() && got == want {
            return;
        }
        assert!(Instant::now() < until, "{sql} on {n}: got {got:?}, want {want:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn node_yaml(k: &Kit, name: &str, host: &str, port: u16, more: &str) -> String {
    format!("  - name: {name}\n    host: {host}\n    port: {port}\n    data_dir: {}\n{more}", k.path(name).display())
}

fn add(k: &Kit, c: &str, file: &str, nodes: &str) -> std::process::Output {
    let f = k.write(file, &format!("nodes:\n{nodes}"));
    k.cmd().args(["scale-out", "-n", c, "-c"]).arg(f).output().unwrap()
}

fn ok(o: std::process::Output) -> std::process::Output {
    assert!(o.status.success(), "exit {:?}: {}", o.status.code(), String::from_utf8_lossy(&o.stderr));
    o
}

fn init(k: &Kit, c: &str, port: u16) {
    let f = k.write(&format!("{c}.yaml"), &k.inventory(c, "", &[("pg1", "127.0.0.1", port)]));
    ok(k.cmd().args(["init", "-c"]).arg(f).output().unwrap());
}

fn slots(k: &Kit, c: &str, n: &str) -> String {
    psql(k, c, n, "select coalesce(string_agg(slot_name, ',' order by slot_name), '') from pg_replication_slots")
}

#[test]
fn scale_out_sync_potential_cascaded_then_scale_in_with_replacement() {
    scale_out_sync_potential_cascaded_then_scale_in_with_replacement_in(&kit());
}

/// The same, with the cluster's state in a real 3-member etcd.
#[test]
fn scale_out_sync_potential_cascaded_then_scale_in_with_replacement_on_etcd() {
    scale_out_sync_potential_cascaded_then_scale_in_with_replacement_in(&Kit::with_etcd(env!("CARGO_BIN_EXE_pgscale")));
}

fn scale_out_sync_potential_cascaded_then_scale_in_with_replacement_in(k: &Kit) {
    let port = free_port("127.0.0.1");
    init(k, "omega", port);
    let nodes = node_yaml(k, "pg2", "127.0.0.2", port, "    sync: sync\n")
        + &node_yaml(k, "pg3", "127.0.0.3", port, "    upstream: pg2\n")
        + &node_yaml(k, "pg4", "127.0.0.4", port, "    sync: potential\n");
    let f = k.write("add.yaml", &format!("nodes:\n{nodes}"));
    let dry = ok(k.cmd().args(["scale-out", "-n", "omega", "--dry-run", "-c"]).arg(&f).output().unwrap());
    assert!(String::from_utf8_lossy(&dry.stdout).contains("pg_basebackup"));
    assert!(!k.path("pg2").exists(), "dry run changed nothing");
    ok(k.cmd().args(["scale-out", "-n", "omega", "-c"]).arg(&f).output().unwrap());

    let s = status(k, "omega");
    assert_eq!(s["primary"], "pg1");
    assert_eq!(node(&s, "pg2")["upstream"], "pg1");
    assert_eq!(node(&s, "pg2")["sync_state"], "sync");
    assert_eq!(node(&s, "pg3")["upstream"], "pg2");
    assert_eq!(node(&s, "pg3")["role"], "standby");
    assert_eq!(node(&s, "pg4")["sync_state"], "potential");
    assert_eq!(psql(k, "omega", "pg1", "show synchronous_standby_names"), "FIRST 1 (\"pg2\", \"pg4\")");
    assert_eq!(slots(k, "omega", "pg1"), "pg2,pg4");
    assert_eq!(slots(k, "omega", "pg2"), "pg3");
    // data flows to the cascaded standby
    psql(k, "omega", "pg1", "create table t(id int); insert into t select generate_series(1, 500)");
    eventually(k, "omega", "pg3", "select count(*) from t", "500");
    // a new standby has its own address and port, not its upstream's copy
    assert_eq!(psql(k, "omega", "pg3", "show listen_addresses"), "127.0.0.3");

    // bad input: exit 2 (nothing changed), refusals: exit 3
    let o = add(k, "omega", "dup.yaml", &node_yaml(k, "pg2", "127.0.0.9", port, ""));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already a node"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = add(k, "omega", "port.yaml", &node_yaml(k, "pg5", "127.0.0.2", port, ""));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already used by"));
    let o = add(k, "omega", "up.yaml", &node_yaml(k, "pg5", "127.0.0.5", port, "    upstream: nope\n"));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("up.yaml:6"),
        "located: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = add(
        k,
        "omega",
        "cycle.yaml",
        &(node_yaml(k, "pg5", "127.0.0.5", port, "    upstream: pg6\n")
            + &node_yaml(k, "pg6", "127.0.0.6", port, "    upstream: pg5\n")),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cycle"));
    std::fs::create_dir(k.path("pg5")).unwrap();
    std::fs::write(k.path("pg5/keep"), "x").unwrap();
    let o = add(k, "omega", "full.yaml", &node_yaml(k, "pg5", "127.0.0.5", port, ""));
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(k.path("pg5/keep")).unwrap(), "x");
    k.cmd().args(["scale-in", "-n", "omega", "--node", "pg1", "--yes"]).assert().code(3);
    k.cmd().args(["scale-in", "-n", "omega", "--node", "nope", "--yes"]).assert().code(2);
    k.cmd().args(["scale-in", "-n", "omega", "--node", "pg4"]).assert().code(2); // no terminal, no --yes
                                                                                 // (The etcd lock is held by another process in tests/store.rs.)
    if k.etcd.is_none() {
        let home = journal::Home::new(k.home());
        let _held = home.lock("omega", "pgscale holder-test").unwrap();
        let o = k.cmd().args(["scale-in", "-n", "omega", "--node", "pg4", "--yes"]).output().unwrap();
        assert_eq!(o.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&o.stderr).contains("holder-test"));
    }
    assert_eq!(status(k, "omega")["nodes"].as_array().unwrap().len(), 4, "nothing changed");

    // remove the sync standby pg2: pg4 (potential) takes its place first,
    // pg3 moves to pg1, pg2's slot and pg_hba lines go
    let pg2_pid = postmaster_pid(&k.path("pg2")).unwrap();
    ok(k.cmd().args(["scale-in", "-n", "omega", "--node", "pg2", "--yes"]).output().unwrap());
    let s = status(k, "omega");
    assert!(s["nodes"].as_array().unwrap().iter().all(|n| n["name"] != "pg2"));
    assert_eq!(node(&s, "pg4")["sync_state"], "sync");
    assert_eq!(node(&s, "pg3")["upstream"], "pg1");
    assert_eq!(psql(k, "omega", "pg1", "show synchronous_standby_names"), "FIRST 1 (\"pg4\")");
    assert_eq!(slots(k, "omega", "pg1"), "pg3,pg4");
    let hba = k.cmd().args(["hba", "-n", "omega"]).output().unwrap();
    let hba = String::from_utf8_lossy(&hba.stdout);
    assert!(!hba.contains("127.0.0.2/32") && hba.contains("127.0.0.3/32"), "{hba}");
    assert!(!testkit::alive(pg2_pid), "pg2 stopped");
    assert!(k.path("pg2").join("PG_VERSION").exists(), "data kept without --clear-dir");
    psql(k, "omega", "pg1", "insert into t values (501)");
    eventually(k, "omega", "pg3", "select count(*) from t", "501");

    // --clear-dir removes what pgscale created
    ok(k.cmd().args(["scale-in", "-n", "omega", "--node", "pg3", "--clear-dir", "--yes"]).output().unwrap());
    assert!(!k.path("pg3").exists() && !k.path("pg3.sock").exists());
    assert_eq!(slots(k, "omega", "pg1"), "pg4");
    // nothing left to resume
    ok(k.cmd().args(["resume", "-n", "omega"]).output().unwrap());
    ok(k.cmd().args(["destroy", "-n", "omega", "--yes"]).output().unwrap());
}

fn plan_ids(o: &std::process::Output) -> Vec<String> {
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    v["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

/// Kill pgscale after each step of a scale-out; running it again (or
/// `resume`) converges: the standby streams as sync, no orphan slot, and
/// nothing half-built is left.
#[test]
fn scale_out_interrupted_after_every_step_converges() {
    scale_out_interrupted_after_every_step_converges_in(&kit());
}

/// The same, with the cluster's state in a real 3-member etcd.
#[test]
fn scale_out_interrupted_after_every_step_converges_on_etcd() {
    scale_out_interrupted_after_every_step_converges_in(&Kit::with_etcd(env!("CARGO_BIN_EXE_pgscale")));
}

fn scale_out_interrupted_after_every_step_converges_in(k: &Kit) {
    let port = free_port("127.0.0.1");
    init(k, "kappa", port);
    let nodes = node_yaml(k, "pg2", "127.0.0.2", port, "    sync: sync\n");
    let f = k.write("add.yaml", &format!("nodes:\n{nodes}"));
    let ids = plan_ids(
        &k.cmd().args(["scale-out", "-n", "kappa", "--dry-run", "--output", "json", "-c"]).arg(&f).output().unwrap(),
    );
    assert!(ids.len() > 10, "{ids:?}");
    for (i, id) in ids.iter().enumerate() {
        let o = k.cmd().env("PGSCALE_FAILPOINT", id).args(["scale-out", "-n", "kappa", "-c"]).arg(&f).output().unwrap();
        assert_eq!(o.status.code(), None, "killed after {id}: {}", String::from_utf8_lossy(&o.stderr));
        // alternate between the same command and resume
        let again = if i % 2 == 0 {
            k.cmd().args(["scale-out", "-n", "kappa", "-c"]).arg(&f).output().unwrap()
        } else {
            k.cmd().args(["resume", "-n", "kappa"]).output().unwrap()
        };
        assert!(again.status.success(), "re-run after {id}: {}", String::from_utf8_lossy(&again.stderr));
        let s = status(k, "kappa");
        assert_eq!(node(&s, "pg2")["sync_state"], "sync", "after {id}: {s}");
        assert_eq!(slots(k, "kappa", "pg1"), "pg2", "after {id}");
        let rec = k.recorded_inventory("kappa");
        assert!(rec.contains("pg2"), "after {id}: {rec}");
        assert!(!rec.contains("joining"), "after {id}: pg2 recorded as a member");
        // back to one node for the next round
        ok(k.cmd().args(["scale-in", "-n", "kappa", "--node", "pg2", "--clear-dir", "--yes"]).output().unwrap());
        assert_eq!(slots(k, "kappa", "pg1"), "", "after {id}");
        assert!(!k.path("pg2").exists());
    }
    ok(k.cmd().args(["destroy", "-n", "kappa", "--yes"]).output().unwrap());
}

/// Kill pgscale after each step of a scale-in of the sync standby; resuming
/// converges: the other standby is sync, no orphan slot, no stale pg_hba
/// line, the directory removed.
#[test]
fn scale_in_interrupted_after_every_step_converges() {
    scale_in_interrupted_after_every_step_converges_in(&kit());
}

/// The same, with the cluster's state in a real 3-member etcd.
#[test]
fn scale_in_interrupted_after_every_step_converges_on_etcd() {
    scale_in_interrupted_after_every_step_converges_in(&Kit::with_etcd(env!("CARGO_BIN_EXE_pgscale")));
}

fn scale_in_interrupted_after_every_step_converges_in(k: &Kit) {
    let port = free_port("127.0.0.1");
    init(k, "lambda", port);
    let addr = |n: &str| if n == "pg2" { "127.0.0.2" } else { "127.0.0.3" };
    ok(add(
        k,
        "lambda",
        "a.yaml",
        &(node_yaml(k, "pg2", "127.0.0.2", port, "    sync: sync\n") + &node_yaml(k, "pg3", "127.0.0.3", port, "")),
    ));
    let (mut leaving, mut other) = ("pg2", "pg3");
    let mut i = 0;
    loop {
        let dry = k
            .cmd()
            .args(["scale-in", "-n", "lambda", "--node", leaving, "--clear-dir", "--dry-run", "--output", "json"])
            .output()
            .unwrap();
        let ids = plan_ids(&dry);
        if i >= ids.len() {
            break;
        }
        let id = &ids[i];
        let o = k
            .cmd()
            .env("PGSCALE_FAILPOINT", id)
            .args(["scale-in", "-n", "lambda", "--node", leaving, "--clear-dir", "--yes"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), None, "killed after {id}: {}", String::from_utf8_lossy(&o.stderr));
        let again = if i % 2 == 0 {
            k.cmd().args(["resume", "-n", "lambda", "--yes"]).output().unwrap()
        } else {
            k.cmd().args(["scale-in", "-n", "lambda", "--node", leaving, "--clear-dir", "--yes"]).output().unwrap()
        };
        assert!(again.status.success(), "re-run after {id}: {}", String::from_utf8_lossy(&again.stderr));
        let s = status(k, "lambda");
        assert_eq!(s["nodes"].as_array().unwrap().len(), 2, "after {id}: {s}");
        assert_eq!(node(&s, other)["sync_state"], "sync", "after {id}: {s}");
        assert_eq!(slots(k, "lambda", "pg1"), other, "after {id}");
        let hba = k.cmd().args(["hba", "-n", "lambda"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&hba.stdout).contains(&format!("{}/32", addr(leaving))), "after {id}");
        assert!(!k.path(leaving).exists(), "after {id}");
        // the leaving node comes back as async: the mirror image of the start
        ok(add(k, "lambda", "back.yaml", &node_yaml(k, leaving, addr(leaving), port, "")));
        std::mem::swap(&mut leaving, &mut other);
        i += 1;
    }
    assert!(i > 8, "{i} step boundaries");
    ok(k.cmd().args(["destroy", "-n", "lambda", "--yes"]).output().unwrap());
}

#[test]
fn scale_in_of_a_frozen_node_skips_it_and_cleans_the_live_ones() {
    let k = kit();
    let port = free_port("127.0.0.1");
    init(&k, "mu", port);
    ok(add(&k, "mu", "a.yaml", &node_yaml(&k, "pg2", "127.0.0.2", port, "")));
    let pid = postmaster_pid(&k.path("pg2")).unwrap();
    let _frozen = Frozen::freeze(pid);
    let o = ok(k.cmd().args(["scale-in", "-n", "mu", "--node", "pg2", "--timeout", "2s", "--yes"]).output().unwrap());
    assert!(String::from_utf8_lossy(&o.stderr).contains("did not answer"), "{}", String::from_utf8_lossy(&o.stderr));
    let s = status(&k, "mu");
    assert_eq!(s["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(slots(&k, "mu", "pg1"), "", "the frozen node's slot is dropped");
    let hba = k.cmd().args(["hba", "-n", "mu"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&hba.stdout).contains("127.0.0.2/32"));
    assert!(k.path("pg2").exists(), "a node that did not answer keeps its data");
    ok(k.cmd().args(["destroy", "-n", "mu", "--yes"]).output().unwrap());
    // the frozen server is killed by the kit when the test ends
}
