//! The operations layer used directly, as the agent will: no terminal, no
//! CLI, a typed request in, a typed outcome out, against real servers.

use pgscale_ops as ops;
use store::{Stores, StoresConfig};

use ops::{destroy, init, scale_out, status, Env, Outcome, Quiet};
use std::time::Duration;
use testkit::{free_port, Kit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_scale_out_status_destroy_through_ops() {
    let k = Kit::new("unused: this test calls ops directly");
    let stores = Stores::new(StoresConfig::new(k.home()));
    through_ops(&k, &stores).await;
    assert!(!k.home().join("omicron").exists(), "nothing left in the home");
}

/// The same operations with the cluster's state in a real 3-member etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_scale_out_status_destroy_through_ops_on_etcd() {
    let k = Kit::new("unused: this test calls ops directly");
    let e = testkit::etcd::Etcd::start(k.dir.path(), 3);
    let mut cfg = StoresConfig::new(k.home());
    cfg.etcd = Some(model::EtcdSpec {
        endpoints: e.endpoints().split(',').map(String::from).collect(),
        prefix: "/ops".into(),
    });
    let stores = Stores::new(cfg);
    through_ops(&k, &stores).await;
    stores.close().await;
    let left = e.dump("/ops/");
    assert!(!left.contains("/ops/clusters/omicron/inventory"), "destroy forgot it in etcd: {left}");
}

async fn through_ops(k: &Kit, stores: &Stores) {
    let argv = vec!["ops-test".to_string()];
    let env = Env { stores, ui: &Quiet, argv: &argv };
    let port = free_port("127.0.0.1");
    let f = k.write("c.yaml", &k.inventory("omicron", "", &[("pg1", "127.0.0.1", port)]));
    let d = Duration::from_secs(10);
    let r = |dry_run| init::Request {
        config: f.clone(),
        dry_run,
        timeout: d,
        parallel: None,
        catchup: Duration::from_secs(60),
        install: false,
        pg_major: None,
        max_rate: None,
    };
    let planned = init::run(env, r(true)).await.unwrap();
    assert!(matches!(&planned, Outcome::Planned(p) if p.steps.iter().any(|s| s.id == "pg1:initdb")), "{planned:?}");
    assert!(!k.path("pg1").exists(), "a dry run changes nothing");
    let done = init::run(env, r(false)).await.unwrap();
    let Outcome::Applied { report: Some(report), .. } = &done else { panic!("{done:?}") };
    assert!(report.ok());

    let add = k.write(
        "add.yaml",
        &format!(
            "nodes:\n  - name: pg2\n    host: 127.0.0.2\n    port: {port}\n    data_dir: {}\n    sync: sync\n",
            k.path("pg2").display()
        ),
    );
    let so = scale_out::Request {
        name: "omicron".into(),
        config: add,
        dry_run: false,
        parallel: None,
        timeout: d,
        catchup: Duration::from_secs(60),
        install: false,
        max_rate: None,
    };
    scale_out::run(env, so).await.unwrap();
    let s = status::run(stores, "omicron", Duration::from_secs(3)).await.unwrap();
    assert_eq!(s.store, stores.for_cluster("omicron").await.unwrap().describe());
    assert_eq!(s.primary.as_deref(), Some("pg1"));
    let pg2 = s.nodes.iter().find(|n| n.name == "pg2").unwrap();
    assert_eq!(pg2.sync_state.as_deref(), Some("sync"), "{s:?}");

    // Without anyone to ask, a destructive operation needs `yes`.
    let no =
        destroy::run(env, destroy::Request { name: "omicron".into(), yes: false, dry_run: false, timeout: d }).await;
    assert_eq!(no.unwrap_err().code(), 2);
    destroy::run(env, destroy::Request { name: "omicron".into(), yes: true, dry_run: false, timeout: d })
        .await
        .unwrap();
    assert!(!k.path("pg1").exists());
    assert!(!stores.for_cluster("omicron").await.unwrap().exists("omicron").await.unwrap());
}
