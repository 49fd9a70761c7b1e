//! init → status → psql → hba → list → destroy against real PostgreSQL on
//! loopback, as root (servers run as `postgres`) or as a normal user.

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use testkit::{free_port, Kit};

fn kit() -> Kit {
    Kit::new(env!("CARGO_BIN_EXE_pgscale"))
}

fn status(k: &Kit, name: &str) -> Value {
    let out = k.cmd().args(["status", "-n", name, "--output", "json", "--timeout", "2s"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status prints one JSON object")
}

#[test]
fn init_status_psql_hba_destroy() {
    let k = kit();
    let port = free_port("127.0.0.1");
    let f = k.write(
        "c.yaml",
        &k.inventory("alpha", "  hba:\n    - host all app 10.0.0.0/8 scram-sha-256\n", &[("pg1", "127.0.0.1", port)]),
    );

    k.cmd().args(["init", "-c"]).arg(&f).assert().success();

    // status: exactly one JSON object with the contract's fields
    let s = status(&k, "alpha");
    assert_eq!(s["cluster"], "alpha");
    assert_eq!(s["primary"], "pg1");
    let n = &s["nodes"][0];
    assert_eq!(n["name"], "pg1");
    assert_eq!(n["host"], "127.0.0.1");
    assert_eq!(n["port"], port);
    assert_eq!(n["data_dir"], k.path("pg1").display().to_string());
    assert_eq!(n["role"], "primary");
    assert_eq!(n["state"], "running");
    assert_eq!(n["upstream"], Value::Null);
    assert_eq!(n["timeline"], 1);
    assert!(n["lsn"].as_str().unwrap().contains('/'));
    assert_eq!(n["sync_state"], Value::Null);
    let table = k.cmd().args(["status", "-n", "alpha"]).output().unwrap();
    let t = String::from_utf8_lossy(&table.stdout);
    assert!(t.contains("primary") && t.contains("running") && t.contains(&format!("127.0.0.1:{port}")), "{t}");

    // psql passes arguments through, as the admin user, password from the 0600 file
    let out = k
        .cmd()
        .args([
            "psql",
            "-n",
            "alpha",
            "--",
            "-Atc",
            "select current_user || ' ' || setting from pg_settings where name = 'data_checksums'",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "postgres on");
    let out = k
        .cmd()
        .args([
            "psql",
            "-n",
            "alpha",
            "--",
            "-Atc",
            "select rolreplication from pg_roles where rolname = 'pgscale_repl'",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t");
    let out = k.cmd().args(["psql", "-n", "alpha", "--", "-Atc", "select setting from pg_settings where name in ('wal_level','wal_log_hints','password_encryption','listen_addresses') order by name"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "127.0.0.1\nscram-sha-256\nreplica\non");

    // pg_hba: scram per peer, never trust on host lines, never 0.0.0.0/0, user line kept
    let out = k.cmd().args(["hba", "-n", "alpha"]).output().unwrap();
    assert!(out.status.success());
    let hba = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(String::from_utf8_lossy(&out.stderr).contains("matches the inventory"));
    let host_lines: Vec<&str> = hba.lines().filter(|l| l.starts_with("host")).collect();
    assert!(!host_lines.is_empty());
    assert!(host_lines.iter().all(|l| l.ends_with("scram-sha-256")), "{hba}");
    assert!(
        host_lines.iter().filter(|l| !l.contains("10.0.0.0/8")).all(|l| l.contains("/32") || l.contains("/128")),
        "{hba}"
    );
    assert!(!hba.contains("0.0.0.0/0") && !hba.contains("trust"), "{hba}");
    assert!(hba.contains("127.0.0.1/32"));
    assert!(hba.trim_end().ends_with("host all app 10.0.0.0/8 scram-sha-256"));

    // secrets: 0600, not in the inventory
    let cdir = k.home().join("alpha");
    let mode = std::fs::metadata(cdir.join("pgpass")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let pgpass = std::fs::read_to_string(cdir.join("pgpass")).unwrap();
    let pw = pgpass.lines().find(|l| l.contains(":postgres:")).unwrap().rsplit(':').next().unwrap().to_string();
    let inventory = std::fs::read_to_string(cdir.join("inventory.yaml")).unwrap();
    assert!(!inventory.contains(&pw));
    let journal = std::fs::read_to_string(cdir.join("journal.jsonl")).unwrap();
    assert!(!journal.contains(&pw));
    assert!(journal.contains("\"pg1:initdb\""));
    // data dir: 0700, owned by the OS user
    let md = std::fs::metadata(k.path("pg1")).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o700);
    let uid = nix::unistd::User::from_name(&testkit::os_user()).unwrap().unwrap().uid.as_raw();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), uid);

    // list
    let out = k.cmd().args(["list", "--output", "json"]).output().unwrap();
    let l: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(l[0]["name"], "alpha");
    assert_eq!(l[0]["phase"], "ready");

    // init again with the same file: nothing to do
    k.cmd().args(["init", "-c"]).arg(&f).assert().success();

    // destroy refuses without a terminal and without --yes (exit 2), nothing changed
    k.cmd().args(["destroy", "-n", "alpha"]).assert().code(2);
    assert_eq!(status(&k, "alpha")["nodes"][0]["state"], "running");

    let pid = testkit::postmaster_pid(&k.path("pg1")).expect("running");
    k.cmd().args(["destroy", "-n", "alpha", "--yes"]).assert().success();
    assert!(!testkit::alive(pid), "server stopped");
    assert!(!k.path("pg1").exists());
    assert!(!k.path("pg1.sock").exists());
    assert!(!cdir.exists());
    k.cmd().args(["status", "-n", "alpha"]).assert().code(2);
}

#[test]
fn dry_run_changes_nothing_and_bad_input_is_exit_2() {
    let k = kit();
    let port = free_port("127.0.0.1");
    let f = k.write("c.yaml", &k.inventory("beta", "", &[("pg1", "127.0.0.1", port)]));
    let out = k.cmd().args(["init", "--dry-run", "-c"]).arg(&f).output().unwrap();
    assert!(out.status.success());
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("Plan: init of cluster beta"), "{plan}");
    assert!(plan.contains("[pg1] run: ") && plan.contains("initdb"), "{plan}");
    assert!(plan.contains("scram-sha-256"), "the pg_hba it will write is shown: {plan}");
    assert!(!k.path("pg1").exists());
    assert!(!k.home().join("beta").exists());
    let j = k.cmd().args(["init", "--dry-run", "--output", "json", "-c"]).arg(&f).output().unwrap();
    let v: Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(v["steps"][3]["id"], "pg1:initdb");

    // a data_dir that exists and is not empty is never touched
    std::fs::create_dir(k.path("pg1")).unwrap();
    std::fs::write(k.path("pg1/precious"), "keep me").unwrap();
    let out = k.cmd().args(["init", "-c"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("c.yaml:6:") && err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_to_string(k.path("pg1/precious")).unwrap(), "keep me");
    assert_eq!(std::fs::read_dir(k.path("pg1")).unwrap().count(), 1);

    // located static errors: unknown field, duplicate name
    let bad = k.write(
        "bad.yaml",
        "name: beta\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 5\n    data_dir: /x/a\n    colour: red\n",
    );
    let out = k.cmd().args(["init", "-c"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yaml:7"), "{}", String::from_utf8_lossy(&out.stderr));
    // a type error names the field and what it accepts
    let typed = k.write(
        "typed.yaml",
        "name: beta\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: abc\n    data_dir: /x/a\n",
    );
    let out = k.cmd().args(["init", "-c"]).arg(&typed).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("typed.yaml:5:11: nodes[0].port: expected a port number 1-65535, got \"abc\""), "{err}");
    let empty = k.write("empty.yaml", "# nothing yet\n");
    let out = k.cmd().args(["init", "-c"]).arg(&empty).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the file is empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dup = k.write("dup.yaml", &k.inventory("beta", "", &[("pg1", "127.0.0.1", port), ("pg1", "127.0.0.2", port)]));
    let out = k.cmd().args(["init", "-c"]).arg(&dup).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("duplicate node name"));
    // a file with standbys: the dry run shows the whole plan (the primary,
    // then each standby's copy, sync names last) and creates nothing
    let two = k.inventory("beta", "", &[("pg7", "127.0.0.1", port), ("pg8", "127.0.0.2", port)]) + "    sync: sync\n";
    let two = k.write("two.yaml", &two);
    let out = k.cmd().args(["init", "--dry-run", "-c"]).arg(&two).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    let at = |s: &str| plan.find(s).unwrap_or_else(|| panic!("{s} not in {plan}"));
    assert!(at("initdb") < at("pg_basebackup"), "{plan}");
    assert!(at("pg_basebackup") < at("ALTER SYSTEM SET \"synchronous_standby_names\" = 'FIRST 1 (\"pg8\")'"), "{plan}");
    assert!(!k.path("pg7").exists() && !k.path("pg8").exists(), "a dry run creates nothing");
    // a busy port is refused
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let busy = l.local_addr().unwrap().port();
    let f2 = k.write("busy.yaml", &k.inventory("beta", "", &[("pg9", "127.0.0.1", busy)]));
    let out = k.cmd().args(["init", "-c"]).arg(&f2).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already listens"));
    assert!(!k.path("pg9").exists());
}

#[test]
fn a_held_lock_is_refused_with_exit_3_naming_the_holder() {
    let k = kit();
    let port = free_port("127.0.0.1");
    let f = k.write("c.yaml", &k.inventory("gamma", "", &[("pg1", "127.0.0.1", port)]));
    let home = journal::Home::new(k.home());
    let guard = home.lock("gamma", "pgscale test-holder").unwrap();
    let out = k.cmd().args(["init", "-c"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pgscale test-holder") && err.contains(&std::process::id().to_string()), "{err}");
    assert!(!k.path("pg1").exists(), "nothing changed");
    drop(guard);
    k.cmd().args(["init", "-c"]).arg(&f).assert().success();
    k.cmd().args(["destroy", "-n", "gamma", "--yes"]).assert().success();
}
