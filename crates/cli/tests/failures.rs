//! Faults against real servers: a frozen (SIGSTOP) or killed (kill -9)
//! node, and pgscale itself killed between any two steps of init.

use serde_json::Value;
use testkit::{free_port, postmaster_pid, Frozen, Kit};

fn kit() -> Kit {
    Kit::new(env!("CARGO_BIN_EXE_pgscale"))
}

fn status(k: &Kit, name: &str, timeout: &str) -> Value {
    let out = k.cmd().args(["status", "-n", name, "--output", "json", "--timeout", timeout]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn status_reports_frozen_and_killed_nodes_without_hanging() {
    let k = kit();
    let port = free_port("127.0.0.1");
    let f = k.write("c.yaml", &k.inventory("delta", "", &[("pg1", "127.0.0.1", port)]));
    k.cmd().args(["init", "-c"]).arg(&f).assert().success();
    let pid = postmaster_pid(&k.path("pg1")).expect("running");

    // Frozen: TCP connects (the kernel accepts), the server never answers.
    let frozen = Frozen::freeze(pid);
    let s = status(&k, "delta", "1s");
    assert_eq!(s["nodes"][0]["state"], "unreachable", "{s}");
    assert_eq!(s["nodes"][0]["role"], "unknown");
    assert_eq!(s["primary"], Value::Null);
    assert!(s["nodes"][0]["error"].as_str().unwrap().contains("deadline"), "{s}");
    drop(frozen);
    assert_eq!(status(&k, "delta", "3s")["nodes"][0]["state"], "running");

    // Killed: nothing listens any more.
    testkit::kill_server(pid);
    let s = status(&k, "delta", "2s");
    assert_eq!(s["nodes"][0]["state"], "stopped", "{s}");
    assert_eq!(s["nodes"][0]["lsn"], Value::Null);

    // destroy still cleans up a dead cluster
    k.cmd().args(["destroy", "-n", "delta", "--yes"]).assert().success();
    assert!(!k.path("pg1").exists());
}

/// Kill pgscale (SIGKILL, via the `testing` failpoint) right after each step
/// of init; running init again must converge to a working cluster.
#[test]
fn init_interrupted_after_every_step_converges_on_rerun() {
    let k = kit();
    let port = free_port("127.0.0.1");
    let f = k.write("c.yaml", &k.inventory("eps", "", &[("pg1", "127.0.0.1", port)]));
    let plan = k.cmd().args(["init", "--dry-run", "--output", "json", "-c"]).arg(&f).output().unwrap();
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let ids: Vec<String> =
        plan["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    assert!(ids.len() >= 8, "{ids:?}");
    for id in &ids {
        let out = k.cmd().env("PGSCALE_FAILPOINT", id).args(["init", "-c"]).arg(&f).output().unwrap();
        if out.status.code() != Some(0) || id != ids.last().unwrap() {
            // killed by the failpoint (no exit code), unless the build lacks it
            assert_eq!(out.status.code(), None, "step {id}: {}", String::from_utf8_lossy(&out.stderr));
        }
        // re-run: converges
        let out = k.cmd().args(["init", "-c"]).arg(&f).output().unwrap();
        assert!(out.status.success(), "re-run after {id}: {}", String::from_utf8_lossy(&out.stderr));
        let s = status(&k, "eps", "3s");
        assert_eq!(s["nodes"][0]["state"], "running", "after {id}: {s}");
        assert_eq!(s["primary"], "pg1");
        let out = k
            .cmd()
            .args([
                "psql",
                "-n",
                "eps",
                "--",
                "-Atc",
                "select count(*) from pg_roles where rolname = 'pgscale_repl' and rolreplication",
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "after {id}");
        let out = k.cmd().args(["list", "--output", "json"]).output().unwrap();
        let l: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(l[0]["phase"], "ready");
        // and destroy removes everything, including what the killed run made
        k.cmd().args(["destroy", "-n", "eps", "--yes"]).assert().success();
        assert!(!k.path("pg1").exists() && !k.path("pg1.sock").exists(), "after {id}");
        assert!(!k.home().join("eps").exists());
    }
}
