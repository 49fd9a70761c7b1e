//! Running a plan: steps in order, each with its guard and a deadline, each
//! announced in the journal (fsynced) before it runs and recorded after.
//! Chooses no steps and prints nothing: progress goes to a callback.

use host::{Host, HostError, Run};
use journal::{Event, Home, HomeError, Journal, Secrets};
use model::Inventory;
use pg::{PgError, Target};
use plan::{Action, Plan, Step};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error("{0}")]
    Check(String),
}

/// How to reach one node.
#[derive(Debug, Clone)]
pub struct NodeRt {
    pub host: Host,
    /// The admin connection to the node.
    pub target: Target,
}

pub struct Runtime<'a> {
    pub home: &'a Home,
    /// The desired inventory; steps add to its `state` (directories created)
    /// and SaveInventory writes it.
    pub inventory: Inventory,
    pub nodes: BTreeMap<String, NodeRt>,
    pub secrets: Secrets,
    pub journal: Journal,
    /// Deadline of one remote call (SQL, file operation, probe).
    pub call_deadline: Duration,
    /// Deadline of pg_ctl waits and initdb.
    pub long_deadline: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done,
    Skipped(String),
    Failed(String),
    /// Not run because an earlier step failed.
    NotRun,
}

#[derive(Debug, Clone)]
pub struct StepResult {
    pub id: String,
    pub node: String,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub results: Vec<StepResult>,
    pub elapsed: Duration,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.results.iter().all(|r| matches!(r.outcome, Outcome::Done | Outcome::Skipped(_)))
    }
}

/// What the caller is told as steps run.
pub enum Progress<'a> {
    Started { index: usize, total: usize, step: &'a Step },
    Finished { index: usize, total: usize, step: &'a Step, result: &'a StepResult },
}

/// Run `plan`. After a failed step: with `keep_going`, other nodes' steps
/// still run (the failed node's later steps and node-less steps do not);
/// without, nothing more runs. Re-running the command re-plans from what is
/// left, so stopping early is always safe.
pub async fn apply(plan: &Plan, rt: &mut Runtime<'_>, args: &[String], on: &mut dyn FnMut(Progress)) -> Report {
    let t0 = Instant::now();
    let total = plan.steps.len();
    let _ = rt.journal.record(&Event::Request { operation: &plan.operation, args, steps: total });
    let mut results = Vec::new();
    let mut failed_nodes: Vec<String> = Vec::new();
    let mut any_failed = false;
    for (i, step) in plan.steps.iter().enumerate() {
        let blocked = (any_failed && (!plan.keep_going || step.node.is_empty())) || failed_nodes.contains(&step.node);
        if blocked {
            results.push(StepResult {
                id: step.id.clone(),
                node: step.node.clone(),
                outcome: Outcome::NotRun,
                elapsed: Duration::ZERO,
            });
            continue;
        }
        on(Progress::Started { index: i, total, step });
        let _ = rt.journal.record(&Event::Started { step: &step.id, node: &step.node });
        let s0 = Instant::now();
        let res = run_step(step, rt).await;
        let elapsed = s0.elapsed();
        let ms = elapsed.as_millis();
        let outcome = match res {
            Ok(None) => {
                let _ = rt.journal.record(&Event::Succeeded { step: &step.id, node: &step.node, ms, output: "" });
                Outcome::Done
            }
            Ok(Some(why)) => {
                let _ = rt.journal.record(&Event::Skipped { step: &step.id, node: &step.node, why: &why });
                Outcome::Skipped(why)
            }
            Err(e) => {
                let msg = format!("{}: {e}", step.id);
                let _ = rt.journal.record(&Event::Failed { step: &step.id, node: &step.node, ms, error: &msg });
                any_failed = true;
                if !step.node.is_empty() {
                    failed_nodes.push(step.node.clone());
                }
                Outcome::Failed(msg)
            }
        };
        let r = StepResult { id: step.id.clone(), node: step.node.clone(), outcome, elapsed };
        on(Progress::Finished { index: i, total, step, result: &r });
        results.push(r);
        failpoint(&step.id);
    }
    let report = Report { results, elapsed: t0.elapsed() };
    let _ = rt.journal.record(&Event::Finished {
        operation: &plan.operation,
        ok: report.ok(),
        ms: report.elapsed.as_millis(),
    });
    report
}

/// Tests only: die like `kill -9` right after the named step, to prove a
/// re-run converges from every step boundary.
#[cfg(feature = "testing")]
fn failpoint(id: &str) {
    if std::env::var("PGSCALE_FAILPOINT").is_ok_and(|f| f == id) {
        eprintln!("failpoint: killed after {id}");
        let _ = nix_kill_self();
    }
}

#[cfg(feature = "testing")]
fn nix_kill_self() -> std::io::Result<()> {
    // SIGKILL: no destructors, no flush, no unlock: the closest to a crash.
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    unsafe {
        kill(std::process::id() as i32, 9);
    }
    Ok(())
}

#[cfg(not(feature = "testing"))]
fn failpoint(_id: &str) {}

fn node<'r>(rt: &'r Runtime<'_>, name: &str) -> Result<&'r NodeRt, ExecError> {
    rt.nodes.get(name).ok_or_else(|| ExecError::Check(format!("node {name} has no connection (bug)")))
}

/// pg_ctl status: 0 running, 3 not running, 4 no data directory.
async fn server_running(h: &Host, bin_dir: &Path, data_dir: &Path, deadline: Duration) -> Result<bool, ExecError> {
    let argv = plan::argv::pg_ctl_status(bin_dir, data_dir);
    Ok(h.run(&Run::new(&argv, deadline)).await?.ok())
}

fn bin_dir_of(argv: &[String]) -> &Path {
    Path::new(argv.first().map(String::as_str).unwrap_or("")).parent().unwrap_or(Path::new("/"))
}

async fn sql(rt: &Runtime<'_>, node_name: &str, text: &str) -> Result<(), ExecError> {
    let n = node(rt, node_name)?;
    let c = pg::connect(&n.target, rt.call_deadline).await?;
    match tokio::time::timeout(rt.call_deadline, c.batch_execute(text)).await {
        Err(_) => {
            Err(PgError::Timeout { what: "run SQL".into(), addr: n.target.addr(), deadline: rt.call_deadline }.into())
        }
        Ok(Err(e)) => Err(ExecError::Check(format!(
            "run SQL on {}: {}",
            n.target.addr(),
            e.as_db_error().map(|d| format!("{} (SQLSTATE {})", d.message(), d.code().code())).unwrap_or(e.to_string())
        ))),
        Ok(Ok(())) => Ok(()),
    }
}

/// Wait until the node accepts an admin connection, up to `deadline`.
async fn wait_connectable(rt: &Runtime<'_>, node_name: &str, deadline: Duration) -> Result<(), ExecError> {
    let n = node(rt, node_name)?;
    let until = Instant::now() + deadline;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match pg::connect(&n.target, left.min(rt.call_deadline).max(Duration::from_millis(100))).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= until => return Err(e.into()),
            // 57P03: the database system is starting up
            Err(e) if e.sqlstate().is_some_and(|c| c != "57P03") => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn remember_dir(inv: &mut Inventory, node_name: &str, path: &Path, created: bool) {
    if let Some(n) = inv.node_mut(node_name) {
        let p = path.to_path_buf();
        if n.state.created_dirs.contains(&p) || n.state.adopted_dirs.contains(&p) {
            return;
        }
        if created {
            n.state.created_dirs.push(p);
        } else {
            n.state.adopted_dirs.push(p);
        }
    }
}

/// Ok(None): done; Ok(Some(why)): the guard found it done already.
async fn run_step(step: &Step, rt: &mut Runtime<'_>) -> Result<Option<String>, ExecError> {
    let d = rt.call_deadline;
    let long = rt.long_deadline;
    match &step.action {
        Action::SaveInventory { phase } => {
            rt.inventory.state.phase = *phase;
            rt.home.save(&rt.inventory)?;
            Ok(None)
        }
        Action::CreateDir { path, adopt: _ } => {
            let h = node(rt, &step.node)?.host.clone();
            let created = h.make_dir(path, d).await?;
            if !h.user_can_use_dir(path, d).await? {
                return Err(ExecError::Check(format!(
                    "the OS user cannot use {} (a parent directory is not traversable?): make its parents reachable (e.g. chmod o+x) or choose another path",
                    path.display()
                )));
            }
            // Record before anything fills it: a re-run or destroy must know
            // this directory is ours.
            remember_dir(&mut rt.inventory, &step.node, path, created);
            rt.home.save(&rt.inventory)?;
            Ok(if created { None } else { Some("exists (empty); mode and owner set".into()) })
        }
        Action::InitDb { data_dir, pwfile, argv } => {
            let h = node(rt, &step.node)?.host.clone();
            if h.file_exists(&data_dir.join("PG_VERSION"), d).await? {
                return Ok(Some("PG_VERSION exists: already initialised".into()));
            }
            let admin = rt.inventory.postgres.admin_user.clone();
            let pw = rt
                .secrets
                .password(&admin)
                .ok_or_else(|| ExecError::Check(format!("no password for {admin} in the secret file")))?;
            h.write_file(pwfile, format!("{pw}\n").as_bytes(), 0o600, d).await?;
            let res = h.run_ok(&Run::new(argv, long)).await;
            // Remove the password file whatever happened.
            let _ = h.run(&Run::new(&["rm".into(), "-f".into(), "--".into(), pwfile.display().to_string()], d)).await;
            res?;
            Ok(None)
        }
        Action::WriteFile { path, mode, contents } => {
            let h = node(rt, &step.node)?.host.clone();
            h.write_file(path, contents.as_bytes(), *mode, d).await?;
            Ok(None)
        }
        Action::Start { data_dir, argv } => {
            let h = node(rt, &step.node)?.host.clone();
            if server_running(&h, bin_dir_of(argv), data_dir, d).await? {
                wait_connectable(rt, &step.node, long).await?;
                return Ok(Some("already running".into()));
            }
            h.run_ok(&Run::new(argv, long + Duration::from_secs(5))).await?;
            wait_connectable(rt, &step.node, long).await?;
            Ok(None)
        }
        Action::Stop { data_dir, argv } => {
            let h = node(rt, &step.node)?.host.clone();
            if !server_running(&h, bin_dir_of(argv), data_dir, d).await? {
                return Ok(Some("not running".into()));
            }
            h.run_ok(&Run::new(argv, long + Duration::from_secs(5))).await?;
            Ok(None)
        }
        Action::Restart { data_dir: _, argv } => {
            let h = node(rt, &step.node)?.host.clone();
            h.run_ok(&Run::new(argv, long * 2 + Duration::from_secs(5))).await?;
            wait_connectable(rt, &step.node, long).await?;
            Ok(None)
        }
        Action::Sql { sql: text } => sql(rt, &step.node, text).await.map(|_| None),
        Action::Reload => sql(rt, &step.node, plan::sql::RELOAD).await.map(|_| None),
        Action::EnsureRole { role, replication } => {
            let pw = rt
                .secrets
                .password(role)
                .ok_or_else(|| ExecError::Check(format!("no password for {role} in the secret file")))?;
            let text = plan::sql::ensure_role(role, *replication, &pg::scram_verifier(pw));
            sql(rt, &step.node, &text).await.map(|_| None)
        }
        Action::CheckHba => {
            let n = node(rt, &step.node)?;
            let c = pg::connect(&n.target, d).await?;
            let rows = tokio::time::timeout(d, c.query(plan::sql::HBA_ERRORS, &[]))
                .await
                .map_err(|_| PgError::Timeout {
                    what: "read pg_hba_file_rules".into(),
                    addr: n.target.addr(),
                    deadline: d,
                })?
                .map_err(|e| ExecError::Check(format!("read pg_hba_file_rules: {e}")))?;
            if rows.is_empty() {
                Ok(None)
            } else {
                let errs: Vec<String> =
                    rows.iter().map(|r| format!("line {}: {}", r.get::<_, i32>(0), r.get::<_, String>(1))).collect();
                Err(ExecError::Check(format!(
                    "the server rejects pg_hba.conf ({}); it was NOT reloaded: fix `postgres.hba` and run apply-config again",
                    errs.join("; ")
                )))
            }
        }
        Action::RemoveDir { path } => {
            let h = node(rt, &step.node)?.host.clone();
            Ok(if h.remove_dir(path, long).await? { None } else { Some("already gone".into()) })
        }
        Action::EmptyDir { path } => {
            let h = node(rt, &step.node)?.host.clone();
            h.empty_dir(path, long).await?;
            Ok(None)
        }
        Action::ForgetCluster => {
            rt.home.forget(&rt.inventory.name)?;
            Ok(None)
        }
    }
}
