//! apply-config: reload when enough, restart when needed (standbys first,
//! the primary last), pg_hba checked before reload; re-runs find nothing.

use serde_json::Value;
use testkit::{free_port, Kit};

fn kit() -> Kit {
    Kit::new(env!("CARGO_BIN_EXE_pgscale"))
}

fn show(k: &Kit, name: &str, setting: &str) -> String {
    let out = k.cmd().args(["psql", "-n", name, "--", "-Atc", &format!("show {setting}")]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn apply_config_reloads_restarts_and_converges() {
    let k = kit();
    let port = free_port("127.0.0.1");
    let nodes = [("pg1", "127.0.0.1", port)];
    let f = k.write("c.yaml", &k.inventory("zeta", "  parameters:\n    work_mem: 4MB\n", &nodes));
    k.cmd().args(["init", "-c"]).arg(&f).assert().success();
    assert_eq!(show(&k, "zeta", "work_mem"), "4MB");
    let pid0 = testkit::postmaster_pid(&k.path("pg1")).unwrap();

    // a reloadable parameter and a pg_hba line: no restart
    let f2 = k.write(
        "c2.yaml",
        &k.inventory(
            "zeta",
            "  parameters:\n    work_mem: 8MB\n  hba:\n    - host all app 10.1.0.0/16 scram-sha-256\n",
            &nodes,
        ),
    );
    let dry = k.cmd().args(["apply-config", "-n", "zeta", "--dry-run", "-c"]).arg(&f2).output().unwrap();
    let plan = String::from_utf8_lossy(&dry.stdout);
    assert!(plan.contains("ALTER SYSTEM SET \"work_mem\" = '8MB'") && plan.contains("pg_hba.conf"), "{plan}");
    assert!(!plan.contains("restart"), "{plan}");
    assert_eq!(show(&k, "zeta", "work_mem"), "4MB", "dry run changed nothing");
    k.cmd().args(["apply-config", "-n", "zeta", "-c"]).arg(&f2).assert().success();
    assert_eq!(show(&k, "zeta", "work_mem"), "8MB");
    assert_eq!(testkit::postmaster_pid(&k.path("pg1")), Some(pid0), "reload, not restart");
    let hba = k.cmd().args(["hba", "-n", "zeta"]).output().unwrap();
    assert!(String::from_utf8_lossy(&hba.stdout).contains("10.1.0.0/16"));

    // the same file again: nothing to do
    let again =
        k.cmd().args(["apply-config", "-n", "zeta", "--dry-run", "--output", "json", "-c"]).arg(&f2).output().unwrap();
    let v: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v["steps"].as_array().unwrap().len(), 0, "{v}");

    // a restart-only parameter: without a terminal and without --yes it is refused
    let f3 = k.write("c3.yaml", &k.inventory("zeta", "  parameters:\n    work_mem: 8MB\n    max_connections: 50\n  hba:\n    - host all app 10.1.0.0/16 scram-sha-256\n", &nodes));
    k.cmd().args(["apply-config", "-n", "zeta", "-c"]).arg(&f3).assert().code(2);
    assert_eq!(show(&k, "zeta", "max_connections"), "100");
    k.cmd().args(["apply-config", "-n", "zeta", "--yes", "-c"]).arg(&f3).assert().success();
    assert_eq!(show(&k, "zeta", "max_connections"), "50");
    assert_ne!(testkit::postmaster_pid(&k.path("pg1")), Some(pid0), "restarted");

    // refused: trust host line (exit 2), unknown parameter (exit 2), node change (exit 2)
    let bad = k.write("bad.yaml", &k.inventory("zeta", "  hba:\n    - host all all 10.0.0.0/8 trust\n", &nodes));
    k.cmd().args(["apply-config", "-n", "zeta", "-c"]).arg(&bad).assert().code(2);
    let bad = k.write("bad2.yaml", &k.inventory("zeta", "  parameters:\n    no_such_thing: 1\n", &nodes));
    let out = k.cmd().args(["apply-config", "-n", "zeta", "-c"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown parameter `no_such_thing`"));
    let other = k.write("bad3.yaml", &k.inventory("zeta", "", &[("pg1", "127.0.0.1", port + 1)]));
    k.cmd().args(["apply-config", "-n", "zeta", "-c"]).arg(&other).assert().code(2);
    assert_eq!(show(&k, "zeta", "work_mem"), "8MB");

    // removing a parameter resets it
    let f4 = k.write("c4.yaml", &k.inventory("zeta", "  hba:\n    - host all app 10.1.0.0/16 scram-sha-256\n", &nodes));
    k.cmd().args(["apply-config", "-n", "zeta", "--yes", "-c"]).arg(&f4).assert().success();
    assert_eq!(show(&k, "zeta", "work_mem"), "4MB");
    assert_eq!(show(&k, "zeta", "max_connections"), "100");

    k.cmd().args(["destroy", "-n", "zeta", "--yes"]).assert().success();
}
