//! switchover, failover, rejoin and check against real servers on loopback.

use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::{as_os_user, bin_dir, free_port, kill_server, postmaster_pid, Kit};

fn kit() -> Kit {
    Kit::new(env!("CARGO_BIN_EXE_pgscale"))
}

use testkit::ok;

fn status(k: &Kit, c: &str) -> Value {
    let out = ok(k.cmd().args(["status", "-n", c, "--output", "json"]).output().unwrap());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn node<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).unwrap()
}

fn psql(k: &Kit, c: &str, n: &str, sql: &str) -> String {
    let out = ok(k.cmd().args(["psql", "-n", c, "--node", n, "--", "-Atc", sql]).output().unwrap());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn eventually(k: &Kit, c: &str, n: &str, sql: &str, want: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let o = k.cmd().args(["psql", "-n", c, "--node", n, "--", "-Atc", sql]).output().unwrap();
        if o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == want {
            return;
        }
        assert!(Instant::now() < until, "{sql} on {n} never returned {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check(k: &Kit, c: &str) -> (i32, String) {
    let o = k.cmd().args(["check", "-n", c]).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).to_string())
}

/// pg1 primary on 127.0.0.1 and the given standbys (name, address, extra yaml).
fn cluster(k: &Kit, c: &str, standbys: &[(&str, &str, &str)]) -> u16 {
    let port = free_port("127.0.0.1");
    let f = k.write(&format!("{c}.yaml"), &k.inventory(c, "", &[("pg1", "127.0.0.1", port)]));
    ok(k.cmd().args(["init", "-c"]).arg(f).output().unwrap());
    let mut y = String::from("nodes:\n");
    for (n, h, more) in standbys {
        y += &format!("  - name: {n}\n    host: {h}\n    port: {port}\n    data_dir: {}\n{more}", k.path(n).display());
    }
    let f = k.write(&format!("{c}-add.yaml"), &y);
    ok(k.cmd().args(["scale-out", "-n", c, "-c"]).arg(f).output().unwrap());
    port
}

/// A client inserting increasing ids every ~20 ms through a multi-host
/// connection string with target_session_attrs=read-write, reconnecting on
/// error; bounded in time. Returns the ids whose commit succeeded.
struct Ledger {
    stop: Arc<AtomicBool>,
    committed: Arc<Mutex<Vec<i64>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Ledger {
    fn start(hosts: &[&str], port: u16, password: String) -> Ledger {
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(Mutex::new(Vec::new()));
        let conn = format!(
            "host={} port={} user=postgres dbname=postgres password={password} target_session_attrs=read-write connect_timeout=2",
            hosts.join(","),
            vec![port.to_string(); hosts.len()].join(",")
        );
        let (s, c) = (stop.clone(), committed.clone());
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let t0 = Instant::now();
                let mut client: Option<tokio_postgres::Client> = None;
                let mut id = 0i64;
                while !s.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(120) {
                    if client.is_none() {
                        if let Ok(Ok((cl, conn))) = tokio::time::timeout(
                            Duration::from_secs(3),
                            tokio_postgres::connect(&conn, tokio_postgres::NoTls),
                        )
                        .await
                        {
                            tokio::spawn(conn);
                            let _ = cl.batch_execute("CREATE TABLE IF NOT EXISTS ledger (id bigint PRIMARY KEY)").await;
                            client = Some(cl);
                        }
                    }
                    if let Some(cl) = &client {
                        match tokio::time::timeout(
                            Duration::from_secs(5),
                            cl.execute("INSERT INTO ledger VALUES ($1)", &[&id]),
                        )
                        .await
                        {
                            Ok(Ok(_)) => c.lock().unwrap().push(id),
                            _ => client = None,
                        }
                        id += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        });
        Ledger { stop, committed, handle: Some(handle) }
    }

    fn finish(mut self) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        self.committed.lock().unwrap().clone()
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn switchover_and_back_loses_no_committed_id() {
    switchover_and_back_loses_no_committed_id_in(&kit());
}

/// The same, with the cluster's state in a real 3-member etcd.
#[test]
fn switchover_and_back_loses_no_committed_id_on_etcd() {
    switchover_and_back_loses_no_committed_id_in(&Kit::with_etcd(env!("CARGO_BIN_EXE_pgscale")));
}

fn switchover_and_back_loses_no_committed_id_in(k: &Kit) {
    let port =
        cluster(k, "sw", &[("pg2", "127.0.0.2", "    sync: sync\n"), ("pg3", "127.0.0.3", "    sync: potential\n")]);
    let ledger =
        Ledger::start(&["127.0.0.1", "127.0.0.2", "127.0.0.3"], port, testkit::admin_password(&k.home(), "sw"));
    std::thread::sleep(Duration::from_millis(500));
    // without a terminal and without --yes: exit 2; a lagging/unknown target: refused
    k.cmd().args(["switchover", "-n", "sw", "--to", "pg2"]).assert().code(2);
    k.cmd().args(["switchover", "-n", "sw", "--to", "nope", "--yes"]).assert().code(2);
    ok(k.cmd().args(["switchover", "-n", "sw", "--to", "pg2", "--yes"]).output().unwrap());
    let s = status(k, "sw");
    assert_eq!(s["primary"], "pg2");
    assert_eq!(node(&s, "pg1")["upstream"], "pg2", "the old primary streams from the new one");
    assert_eq!(node(&s, "pg3")["sync_state"], "sync", "the potential standby took the sync place");
    assert_eq!(node(&s, "pg1")["timeline"], node(&s, "pg2")["timeline"]);
    assert_eq!(check(k, "sw"), (0, "OK: cluster sw: 3 node(s), nothing to report\n".into()));
    std::thread::sleep(Duration::from_millis(500));
    ok(k.cmd().args(["switchover", "-n", "sw", "--to", "pg1", "--yes"]).output().unwrap());
    std::thread::sleep(Duration::from_millis(500));
    let ids = ledger.finish();
    assert!(ids.len() > 20, "the writer committed {} ids", ids.len());
    let s = status(k, "sw");
    assert_eq!(s["primary"], "pg1");
    assert_eq!(check(k, "sw").0, 0, "{}", check(k, "sw").1);
    // every committed id is on the new primary
    let list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let found = psql(k, "sw", "pg1", &format!("select count(*) from ledger where id in ({list})"));
    assert_eq!(found, ids.len().to_string());
    // the journal shows no rewind was needed
    let j = k.operation_log("sw");
    assert!(j.contains("promote"), "the operation log tells the switchovers: {j}");
    assert!(!j.contains("rewind"));
    ok(k.cmd().args(["destroy", "-n", "sw", "--yes"]).output().unwrap());
}

#[test]
fn failover_then_rejoin_of_a_diverged_old_primary_with_rewind() {
    failover_then_rejoin_of_a_diverged_old_primary_with_rewind_in(&kit());
}

/// The same, with the cluster's state in a real 3-member etcd.
#[test]
fn failover_then_rejoin_of_a_diverged_old_primary_with_rewind_on_etcd() {
    failover_then_rejoin_of_a_diverged_old_primary_with_rewind_in(&Kit::with_etcd(env!("CARGO_BIN_EXE_pgscale")));
}

fn failover_then_rejoin_of_a_diverged_old_primary_with_rewind_in(k: &Kit) {
    cluster(
        k,
        "fo",
        &[
            ("pg2", "127.0.0.2", "    sync: sync\n"),
            ("pg3", "127.0.0.3", ""),
            ("pg4", "127.0.0.4", "    upstream: pg3\n"),
        ],
    );
    psql(k, "fo", "pg1", "create table t(x int); insert into t select generate_series(1, 100)");
    eventually(k, "fo", "pg4", "select count(*) from t", "100");
    // refused while the primary answers
    let o = k.cmd().args(["failover", "-n", "fo", "--yes"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("switchover"));
    kill_server(postmaster_pid(&k.path("pg1")).unwrap());
    k.cmd().args(["failover", "-n", "fo"]).assert().code(2); // no terminal, no --yes
    let dry = ok(k.cmd().args(["failover", "-n", "fo", "--dry-run"]).output().unwrap());
    assert!(String::from_utf8_lossy(&dry.stdout).contains("pg_promote"));
    ok(k.cmd().args(["failover", "-n", "fo", "--yes"]).output().unwrap());
    let s = status(k, "fo");
    assert_eq!(s["primary"], "pg2", "the sync standby was chosen");
    assert_eq!(node(&s, "pg1")["needs_rejoin"], true);
    assert_eq!(node(&s, "pg3")["upstream"], "pg2");
    assert_eq!(node(&s, "pg4")["upstream"], "pg3", "the cascaded standby stays under its upstream");
    assert_eq!(node(&s, "pg3")["sync_state"], "sync", "a standby took the sync place");
    psql(k, "fo", "pg2", "insert into t select generate_series(101, 200)");
    eventually(k, "fo", "pg4", "select count(*) from t", "200");
    let (code, out) = check(k, "fo");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rejoin"), "{out}");
    // the old primary comes back on its own and writes: it diverges
    let bin = bin_dir();
    let (pg_ctl, d1) = (bin.join("pg_ctl").display().to_string(), k.path("pg1").display().to_string());
    let log = k.path("pg1.sock/manual.log").display().to_string();
    assert!(as_os_user(&[&pg_ctl, "start", "-D", &d1, "-w", "-l", &log]).status.success());
    psql(k, "fo", "pg1", "set synchronous_commit = local; create table diverged as select generate_series(1, 1000) x");
    let (code, out) = check(k, "fo");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("split brain"), "{out}");
    // rejoin stops it, rewinds it from pg2 and restarts it as a standby
    ok(k.cmd().args(["rejoin", "-n", "fo", "--node", "pg1", "--yes"]).output().unwrap());
    let j = k.operation_log("fo");
    assert!(j.lines().any(|l| l.contains("\"succeeded\"") && l.contains("pg1:rewind")), "pg_rewind ran: {j}");
    let s = status(k, "fo");
    assert_eq!(node(&s, "pg1")["role"], "standby");
    assert_eq!(node(&s, "pg1")["upstream"], "pg2");
    assert_eq!(node(&s, "pg1")["needs_rejoin"], false);
    assert_eq!(psql(k, "fo", "pg1", "select count(*) from pg_class where relname = 'diverged'"), "0");
    eventually(k, "fo", "pg1", "select count(*) from t", "200");
    assert_eq!(check(k, "fo").0, 0, "{}", check(k, "fo").1);
    ok(k.cmd().args(["destroy", "-n", "fo", "--yes"]).output().unwrap());
}

#[test]
fn failover_without_a_sync_standby_needs_force() {
    let k = kit();
    cluster(&k, "nf", &[("pg2", "127.0.0.2", "")]);
    kill_server(postmaster_pid(&k.path("pg1")).unwrap());
    let o = k.cmd().args(["failover", "-n", "nf", "--yes"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("no standby was synchronous") && e.contains("bytes behind") && e.contains("--force"), "{e}");
    assert_eq!(status(&k, "nf")["nodes"][1]["role"], "standby", "nothing changed");
    let o = ok(k.cmd().args(["failover", "-n", "nf", "--force", "--yes"]).output().unwrap());
    assert!(String::from_utf8_lossy(&o.stderr).contains("bytes behind"));
    assert_eq!(status(&k, "nf")["primary"], "pg2");
    ok(k.cmd().args(["rejoin", "-n", "nf", "--node", "pg1", "--reclone", "--yes"]).output().unwrap());
    assert_eq!(check(&k, "nf").0, 0, "{}", check(&k, "nf").1);
    ok(k.cmd().args(["destroy", "-n", "nf", "--yes"]).output().unwrap());
}

#[test]
fn check_finds_a_dropped_slot_a_stale_sync_name_and_a_stopped_standby() {
    let k = kit();
    cluster(&k, "ck", &[("pg2", "127.0.0.2", "    sync: sync\n"), ("pg3", "127.0.0.3", "")]);
    assert_eq!(check(&k, "ck").0, 0);
    psql(&k, "ck", "pg1", &plan::sql::drop_slot("pg3"));
    // its walsender ended with the slot; it cannot come back without it
    let (code, out) = check(&k, "ck");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("WARNING pg1 slot: no slot for pg3"), "{out}");
    psql(&k, "ck", "pg1", "alter system set synchronous_standby_names = 'FIRST 1 (\"pg2\", \"ghost\")'");
    psql(&k, "ck", "pg1", "select pg_reload_conf()");
    let (_, out) = check(&k, "ck");
    assert!(out.contains("synchronous_standby_names is"), "{out}");
    let bin = bin_dir();
    assert!(as_os_user(&[
        &bin.join("pg_ctl").display().to_string(),
        "stop",
        "-D",
        &k.path("pg3").display().to_string(),
        "-w"
    ])
    .status
    .success());
    let (code, out) = check(&k, "ck");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("CRITICAL pg3 state") && out.contains("pg3 is not streaming from pg1"), "{out}");
    let o = k.cmd().args(["check", "-n", "ck", "--node", "pg2", "--output", "json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["findings"].as_array().unwrap().iter().all(|f| f["node"] == "pg2"));
    assert_eq!(k.cmd().args(["check", "-n", "nope"]).output().unwrap().status.code(), Some(3));
    ok(k.cmd().args(["destroy", "-n", "ck", "--yes"]).output().unwrap());
}

/// Kill pgscale after every step of a switchover; `resume` (or the same
/// command) converges, and check finds nothing.
#[test]
fn switchover_interrupted_after_every_step_converges() {
    switchover_interrupted_after_every_step_converges_in(&kit());
}

/// The same, with the cluster's state in a real 3-member etcd.
#[test]
fn switchover_interrupted_after_every_step_converges_on_etcd() {
    switchover_interrupted_after_every_step_converges_in(&Kit::with_etcd(env!("CARGO_BIN_EXE_pgscale")));
}

fn switchover_interrupted_after_every_step_converges_in(k: &Kit) {
    cluster(k, "si", &[("pg2", "127.0.0.2", "    sync: sync\n"), ("pg3", "127.0.0.3", "")]);
    let (mut from, mut to) = ("pg1", "pg2");
    let mut i = 0;
    loop {
        let dry =
            ok(k.cmd().args(["switchover", "-n", "si", "--to", to, "--dry-run", "--output", "json"]).output().unwrap());
        let v: Value = serde_json::from_slice(&dry.stdout).unwrap();
        let ids: Vec<String> =
            v["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
        if i >= ids.len() {
            break;
        }
        let o = k
            .cmd()
            .env("PGSCALE_FAILPOINT", &ids[i])
            .args(["switchover", "-n", "si", "--to", to, "--yes"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), None, "killed after {}: {}", ids[i], String::from_utf8_lossy(&o.stderr));
        let again = if i % 2 == 0 {
            k.cmd().args(["resume", "-n", "si", "--yes"]).output().unwrap()
        } else {
            k.cmd().args(["switchover", "-n", "si", "--to", to, "--yes"]).output().unwrap()
        };
        assert!(again.status.success(), "re-run after {}: {}", ids[i], String::from_utf8_lossy(&again.stderr));
        let s = status(k, "si");
        assert_eq!(s["primary"], to, "after {}", ids[i]);
        assert_eq!(node(&s, from)["upstream"], to, "after {}", ids[i]);
        let (code, out) = check(k, "si");
        assert_eq!(code, 0, "after {}: {out}", ids[i]);
        std::mem::swap(&mut from, &mut to);
        i += 1;
    }
    assert!(i > 10);
    ok(k.cmd().args(["destroy", "-n", "si", "--yes"]).output().unwrap());
}

/// Kill pgscale after every step of a failover; `resume` (or the same
/// command) converges; the old primary is then rejoined and becomes the
/// next victim.
#[test]
fn failover_interrupted_after_every_step_converges() {
    failover_interrupted_after_every_step_converges_in(&kit());
}

/// The same, with the cluster's state in a real 3-member etcd.
#[test]
fn failover_interrupted_after_every_step_converges_on_etcd() {
    failover_interrupted_after_every_step_converges_in(&Kit::with_etcd(env!("CARGO_BIN_EXE_pgscale")));
}

fn failover_interrupted_after_every_step_converges_in(k: &Kit) {
    cluster(k, "fi", &[("pg2", "127.0.0.2", "    sync: sync\n")]);
    let (mut old, mut new) = ("pg1", "pg2");
    let mut i = 0;
    loop {
        kill_server(postmaster_pid(&k.path(old)).unwrap());
        let dry = ok(k.cmd().args(["failover", "-n", "fi", "--dry-run", "--output", "json"]).output().unwrap());
        let v: Value = serde_json::from_slice(&dry.stdout).unwrap();
        let ids: Vec<String> =
            v["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
        if i < ids.len() {
            let o = k.cmd().env("PGSCALE_FAILPOINT", &ids[i]).args(["failover", "-n", "fi", "--yes"]).output().unwrap();
            assert_eq!(o.status.code(), None, "killed after {}: {}", ids[i], String::from_utf8_lossy(&o.stderr));
            // after the last step the failover is complete: a new `failover`
            // is (rightly) refused because the primary answers; resume is a no-op
            let again = if i % 2 == 0 || ids[i] == "done" {
                k.cmd().args(["resume", "-n", "fi", "--yes"]).output().unwrap()
            } else {
                k.cmd().args(["failover", "-n", "fi", "--yes"]).output().unwrap()
            };
            assert!(again.status.success(), "re-run after {}: {}", ids[i], String::from_utf8_lossy(&again.stderr));
        } else {
            ok(k.cmd().args(["failover", "-n", "fi", "--yes"]).output().unwrap());
        }
        let s = status(k, "fi");
        assert_eq!(s["primary"], new, "after step {i}");
        assert_eq!(node(&s, old)["needs_rejoin"], true);
        let r = k.cmd().args(["rejoin", "-n", "fi", "--node", old, "--yes"]).output().unwrap();
        if !r.status.success() {
            // pg_rewind can fail (WAL it needs recycled): it must say so and point at --reclone
            assert_eq!(r.status.code(), Some(1));
            assert!(String::from_utf8_lossy(&r.stderr).contains("--reclone"), "{}", String::from_utf8_lossy(&r.stderr));
            ok(k.cmd().args(["rejoin", "-n", "fi", "--node", old, "--reclone", "--yes"]).output().unwrap());
        }
        let (code, out) = check(k, "fi");
        assert_eq!(code, 0, "after step {i}: {out}");
        if i >= ids.len() {
            break;
        }
        std::mem::swap(&mut old, &mut new);
        i += 1;
    }
    assert!(i > 6, "{i} step boundaries");
    ok(k.cmd().args(["destroy", "-n", "fi", "--yes"]).output().unwrap());
}
