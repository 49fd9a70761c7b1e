//! Automatic failover's controls: `pgscale ha` against a real 3-member etcd.

use serde_json::Value;
use std::process::Output;
use testkit::{free_port, Kit};

const BIN: &str = env!("CARGO_BIN_EXE_pgscale");

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "exit {:?}: {}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ha(k: &Kit, args: &[&str]) -> Output {
    k.cmd().args(["ha", "-n", "hm"]).args(args).output().unwrap()
}

fn status(k: &Kit) -> Value {
    let o = ok(k.cmd().args(["ha", "-n", "hm", "status", "--output", "json"]).output().unwrap());
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn ha_modes_live_in_etcd_and_a_home_cluster_is_refused() {
    let k = Kit::with_etcd(BIN);
    let y = k.inventory("hm", "", &[("pg1", "127.0.0.1", free_port("127.0.0.1"))]);
    ok(k.cmd().args(["init", "-c", k.write("c.yaml", &y).to_str().unwrap()]).output().unwrap());

    let s = status(&k);
    assert_eq!(s["mode"], "disabled", "{s}");
    assert!(s["set_by"].is_null());
    assert_eq!(s["without_agent"], serde_json::json!(["pg1"]));
    assert!(s["leader"].is_null());

    ok(ha(&k, &["enable"]));
    let e = k.etcd.as_ref().unwrap();
    assert!(e.dump("/test/clusters/hm/ha/mode").contains("\"enabled\""));
    let s = status(&k);
    assert_eq!(s["mode"], "enabled");
    assert!(s["set_by"].as_str().unwrap().contains("pgscale ha enabled"), "{s}");
    assert!(text(&ok(ha(&k, &["enable"]))).contains("already enabled"));

    let o = ha(&k, &["resume"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not paused"), "{}", text(&o));

    ok(ha(&k, &["pause"]));
    let o = ok(ha(&k, &["status"]));
    assert!(text(&o).contains("PAUSED (maintenance)"), "{}", text(&o));
    ok(ha(&k, &["resume"]));
    assert_eq!(status(&k)["mode"], "enabled");
    ok(ha(&k, &["disable"]));
    assert_eq!(status(&k)["mode"], "disabled");

    // The same command on a cluster kept in the home: refused, saying how to move it.
    let h = Kit::new(BIN);
    let y = h.inventory("hm", "", &[("pg1", "127.0.0.2", free_port("127.0.0.2"))]);
    ok(h.cmd().args(["init", "-c", h.write("c.yaml", &y).to_str().unwrap()]).output().unwrap());
    let o = h.cmd().args(["ha", "-n", "hm", "enable"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("pgscale store migrate -n hm --to etcd"), "{}", text(&o));
    assert_eq!(h.cmd().args(["ha", "-n", "hm", "status", "--output", "json"]).output().unwrap().status.code(), Some(0));
}
