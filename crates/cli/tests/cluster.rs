//! `init` of a whole cluster from one file: the primary, a synchronous
//! standby and a standby cascaded from it, listed in an order where the
//! cascaded node comes before its upstream. pgscale is killed (SIGKILL)
//! after every step; the same `init`, or `resume`, converges to a cluster
//! `check` finds nothing wrong with; running init again is a no-op.

use serde_json::Value;
use testkit::{free_port, Kit};

fn kit() -> Kit {
    Kit::new(env!("CARGO_BIN_EXE_pgscale"))
}

fn spec(k: &Kit, port: u16) -> String {
    let n = |name: &str, host: &str, more: &str| {
        format!(
            "  - name: {name}\n    host: {host}\n    port: {port}\n    data_dir: {}\n{more}",
            k.path(name).display()
        )
    };
    format!(
        "name: kappa\nnodes:\n{}{}{}",
        n("pg3", "127.0.0.3", "    upstream: pg2\n"),
        n("pg1", "127.0.0.1", "    role: primary\n"),
        n("pg2", "127.0.0.2", "    sync: sync\n")
    )
}

fn status(k: &Kit) -> Value {
    let out = k.cmd().args(["status", "-n", "kappa", "--output", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn node<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).unwrap_or_else(|| panic!("{name} in {s}"))
}

/// The cluster the file describes, and nothing else.
fn assert_converged(k: &Kit, after: &str) {
    let s = status(k);
    assert_eq!(s["primary"], "pg1", "after {after}: {s}");
    assert_eq!(node(&s, "pg2")["sync_state"], "sync", "after {after}: {s}");
    assert_eq!(node(&s, "pg2")["upstream"], "pg1", "after {after}: {s}");
    assert_eq!(node(&s, "pg3")["upstream"], "pg2", "after {after}: {s}");
    assert_eq!(node(&s, "pg3")["state"], "running", "after {after}: {s}");
    // no orphan slot, no stale pg_hba line, sync names as the inventory says
    let c = k.cmd().args(["check", "-n", "kappa"]).output().unwrap();
    assert_eq!(c.status.code(), Some(0), "check after {after}: {}", String::from_utf8_lossy(&c.stdout));
    let l: Value =
        serde_json::from_slice(&k.cmd().args(["list", "--output", "json"]).output().unwrap().stdout).unwrap();
    assert_eq!(l[0]["phase"], "ready", "after {after}");
}

#[test]
fn init_of_a_whole_cluster_converges_after_a_kill_at_every_step() {
    let k = kit();
    let port = free_port("127.0.0.1");
    let f = k.write("c.yaml", &spec(&k, port));
    let plan = k.cmd().args(["init", "--dry-run", "--output", "json", "-c"]).arg(&f).output().unwrap();
    assert!(plan.status.success(), "{}", String::from_utf8_lossy(&plan.stderr));
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let ids: Vec<String> =
        plan["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    assert!(ids.contains(&"pg3:basebackup".to_string()) && ids.contains(&"sync-names".to_string()), "{ids:?}");

    // Uninterrupted first, and a second run of the same file changes nothing.
    let out = k.cmd().args(["init", "-c"]).arg(&f).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_converged(&k, "a plain init");
    let pid = testkit::postmaster_pid(&k.path("pg1")).unwrap();
    let again = k.cmd().args(["init", "-c"]).arg(&f).output().unwrap();
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("nothing to do"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(testkit::postmaster_pid(&k.path("pg1")), Some(pid), "nothing restarted");
    k.cmd().args(["destroy", "-n", "kappa", "--yes"]).assert().success();

    for (i, id) in ids.iter().enumerate() {
        let out = k.cmd().env("PGSCALE_FAILPOINT", id).args(["init", "-c"]).arg(&f).output().unwrap();
        assert_eq!(out.status.code(), None, "killed after {id}: {}", String::from_utf8_lossy(&out.stderr));
        // Half the time the same init, half the time `resume`.
        let rerun = if i % 2 == 0 || id == "record" {
            k.cmd().args(["init", "-c"]).arg(&f).output().unwrap()
        } else {
            k.cmd().args(["resume", "-n", "kappa"]).output().unwrap()
        };
        assert!(rerun.status.success(), "re-run after {id}: {}", String::from_utf8_lossy(&rerun.stderr));
        assert_converged(&k, id);
        k.cmd().args(["destroy", "-n", "kappa", "--yes"]).assert().success();
        for n in ["pg1", "pg2", "pg3"] {
            assert!(!k.path(n).exists(), "{n} removed after {id}");
        }
    }
}
