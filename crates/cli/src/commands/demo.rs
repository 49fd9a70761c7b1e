//! `pgscale demo`: the main job on an embedded default, on this machine.
//! Today: create a one-node cluster on loopback, write to it, show status,
//! clean up. (Scale-out/in under load joins it with the next issue.)

use super::{destroy, init, status};
use crate::args::{DemoArgs, DestroyArgs, InitArgs, OutputFormat, StatusArgs};
use crate::fail::{failed, invalid};
use journal::Home;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const NAME: &str = "demo";

fn free_port(host: &str) -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind((host, 0))?.local_addr()?.port())
}

pub async fn run(home: &Home, a: DemoArgs) -> anyhow::Result<u8> {
    if home.exists(NAME) {
        return Err(invalid(format!(
            "a cluster named `{NAME}` already exists in {}: remove it with `pgscale destroy -n {NAME}` or use another --home",
            home.root().display()
        )));
    }
    let (dir, _tmp) = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("pgscale-demo-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    // The servers run as the OS user (`postgres` under root): it must be able
    // to enter the directory.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let port = free_port("127.0.0.1")?;
    let file = dir.join("cluster.yaml");
    let yaml = format!(
        "# written by `pgscale demo`\nname: {NAME}\npostgres:\n  parameters:\n    shared_buffers: 64MB\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: {port}\n    data_dir: {}\n",
        dir.join("pg1").display()
    );
    std::fs::write(&file, &yaml)?;
    eprintln!("== pgscale demo: inventory {}\n{yaml}", file.display());
    let argv = vec!["pgscale".to_string(), "demo".into()];
    let t0 = Instant::now();
    eprintln!("== pgscale init -c {}", file.display());
    init::run(
        home,
        OutputFormat::Table,
        InitArgs { config: file.clone(), dry_run: false, yes: true, timeout: Duration::from_secs(10) },
        &argv,
    )
    .await?;
    let t_init = t0.elapsed();

    let result = async {
        eprintln!("\n== write a little through the primary");
        let inv = home.load(NAME)?;
        let secrets = home.secrets(NAME, &crate::resolve::secret_users(&inv))?;
        let (_, target) = crate::resolve::targets(&inv, &secrets).into_iter().next().expect("one node");
        let c = pg::connect(&target, Duration::from_secs(5)).await.map_err(|e| failed(e.to_string()))?;
        let t1 = Instant::now();
        c.batch_execute("CREATE TABLE IF NOT EXISTS demo_ledger (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
            .await?;
        let n: i64 = 1000;
        for i in 0..n {
            c.execute("INSERT INTO demo_ledger (id) VALUES ($1) ON CONFLICT DO NOTHING", &[&i]).await?;
        }
        let count: i64 = c.query_one("SELECT count(*) FROM demo_ledger", &[]).await?.get(0);
        if count != n {
            return Err(failed(format!("expected {n} rows, read {count}")));
        }
        eprintln!("{n} single-row commits in {:.2}s; read back {count}", t1.elapsed().as_secs_f64());
        eprintln!("\n== pgscale status -n {NAME}");
        status::run(home, OutputFormat::Table, StatusArgs { name: NAME.into(), timeout: Duration::from_secs(3) })
            .await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;

    eprintln!("\ntimings: init {:.2}s", t_init.as_secs_f64());
    if a.keep && result.is_ok() {
        eprintln!(
            "kept: `pgscale status -n {NAME}`, `pgscale psql -n {NAME}`; remove with `pgscale destroy -n {NAME} --yes`"
        );
        if let Some(t) = _tmp {
            let _ = t.keep();
        }
        return Ok(0);
    }
    eprintln!("\n== pgscale destroy -n {NAME} --yes");
    destroy::run(
        home,
        OutputFormat::Table,
        DestroyArgs { name: NAME.into(), yes: true, dry_run: false, timeout: Duration::from_secs(10) },
        &argv,
    )
    .await?;
    result?;
    Ok(0)
}
