//! The pre-check of the hosts (before `init`, `scale-out` and `rejoin`
//! change anything, and alone as `pgscale host check`), and `--install`,
//! which makes a host ready. Every host is probed at the same time, each
//! with its deadline; the findings come all at once.

use crate::error::{failed, invalid, refused, OpError};
use crate::{resolve, Env};
use host::{Host, LocalHost, SshHost, SshTarget};
use model::{Inventory, NodeSpec};
use plan::hostcheck::{self as hc, Finding, HostInput, HostProbe, InstallStep, NodeInput, Severity};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What to check.
pub struct Scope {
    /// The nodes whose hosts are checked (with the primary's, for its
    /// version); None: every node.
    pub only: Option<Vec<String>>,
    /// Nodes about to be created: their port must be free, and a standby's
    /// filesystem must have room for a copy of the primary.
    pub new_nodes: Vec<String>,
    /// The primary's databases in bytes (what a copy needs), when known.
    pub copy_bytes: Option<u64>,
    /// Make the hosts ready (install the server package, create the OS
    /// user and the data directories' parents).
    pub install: bool,
    /// The major version to install when no host has one yet.
    pub pg_major: Option<u32>,
    pub dry_run: bool,
    pub timeout: Duration,
}

#[derive(Debug, Default)]
pub struct HostCheck {
    pub findings: Vec<Finding>,
    /// `--install` steps, run (or, with --dry-run, only shown).
    pub install: Vec<InstallStep>,
}

impl HostCheck {
    pub fn has_errors(&self) -> bool {
        hc::has_errors(&self.findings)
    }

    /// The exit-code error for a failed check: unreachable hosts are a
    /// refusal (3), anything else invalid input (2). Nothing was changed.
    pub fn error(&self) -> Option<OpError> {
        if !self.has_errors() {
            return None;
        }
        let errs: Vec<Finding> = self.findings.iter().filter(|f| f.severity == Severity::Error).cloned().collect();
        let msg = format!(
            "the host check failed, nothing changed ({} problem{}):\n{}",
            errs.len(),
            if errs.len() == 1 { "" } else { "s" },
            hc::render(&errs, false).trim_end()
        );
        Some(if errs.iter().all(|f| f.check == "reachable") { refused(msg) } else { invalid(msg) })
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// One host to probe and the nodes on it.
struct Target<'a> {
    host: String,
    ssh: Option<SshTarget>,
    nodes: Vec<&'a NodeSpec>,
}

async fn connect(t: &Target<'_>, deadline: Duration) -> Result<Host, String> {
    match &t.ssh {
        None => LocalHost::invoking().map(Host::Local).map_err(|e| e.to_string()),
        Some(s) => SshHost::connect(s.clone(), deadline).await.map(Host::Ssh).map_err(|e| e.to_string()),
    }
}

async fn probe(h: &Host, os_user: &str, bin_dir: Option<&std::path::Path>, nodes: &[&NodeSpec], d: Duration) -> Probed {
    let dirs: Vec<_> = nodes.iter().map(|n| n.data_dir.clone()).collect();
    let argv = hc::probe_argv(os_user, bin_dir, &dirs);
    let sent = now_ms();
    let out = h.run_login(&host::Run::new(&argv, d)).await;
    let received = now_ms();
    match out {
        Err(e) => (Err(e.to_string()), None),
        Ok(o) if !o.ok() => (Err(format!("the probe failed: {}", host::last_lines(&o.stderr, &o.stdout))), None),
        Ok(o) => match hc::parse_probe(&o.stdout, &dirs) {
            Ok(mut p) => {
                // On this machine pgscale creates directories itself, as
                // root when it runs as root, and hands them to the OS user:
                // their parents need not be the OS user's.
                if matches!(h, Host::Local(_)) && p.is_root {
                    for d in &mut p.dirs {
                        d.writable = Some(true);
                    }
                }
                let c = hc::ClockSample::from_probe(&p, sent, received);
                (Ok(p), c)
            }
            Err(e) => (Err(e), None),
        },
    }
}

type Probed = (Result<HostProbe, String>, Option<hc::ClockSample>);

async fn probe_targets(
    targets: &[Target<'_>],
    hosts: &[Result<Host, String>],
    os_user: &str,
    bin_dir: Option<&std::path::Path>,
    d: Duration,
) -> Vec<Probed> {
    let futs = targets.iter().zip(hosts).map(|(t, h)| async move {
        match h {
            Err(e) => (Err(e.clone()), None),
            Ok(h) => probe(h, os_user, bin_dir, &t.nodes, d).await,
        }
    });
    futures::future::join_all(futs).await
}

/// The major version to install: the primary's, else the one asked for,
/// else the distribution's own.
fn install_major(primary_major: Option<u32>, asked: Option<u32>, p: &HostProbe) -> Result<u32, String> {
    if let Some(m) = primary_major.or(asked) {
        return Ok(m);
    }
    let v = p.os_version.as_str();
    match (p.os_id.as_str(), v) {
        ("debian", "11") => Ok(13),
        ("debian", "12") => Ok(15),
        ("debian", "13") => Ok(17),
        ("ubuntu", "22.04") => Ok(14),
        ("ubuntu", "24.04") => Ok(16),
        _ => Err(format!(
            "no PostgreSQL on the primary's host and none asked for: pass --pg-major N to say which major to install on {} {v}",
            p.os_id
        )),
    }
}

/// Probe every host of `inv` that holds a node, in parallel; with
/// `scope.install`, make the hosts that fail ready, then probe again.
pub async fn check(env: Env<'_>, inv: &Inventory, scope: &Scope) -> Result<HostCheck, OpError> {
    let os_user = resolve::os_user_name(inv);
    let d = scope.timeout;
    let primary = inv.primary().map(|p| p.name.clone()).unwrap_or_default();
    let covered: Vec<&NodeSpec> = inv
        .nodes
        .iter()
        .filter(|n| n.name == primary || scope.only.as_ref().is_none_or(|o| o.contains(&n.name)))
        .collect();
    let locals = futures::future::join_all(covered.iter().map(|n| resolve::is_local(n, d))).await;
    let mut targets: BTreeMap<String, Target> = BTreeMap::new();
    for (n, local) in covered.iter().copied().zip(locals) {
        let ssh = (!local).then(|| resolve::ssh_target(n, &os_user));
        let key = format!("{}|{:?}", n.host, ssh);
        targets.entry(key).or_insert_with(|| Target { host: n.host.clone(), ssh, nodes: vec![] }).nodes.push(n);
    }
    let targets: Vec<Target> = targets.into_values().collect();
    let hosts: Vec<Result<Host, String>> = futures::future::join_all(targets.iter().map(|t| connect(t, d))).await;
    let bin_dir = inv.postgres.bin_dir.as_deref();
    let primary = &primary;
    // A node of an interrupted run (its data directory already pgscale's)
    // may listen already and needs no new room: only fresh nodes count.
    let fresh = |n: &NodeSpec| {
        scope.new_nodes.contains(&n.name)
            && !n.state.created_dirs.contains(&n.data_dir)
            && !n.state.adopted_dirs.contains(&n.data_dir)
    };
    let ports = futures::future::join_all(covered.iter().map(|n| async move {
        (n.name.clone(), fresh(n) && pg::tcp_listening(&n.host, n.port, Duration::from_secs(1).min(d)).await)
    }))
    .await
    .into_iter()
    .collect::<BTreeMap<_, _>>();

    let inputs = |probes: Vec<Probed>| -> Vec<HostInput> {
        targets
            .iter()
            .zip(probes)
            .map(|(t, (probe, clock))| HostInput {
                host: t.host.clone(),
                probe,
                clock,
                nodes: t
                    .nodes
                    .iter()
                    .map(|n| NodeInput {
                        node: n.name.clone(),
                        data_dir: n.data_dir.clone(),
                        port: n.port,
                        port_in_use: ports.get(&n.name).copied().unwrap_or(false),
                        copy_bytes: (n.name != *primary && fresh(n)).then_some(scope.copy_bytes.unwrap_or(0)),
                    })
                    .collect(),
            })
            .collect()
    };
    let primary_major = |ins: &[HostInput]| {
        ins.iter()
            .find(|h| h.nodes.iter().any(|n| n.node == *primary))
            .and_then(|h| h.probe.as_ref().ok())
            .and_then(|p| p.major)
    };
    let ins = inputs(probe_targets(&targets, &hosts, &os_user, bin_dir, d).await);
    let mut out = HostCheck { findings: hc::findings(&ins, &os_user, primary_major(&ins)), install: vec![] };
    if !(scope.install && out.has_errors()) {
        return Ok(out);
    }
    // --install: the steps each failing host needs.
    let major = primary_major(&ins);
    let mut per_host: Vec<(usize, Vec<InstallStep>)> = Vec::new();
    let mut local_done = false;
    for (i, h) in ins.iter().enumerate() {
        let failing = out.findings.iter().any(|f| f.host == h.host && f.severity == Severity::Error);
        let Ok(p) = &h.probe else { continue };
        if !failing {
            continue;
        }
        // Several addresses of this machine (127.0.0.1, .2, ...) are one
        // machine: its packages are installed once, never concurrently.
        if targets[i].ssh.is_none() {
            if local_done {
                continue;
            }
            local_done = true;
        }
        let m = install_major(major, scope.pg_major, p).map_err(invalid)?;
        let steps = hc::install_steps(&h.host, p, m, &os_user).map_err(invalid)?;
        out.install.extend(steps.iter().cloned());
        per_host.push((i, steps));
    }
    if !out.install.is_empty() {
        env.ui.say(&format!("install steps (as root or sudo -n):\n{}", hc::render_steps(&out.install).trim_end()));
    }
    if scope.dry_run || out.install.is_empty() {
        return Ok(out);
    }
    // Package installs take long; a host that stops answering still ends.
    let long = Duration::from_secs(1200);
    let runs = per_host.iter().map(|(i, steps)| {
        let h = hosts[*i].clone();
        async move {
            let h = h.map_err(failed)?;
            for s in steps {
                h.run_login(&host::Run::new(&s.argv, long)).await.and_then(|o| {
                    if o.ok() {
                        Ok(o)
                    } else {
                        Err(host::HostError::Failed {
                            what: format!("{} on {}", s.argv.join(" "), s.host),
                            status: o.status,
                            stderr: host::last_lines(&o.stderr, &o.stdout),
                        })
                    }
                })?;
            }
            Ok::<_, OpError>(())
        }
    });
    for r in futures::future::join_all(runs).await {
        r?;
    }
    env.ui.say("install: done; checking the hosts again");
    let ins = inputs(probe_targets(&targets, &hosts, &os_user, bin_dir, d).await);
    let installed = std::mem::take(&mut out.install);
    Ok(HostCheck { findings: hc::findings(&ins, &os_user, primary_major(&ins)), install: installed })
}

/// The pre-check before a change: warnings are shown, errors stop the
/// operation before anything changed. Ok(Some(why)): a dry run with
/// `--install` steps to show (printed above): the plan itself can only be
/// made once the hosts are ready.
pub async fn precheck(env: Env<'_>, inv: &Inventory, scope: &Scope) -> Result<Option<String>, OpError> {
    let c = check(env, inv, scope).await?;
    for f in c.findings.iter().filter(|f| f.severity == Severity::Warning) {
        env.ui.say(&format!("warning: {} ({}): {}", f.host, f.node, f.message));
    }
    match c.error() {
        Some(e) if scope.dry_run && !c.install.is_empty() => Ok(Some(format!(
            "dry run: the install steps above would run first (nothing was run); the check found:\n{}\n\
             Run without --dry-run to make the hosts ready; a dry run after that shows the plan.",
            e.message
        ))),
        Some(e) => Err(e),
        None => Ok(None),
    }
}

/// The demo's own host: make sure this machine has the PostgreSQL server,
/// installing it (saying what first) when it is missing.
pub async fn ensure_local_server(env: Env<'_>) -> Result<(), OpError> {
    let h = Host::Local(LocalHost::invoking()?);
    let os_user = host::OsUser::default_name();
    let d = Duration::from_secs(10);
    let (p, _) = probe(&h, &os_user, None, &[], d).await;
    let p = p.map_err(failed)?;
    if p.missing_binaries().is_empty() && p.os_user_exists {
        return Ok(());
    }
    let major = install_major(None, None, &p).map_err(invalid)?;
    let steps = hc::install_steps("this machine", &p, major, &os_user).map_err(|e| {
        invalid(format!("the PostgreSQL server is not installed on this machine and pgscale cannot install it: {e}"))
    })?;
    env.ui.say(&format!(
        "The PostgreSQL server (initdb, pg_ctl, ...) is not on this machine: installing PostgreSQL {major} first:"
    ));
    env.ui.say(hc::render_steps(&steps).trim_end());
    for s in &steps {
        let o = h.run_login(&host::Run::new(&s.argv, Duration::from_secs(1200))).await?;
        if !o.ok() {
            return Err(failed(format!(
                "install step `{}` failed: {}",
                s.argv.join(" "),
                host::last_lines(&o.stderr, &o.stdout)
            )));
        }
    }
    Ok(())
}
