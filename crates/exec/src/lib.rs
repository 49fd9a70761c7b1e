//! Running a plan: steps in order, each with its guard and a deadline, each
//! announced in the journal (fsynced) before it runs and recorded after.
//! Chooses no steps and prints nothing: progress goes to a callback.

use futures::StreamExt;
use host::{Host, HostError, Run};
use model::Inventory;
use pg::{PgError, Target};
use plan::{Action, Plan, Step};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use store::{Event, Secrets, Store, StoreError};

/// Begins the line a failed pg_rewind adds to its error (see
/// [`rewind_failed`]).
pub const REWIND_FAILED: &str = "pg_rewind could not bring";

/// Whether an error (its text, through any layer) says pg_rewind failed:
/// a fresh copy is then the way back.
pub fn rewind_failed(message: &str) -> bool {
    message.contains(REWIND_FAILED)
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error(transparent)]
    Store(#[from] StoreError),
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
    /// Where the inventory and the operation log are written.
    pub store: &'a dyn Store,
    /// The desired inventory; steps add to its `state` (directories created,
    /// members joined) and SaveInventory writes it. Behind a mutex because
    /// lanes run concurrently; never held across an await.
    pub inventory: Mutex<Inventory>,
    pub nodes: BTreeMap<String, NodeRt>,
    pub secrets: Secrets,
    /// Deadline of one remote call (SQL, file operation, probe).
    pub call_deadline: Duration,
    /// Deadline of pg_ctl waits and initdb.
    pub long_deadline: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done,
    /// A best-effort step failed: reported, and the plan went on.
    Warned(String),
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
    /// A step failed because the store refused (the lock was lost, another
    /// admin wrote the inventory, etcd lost its quorum): re-run later.
    pub refused: bool,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.results.iter().all(|r| matches!(r.outcome, Outcome::Done | Outcome::Skipped(_) | Outcome::Warned(_)))
    }
}

/// What the caller is told as steps run.
pub enum Progress<'a> {
    Started {
        index: usize,
        total: usize,
        step: &'a Step,
    },
    Finished {
        index: usize,
        total: usize,
        step: &'a Step,
        result: &'a StepResult,
    },
    /// A base copy's progress, as the upstream reports it.
    Bytes {
        step: &'a Step,
        done: u64,
        total: u64,
    },
}

/// Run `plan`. Steps of one lane run in order; with `plan.parallel > 1` the
/// lanes of a wave run at the same time (at most `parallel`), waves one
/// after the other. After a failed step: its lane stops; without
/// `keep_going` nothing else starts either; lane-less steps (the record)
/// never run after a failure. Re-running the command re-plans from what is
/// left, so stopping early is always safe.
/// The returned future is `Send`: an agent can spawn it beside its HTTP server.
pub async fn apply(plan: &Plan, rt: &Runtime<'_>, args: &[String], on: &mut (dyn FnMut(Progress) + Send)) -> Report {
    let t0 = Instant::now();
    let total = plan.steps.len();
    rt.record(&Event::Request { operation: &plan.operation, args, steps: total });
    let ex = Exec { plan, rt, on: Mutex::new(on), st: Mutex::new(ExecState::default()), total };
    if plan.parallel <= 1 {
        for i in 0..total {
            ex.run_one(i).await;
        }
    } else {
        let mut waves: Vec<u32> = plan.steps.iter().map(|s| s.wave).collect();
        waves.dedup();
        let mut seen = BTreeSet::new();
        for w in waves.into_iter().filter(|w| seen.insert(*w)) {
            let idx: Vec<usize> = (0..total).filter(|&i| plan.steps[i].wave == w).collect();
            for &i in idx.iter().filter(|&&i| plan.steps[i].lane.is_empty()) {
                ex.run_one(i).await;
            }
            let mut lanes: Vec<(String, Vec<usize>)> = Vec::new();
            for &i in idx.iter().filter(|&&i| !plan.steps[i].lane.is_empty()) {
                let l = &plan.steps[i].lane;
                match lanes.iter_mut().find(|(n, _)| n == l) {
                    Some((_, v)) => v.push(i),
                    None => lanes.push((l.clone(), vec![i])),
                }
            }
            let ex = &ex;
            futures::stream::iter(lanes)
                .map(|(_, v)| async move {
                    for i in v {
                        ex.run_one(i).await;
                    }
                })
                .buffer_unordered(plan.parallel)
                .collect::<Vec<()>>()
                .await;
        }
    }
    let st = ex.st.into_inner().unwrap_or_else(|p| p.into_inner());
    let refused = st.refused;
    let results = st.results.into_iter().enumerate().map(|(i, r)| {
        r.unwrap_or(StepResult {
            id: plan.steps[i].id.clone(),
            node: plan.steps[i].node.clone(),
            outcome: Outcome::NotRun,
            elapsed: Duration::ZERO,
        })
    });
    let report = Report { results: results.collect(), elapsed: t0.elapsed(), refused };
    rt.record(&Event::Finished { operation: &plan.operation, ok: report.ok(), ms: report.elapsed.as_millis() });
    report
}

#[derive(Default)]
struct ExecState {
    failed_lanes: BTreeSet<String>,
    any_failed: bool,
    refused: bool,
    results: Vec<Option<StepResult>>,
}

struct Exec<'p, 'r, 'h, 'o> {
    plan: &'p Plan,
    rt: &'r Runtime<'h>,
    on: Mutex<&'o mut (dyn FnMut(Progress) + Send)>,
    st: Mutex<ExecState>,
    total: usize,
}

impl Exec<'_, '_, '_, '_> {
    fn emit(&self, p: Progress) {
        let mut on = self.on.lock().unwrap_or_else(|e| e.into_inner());
        (*on)(p);
    }

    fn st(&self) -> std::sync::MutexGuard<'_, ExecState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn run_one(&self, i: usize) {
        let step = &self.plan.steps[i];
        {
            let st = self.st();
            let blocked = (st.any_failed && (!self.plan.keep_going || step.lane.is_empty()))
                || st.failed_lanes.contains(&step.lane);
            if blocked {
                return;
            }
        }
        self.emit(Progress::Started { index: i, total: self.total, step });
        self.rt.record(&Event::Started { step: &step.id, node: &step.node });
        let s0 = Instant::now();
        let res = match self.rt.lock_lost() {
            Some(e) => Err(ExecError::Store(e)),
            None => run_step(step, self.rt, &|done, total| self.emit(Progress::Bytes { step, done, total })).await,
        };
        let elapsed = s0.elapsed();
        let ms = elapsed.as_millis();
        let outcome = match res {
            Ok(None) => {
                self.rt.record(&Event::Succeeded { step: &step.id, node: &step.node, ms, output: "" });
                Outcome::Done
            }
            Ok(Some(why)) => {
                self.rt.record(&Event::Skipped { step: &step.id, node: &step.node, why: &why });
                Outcome::Skipped(why)
            }
            Err(e) if step.best_effort => {
                let msg = format!("{}: {e}", step.id);
                self.rt.record(&Event::Failed { step: &step.id, node: &step.node, ms, error: &msg });
                Outcome::Warned(msg)
            }
            Err(e) => {
                let msg = format!("{}: {e}", step.id);
                self.rt.record(&Event::Failed { step: &step.id, node: &step.node, ms, error: &msg });
                let mut st = self.st();
                st.refused |= matches!(&e, ExecError::Store(s) if s.is_refusal());
                st.any_failed = true;
                st.failed_lanes.insert(step.lane.clone());
                Outcome::Failed(msg)
            }
        };
        let r = StepResult { id: step.id.clone(), node: step.node.clone(), outcome, elapsed };
        self.emit(Progress::Finished { index: i, total: self.total, step, result: &r });
        {
            let mut st = self.st();
            if st.results.len() < self.total {
                st.results.resize(self.total, None);
            }
            st.results[i] = Some(r);
        }
        failpoint(&step.id);
    }
}

impl Runtime<'_> {
    /// Journal writes are best effort: losing the log must not stop an
    /// operation half-way (the databases are the truth).
    fn record(&self, e: &Event) {
        let name = self.inv(|i| i.name.clone());
        self.store.record(&name, e);
    }

    fn inv<T>(&self, f: impl FnOnce(&mut Inventory) -> T) -> T {
        let mut g = self.inventory.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    async fn save(&self) -> Result<(), ExecError> {
        let inv = self.inv(|i| i.clone());
        self.store.save(&inv).await?;
        Ok(())
    }

    /// The store's word that this run may still hold the cluster's lock.
    fn lock_lost(&self) -> Option<StoreError> {
        let name = self.inv(|i| i.name.clone());
        let why = self.store.lock_lost(&name)?;
        Some(StoreError::LockLost { cluster: name, store: self.store.describe(), why })
    }

    /// The inventory as the run left it.
    pub fn inventory(&self) -> Inventory {
        self.inv(|i| i.clone())
    }
}

/// Tests only: die like `kill -9` right after the named step, to prove a
/// re-run converges from every step boundary.
#[cfg(feature = "testing")]
pub fn failpoint(id: &str) {
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
pub fn failpoint(_id: &str) {}

fn node<'r>(rt: &'r Runtime<'_>, name: &str) -> Result<&'r NodeRt, ExecError> {
    rt.nodes
        .get(name)
        .ok_or_else(|| ExecError::Check(format!("{name}: its host could not be reached; nothing was run there")))
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
    Ok(pg::execute(&n.target, text, rt.call_deadline).await?)
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

/// The last lines of the newest server log of a data directory, for an
/// error message that says why the server would not start.
async fn server_log_tail(h: &Host, data_dir: &Path, d: Duration) -> String {
    let script = r#"f=$(ls -t "$1"/log/* 2>/dev/null | head -n 1); [ -n "$f" ] && tail -n 8 "$f""#;
    let argv = vec!["sh".to_string(), "-c".into(), script.into(), "sh".into(), data_dir.display().to_string()];
    match h.run(&Run::new(&argv, d)).await {
        Ok(o) if !o.stdout.trim().is_empty() => {
            format!("server log ({}/log):\n{}", data_dir.display(), o.stdout.trim_end())
        }
        _ => format!("see the server log in {}/log", data_dir.display()),
    }
}

/// Poll the upstream for a running base copy's progress until dropped.
async fn watch_copy(rt: &Runtime<'_>, upstream: &str, node_name: &str, report: &(dyn Fn(u64, u64) + Sync)) {
    // Without a connection there is no progress to show, but the watcher
    // must not end: the copy's select! arm would take its end for the copy's.
    let Ok(n) = node(rt, upstream) else { return std::future::pending().await };
    let Ok(c) = pg::connect(&n.target, rt.call_deadline).await else { return std::future::pending().await };
    let app = model::copy_app_name(node_name);
    let addr = n.target.addr();
    loop {
        if let Ok(Some((done, total))) = pg::copy_progress(&c, &addr, &app, rt.call_deadline).await {
            report(done, total);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// On the upstream: wait until `standby` streams and has flushed the WAL
/// the upstream had when streaming began. Flush, not replay: a standby
/// reports its replay position only every wal_receiver_status_interval.
async fn wait_streaming(rt: &Runtime<'_>, upstream: &str, standby: &str, timeout: Duration) -> Result<(), ExecError> {
    let n = node(rt, upstream)?;
    let until = Instant::now() + timeout;
    let mut target: Option<model::PgLsn> = None;
    let mut last = String::from("not connected");
    let mut client = None;
    while Instant::now() < until {
        if client.is_none() {
            client = pg::connect(&n.target, rt.call_deadline).await.ok();
        }
        if let Some(c) = &client {
            match pg::streaming(c, &n.target.addr(), standby, rt.call_deadline).await {
                Ok(pg::Streaming { state, flush, head }) => {
                    if state.as_deref() == Some("streaming") {
                        let t = *target.get_or_insert(head.unwrap_or(model::PgLsn::from(0)));
                        if flush.is_some_and(|f| f >= t) {
                            return Ok(());
                        }
                        last =
                            format!("streaming, flushed {} of {t}", flush.map(|f| f.to_string()).unwrap_or("-".into()));
                    } else {
                        last = state.unwrap_or_else(|| "not connected".into());
                    }
                }
                _ => client = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(ExecError::Check(format!(
        "{standby} did not stream from {upstream} and catch up within {}s (last seen: {last}); its server log is in its data directory's log/; re-run to keep waiting",
        timeout.as_secs()
    )))
}

/// Ok(None): done; Ok(Some(why)): the guard found it done already.
async fn run_step(
    step: &Step,
    rt: &Runtime<'_>,
    bytes: &(dyn Fn(u64, u64) + Sync),
) -> Result<Option<String>, ExecError> {
    let d = rt.call_deadline;
    let long = rt.long_deadline;
    match &step.action {
        Action::SaveInventory { phase } => {
            rt.inv(|i| i.state.phase = *phase);
            rt.save().await?;
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
            rt.inv(|i| remember_dir(i, &step.node, path, created));
            rt.save().await?;
            Ok(if created { None } else { Some("exists (empty); mode and owner set".into()) })
        }
        Action::InitDb { data_dir, pwfile, argv } => {
            let h = node(rt, &step.node)?.host.clone();
            if h.file_exists(&data_dir.join("PG_VERSION"), d).await? {
                return Ok(Some("PG_VERSION exists: already initialised".into()));
            }
            let admin = rt.inv(|i| i.postgres.admin_user.clone());
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
        Action::WritePassfile { path, user } => {
            let h = node(rt, &step.node)?.host.clone();
            let pw = rt
                .secrets
                .password(user)
                .ok_or_else(|| ExecError::Check(format!("no password for {user} in the secret file")))?;
            h.write_file(path, journal::pgpass_line(user, pw).as_bytes(), 0o600, d).await?;
            Ok(None)
        }
        Action::BaseBackup { data_dir, passfile, argv } => {
            let h = node(rt, &step.node)?.host.clone();
            if h.file_exists(&data_dir.join("backup_manifest"), d).await? {
                return Ok(Some("backup_manifest exists: the copy is complete".into()));
            }
            let env = [
                ("PGPASSFILE".to_string(), passfile.display().to_string()),
                ("PGAPPNAME".to_string(), model::copy_app_name(&step.lane)),
            ];
            let mut r = Run::new(argv, Duration::from_secs(24 * 3600));
            r.env = &env;
            r.die_with_pgscale = true;
            // The upstream is the node pg_basebackup connects to.
            let upstream = rt.inv(|i| i.upstream_of(&step.lane).map(|u| u.name.clone()));
            let copy = h.run_ok(&r);
            let res = match upstream {
                Some(u) => {
                    tokio::select! {
                        res = copy => res,
                        _ = watch_copy(rt, &u, &step.lane, bytes) => unreachable!("the watcher never returns"),
                    }
                }
                None => copy.await,
            };
            res?;
            Ok(None)
        }
        Action::Start { data_dir, argv } => {
            let h = node(rt, &step.node)?.host.clone();
            if server_running(&h, bin_dir_of(argv), data_dir, d).await? {
                wait_connectable(rt, &step.node, long).await?;
                return Ok(Some("already running".into()));
            }
            if let Err(e) = h.run_ok(&Run::new(argv, long + Duration::from_secs(5))).await {
                return Err(ExecError::Check(format!("{e}\n{}", server_log_tail(&h, data_dir, d).await)));
            }
            wait_connectable(rt, &step.node, long).await?;
            Ok(None)
        }
        Action::Stop { data_dir, argv, deadline_secs } => {
            let h = node(rt, &step.node)?.host.clone();
            let dl = Duration::from_secs(*deadline_secs);
            if !server_running(&h, bin_dir_of(argv), data_dir, d.min(dl)).await? {
                return Ok(Some("not running".into()));
            }
            h.run_ok(&Run::new(argv, dl)).await?;
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
            let errs = pg::hba_errors(&n.target, d).await?;
            if errs.is_empty() {
                Ok(None)
            } else {
                Err(ExecError::Check(format!(
                    "the server rejects pg_hba.conf ({}); it was NOT reloaded: fix `postgres.hba` and run apply-config again",
                    errs.join("; ")
                )))
            }
        }
        Action::WaitStreaming { standby, timeout_secs } => {
            wait_streaming(rt, &step.node, standby, Duration::from_secs(*timeout_secs)).await.map(|_| None)
        }
        Action::Promote { timeout_secs } => {
            let n = node(rt, &step.node)?;
            if pg::promote(&n.target, *timeout_secs, d).await? {
                return Err(ExecError::Check(format!(
                    "{}: promotion did not finish within {timeout_secs}s; see its server log",
                    step.node
                )));
            }
            Ok(None)
        }
        Action::WaitReplay { argv, standby, timeout_secs } => {
            let h = node(rt, &step.node)?.host.clone();
            let env = [("LC_ALL".to_string(), "C".to_string())];
            let mut r = Run::new(argv, d);
            r.env = &env;
            let cd = pg::controldata::parse(&h.run_ok(&r).await?.stdout);
            if cd.state != "shut down" {
                return Err(ExecError::Check(format!(
                    "{} did not shut down cleanly (pg_controldata: {}): its last WAL may not have reached {standby}; use failover + rejoin",
                    step.node, cd.state
                )));
            }
            let ckpt =
                cd.checkpoint.ok_or_else(|| ExecError::Check("pg_controldata shows no checkpoint location".into()))?;
            let s = node(rt, standby)?;
            let until = Instant::now() + Duration::from_secs(*timeout_secs);
            let c = pg::connect(&s.target, d).await?;
            loop {
                let lsn = pg::received_lsn(&c, &s.target.addr(), d).await?;
                // Past the checkpoint record's start = it has the shutdown
                // checkpoint, the last record the old primary wrote.
                if lsn.is_some_and(|l| l > ckpt) {
                    return Ok(None);
                }
                if Instant::now() > until {
                    return Err(ExecError::Check(format!(
                        "{standby} did not receive {}'s shutdown checkpoint {ckpt} within {timeout_secs}s",
                        step.node
                    )));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Action::Rewind { data_dir: _, controldata, argv } => {
            let h = node(rt, &step.node)?.host.clone();
            let env = [("LC_ALL".to_string(), "C".to_string())];
            let mut r = Run::new(controldata, d);
            r.env = &env;
            let cd = pg::controldata::parse(&h.run_ok(&r).await?.stdout);
            if cd.state == "in archive recovery" {
                return Ok(Some("already rewound, not started since".into()));
            }
            h.run_ok(&Run::new(argv, long * 10)).await.map_err(|e| {
                ExecError::Check(format!(
                    "{e}\n{REWIND_FAILED} {} back; `pgscale rejoin --reclone` makes a fresh copy instead",
                    step.node
                ))
            })?;
            Ok(None)
        }
        Action::EndCopy { node: copying } => {
            let n = node(rt, &step.node)?;
            let app = model::copy_app_name(copying);
            match pg::end_copy(&n.target, &model::slot_name(copying), &app, d).await? {
                0 => Ok(Some("no copy running".into())),
                k => {
                    tracing::info!("{}: ended {k} backend(s) of a copy of {copying} still running", step.node);
                    Ok(None)
                }
            }
        }
        Action::ClearIntent => {
            rt.inv(|i| i.state.previous_primary = None);
            rt.save().await?;
            Ok(None)
        }
        Action::MarkRejoined { node: name } => {
            rt.inv(|i| {
                if let Some(n) = i.node_mut(name) {
                    n.state.needs_rejoin = false;
                }
            });
            rt.save().await?;
            Ok(None)
        }
        Action::MarkMember { node: name } => {
            let changed = rt.inv(|i| match i.node_mut(name) {
                Some(n) if n.state.joining => {
                    n.state.joining = false;
                    true
                }
                _ => false,
            });
            if !changed {
                return Ok(Some("already a member".into()));
            }
            rt.save().await?;
            Ok(None)
        }
        Action::ForgetNode { node: name } => {
            let before = rt.inv(|i| {
                let b = i.nodes.len();
                i.nodes.retain(|n| &n.name != name);
                if b != i.nodes.len() {
                    i.state.removed.retain(|r| r != name);
                    i.state.removed.push(name.clone());
                    let extra = i.state.removed.len().saturating_sub(20);
                    i.state.removed.drain(..extra);
                }
                b != i.nodes.len()
            });
            if !before {
                return Ok(Some("not in the inventory".into()));
            }
            rt.save().await?;
            Ok(None)
        }
        Action::RemoveDir { path } => {
            let h = node(rt, &step.node)?.host.clone();
            Ok(if h.remove_dir(path, long).await? { None } else { Some("already gone".into()) })
        }
        Action::EmptyDir { path } => {
            let h = node(rt, &step.node)?.host.clone();
            // A copy whose upstream end was just ended exits at once; never
            // empty a directory it still writes into.
            h.wait_no_copy_into(path, Duration::from_secs(15)).await?;
            h.empty_dir(path, long).await?;
            Ok(None)
        }
        Action::ForgetCluster => {
            let name = rt.inv(|i| i.name.clone());
            rt.store.forget(&name).await?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent spawns `apply` beside its HTTP server: the future must be
    /// `Send`. `tokio::spawn` refuses to compile otherwise; the run proves
    /// the step ran and was journaled.
    #[tokio::test]
    async fn apply_runs_inside_tokio_spawn() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let handle = tokio::spawn(async move {
            let home = store::HomeStore::new(journal::Home::new(root));
            let inv: Inventory = serde_json::from_value(serde_json::json!({
                "name": "sendable",
                "nodes": [{"name": "pg1", "host": "127.0.0.1", "port": 5432, "data_dir": "/nonexistent/pg1"}]
            }))
            .unwrap();
            let rt = Runtime {
                store: &home,
                inventory: Mutex::new(inv.clone()),
                nodes: BTreeMap::new(),
                secrets: home.secrets("sendable", &["postgres"], true).await.unwrap(),
                call_deadline: Duration::from_secs(1),
                long_deadline: Duration::from_secs(1),
            };
            let mut plan = Plan::new("sendable", "test");
            plan.push("", "record", Action::SaveInventory { phase: model::Phase::Ready }, "write it");
            let mut seen = 0;
            let report = apply(&plan, &rt, &[], &mut |p| {
                if matches!(p, Progress::Finished { .. }) {
                    seen += 1
                }
            })
            .await;
            (report.ok(), seen, home.load("sendable").await.is_ok())
        });
        assert_eq!(handle.await.unwrap(), (true, 1, true));
    }
}
