//! A killed pgscale must not leave its base copy running: on this machine
//! the copy dies with pgscale; on an SSH host it would go on, so the re-run
//! ends it on the upstream before emptying the directory. In both cases ONE
//! re-run converges and no pg_basebackup is left.

use serde_json::Value;
use std::time::{Duration, Instant};
use testkit::{basebackups_into, free_port, Kit, Sshd};

fn kit() -> Kit {
    Kit::new(env!("CARGO_BIN_EXE_pgscale"))
}

fn psql(k: &Kit, n: &str, sql: &str) -> String {
    let out = k.cmd().args(["psql", "-n", "mu", "--node", n, "--", "-Atc", sql]).output().unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Start `scale-out` (copies throttled to 4 MB/s: several seconds) and wait
/// until the upstream shows the copy streaming.
fn start_copy(k: &Kit, add: &std::path::Path) -> testkit::Child {
    let mut cmd = std::process::Command::new(&k.bin);
    cmd.env("PGSCALE_HOME", k.home())
        .env("TMPDIR", k.dir.path())
        .args(["scale-out", "-n", "mu", "--max-rate", "4M", "-c"])
        .arg(add);
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let child = testkit::Child(cmd.spawn().unwrap());
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let streamed = psql(k, "pg1", "select coalesce(max(backup_streamed), 0) from pg_stat_progress_basebackup");
        if streamed.parse::<i64>().unwrap_or(0) > 4 << 20 {
            return child;
        }
        assert!(Instant::now() < until, "the copy never started");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kill9(child: testkit::Child) {
    testkit::signal(child.0.id() as i32, nix::sys::signal::Signal::SIGKILL);
    drop(child);
}

/// The parent process of `pid`, from /proc.
fn ppid(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|v| v.trim().parse().ok())
}

fn converges_with_one_rerun(k: &Kit, add: &std::path::Path, data_dir: &std::path::Path) {
    let out = k.cmd().args(["scale-out", "-n", "mu", "-c"]).arg(add).output().unwrap();
    assert!(out.status.success(), "one re-run converges: {}", String::from_utf8_lossy(&out.stderr));
    let s: Value =
        serde_json::from_slice(&k.cmd().args(["status", "-n", "mu", "--output", "json"]).output().unwrap().stdout)
            .unwrap();
    let pg2 = s["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "pg2").unwrap();
    assert_eq!(pg2["upstream"], "pg1", "{s}");
    assert_eq!(psql(k, "pg2", "select count(*) from big"), "60000");
    assert!(basebackups_into(data_dir).is_empty(), "no pg_basebackup left");
    let c = k.cmd().args(["check", "-n", "mu"]).output().unwrap();
    assert_eq!(c.status.code(), Some(0), "{}", String::from_utf8_lossy(&c.stdout));
}

fn primary_with_data(k: &Kit, port: u16) {
    let f = k.write("c.yaml", &k.inventory("mu", "", &[("pg1", "127.0.0.1", port)]));
    k.cmd().args(["init", "-c"]).arg(&f).assert().success();
    // about 40 MB: at 4 MB/s the copy takes ~10 s
    psql(k, "pg1", "create table big as select g, repeat(md5(g::text), 20) as pad from generate_series(1, 60000) g");
}

#[test]
fn a_local_copy_dies_with_pgscale_and_one_rerun_converges() {
    let k = kit();
    let port = free_port("127.0.0.1");
    primary_with_data(&k, port);
    let dd = k.path("pg2");
    let add = k.write(
        "add.yaml",
        &format!("nodes:\n  - name: pg2\n    host: 127.0.0.2\n    port: {port}\n    data_dir: {}\n", dd.display()),
    );
    let child = start_copy(&k, &add);
    let pgscale = child.0.id() as i32;
    let copies = basebackups_into(&dd);
    let ours: Vec<i32> = copies.iter().copied().filter(|p| ppid(*p) == Some(pgscale)).collect();
    assert_eq!(ours.len(), 1, "pgscale runs pg_basebackup itself: {copies:?}");
    kill9(child);
    // pgscale's own child (pg_basebackup) dies with it (parent-death
    // signal). Its WAL-streaming child, forked by pg_basebackup, may live
    // on for a while: the re-run ends it on the upstream.
    let until = Instant::now() + Duration::from_secs(5);
    while ours.iter().any(|p| testkit::alive(*p)) {
        assert!(Instant::now() < until, "pg_basebackup outlived pgscale: {ours:?} (before: {copies:?})");
        std::thread::sleep(Duration::from_millis(50));
    }
    converges_with_one_rerun(&k, &add, &dd);
}

#[test]
fn a_remote_copy_left_running_is_ended_and_one_rerun_converges() {
    let k = kit();
    let port = free_port("127.0.0.1");
    primary_with_data(&k, port);
    let sshd = Sshd::start_on(&k.path("ssh"), "127.0.0.2");
    let parent = k.path("remote");
    std::fs::create_dir(&parent).unwrap();
    testkit::chown_to_os_user(&parent);
    let dd = parent.join("pg2");
    let add = k.write(
        "add.yaml",
        &format!(
            "nodes:\n  - name: pg2\n    host: 127.0.0.2\n    port: {port}\n    data_dir: {}\n{}",
            dd.display(),
            sshd.yaml()
        ),
    );
    kill9(start_copy(&k, &add));
    // Whether the remote copy outlived pgscale depends on ssh; either way,
    // the re-run must end what is left before it empties the directory.
    converges_with_one_rerun(&k, &add, &dd);
}
