//! The host pre-check (`pgscale host check`, and before init/scale-out),
//! on this machine and on SSH test hosts; dead hosts cost one deadline, not
//! one each; `check` exit codes when pgscale itself cannot do its job.

use serde_json::Value;
use std::time::{Duration, Instant};
use testkit::{free_port, Frozen, Kit, Sshd};

fn kit() -> Kit {
    Kit::new(env!("CARGO_BIN_EXE_pgscale"))
}

fn node(k: &Kit, name: &str, host: &str, port: u16, more: &str) -> String {
    format!("  - name: {name}\n    host: {host}\n    port: {port}\n    data_dir: {}\n{more}", k.path(name).display())
}

fn host_check(k: &Kit, f: &std::path::Path) -> (Option<i32>, Value) {
    let out = k.cmd().args(["host", "check", "--output", "json", "-c"]).arg(f).output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {} {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code(), v)
}

fn errors(v: &Value) -> Vec<(String, String, String)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_string(),
                f["node"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn host_check_finds_every_problem_at_once_locally_and_over_ssh() {
    let k = kit();
    let sshd = Sshd::start_on(&k.path("ssh"), "127.0.0.2");
    let remote = k.path("remote");
    std::fs::create_dir(&remote).unwrap();
    testkit::chown_to_os_user(&remote);
    let port = free_port("127.0.0.1");
    let pg2 = format!(
        "  - name: pg2\n    host: 127.0.0.2\n    port: {port}\n    data_dir: {}\n{}",
        remote.join("pg2").display(),
        sshd.yaml()
    );
    let good = k.write("good.yaml", &format!("name: eta\nnodes:\n{}{pg2}", node(&k, "pg1", "127.0.0.1", port, "")));
    let (code, v) = host_check(&k, &good);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["status"], "ok");
    assert!(errors(&v).is_empty(), "{v}");
    // both hosts were probed: one through sshd
    let hosts: Vec<&str> = v["findings"].as_array().unwrap().iter().filter_map(|f| f["host"].as_str()).collect();
    assert!(hosts.contains(&"127.0.0.1") && hosts.contains(&"127.0.0.2"), "{v}");

    // a bin_dir without binaries, a busy port and a missing OS user: all
    // three reported in one run, for both hosts, and nothing is created
    let empty_bin = k.path("emptybin");
    std::fs::create_dir(&empty_bin).unwrap();
    let busy = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let bad = k.write(
        "bad.yaml",
        &format!(
            "name: eta\npostgres:\n  bin_dir: {}\n  os_user: nosuchuser_pgs\nnodes:\n{}{pg2}",
            empty_bin.display(),
            node(&k, "pg1", "127.0.0.1", busy_port, "")
        ),
    );
    let (code, v) = host_check(&k, &bad);
    assert_eq!(code, Some(2), "{v}");
    let e = errors(&v);
    let has = |check: &str, node: &str| e.iter().any(|(c, n, _)| c == check && n.contains(node));
    assert!(has("binaries", "pg1") && has("binaries", "pg2"), "{e:?}");
    assert!(has("os_user", "pg1") && has("os_user", "pg2"), "{e:?}");
    assert!(has("port", "pg1"), "{e:?}");
    let binaries = e.iter().find(|(c, _, _)| c == "binaries").unwrap();
    assert!(
        binaries.2.contains("no PostgreSQL binaries") && binaries.2.contains(&empty_bin.display().to_string()),
        "{binaries:?}"
    );
    // init runs the same check first: exit 2, every problem listed, nothing created
    let out = k.cmd().args(["init", "-c"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("host check failed, nothing changed") && err.contains("nosuchuser_pgs"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{busy_port}")), "{err}");
    assert!(!k.path("pg1").exists() && !remote.join("pg2").exists() && !k.home().join("eta").exists());
    // --install --dry-run shows what would make the hosts ready, runs nothing
    let fixable = k.write(
        "fixable.yaml",
        &format!("name: eta\npostgres:\n  os_user: nosuchuser_pgs\nnodes:\n{}", node(&k, "pg1", "127.0.0.1", port, "")),
    );
    let out = k.cmd().args(["host", "check", "--install", "--dry-run", "-c"]).arg(&fixable).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if !testkit::is_root() {
        // A normal user without passwordless sudo: refused, saying why.
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("--install needs root"), "{err}");
        return;
    }
    assert!(err.contains("useradd") && err.contains("nosuchuser_pgs"), "{err}");
    assert!(nix::unistd::User::from_name("nosuchuser_pgs").unwrap().is_none(), "a dry run creates no user");
    // init's dry run shows the same steps and says the plan needs ready hosts
    let out = k.cmd().args(["init", "--install", "--dry-run", "-c"]).arg(&fixable).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("useradd") && err.contains("the install steps above would run first"), "{err}");
    assert!(!k.path("pg1").exists() && !k.home().join("eta").exists());
    drop(busy);
}

#[test]
fn scale_out_refuses_a_filesystem_without_room_for_the_copy() {
    if !testkit::is_root() {
        eprintln!("mounting a small tmpfs needs root: this part runs in CI (root)");
        return;
    }
    let k = kit();
    let port = free_port("127.0.0.1");
    let f = k.write("c.yaml", &k.inventory("theta", "", &[("pg1", "127.0.0.1", port)]));
    k.cmd().args(["init", "-c"]).arg(&f).assert().success();
    let small = k.path("small");
    std::fs::create_dir(&small).unwrap();
    testkit::sh(&["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", &small.display().to_string()]);
    let _unmount = testkit::Unmount(small.clone());
    let add = k.write(
        "add.yaml",
        &format!(
            "nodes:\n  - name: pg2\n    host: 127.0.0.2\n    port: {port}\n    data_dir: {}/pg2\n",
            small.display()
        ),
    );
    let out = k.cmd().args(["scale-out", "-n", "theta", "-c"]).arg(&add).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("space") && err.contains("pg2"), "{err}");
    // nothing changed: no slot on the primary, pg2 not recorded
    let slots = k
        .cmd()
        .args(["psql", "-n", "theta", "--", "-Atc", "select count(*) from pg_replication_slots"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&slots.stdout).trim(), "0");
    let inv = std::fs::read_to_string(k.home().join("theta/inventory.yaml")).unwrap();
    assert!(!inv.contains("pg2"), "{inv}");
}

/// Two SSH hosts frozen (sshd and PostgreSQL SIGSTOPped): status answers
/// after one deadline, not two, and scale-in of one of them finishes.
#[test]
fn two_frozen_hosts_cost_one_deadline_and_scale_in_finishes() {
    let k = kit();
    let port = free_port("127.0.0.1");
    let a = Sshd::start_on(&k.path("ssh2"), "127.0.0.2");
    let b = Sshd::start_on(&k.path("ssh3"), "127.0.0.3");
    let remote = k.path("remote");
    std::fs::create_dir(&remote).unwrap();
    testkit::chown_to_os_user(&remote);
    let n = |name: &str, host: &str, s: &Sshd| {
        format!(
            "  - name: {name}\n    host: {host}\n    port: {port}\n    data_dir: {}\n{}",
            remote.join(name).display(),
            s.yaml()
        )
    };
    let f = k.write(
        "c.yaml",
        &format!(
            "name: iota\nnodes:\n{}{}{}",
            node(&k, "pg1", "127.0.0.1", port, ""),
            n("pg2", "127.0.0.2", &a),
            n("pg3", "127.0.0.3", &b)
        ),
    );
    let out = k.cmd().args(["init", "-c"]).arg(&f).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pids: Vec<i32> = ["pg2", "pg3"].iter().map(|x| testkit::postmaster_pid(&remote.join(x)).unwrap()).collect();
    let _frozen: Vec<Frozen> = [a.pid(), b.pid(), pids[0], pids[1]].into_iter().map(Frozen::freeze).collect();

    let t = Instant::now();
    let out = k.cmd().args(["status", "-n", "iota", "--output", "json", "--timeout", "3s"]).output().unwrap();
    let took = t.elapsed();
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    for x in ["pg2", "pg3"] {
        let st = s["nodes"].as_array().unwrap().iter().find(|m| m["name"] == x).unwrap();
        assert_eq!(st["state"], "unreachable", "{s}");
    }
    // One deadline (3 s) for both, not one each (6 s and more): within the
    // deadline plus 1 s, as the issue asks.
    eprintln!("status with two frozen hosts and a 3 s deadline took {took:?}");
    assert!(took < Duration::from_secs(4), "status took {took:?} for two dead hosts with a 3 s deadline");

    let t = Instant::now();
    let out = k.cmd().args(["scale-in", "-n", "iota", "--node", "pg3", "--yes", "--timeout", "3s"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    eprintln!("scale-in with two frozen hosts took {:?}", t.elapsed());
    let inv = std::fs::read_to_string(k.home().join("iota/inventory.yaml")).unwrap();
    assert!(!inv.contains("name: pg3"), "{inv}");
    assert!(err.contains("pg2") && err.contains("apply-config"), "pg2's pg_hba is left, and the output says so: {err}");
}

#[test]
fn check_says_unknown_when_pgscale_cannot_do_its_job() {
    let k = kit();
    let out = k.cmd().args(["check", "-n", "nosuch"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "no such cluster");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("UNKNOWN"));
    // a home that cannot be read (a file where the directory should be)
    let file = k.write("not-a-dir", "x");
    let out = k.cmd().env("PGSCALE_HOME", &file).args(["check", "-n", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stdout));
    // a node that cannot be reached stays CRITICAL
    let port = free_port("127.0.0.1");
    let f = k.write("c.yaml", &k.inventory("lambda", "", &[("pg1", "127.0.0.1", port)]));
    k.cmd().args(["init", "-c"]).arg(&f).assert().success();
    testkit::kill_server(testkit::postmaster_pid(&k.path("pg1")).unwrap());
    let out = k.cmd().args(["check", "-n", "lambda"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("CRITICAL"));
}
