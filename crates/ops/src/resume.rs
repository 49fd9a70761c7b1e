//! resume: re-observe, re-plan and apply what is left of the recorded intent.

use crate::error::{invalid, OpError};
use crate::{ha, scale_in, scale_out, Env, Outcome};
use std::time::Duration;

pub struct Request {
    pub name: String,
    pub dry_run: bool,
    pub yes: bool,
    pub timeout: Duration,
}

pub async fn run(env: Env<'_>, r: Request) -> Result<Outcome, OpError> {
    let store = env.stores.for_cluster(&r.name).await?;
    let lock =
        if r.dry_run { None } else { Some(store.lock(&r.name, "pgscale resume", env.stores.lock_wait()).await?) };
    let inv = store.load(&r.name).await?;
    // Copies go on as the interrupted command would have made them.
    let o = scale_out::Opts {
        dry_run: r.dry_run,
        parallel: None,
        timeout: r.timeout,
        catchup: Duration::from_secs(600),
        install: false,
        pg_major: None,
        max_rate: None,
    };
    if inv.state.phase == model::Phase::Initializing {
        env.ui.say(&format!("resuming init of {} from its recorded definition", r.name));
        let locs = plan::Locations::for_file(format!("the inventory of {}", r.name));
        return crate::init::execute(env, inv, &locs, &o, format!("pgscale resume -n {}", r.name)).await;
    }
    if inv.nodes.iter().any(|n| n.state.joining) {
        env.ui.say(&format!("resuming scale-out of {}", r.name));
        return scale_out::execute(env, inv, None, &o).await;
    }
    if inv.nodes.iter().any(|n| n.state.leaving) {
        env.ui.say(&format!("resuming scale-in of {}", r.name));
        let o = scale_in::Opts { dry_run: r.dry_run, yes: r.yes, timeout: r.timeout };
        return scale_in::execute(env, inv, &o).await;
    }
    if let Some(old) = &inv.state.previous_primary {
        let to = inv.primary().map(|p| p.name.clone()).unwrap_or_default();
        drop(lock);
        let to = model::NodeName::new(to).map_err(invalid)?;
        // A failover marks the old primary as needing a rejoin; a switchover does not.
        if inv.node(old).is_some_and(|n| n.state.needs_rejoin) {
            env.ui.say(&format!("resuming failover of {} to {to}", r.name));
            let f = ha::FailoverRequest {
                name: r.name.clone(),
                to: Some(to),
                force: false,
                dry_run: r.dry_run,
                yes: r.yes,
                timeout: r.timeout,
                known_down: vec![],
                promoted: false,
            };
            return ha::failover(env, f).await;
        }
        env.ui.say(&format!("resuming switchover of {} to {to}", r.name));
        let s = ha::SwitchoverRequest {
            name: r.name.clone(),
            to,
            dry_run: r.dry_run,
            yes: r.yes,
            max_lag: 16 << 20,
            timeout: r.timeout,
        };
        return ha::switchover(env, s).await;
    }
    if inv.sharding.as_ref().is_some_and(|s| s.is_coordinator()) {
        drop(lock);
        let mut q = crate::shard::rebalance::Request::new(&r.name);
        q.dry_run = r.dry_run;
        q.only_unfinished = true;
        q.moves.timeout = r.timeout;
        let rep = crate::shard::rebalance::rebalance(env, &q).await?;
        if !rep.moves.is_empty() || !rep.planned.is_empty() {
            return Ok(Outcome::Done(format!(
                "{} unfinished shard move(s) finished",
                rep.moves.len().max(rep.planned.len())
            )));
        }
    }
    Ok(Outcome::Unchanged(format!("nothing to resume: no operation on {} was interrupted", r.name)))
}
