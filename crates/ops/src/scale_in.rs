//! scale-in: remove standbys online (their slots, pg_hba lines and sync
//! names with them).

use crate::cluster::{observed_hba, Cluster, WAIT};
use crate::error::{invalid, refused, OpError};
use crate::ui::need_answer_or_yes;
use crate::{run_plan, Apply, Env, Outcome};
use model::{Inventory, NodeName, SyncMode};
use plan::scale::ScaleOpts;
use std::time::Duration;

pub struct Request {
    pub name: String,
    pub nodes: Vec<NodeName>,
    pub dry_run: bool,
    /// Do not ask; also accepts dropping to asynchronous replication.
    pub yes: bool,
    /// Remove the data directories pgscale created for the removed nodes.
    pub clear_dir: bool,
    /// Deadline of each remote call and of stopping a leaving node.
    pub timeout: Duration,
}

pub struct Opts {
    pub dry_run: bool,
    pub yes: bool,
    pub timeout: Duration,
}

pub async fn run(env: Env<'_>, r: Request) -> Result<Outcome, OpError> {
    let store = env.stores.for_cluster(&r.name).await?;
    let stored = store.load(&r.name).await?;
    let (gone, rest): (Vec<NodeName>, Vec<NodeName>) =
        r.nodes.iter().cloned().partition(|n| stored.node(n).is_none() && stored.state.removed.iter().any(|x| n == x));
    for n in &gone {
        env.ui.say(&format!("{n} was already removed from {}: nothing to do for it", r.name));
    }
    let o = Opts { dry_run: r.dry_run, yes: r.yes, timeout: r.timeout };
    if rest.is_empty() {
        // Re-running a finished scale-in converges too (resume anything left).
        if stored.nodes.iter().any(|n| n.state.leaving) {
            let _lock = if r.dry_run {
                None
            } else {
                Some(store.lock(&r.name, "pgscale scale-in", env.stores.lock_wait()).await?)
            };
            return execute(env, store.load(&r.name).await?, &o).await;
        }
        return Ok(Outcome::Unchanged("nothing to remove".into()));
    }
    for n in &rest {
        if stored.node(n).is_none() {
            return Err(invalid(format!(
                "`{n}` is not a node of cluster {} (`pgscale status -n {}` lists them)",
                r.name, r.name
            )));
        }
        if stored.is_primary(n) {
            return Err(refused(format!(
                "{n} is the primary and cannot be removed: switch over to another node first"
            )));
        }
    }
    let names: Vec<&str> = rest.iter().map(|n| n.as_str()).collect();
    need_answer_or_yes(env.ui, r.yes, r.dry_run, &format!("scale-in removes {} from {}", names.join(", "), r.name))?;
    let _lock =
        if r.dry_run { None } else { Some(store.lock(&r.name, "pgscale scale-in", env.stores.lock_wait()).await?) };
    let mut desired = store.load(&r.name).await?;
    for n in &rest {
        let s = &mut desired.node_mut(n).expect("checked").state;
        s.leaving = true;
        s.clear_dir |= r.clear_dir;
    }
    execute(env, desired, &o).await
}

/// Plan and run the removal of the nodes marked leaving (also `resume`).
pub async fn execute(env: Env<'_>, mut desired: Inventory, o: &Opts) -> Result<Outcome, OpError> {
    let store = env.stores.for_spec(&desired.name, desired.dcs.as_ref()).await?;
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
    let cl = Cluster::open(store.clone(), desired.clone(), o.timeout, o.dry_run).await?;
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
    let opts = ScaleOpts { parallel: 1, catchup_secs: 600, stop_secs: o.timeout.as_secs().max(1), copy_max_rate: None };
    let mut plan = plan::scale::plan_scale_in(&desired, &cl.ctx(WAIT), &obs, &hba, &opts).map_err(refused)?;
    plan.notes.splice(0..0, notes);
    let q = format!("This removes {} from cluster {}.", leaving.join(", "), desired.name);
    let rerun = format!("pgscale resume -n {}", desired.name);
    let question = (!o.yes).then_some(q.as_str());
    run_plan(env, &cl, desired, plan, Apply { dry_run: o.dry_run, question, timeout: o.timeout, rerun }).await
}
