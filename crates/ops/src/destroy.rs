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

pub async fn run(env: Env<'_>, r: Request) -> Result<Outcome, OpError> {
    let store = env.stores.for_cluster(&r.name).await?;
    let inv = store.load(&r.name).await?;
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
