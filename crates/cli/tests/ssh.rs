//! A node run "remotely": every host command of init and destroy goes
//! through a real OpenSSH connection to an sshd the test starts on
//! 127.0.0.1.

use serde_json::Value;
use testkit::{free_port, Kit, Sshd};

#[test]
fn init_status_destroy_over_ssh() {
    let k = Kit::new(env!("CARGO_BIN_EXE_pgscale"));
    let sshd = Sshd::start(&k.path("ssh"));
    // The remote side creates directories as the OS user: give it a parent it owns.
    let parent = k.path("remote");
    std::fs::create_dir(&parent).unwrap();
    let u = nix::unistd::User::from_name(&testkit::os_user()).unwrap().unwrap();
    std::os::unix::fs::chown(&parent, Some(u.uid.as_raw()), Some(u.gid.as_raw())).unwrap();
    let port = free_port("127.0.0.1");
    let yaml = format!(
        "name: sigma\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: {port}\n    data_dir: {}\n{}",
        parent.join("pg1").display(),
        sshd.yaml()
    );
    let f = k.write("c.yaml", &yaml);
    let out = k.cmd().args(["init", "-c"]).arg(&f).output().unwrap();
    assert!(
        out.status.success(),
        "{}\nsshd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&sshd.log).unwrap_or_default()
    );
    let log = std::fs::read_to_string(&sshd.log).unwrap();
    assert!(log.contains(&format!("Accepted publickey for {}", sshd.login)), "commands went through sshd: {log}");

    let out = k.cmd().args(["status", "-n", "sigma", "--output", "json"]).output().unwrap();
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["primary"], "pg1");
    assert_eq!(s["nodes"][0]["state"], "running");
    let out = k.cmd().args(["psql", "-n", "sigma", "--", "-Atc", "select 40 + 2"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    let md = std::fs::metadata(parent.join("pg1")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), u.uid.as_raw(), "created by the OS user");

    k.cmd().args(["destroy", "-n", "sigma", "--yes"]).assert().success();
    assert!(!parent.join("pg1").exists());
    assert!(!parent.join("pg1.sock").exists());
}
