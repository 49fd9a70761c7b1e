//! The demo: what pgscale is for, on this machine, in under a minute, under
//! a write load whose every acknowledged id is checked after each step:
//! init of a 3-node cluster from one spec (primary, sync standby, async
//! standby); scale-out of a 4th node cascaded from a standby, then its
//! scale-in; a switchover; kill -9 of the primary, failover, rejoin of the
//! old primary with pg_rewind. Loopback addresses only; the load is bounded
//! in rows and time.

use crate::error::{failed, invalid, OpError};
use crate::load::{count_on, Load};
use crate::{destroy, ha, init, resolve, scale_in, scale_out, status, Env};
use model::NodeName;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const NAME: &str = "demo";
/// The load stops by itself after this many commits or this long.
const MAX_ROWS: i64 = 40_000;
const MAX_TIME: Duration = Duration::from_secs(180);
const HOSTS: [&str; 4] = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"];

pub struct Request {
    /// Directory for the demo's data (default: a new temporary directory).
    pub dir: Option<PathBuf>,
    /// Keep the cluster running at the end.
    pub keep: bool,
}

/// One step of the story, as measured.
#[derive(Debug, Clone)]
pub struct StepFigures {
    pub step: String,
    pub took: Duration,
    /// The longest time without an acknowledged commit during the step.
    pub write_downtime: Duration,
    /// Acknowledged ids so far that the primary does not have after it.
    pub lost: i64,
    pub committed: usize,
}

pub struct Demo {
    pub dir: PathBuf,
    pub steps: Vec<StepFigures>,
    pub failures: u64,
    pub kept: bool,
}

fn free_port() -> Result<u16, OpError> {
    // The same port on 127.0.0.1..4: each node has its own address.
    for _ in 0..50 {
        let p = std::net::TcpListener::bind((HOSTS[0], 0))?.local_addr()?.port();
        if HOSTS[1..].iter().all(|h| std::net::TcpListener::bind((*h, p)).is_ok()) {
            return Ok(p);
        }
    }
    Err(failed("no free port on 127.0.0.1-4"))
}

fn node_yaml(name: &str, host: &str, port: u16, dir: &Path, more: &str) -> String {
    format!("  - name: {name}\n    host: {host}\n    port: {port}\n    data_dir: {}\n{more}", dir.join(name).display())
}

fn name(s: &str) -> NodeName {
    NodeName::new(s).expect("a valid constant name")
}

pub async fn run(env: Env<'_>, r: Request) -> Result<Demo, OpError> {
    let store = env.stores.for_cluster(NAME).await?;
    if store.exists(NAME).await? {
        return Err(invalid(format!(
            "a cluster named `{NAME}` already exists in {}: remove it with `pgscale destroy -n {NAME} --yes` or use another --home",
            store.describe()
        )));
    }
    crate::hostcheck::ensure_local_server(env).await?;
    let (dir, tmp) = match &r.dir {
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
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let port = free_port()?;
    let file = dir.join("cluster.yaml");
    let yaml = format!(
        "# written by `pgscale demo`\nname: {NAME}\npostgres:\n  parameters:\n    shared_buffers: 64MB\nnodes:\n{}{}{}",
        node_yaml("pg1", HOSTS[0], port, &dir, ""),
        node_yaml("pg2", HOSTS[1], port, &dir, "    sync: sync\n"),
        node_yaml("pg3", HOSTS[2], port, &dir, "    sync: async\n"),
    );
    std::fs::write(&file, &yaml)?;
    let add = dir.join("add.yaml");
    let add_yaml = format!("nodes:\n{}", node_yaml("pg4", HOSTS[3], port, &dir, "    upstream: pg3\n"));
    std::fs::write(&add, &add_yaml)?;
    let say = |s: String| env.ui.say(&s);
    say(format!("== pgscale demo in {}\n-- {}\n{yaml}-- {}\n{add_yaml}", dir.display(), file.display(), add.display()));

    let d = Duration::from_secs(10);
    say(format!("== pgscale init -c {}   (pg1 primary, pg2 synchronous, pg3 asynchronous)", file.display()));
    let t = Instant::now();
    let catchup = Duration::from_secs(120);
    init::run(
        env,
        init::Request {
            config: file.clone(),
            dry_run: false,
            timeout: d,
            parallel: None,
            catchup,
            install: false,
            pg_major: None,
            max_rate: None,
        },
    )
    .await?;
    let init_took = t.elapsed();
    show_status(env).await;

    let story = story(env, &add, d, init_took).await;
    let steps = match &story {
        Ok((s, _)) => s.clone(),
        Err((s, _)) => s.clone(),
    };
    let failures = story.as_ref().map(|(_, f)| *f).unwrap_or(0);
    let kept = r.keep && story.is_ok();
    if kept {
        say(format!(
            "kept: `pgscale status -n {NAME}`, `pgscale psql -n {NAME}`; remove with `pgscale destroy -n {NAME} --yes`"
        ));
        if let Some(t) = tmp {
            let _ = t.keep();
        }
    } else {
        say(format!("== pgscale destroy -n {NAME} --yes"));
        destroy::run(env, destroy::Request { name: NAME.into(), yes: true, dry_run: false, timeout: d }).await?;
    }
    story.map_err(|(_, e)| e)?;
    Ok(Demo { dir, steps, failures, kept })
}

async fn show_status(env: Env<'_>) {
    match status::run(env.stores, NAME, Duration::from_secs(3)).await {
        Ok(r) => env.ui.status(&r),
        Err(e) => env.ui.say(&format!("status: {e}")),
    }
}

/// Admin connections to the cluster's nodes, the primary first.
async fn targets(env: Env<'_>) -> Result<(Vec<pg::Target>, pg::Target), OpError> {
    let store = env.stores.for_cluster(NAME).await?;
    let inv = store.load(NAME).await?;
    let secrets = store.secrets(NAME, &resolve::secret_users(&inv), true).await?;
    let primary = inv.primary().map(|p| p.name.clone()).unwrap_or_default();
    let mut all = resolve::targets(&inv, &secrets);
    all.sort_by_key(|(n, _)| *n != primary);
    let p = all.first().map(|(_, t)| t.clone()).ok_or_else(|| failed("no nodes"))?;
    Ok((all.into_iter().map(|(_, t)| t).collect(), p))
}

type StoryResult = Result<(Vec<StepFigures>, u64), (Vec<StepFigures>, OpError)>;

async fn story(env: Env<'_>, add: &Path, d: Duration, init_took: Duration) -> StoryResult {
    let mut steps = vec![StepFigures {
        step: "init pg1 + pg2 (sync) + pg3".into(),
        took: init_took,
        write_downtime: Duration::ZERO,
        lost: 0,
        committed: 0,
    }];
    let (all, _) = match targets(env).await {
        Ok(t) => t,
        Err(e) => return Err((steps, e)),
    };
    let load = match Load::start(all, MAX_ROWS, MAX_TIME).await {
        Ok(l) => l,
        Err(e) => return Err((steps, e)),
    };
    env.ui.say("== a write load on the primary: one insert per transaction, every ~5 ms; every acknowledged id is checked after each step");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let res = steps_under_load(env, &load, add, d, &mut steps).await;
    let stats = load.stop().await;
    match res {
        Ok(()) => Ok((steps, stats.failures)),
        Err(e) => Err((steps, e)),
    }
}

async fn steps_under_load(
    env: Env<'_>,
    load: &Load,
    add: &Path,
    d: Duration,
    steps: &mut Vec<StepFigures>,
) -> Result<(), OpError> {
    let catchup = Duration::from_secs(120);
    step(env, load, steps, "scale-out pg4 (cascaded from pg3)", async {
        env.ui.say(&format!("== pgscale scale-out -n {NAME} -c {}   (pg4 streams from pg3)", add.display()));
        let r = scale_out::Request {
            name: NAME.into(),
            config: add.to_path_buf(),
            dry_run: false,
            parallel: None,
            timeout: d,
            catchup,
            install: false,
            max_rate: None,
        };
        scale_out::run(env, r).await.map(|_| ())
    })
    .await?;
    step(env, load, steps, "scale-in pg4", async {
        env.ui.say(&format!("== pgscale scale-in -n {NAME} --node pg4 --clear-dir --yes"));
        let r = scale_in::Request {
            name: NAME.into(),
            nodes: vec![name("pg4")],
            dry_run: false,
            yes: true,
            clear_dir: true,
            timeout: d,
        };
        scale_in::run(env, r).await.map(|_| ())
    })
    .await?;
    step(env, load, steps, "switchover to pg2", async {
        env.ui.say(&format!("== pgscale switchover -n {NAME} --to pg2 --yes"));
        let r = ha::SwitchoverRequest {
            name: NAME.into(),
            to: name("pg2"),
            dry_run: false,
            yes: true,
            max_lag: 16 << 20,
            timeout: d,
        };
        ha::switchover(env, r).await.map(|_| ())
    })
    .await?;
    step(env, load, steps, "kill -9 pg2, failover", async {
        let inv = env.stores.for_cluster(NAME).await?.load(NAME).await?;
        let p = inv.primary().ok_or_else(|| failed("no primary"))?.clone();
        env.ui.say(&format!(
            "== kill -9 of the primary {} (its postmaster), then pgscale failover -n {NAME} --yes",
            p.name
        ));
        kill_postmaster(&p.data_dir).await?;
        let r = ha::FailoverRequest {
            name: NAME.into(),
            to: None,
            force: false,
            dry_run: false,
            yes: true,
            timeout: d,
            known_down: vec![],
            promoted: false,
        };
        ha::failover(env, r).await.map(|_| ())
    })
    .await?;
    step(env, load, steps, "rejoin pg2 (pg_rewind)", async {
        env.ui.say(&format!("== pgscale rejoin -n {NAME} --node pg2 --yes   (pg_rewind)"));
        let r = ha::RejoinRequest {
            name: NAME.into(),
            node: name("pg2"),
            reclone: false,
            dry_run: false,
            yes: true,
            timeout: d,
            max_rate: None,
        };
        ha::rejoin(env, r).await.map(|_| ())
    })
    .await?;
    Ok(())
}

/// Run one step, then show the status and check every acknowledged id on
/// the primary (and wait a moment so the load writes between steps).
async fn step(
    env: Env<'_>,
    load: &Load,
    steps: &mut Vec<StepFigures>,
    what: &str,
    fut: impl std::future::Future<Output = Result<(), OpError>>,
) -> Result<(), OpError> {
    let from = load.now();
    let t = Instant::now();
    fut.await?;
    let took = t.elapsed();
    let to = load.now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    show_status(env).await;
    let (_, primary) = targets(env).await?;
    let stats = load.snapshot();
    let found = count_on(&primary, &stats.committed, Duration::from_secs(10)).await?;
    let lost = stats.committed.len() as i64 - found;
    env.ui.say(&format!(
        "-- {what}: {:.2} s; longest write pause {:.0} ms; {} acknowledged ids so far, {lost} missing on the primary",
        took.as_secs_f64(),
        stats.longest_gap(from, to).as_secs_f64() * 1000.0,
        stats.committed.len()
    ));
    steps.push(StepFigures {
        step: what.into(),
        took,
        write_downtime: stats.longest_gap(from, to),
        lost,
        committed: stats.committed.len(),
    });
    if lost != 0 {
        return Err(failed(format!("{lost} acknowledged ids are missing on the primary after `{what}`")));
    }
    Ok(())
}

/// kill -9 of a local postmaster, then wait (bounded) until it is gone so
/// pg_ctl does not see it as running.
async fn kill_postmaster(data_dir: &Path) -> Result<(), OpError> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid"))?;
    let pid: i32 =
        text.lines().next().and_then(|l| l.trim().parse().ok()).ok_or_else(|| failed("no postmaster pid"))?;
    let gone = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z') || r.starts_with('X')))
            .unwrap_or(true)
    };
    let st = tokio::process::Command::new("kill").args(["-9", &pid.to_string()]).status().await?;
    if !st.success() {
        return Err(failed(format!("kill -9 {pid} failed")));
    }
    let until = Instant::now() + Duration::from_secs(10);
    while !gone(pid) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // PID 1 may reap the dead postmaster late; pg_ctl would count a zombie
    // as running, so give it a moment to be reaped.
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
