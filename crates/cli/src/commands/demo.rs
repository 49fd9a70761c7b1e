//! `pgscale demo`: the main job on an embedded default, on this machine.
//! A primary on 127.0.0.1, a write load (bounded in count and time, loopback
//! only), two standbys added while it runs (pg2 synchronous on 127.0.0.2,
//! pg3 cascaded from pg2 on 127.0.0.3), status, pg3 removed, status, the
//! ledger checked on the primary and on pg2, timings, clean-up.

use super::{destroy, init, scale_in, scale_out, status};
use crate::args::{DemoArgs, DestroyArgs, InitArgs, OutputFormat, ScaleInArgs, ScaleOutArgs, StatusArgs};
use crate::fail::{failed, invalid};
use journal::Home;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NAME: &str = "demo";
/// The load stops by itself after this many commits or this long.
const MAX_ROWS: i64 = 20_000;
const MAX_TIME: Duration = Duration::from_secs(120);

fn free_port() -> anyhow::Result<u16> {
    // The same port on 127.0.0.1..3: each node has its own address.
    for _ in 0..20 {
        let p = std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
        if ["127.0.0.2", "127.0.0.3"].iter().all(|h| std::net::TcpListener::bind((*h, p)).is_ok()) {
            return Ok(p);
        }
    }
    Err(failed("no free port on 127.0.0.1-3"))
}

struct LoadStats {
    committed: Vec<i64>,
    failures: u64,
    max_latency: Duration,
}

/// Insert increasing ids into a ledger, one transaction each, every ~5 ms;
/// reconnect on error. Stops when told, or at MAX_ROWS / MAX_TIME.
async fn load(target: pg::Target, stop: Arc<AtomicBool>) -> LoadStats {
    let mut st = LoadStats { committed: Vec::new(), failures: 0, max_latency: Duration::ZERO };
    let t0 = Instant::now();
    let mut client = None;
    let mut id: i64 = 0;
    while !stop.load(Ordering::Relaxed) && id < MAX_ROWS && t0.elapsed() < MAX_TIME {
        if client.is_none() {
            client = pg::connect(&target, Duration::from_secs(2)).await.ok();
        }
        if let Some(c) = &client {
            let t = Instant::now();
            let r = tokio::time::timeout(
                Duration::from_secs(10),
                c.execute("INSERT INTO demo_ledger (id) VALUES ($1)", &[&id]),
            )
            .await;
            match r {
                Ok(Ok(_)) => {
                    st.max_latency = st.max_latency.max(t.elapsed());
                    st.committed.push(id);
                }
                _ => {
                    st.failures += 1;
                    client = None;
                }
            }
            id += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    st
}

pub async fn run(home: &Home, a: DemoArgs) -> anyhow::Result<u8> {
    if home.exists(NAME) {
        return Err(invalid(format!(
            "a cluster named `{NAME}` already exists in {}: remove it with `pgscale destroy -n {NAME} --yes` or use another --home",
            home.root().display()
        )));
    }
    let (dir, tmp) = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("pgscale-demo-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    // The servers run as the OS user (`postgres` under root): let it in.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let port = free_port()?;
    let file = dir.join("cluster.yaml");
    let yaml = format!(
        "# written by `pgscale demo`\nname: {NAME}\npostgres:\n  parameters:\n    shared_buffers: 64MB\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: {port}\n    data_dir: {}\n",
        dir.join("pg1").display()
    );
    std::fs::write(&file, &yaml)?;
    let add = dir.join("add.yaml");
    let add_yaml = format!(
        "nodes:\n  - name: pg2\n    host: 127.0.0.2\n    port: {port}\n    data_dir: {}\n    sync: sync\n  - name: pg3\n    host: 127.0.0.3\n    port: {port}\n    data_dir: {}\n    upstream: pg2\n",
        dir.join("pg2").display(),
        dir.join("pg3").display()
    );
    std::fs::write(&add, &add_yaml)?;
    eprintln!("== pgscale demo in {}\n-- {}\n{yaml}-- {}\n{add_yaml}", dir.display(), file.display(), add.display());
    let argv = vec!["pgscale".to_string(), "demo".into()];
    let d = Duration::from_secs(10);
    let mut timings: Vec<(&str, Duration)> = Vec::new();

    eprintln!("== pgscale init -c {}", file.display());
    let t = Instant::now();
    init::run(
        home,
        OutputFormat::Table,
        InitArgs { config: file.clone(), dry_run: false, yes: true, timeout: d },
        &argv,
    )
    .await?;
    timings.push(("init pg1", t.elapsed()));

    let result = async {
        let inv = home.load(NAME)?;
        let secrets = home.secrets(NAME, &crate::resolve::secret_users(&inv))?;
        let targets: std::collections::BTreeMap<_, _> = crate::resolve::targets(&inv, &secrets).into_iter().collect();
        let c = pg::connect(&targets["pg1"], d).await.map_err(|e| failed(e.to_string()))?;
        c.batch_execute("CREATE TABLE demo_ledger (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())").await?;
        eprintln!("\n== write load on pg1 (one insert per transaction, every ~5 ms) while the cluster changes");
        let stop = Arc::new(AtomicBool::new(false));
        let loader = tokio::spawn(load(targets["pg1"].clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;

        eprintln!("\n== pgscale scale-out -n {NAME} -c {}   (pg2 synchronous, pg3 cascaded from pg2)", add.display());
        let t = Instant::now();
        let so = ScaleOutArgs {
            name: NAME.into(),
            config: Some(add.clone()),
            gen_template: false,
            dry_run: false,
            yes: true,
            parallel: None,
            timeout: d,
            catchup_timeout: Duration::from_secs(120),
        };
        let r = scale_out::run(home, OutputFormat::Table, so, &argv).await;
        timings.push(("scale-out pg2 + pg3", t.elapsed()));
        if let Err(e) = r {
            stop.store(true, Ordering::Relaxed);
            let _ = loader.await;
            return Err(e);
        }
        eprintln!("\n== pgscale status -n {NAME}");
        status::run(home, OutputFormat::Table, StatusArgs { name: NAME.into(), timeout: Duration::from_secs(3) }).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;

        eprintln!("\n== pgscale scale-in -n {NAME} --node pg3 --clear-dir --yes");
        let t = Instant::now();
        let si = ScaleInArgs { name: NAME.into(), nodes: vec!["pg3".into()], dry_run: false, yes: true, clear_dir: true, timeout: d };
        let r = scale_in::run(home, OutputFormat::Table, si, &argv).await;
        timings.push(("scale-in pg3", t.elapsed()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        let stats = loader.await.map_err(|e| failed(e.to_string()))?;
        r?;
        eprintln!("\n== pgscale status -n {NAME}");
        status::run(home, OutputFormat::Table, StatusArgs { name: NAME.into(), timeout: Duration::from_secs(3) }).await?;

        // Every committed id is on the primary, and on the sync standby.
        let want = stats.committed.len() as i64;
        let on_primary: i64 = c.query_one("SELECT count(*) FROM demo_ledger WHERE id = ANY($1)", &[&stats.committed]).await?.get(0);
        // pg2 joined after the targets were read: read them again.
        let inv = home.load(NAME)?;
        let pg2 = crate::resolve::targets(&inv, &secrets).into_iter().find(|(n, _)| n == "pg2").map(|(_, t)| t);
        let pg2 = pg2.ok_or_else(|| failed("pg2 is not in the inventory after scale-out"))?;
        let s2 = pg::connect(&pg2, d).await.map_err(|e| failed(e.to_string()))?;
        let until = Instant::now() + Duration::from_secs(10);
        let mut on_pg2: i64 = 0;
        while Instant::now() < until {
            on_pg2 = s2.query_one("SELECT count(*) FROM demo_ledger WHERE id = ANY($1)", &[&stats.committed]).await?.get(0);
            if on_pg2 == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("\n== the write load");
        eprintln!(
            "committed {want} transactions, {} failed, longest commit {:.1} ms; committed ids found on pg1: {on_primary}, on pg2: {on_pg2}",
            stats.failures,
            stats.max_latency.as_secs_f64() * 1000.0
        );
        if on_primary != want || on_pg2 != want {
            return Err(failed(format!("committed ids missing: {want} committed, {on_primary} on pg1, {on_pg2} on pg2")));
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;

    eprintln!("\n== timings");
    for (what, t) in &timings {
        eprintln!("  {what:<22} {:>7.2} s", t.as_secs_f64());
    }
    eprintln!("  (per step: `cat {}/{NAME}/journal.jsonl`)", home.root().display());
    if a.keep && result.is_ok() {
        eprintln!("\nkept: `pgscale status -n {NAME}`, `pgscale psql -n {NAME}`; remove with `pgscale destroy -n {NAME} --yes`");
        if let Some(t) = tmp {
            let _ = t.keep();
        }
        return Ok(0);
    }
    eprintln!("\n== pgscale destroy -n {NAME} --yes");
    destroy::run(
        home,
        OutputFormat::Table,
        DestroyArgs { name: NAME.into(), yes: true, dry_run: false, timeout: d },
        &argv,
    )
    .await?;
    result?;
    Ok(0)
}
