use super::{observed_hba, Cluster, WAIT};
use crate::args::{OutputFormat, ScaleInArgs};
use crate::fail::{invalid, refused};
use crate::output::{confirm, finish, print_plan, progress};
use journal::Home;
use model::{Inventory, SyncMode};
use plan::scale::ScaleOpts;
use std::time::Duration;

pub struct Opts {
    pub fmt: OutputFormat,
    pub dry_run: bool,
    pub yes: bool,
    pub timeout: Duration,
}

pub async fn run(home: &Home, fmt: OutputFormat, a: ScaleInArgs, argv: &[String]) -> anyhow::Result<u8> {
    let stored = home.load(&a.name)?;
    let mut a = a;
    let (gone, rest): (Vec<String>, Vec<String>) =
        a.nodes.iter().cloned().partition(|n| stored.node(n).is_none() && stored.state.removed.contains(n));
    for n in &gone {
        eprintln!("{n} was already removed from {}: nothing to do for it", a.name);
    }
    a.nodes = rest;
    if a.nodes.is_empty() {
        // Re-running a finished scale-in converges too (resume anything left).
        if stored.nodes.iter().any(|n| n.state.leaving) {
            let _lock = if a.dry_run { None } else { Some(home.lock(&a.name, "pgscale scale-in")?) };
            let o = Opts { fmt, dry_run: a.dry_run, yes: a.yes, timeout: a.timeout };
            return execute(home, home.load(&a.name)?, &o, argv).await;
        }
        return Ok(0);
    }
    for n in &a.nodes {
        if stored.node(n).is_none() {
            return Err(invalid(format!(
                "`{n}` is not a node of cluster {} (`pgscale status -n {}` lists them)",
                a.name, a.name
            )));
        }
        if stored.is_primary(n) {
            return Err(refused(format!(
                "{n} is the primary and cannot be removed: switch over to another node first"
            )));
        }
    }
    if !a.yes && !a.dry_run && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(invalid(format!(
            "scale-in removes {} from {}: refusing without a terminal; pass --yes to confirm",
            a.nodes.join(", "),
            a.name
        )));
    }
    let _lock = if a.dry_run { None } else { Some(home.lock(&a.name, "pgscale scale-in")?) };
    let mut desired = home.load(&a.name)?;
    for n in &a.nodes {
        let s = &mut desired.node_mut(n).expect("checked").state;
        s.leaving = true;
        s.clear_dir |= a.clear_dir;
    }
    let o = Opts { fmt, dry_run: a.dry_run, yes: a.yes, timeout: a.timeout };
    execute(home, desired, &o, argv).await
}

/// Plan and run the removal of the nodes marked leaving (also `resume`).
pub async fn execute(home: &Home, mut desired: Inventory, o: &Opts, argv: &[String]) -> anyhow::Result<u8> {
    let leaving: Vec<String> = desired.nodes.iter().filter(|n| n.state.leaving).map(|n| n.name.clone()).collect();
    // Children of a leaving node stream from its upstream instead (the first
    // one up the chain that stays).
    let primary = desired.primary().map(|p| p.name.clone()).unwrap_or_default();
    let moves: Vec<(String, Option<String>)> = desired
        .staying()
        .filter(|n| desired.upstream_of(&n.name).is_some_and(|u| u.state.leaving))
        .map(|n| {
            let mut u = desired.upstream_of(&n.name);
            while let Some(x) = u.filter(|x| x.state.leaving) {
                u = desired.upstream_of(&x.name);
            }
            (n.name.clone(), u.map(|x| x.name.clone()).filter(|x| *x != primary))
        })
        .collect();
    for (n, u) in moves {
        desired.node_mut(&n).expect("exists").upstream = u;
    }
    let cl = Cluster::open(home, desired.clone(), o.timeout, o.dry_run).await?;
    let obs = pg::probe_all(&cl.targets(), o.timeout).await;
    let mut notes = Vec::new();
    match plan::sync::replacement(&desired, &leaving, &obs) {
        Ok(Some(r)) => {
            notes.push(format!("{r} becomes synchronous in place of the leaving synchronous standby"));
            desired.node_mut(&r).expect("exists").sync = Some(SyncMode::Sync);
        }
        Ok(None) => {}
        Err(why) if o.yes || o.dry_run => notes.push(why),
        Err(why) => return Err(refused(format!("{why}; pass --yes to accept this"))),
    }
    // A leaving node is no longer counted as synchronous (and a re-run does
    // not look for a second replacement).
    for n in &leaving {
        desired.node_mut(n).expect("exists").sync = None;
    }
    let hba = observed_hba(&cl, &obs, o.timeout).await;
    let opts = ScaleOpts { parallel: 1, catchup_secs: 600, stop_secs: o.timeout.as_secs().max(1) };
    let mut plan = plan::scale::plan_scale_in(&desired, &cl.ctx(WAIT), &obs, &hba, &opts).map_err(refused)?;
    plan.notes.splice(0..0, notes);
    if o.dry_run {
        print_plan(&plan, o.fmt);
        return Ok(0);
    }
    if !o.yes {
        print_plan(&plan, OutputFormat::Table);
        if !confirm(&format!("This removes {} from cluster {}.", leaving.join(", "), desired.name), "yes", false)? {
            return Err(refused("not confirmed: nothing changed"));
        }
    }
    let rt = cl.runtime(home, desired.clone(), o.timeout, WAIT)?;
    let report = exec::apply(&plan, &rt, argv, &mut progress()).await;
    for n in &plan.notes {
        eprintln!("note: {n}");
    }
    finish(&report, &format!("scale-in of cluster {}", desired.name), &format!("pgscale resume -n {}", desired.name))?;
    Ok(0)
}
