//! The cluster's state in a real 3-member etcd: two admins on two homes,
//! etcd members killed, quorum lost and back, a lock holder killed with -9,
//! and a cluster moved between the home and etcd.

use serde_json::Value;
use std::process::Output;
use std::time::{Duration, Instant};
use testkit::{free_port, Kit};

const BIN: &str = env!("CARGO_BIN_EXE_pgscale");

use testkit::ok;

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The second admin: another home on the same etcd, with a copy of the key file.
fn other(k: &Kit) -> assert_cmd::Command {
    let mut c = k.cmd();
    c.env("PGSCALE_HOME", k.path("home-b")).env("PGSCALE_ETCD_KEY_FILE", k.home().join("etcd.key"));
    c
}

fn psql(k: &Kit, c: &str, n: &str, sql: &str) -> String {
    let o = ok(k.cmd().args(["psql", "-n", c, "--node", n, "--", "-Atc", sql]).output().unwrap());
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn node_yaml(k: &Kit, name: &str, host: &str, port: u16, more: &str) -> String {
    format!("  - name: {name}\n    host: {host}\n    port: {port}\n    data_dir: {}\n{more}", k.path(name).display())
}

fn status(c: &mut assert_cmd::Command, name: &str) -> Value {
    let o = ok(c.args(["status", "-n", name, "--output", "json"]).output().unwrap());
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn two_admins_member_loss_quorum_loss_and_a_killed_lock_holder() {
    let k = Kit::with_etcd(BIN);
    let port = free_port("127.0.0.1");
    let spec = format!(
        "name: st\nnodes:\n{}{}",
        node_yaml(&k, "pg1", "127.0.0.1", port, ""),
        node_yaml(&k, "pg2", "127.0.0.2", port, "    sync: sync\n")
    );
    let f = k.write("st.yaml", &spec);
    ok(k.cmd().args(["init", "-c"]).arg(&f).output().unwrap());
    let e = k.etcd.as_ref().unwrap();
    let dump = e.dump("/test");
    assert!(dump.contains("/test/clusters/st/inventory"), "the inventory is in etcd");
    let pw = testkit::admin_password(&k.home(), "st");
    assert!(!dump.contains(&pw), "no password in clear text in etcd");
    assert!(!k.home().join("st").join("inventory.yaml").exists(), "nor in the home");

    // The other admin sees the same cluster and can reach its servers.
    let l = ok(other(&k).args(["list", "--output", "json"]).output().unwrap());
    let v: Value = serde_json::from_slice(&l.stdout).unwrap();
    assert_eq!(v[0]["name"], "st", "{v}");
    assert_eq!(status(&mut other(&k), "st")["primary"], "pg1");

    // One etcd member down: operations go on.
    let mut k = k;
    k.etcd.as_mut().unwrap().kill(0);
    let add3 = k.write("add3.yaml", &format!("nodes:\n{}", node_yaml(&k, "pg3", "127.0.0.3", port, "")));
    ok(k.cmd().args(["scale-out", "-n", "st", "-c"]).arg(&add3).output().unwrap());

    // Quorum lost: refused within the deadline with exit 3, naming the endpoints; servers untouched.
    k.etcd.as_mut().unwrap().kill(1);
    let t0 = Instant::now();
    let o = k
        .cmd()
        .env("PGSCALE_STORE_TIMEOUT", "2s")
        .args(["scale-in", "-n", "st", "--node", "pg3", "--yes"])
        .output()
        .unwrap();
    let took = t0.elapsed();
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    let dead = k.etcd.as_ref().unwrap().members[0].client_url.clone();
    assert!(err(&o).contains(&dead) && err(&o).contains("once etcd has a quorum"), "{}", err(&o));
    eprintln!("quorum lost: scale-in refused after {took:?}");
    let st = status(k.cmd().env("PGSCALE_STORE_TIMEOUT", "2s"), "st");
    assert!(st["store_error"].as_str().unwrap_or("").contains("cannot be used"), "status says the store is down: {st}");
    assert_eq!(st["primary"], "pg1", "and still probes the servers");
    assert_eq!(st["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(psql(&k, "st", "pg1", "select count(*) from pg_stat_replication"), "2", "pg3 still streams");

    // Quorum back: the same command succeeds.
    k.etcd.as_mut().unwrap().restart(0);
    k.etcd.as_mut().unwrap().restart(1);
    k.etcd.as_ref().unwrap().wait_healthy(Duration::from_secs(30));
    ok(k.cmd().args(["scale-in", "-n", "st", "--node", "pg3", "--clear-dir", "--yes"]).output().unwrap());
    assert_eq!(psql(&k, "st", "pg1", "select count(*) from pg_stat_replication"), "1");

    // Two scale-outs started at once from two homes: exactly one runs.
    psql(
        &k,
        "st",
        "pg1",
        "create table big as select g, repeat(md5(g::text), 20) as pad from generate_series(1, 60000) g",
    );
    let add4 = k.write("add4.yaml", &format!("nodes:\n{}", node_yaml(&k, "pg4", "127.0.0.4", port, "")));
    let add5 = k.write("add5.yaml", &format!("nodes:\n{}", node_yaml(&k, "pg5", "127.0.0.5", port, "")));
    let spawn = |home: &str, f: &std::path::Path| {
        let mut cmd = std::process::Command::new(&k.bin);
        cmd.env("PGSCALE_HOME", k.path(home))
            .env("TMPDIR", k.dir.path())
            .env("PGSCALE_ETCD", k.etcd.as_ref().unwrap().endpoints())
            .env("PGSCALE_ETCD_PREFIX", "/test")
            .env("PGSCALE_ETCD_KEY_FILE", k.home().join("etcd.key"))
            .env("PGSCALE_LOCK_WAIT", "0s")
            .env_remove("PGSCALE_FAILPOINT")
            .args(["scale-out", "-n", "st", "--max-rate", "8M", "-c"])
            .arg(f);
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    let a = spawn("home", &add4);
    let b = spawn("home-b", &add5);
    let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [oa.status.code(), ob.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(3)),
        "exactly one runs: {codes:?} {} {}",
        err(&oa),
        err(&ob)
    );
    let loser = if oa.status.code() == Some(3) { err(&oa) } else { err(&ob) };
    assert!(loser.contains("holds its lock") && loser.contains("scale-out") && loser.contains("pid"), "{loser}");
    let (won, lost) = if oa.status.code() == Some(0) { ("pg4", "pg5") } else { ("pg5", "pg4") };
    let s = status(&mut k.cmd(), "st");
    let names: Vec<&str> = s["nodes"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert!(names.contains(&won) && !names.contains(&lost), "{names:?}");
    ok(k.cmd().args(["scale-in", "-n", "st", "--node", won, "--clear-dir", "--yes"]).output().unwrap());

    // kill -9 of pgscale while it holds the lock, mid scale-out: another
    // home is refused while the lease lives, proceeds once it expires, and
    // its `resume` finishes the interrupted operation.
    let dry =
        ok(k.cmd().args(["scale-out", "-n", "st", "--dry-run", "--output", "json", "-c"]).arg(&add4).output().unwrap());
    let v: Value = serde_json::from_slice(&dry.stdout).unwrap();
    let ids: Vec<String> =
        v["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    let mid = ids.iter().find(|i| i.as_str() == "pg4:start").expect("a start step").clone();
    let o = k
        .cmd()
        .env("PGSCALE_FAILPOINT", &mid)
        .env("PGSCALE_LOCK_TTL", "5s")
        .args(["scale-out", "-n", "st", "-c"])
        .arg(&add4)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), None, "killed after {mid}: {}", err(&o));
    let killed_at = Instant::now();
    let r = other(&k).env("PGSCALE_LOCK_WAIT", "0s").args(["resume", "-n", "st", "--yes"]).output().unwrap();
    assert_eq!(r.status.code(), Some(3), "refused while the dead holder's lease lives: {}", err(&r));
    assert!(err(&r).contains("expires by itself"), "{}", err(&r));
    let r = other(&k).env("PGSCALE_LOCK_WAIT", "20s").args(["resume", "-n", "st", "--yes"]).output().unwrap();
    assert!(r.status.success(), "resume from the other home finishes it: {}", err(&r));
    eprintln!("lock handed over and operation resumed {:?} after the kill", killed_at.elapsed());
    let s = status(&mut other(&k), "st");
    let pg4 = s["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "pg4").expect("pg4 added");
    assert_eq!(pg4["upstream"], "pg1", "{s}");
    assert_eq!(psql(&k, "st", "pg4", "select count(*) from big"), "60000");
    let c = other(&k).args(["check", "-n", "st"]).output().unwrap();
    assert_eq!(c.status.code(), Some(0), "{}", String::from_utf8_lossy(&c.stdout));
    // The operation log tells both runs, from either home.
    let log = ok(other(&k).args(["log", "-n", "st", "--limit", "2000"]).output().unwrap());
    let text = String::from_utf8_lossy(&log.stdout);
    assert!(text.contains("request") && text.contains("pg4:start"), "{text}");
    ok(k.cmd().args(["destroy", "-n", "st", "--yes"]).output().unwrap());
    assert!(!k.etcd.as_ref().unwrap().dump("/test").contains("/test/clusters/st/inventory"));
}

#[test]
fn store_migrate_moves_a_cluster_to_etcd_and_back_without_touching_it() {
    let k = Kit::with_etcd(BIN);
    let eps = k.etcd.as_ref().unwrap().endpoints();
    let home_only = || {
        let mut c = k.cmd();
        c.env_remove("PGSCALE_ETCD").env_remove("PGSCALE_ETCD_PREFIX");
        c
    };
    let port = free_port("127.0.0.1");
    let f = k.write("mg.yaml", &k.inventory("mg", "", &[("pg1", "127.0.0.1", port)]));
    ok(home_only().args(["init", "-c"]).arg(&f).output().unwrap());
    let pid = testkit::postmaster_pid(&k.path("pg1")).unwrap();
    assert!(k.home().join("mg/inventory.yaml").exists());

    let no_etcd = home_only().args(["store", "migrate", "-n", "mg", "--to", "etcd"]).output().unwrap();
    assert_eq!(no_etcd.status.code(), Some(2), "says which etcd is missing: {}", err(&no_etcd));
    ok(home_only().args(["store", "migrate", "-n", "mg", "--to", "etcd", "--etcd", &eps]).output().unwrap());
    assert!(!k.home().join("mg/inventory.yaml").exists(), "the home no longer holds it");
    assert!(k.etcd.as_ref().unwrap().dump("/pgscale").contains("/pgscale/clusters/mg/inventory"));
    // This machine remembers where it went: no flag needed.
    assert_eq!(status(&mut home_only(), "mg")["primary"], "pg1");
    assert!(status(&mut home_only(), "mg")["store"].as_str().unwrap().starts_with("etcd"));
    // Another machine with the endpoints and the key sees it.
    let mut b = other(&k);
    b.env("PGSCALE_ETCD_PREFIX", "/pgscale");
    assert_eq!(status(&mut b, "mg")["primary"], "pg1");

    ok(home_only().args(["store", "migrate", "-n", "mg", "--to", "home"]).output().unwrap());
    assert!(k.home().join("mg/inventory.yaml").exists());
    assert!(!k.etcd.as_ref().unwrap().dump("/pgscale").contains("/pgscale/clusters/mg/inventory"));
    let s = status(&mut home_only(), "mg");
    assert!(s["store"].as_str().unwrap().contains("home"), "{s}");
    assert_eq!(testkit::postmaster_pid(&k.path("pg1")), Some(pid), "the server was not touched");
    ok(home_only().args(["destroy", "-n", "mg", "--yes"]).output().unwrap());
}
