//! The etcd store against a real 3-member etcd on loopback.

use model::Inventory;
use pgscale_store::{StoreError, Stores, StoresConfig};
use std::time::{Duration, Instant};
use testkit::etcd::Etcd;

fn inv(name: &str) -> Inventory {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "nodes": [{"name": "pg1", "host": "127.0.0.1", "port": 5432, "data_dir": "/nonexistent/pg1"}]
    }))
    .unwrap()
}

fn stores(dir: &std::path::Path, home: &str, e: &Etcd) -> Stores {
    let mut cfg = StoresConfig::new(dir.join(home));
    cfg.etcd =
        Some(model::EtcdSpec { endpoints: e.endpoints().split(',').map(String::from).collect(), prefix: "/t".into() });
    cfg.key_file = Some(dir.join("shared.key"));
    cfg.deadline = Duration::from_secs(2);
    cfg.lock_ttl = Duration::from_secs(2);
    Stores::new(cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_cas_lock_secrets_and_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Etcd::start(dir.path(), 3);
    let (a, b) = (stores(dir.path(), "a", &e), stores(dir.path(), "b", &e));
    let sa = a.for_cluster("c1").await.unwrap();
    let sb = b.for_cluster("c1").await.unwrap();

    // Create from one machine; the other sees it.
    assert!(!sa.exists("c1").await.unwrap());
    sa.save(&inv("c1")).await.unwrap();
    assert_eq!(sb.list().await.unwrap(), vec!["c1"]);
    let mut seen_by_b = sb.load("c1").await.unwrap();
    assert!(seen_by_b.dcs.is_some(), "the record says where it lives");

    // Compare-and-swap: a writes after b read; b's write is refused.
    let mut x = sa.load("c1").await.unwrap();
    x.nodes[0].port = 5433;
    sa.save(&x).await.unwrap();
    seen_by_b.nodes[0].port = 5434;
    let err = sb.save(&seen_by_b).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(sb.load("c1").await.unwrap().nodes[0].port, 5433, "a's write stands");
    // A second create of an existing cluster from a store that never read it is refused too.
    let c = stores(dir.path(), "c", &e);
    let err = c.for_cluster("c1").await.unwrap().save(&inv("c1")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");

    // The lock names its holder; it is freed on drop.
    let l = sa.lock("c1", "pgscale scale-out", Duration::ZERO).await.unwrap();
    let err = sb.lock("c1", "pgscale switchover", Duration::ZERO).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, StoreError::Held { .. })
            && msg.contains("pgscale scale-out")
            && msg.contains(&std::process::id().to_string()),
        "{msg}"
    );
    // While a holds it, b's write of the inventory cannot slip in either.
    drop(l);
    a.close().await;
    let t0 = Instant::now();
    let _l2 = sb.lock("c1", "pgscale switchover", Duration::from_secs(5)).await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "released at once, not after the TTL");
    let mut y = sb.load("c1").await.unwrap();
    y.nodes[0].port = 5440;
    sb.save(&y).await.unwrap();
    assert!(sb.lock_lost("c1").is_none());

    // Passwords: sealed in etcd, readable from another machine with the key file.
    let s1 = sa.secrets("c1", &["postgres", "pgscale_repl"], true).await.unwrap();
    let pw = s1.password("postgres").unwrap().to_string();
    assert!(!e.dump("/t").contains(&pw), "no password in clear text in etcd");
    let s2 = sb.secrets("c1", &["postgres"], true).await.unwrap();
    assert_eq!(s2.password("postgres"), Some(pw.as_str()));
    let mut cfg = b.config().clone();
    cfg.key_file = Some(dir.path().join("other.key"));
    cfg.home = dir.path().join("d");
    let d = Stores::new(cfg);
    let err = d.for_cluster("c1").await.unwrap().secrets("c1", &["postgres"], true).await.unwrap_err().to_string();
    assert!(err.contains("no key file") && err.contains("copy it"), "{err}");

    // The operation log, from any machine.
    sa.record("c1", &pgscale_store::Event::Started { step: "pg1:x", node: "pg1" });
    a.close().await;
    let log = sb.log("c1", 10).await.unwrap();
    assert_eq!(log.last().unwrap()["step"], "pg1:x", "{log:?}");

    // One member down: the store goes on.
    e.kill(0);
    let f = stores(dir.path(), "f", &e);
    let sf = f.for_cluster("c1").await.unwrap();
    assert_eq!(sf.load("c1").await.unwrap().nodes[0].port, 5440);
    // Quorum lost: refused within the deadline, naming the endpoints.
    e.kill(1);
    let t0 = Instant::now();
    let err = sf.load("c1").await.unwrap_err();
    let took = t0.elapsed();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{msg}");
    assert!(msg.contains(&e.members[0].client_url) && msg.contains("unreachable"), "names the dead: {msg}");
    assert!(took < Duration::from_secs(8), "bounded by the deadline (2 s) plus the diagnosis (1 s): {took:?}");
    // Quorum back: the same call succeeds.
    e.restart(0);
    e.restart(1);
    e.wait_healthy(Duration::from_secs(30));
    let mut ok = false;
    for _ in 0..20 {
        if sf.load("c1").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(ok, "the store works again once etcd has a quorum");
}

/// The agents' meeting against a real etcd: a lost leader's key is taken
/// over only while nothing changed since the proof was read, and reads go
/// past a frozen member within one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meeting_takes_a_key_over_only_as_read_and_reads_past_a_frozen_member() {
    use pgscale_store::etcd::meeting::Meeting;
    let dir = tempfile::tempdir().unwrap();
    let e = Etcd::start(dir.path(), 3);
    let spec = model::EtcdSpec { endpoints: e.endpoints().split(',').map(String::from).collect(), prefix: "/m".into() };
    let attempt = Duration::from_millis(500);
    let old = Meeting::connect(&spec, "c1", attempt).await.unwrap();
    let new = Meeting::connect(&spec, "c1", attempt).await.unwrap();
    let lease = old.grant(10).await.unwrap();
    let term = old.take_leader("pg1", lease).await.unwrap().expect("the free key is taken");
    old.put("members/pg1", "{}", lease).await.unwrap();
    assert!(old.put_as_leader("pg1", term, &[("sync", "{\"k\":1}".into())]).await.unwrap());
    let revs = |s: &pgscale_store::etcd::meeting::Snapshot| {
        let r = |k: &str| s.keys.get(k).map_or(0, |x| x.mod_revision);
        (r("members/pg1"), r("sync"))
    };
    let seen = revs(&new.snapshot().await.unwrap());

    // The old leader's agent writes again: no takeover.
    old.put("members/pg1", "{}", lease).await.unwrap();
    assert!(!new.take_over("pg1", term, seen.0, seen.1).await.unwrap(), "its agent spoke since");
    // It names a stand-in (the sync set changes): no takeover.
    let seen = revs(&new.snapshot().await.unwrap());
    assert!(old.put_as_leader("pg1", term, &[("sync", "{\"k\":1,\"ackers\":[\"pg3\"]}".into())]).await.unwrap());
    assert!(!new.take_over("pg1", term, seen.0, seen.1).await.unwrap(), "the sync set changed since");
    // A wrong term: no takeover.
    let seen = revs(&new.snapshot().await.unwrap());
    assert!(!new.take_over("pg1", term + 1, seen.0, seen.1).await.unwrap());
    assert_eq!(new.snapshot().await.unwrap().keys["leader"].value, "pg1", "the key stands");
    // Silent since: taken over; the old leader can write nothing as leader.
    assert!(new.take_over("pg1", term, seen.0, seen.1).await.unwrap());
    assert!(!new.snapshot().await.unwrap().keys.contains_key("leader"));
    assert!(!old.put_as_leader("pg1", term, &[("sync", "{}".into())]).await.unwrap());
    let lease2 = new.grant(10).await.unwrap();
    let term2 = new.take_leader("pg2", lease2).await.unwrap().expect("the key is free");
    assert!(term2 > term);

    // A member frozen (SIGSTOP: no answer, no reset): every read still
    // answers within the attempt.
    let pid = nix::unistd::Pid::from_raw(e.members[0].child.as_ref().unwrap().id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let mut failed = 0;
    for _ in 0..10 {
        let t0 = Instant::now();
        match new.snapshot().await {
            Ok(s) => assert_eq!(s.keys["leader"].value, "pg2"),
            Err(_) => failed += 1,
        }
        assert!(t0.elapsed() < attempt * 4, "a read is bounded by its attempt (one deadline, not one per member)");
        new.put("members/pg2", "{}", lease2).await.unwrap_or_else(|e| panic!("a write goes to a live member: {e}"));
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    // A frozen follower leaves a quorum: reads answer (an election when the
    // leader froze can fail a few).
    assert!(failed <= 3, "{failed} of 10 reads failed with one member frozen");
}
