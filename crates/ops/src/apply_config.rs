//! apply-config: roll a changed `postgres.hba` / `postgres.parameters` out
//! to every node, standbys first; a changed `ha:` section is saved (the
//! agents read it on their next tick).

use crate::cluster::{read_inventory_file, Cluster, WAIT};
use crate::error::{invalid, refused, OpError};
use crate::{apply, finish, Env, Outcome};
use plan::Action;
use std::path::PathBuf;
use std::time::Duration;

pub struct Request {
    pub name: String,
    /// The inventory file with the new `postgres.hba` / `postgres.parameters`.
    pub config: PathBuf,
    pub dry_run: bool,
    /// Do not ask before restarting the primary.
    pub yes: bool,
    pub timeout: Duration,
}

/// `partial`: some nodes were down and were skipped (run it again later).
pub struct Applied {
    pub outcome: Outcome,
    pub partial: bool,
}

pub async fn run(env: Env<'_>, r: Request) -> Result<Applied, OpError> {
    let store = env.stores.for_cluster(&r.name).await?;
    let (file, _locs) = read_inventory_file(&r.config)?;
    if file.name != r.name {
        return Err(invalid(format!("{} describes cluster `{}`, not `{}`", r.config.display(), file.name, r.name)));
    }
    let _lock =
        if r.dry_run { None } else { Some(store.lock(&r.name, "pgscale apply-config", env.stores.lock_wait()).await?) };
    let stored = store.load(&r.name).await?;
    // What init resolved (binaries, OS user) stays unless the file says otherwise.
    let mut new_pg = file.postgres.clone();
    new_pg.bin_dir = new_pg.bin_dir.or(stored.postgres.bin_dir.clone());
    new_pg.os_user = new_pg.os_user.or(stored.postgres.os_user.clone());
    let mut desired = stored.clone();
    desired.postgres = new_pg;
    desired.ha = file.ha.clone();
    let ha_changed = desired.ha != stored.ha;
    if ha_changed {
        env.ui.say(&format!("note: ha: {} (was {})", desired.ha, stored.ha));
    }
    let mut file_cmp = file.clone();
    file_cmp.postgres = desired.postgres.clone();
    plan::apply_config::check_only_config_changed(&stored, &file_cmp).map_err(invalid)?;

    let rerun = format!("pgscale apply-config -n {} -c {}", r.name, r.config.display());
    roll(
        env,
        store,
        desired,
        Roll { save_anyway: ha_changed, yes: r.yes, dry_run: r.dry_run, timeout: r.timeout, rerun },
    )
    .await
}

/// How [`roll`] runs.
pub(crate) struct Roll {
    /// Save the record even when no node needs a change.
    pub save_anyway: bool,
    pub yes: bool,
    pub dry_run: bool,
    pub timeout: Duration,
    pub rerun: String,
}

/// Roll `desired`'s configuration (pg_hba.conf, parameters) out to every
/// running node of its cluster, and record it.
pub(crate) async fn roll(
    env: Env<'_>,
    store: std::sync::Arc<dyn store::Store>,
    desired: model::Inventory,
    o: Roll,
) -> Result<Applied, OpError> {
    let r = &o;
    let name = desired.name.clone();
    let cl = Cluster::open(store.clone(), desired.clone(), r.timeout, r.dry_run).await?;
    let ctx = cl.ctx(WAIT);
    let names: Vec<String> = desired
        .nodes
        .first()
        .map(|n| plan::conf::managed_settings(&desired, n).into_iter().map(|(k, _)| k).collect())
        .unwrap_or_default();
    let mut obs = std::collections::BTreeMap::new();
    let futs = cl.targets().into_iter().map(|(n, t)| {
        let names = names.clone();
        async move { (n, pg::config_obs(&t, &names, r.timeout).await) }
    });
    for (n, res) in futures::future::join_all(futs).await {
        match res {
            Ok(o) => {
                obs.insert(n, o);
            }
            Err(e) => env.ui.say(&format!("warning: {n}: {e}")),
        }
    }
    let plan = plan::apply_config::plan_apply_config(&desired, &ctx, &obs)
        .map_err(|e| invalid(format!("nothing changed:\n  {}", e.join("\n  "))))?;
    if r.dry_run {
        return Ok(Applied { outcome: Outcome::Planned(plan), partial: false });
    }
    if plan.is_empty() {
        if o.save_anyway {
            // Nothing to roll out on the servers: the record is the change.
            store.save(&desired).await?;
            env.ui.say("the ha settings are saved: the agents use them from their next tick");
        }
        return Ok(Applied { outcome: Outcome::Planned(plan), partial: false });
    }
    let primary = desired.primary().map(|p| p.name.clone()).unwrap_or_default();
    let restarts_primary = plan.steps.iter().any(|s| s.node == primary && matches!(s.action, Action::Restart { .. }));
    if restarts_primary
        && !r.yes
        && !env.ui.confirm(Some(&plan), "This restarts the primary: its connections are cut.", "yes")?
    {
        return Err(refused("not confirmed: nothing changed"));
    }
    let report = apply(env, &cl, desired, &plan, r.timeout).await?;
    for n in &plan.notes {
        env.ui.say(&format!("note: {n}"));
    }
    finish(env, &report, &format!("apply-config of cluster {name}"), &o.rerun)?;
    let partial = !plan.notes.is_empty();
    Ok(Applied { outcome: Outcome::Applied { plan, report: Some(report) }, partial })
}
