//! destroy: stop every node, remove the directories pgscale created, forget
//! the cluster.

use crate::cluster::{Cluster, WAIT};
use crate::error::{refused, OpError};
use crate::ui::need_answer_or_yes;
use crate::{apply, finish, Env, Outcome};
use std::time::Duration;

pub struct Request {
    pub name: String,
    pub yes: bool,
    pub dry_run: bool,
    /// Deadline of one remote call; a node that does not answer is skipped.
    pub timeout: Duration,
}

/// A sharded cluster's destroy removes every group (data groups first, so
/// a re-run still finds the coordinator's list); a data group still listed
/// by its coordinator is refused (that is `shrink`).
pub async fn run(env: Env<'_>, r: Request) -> Result<Outcome, OpError> {
    let store = env.stores.for_cluster(&r.name).await?;
    let inv = store.load(&r.name).await?;
    match inv.sharding.clone() {
        Some(s) if s.is_coordinator() => {
            need_answer_or_yes(
                env.ui,
                r.yes,
                r.dry_run,
                &format!("destroy removes sharded cluster {} and its data", r.name),
            )?;
            if !r.yes
                && !r.dry_run
                && !env.ui.confirm(
                    None,
                    &format!(
                        "This destroys sharded cluster {}: the coordinator and data groups {}.",
                        r.name,
                        s.groups.join(", ")
                    ),
                    &r.name,
                )?
            {
                return Err(refused("not confirmed: nothing changed"));
            }
            let mut plans = Vec::new();
            for g in &s.groups {
                let c = model::group_cluster(&r.name, g);
                if !env.stores.for_cluster(&c).await?.exists(&c).await? {
                    continue;
                }
                let q = Request { name: c, yes: true, dry_run: r.dry_run, timeout: r.timeout };
                if let Outcome::Planned(p) = run_one(env, q, inv.clone()).await? {
                    plans.push(p);
                }
            }
            let q = Request { yes: true, ..r };
            match run_one(env, q, inv).await? {
                Outcome::Planned(p) => {
                    plans.push(p);
                    Ok(Outcome::PlannedMany(plans))
                }
                o => Ok(o),
            }
        }
        Some(s) if s.cluster != r.name => {
            let coord = env.stores.for_cluster(&s.cluster).await?;
            let listed = coord.exists(&s.cluster).await?
                && coord.load(&s.cluster).await?.sharding.is_some_and(|c| c.groups.contains(&s.group));
            if listed {
                return Err(refused(format!(
                    "{} is data group {} of sharded cluster {}: move its shards off and remove it with                      `pgscale shrink -n {} --drain {}`, or destroy the whole sharded cluster with `pgscale destroy -n {}`",
                    r.name, s.group, s.cluster, s.cluster, s.group, s.cluster
                )));
            }
            run_one(env, r, inv).await
        }
        _ => run_one(env, r, inv).await,
    }
}

async fn run_one(env: Env<'_>, r: Request, inv: model::Inventory) -> Result<Outcome, OpError> {
    let store = env.stores.for_cluster(&r.name).await?;
    let inv = if inv.name == r.name { inv } else { store.load(&r.name).await? };
    need_answer_or_yes(env.ui, r.yes, r.dry_run, &format!("destroy removes cluster {} and its data", r.name))?;
    let _lock =
        if r.dry_run { None } else { Some(store.lock(&r.name, "pgscale destroy", env.stores.lock_wait()).await?) };
    let cl = Cluster::open(store.clone(), inv.clone(), r.timeout, r.dry_run).await?;
    let obs = pg::probe_all(&cl.targets(), r.timeout).await;
    let plan = plan::destroy::plan_destroy(&inv, &cl.ctx(WAIT), &obs);
    for (n, h) in &cl.hosts {
        if let Err(e) = h {
            env.ui.say(&format!("warning: {n}: {e}: its steps will fail and the record is kept"));
        }
    }
    if r.dry_run {
        return Ok(Outcome::Planned(plan));
    }
    if !r.yes
        && !env.ui.confirm(
            Some(&plan),
            &format!("This stops every node of {} and deletes the data directories pgscale created.", r.name),
            &r.name,
        )?
    {
        return Err(refused("not confirmed: nothing changed"));
    }
    let report = apply(env, &cl, inv, &plan, r.timeout).await?;
    finish(env, &report, &format!("destroy of cluster {}", r.name), &format!("pgscale destroy -n {} --yes", r.name))?;
    Ok(Outcome::Applied { plan, report: Some(report) })
}
