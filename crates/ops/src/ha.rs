//! Role changes: switchover (planned), failover (the primary is gone) and
//! rejoin (a former primary, or any diverged node, back as a standby).

use crate::cluster::{host_facts, Cluster, WAIT};
use crate::error::{invalid, refused, OpError};
use crate::hostcheck::{precheck, Scope};
use crate::ui::need_answer_or_yes;
use crate::{run_plan, Apply, Env, Outcome};
use model::{NodeName, ObservedRole, RunState};
use plan::ha::{HaOpts, RejoinFacts};
use std::time::Duration;

pub struct SwitchoverRequest {
    pub name: String,
    /// The standby that becomes primary.
    pub to: NodeName,
    pub dry_run: bool,
    pub yes: bool,
    /// Refuse when the target is further behind than this many bytes.
    pub max_lag: u64,
    /// Deadline of one remote call, and of stopping the old primary.
    pub timeout: Duration,
}

pub struct FailoverRequest {
    pub name: String,
    /// The standby to promote (default: the best candidate).
    pub to: Option<NodeName>,
    /// Go on although the primary answers or no standby was synchronous.
    pub force: bool,
    pub dry_run: bool,
    pub yes: bool,
    pub timeout: Duration,
    /// Nodes the caller knows are gone (an agent: their leases expired):
    /// not tried, taken as unreachable.
    pub known_down: Vec<String>,
    /// `to` was promoted already by its agent, after the quorum proof
    /// (Fence B): the operation records it, stops the old primary where it
    /// answers and re-points the others. Candidates are not ranked again.
    pub promoted: bool,
}

pub struct RejoinRequest {
    pub name: String,
    pub node: NodeName,
    /// Empty its data directory and take a fresh copy instead of pg_rewind.
    pub reclone: bool,
    pub dry_run: bool,
    pub yes: bool,
    pub timeout: Duration,
    /// --reclone: pg_basebackup `--max-rate` (e.g. `50M`).
    pub max_rate: Option<String>,
}

fn opts(timeout: Duration) -> HaOpts {
    HaOpts {
        max_lag_bytes: 16 << 20,
        catchup_secs: 120,
        promote_secs: 30,
        stop_secs: timeout.as_secs().max(1),
        copy_max_rate: None,
        agents_follow: false,
    }
}

fn apply<'a>(name: &str, dry_run: bool, yes: bool, question: &'a str, timeout: Duration) -> Apply<'a> {
    Apply { dry_run, question: (!yes).then_some(question), timeout, rerun: format!("pgscale resume -n {name}") }
}

fn next(env: Env<'_>, name: &str, out: &Outcome) {
    if matches!(out, Outcome::Applied { .. }) {
        env.ui.say(&format!("next: pgscale status -n {name} ; pgscale check -n {name}"));
    }
}

pub async fn switchover(env: Env<'_>, r: SwitchoverRequest) -> Result<Outcome, OpError> {
    let store = env.stores.for_cluster(&r.name).await?;
    let stored = store.load(&r.name).await?;
    if stored.node(&r.to).is_none() {
        return Err(invalid(format!("`{}` is not a node of cluster {}", r.to, r.name)));
    }
    // A re-run of an interrupted switchover starts from the recorded intent.
    let old = match &stored.state.previous_primary {
        Some(p) if stored.is_primary(&r.to) => p.clone(),
        _ => stored.primary().map(|p| p.name.clone()).unwrap_or_default(),
    };
    if r.to == old {
        return Ok(Outcome::Unchanged(format!("{} is already the primary: nothing to do", r.to)));
    }
    if stored.node(&r.to).is_some_and(|n| n.state.needs_rejoin) {
        return Err(refused(format!("{} needs a rejoin first", r.to)));
    }
    need_answer_or_yes(env.ui, r.yes, r.dry_run, "switchover briefly stops writes")?;
    let _lock =
        if r.dry_run { None } else { Some(store.lock(&r.name, "pgscale switchover", env.stores.lock_wait()).await?) };
    let cl = Cluster::open(store.clone(), stored.clone(), r.timeout, r.dry_run).await?;
    let obs = pg::probe_all(&cl.targets(), r.timeout).await;
    let (mut desired, notes) = if stored.is_primary(&r.to) {
        (stored.clone(), vec![])
    } else {
        plan::ha::promote_in_inventory(&stored, &r.to, &obs, false)
    };
    desired.state.previous_primary = Some(old.clone());
    let mut o = opts(r.timeout);
    o.max_lag_bytes = r.max_lag;
    let mut plan = plan::ha::plan_switchover(&old, &desired, &cl.ctx(WAIT), &obs, &o).map_err(refused)?;
    plan.notes.splice(0..0, notes);
    let q = format!("Switch over {}: {} becomes primary, {old} a standby.", r.name, r.to);
    let out = run_plan(env, &cl, desired, plan, apply(&r.name, r.dry_run, r.yes, &q, r.timeout)).await?;
    next(env, &r.name, &out);
    Ok(out)
}

/// The lock holder's command while an agent records the promotion it did
/// ([`FailoverRequest::promoted`]): the other agents do not pause for it
/// (re-pointing their standbys is left to them, and the new primary's
/// first commits wait for one of them to stream).
pub const AGENT_RECORDS_FAILOVER: &str = "pgscale agent (records its promotion)";

pub async fn failover(env: Env<'_>, r: FailoverRequest) -> Result<Outcome, OpError> {
    let store = env.stores.for_cluster(&r.name).await?;
    need_answer_or_yes(env.ui, r.yes, r.dry_run, "failover promotes a standby")?;
    if let (true, Some(to)) = (r.promoted && !r.dry_run, &r.to) {
        // An agent whose view was stale asks again: already recorded and
        // complete, nothing to wait for the lock for.
        let now = store.load(&r.name).await?;
        if now.is_primary(to) && now.state.previous_primary.is_none() {
            return Ok(Outcome::Unchanged(format!("{to} is already the recorded primary: nothing to record")));
        }
    }
    let command = if r.promoted { AGENT_RECORDS_FAILOVER } else { "pgscale failover" };
    let _lock = if r.dry_run { None } else { Some(store.lock(&r.name, command, env.stores.lock_wait()).await?) };
    // Read under the lock: what the command that held it last recorded.
    let stored = store.load(&r.name).await?;
    let old = match &stored.state.previous_primary {
        Some(p) => p.clone(),
        None => stored.primary().map(|p| p.name.clone()).unwrap_or_default(),
    };
    if r.to.as_ref().is_some_and(|t| *t == old) {
        return Ok(Outcome::Unchanged(format!("{old} is already the recorded primary: nothing to do")));
    }
    let cl = Cluster::open_skipping(store.clone(), stored.clone(), r.timeout, r.dry_run, &r.known_down).await?;
    let targets: Vec<_> = cl.targets().into_iter().filter(|(n, _)| !r.known_down.contains(n)).collect();
    let mut obs = pg::probe_all(&targets, r.timeout).await;
    for n in &r.known_down {
        obs.nodes.insert(n.clone(), model::NodeObservation::unanswered(n, RunState::Unreachable, "known down"));
    }
    let resumed = stored.state.previous_primary.is_some();
    let old_answers = obs.get(&old).is_some_and(|o| o.state == RunState::Running && o.role == ObservedRole::Primary);
    if old_answers && !r.force && !resumed && !r.promoted {
        return Err(refused(format!("the primary {old} still answers: use `pgscale switchover` (or --force to fail over anyway; {old} is then stopped)")));
    }
    let candidates = plan::ha::rank_candidates(&stored, &obs, &old);
    let promoted_by_agent = r.promoted && !resumed;
    let target = match &r.to {
        Some(t) if resumed && stored.is_primary(t) => t.to_string(),
        Some(t) if promoted_by_agent => {
            let o = obs.get(t);
            if !o.is_some_and(|o| o.state == RunState::Running && o.role == ObservedRole::Primary) {
                return Err(refused(format!("{t} was to be promoted already but does not answer as a primary")));
            }
            t.to_string()
        }
        Some(t) => candidates
            .iter()
            .find(|c| *t == c.name)
            .map(|c| c.name.clone())
            .ok_or_else(|| refused(format!("{t} is not a running standby that could be promoted")))?,
        None if resumed => stored.primary().map(|p| p.name.clone()).unwrap_or_default(),
        None => {
            candidates.first().map(|c| c.name.clone()).ok_or_else(|| refused("no running standby can be promoted"))?
        }
    };
    let mut notes = Vec::new();
    if promoted_by_agent {
        notes.push(format!("{target} was promoted by its agent after the quorum proof; recording it"));
    } else if !resumed {
        let best = candidates.first().map(|c| u64::from(c.received)).unwrap_or(0);
        let chosen = candidates.iter().find(|c| c.name == target).expect("chosen from candidates");
        let behind = best.saturating_sub(u64::from(chosen.received));
        let note = format!(
            "{target} chosen: {}; {behind} bytes behind the most advanced standby; what {old} wrote after {} is unknown and may be lost",
            chosen.why, chosen.received
        );
        if let Err(why) = plan::ha::failover_safety(&candidates, &target) {
            if !r.force {
                return Err(refused(format!("{why} ({note}); pass --force to accept")));
            }
            notes.push(format!("--force: {why}"));
        }
        notes.push(note);
        for c in &candidates {
            notes.push(format!("candidate {}: {}", c.name, c.why));
        }
    }
    let (mut desired, n2) =
        if resumed { (stored.clone(), vec![]) } else { plan::ha::promote_in_inventory(&stored, &target, &obs, true) };
    notes.extend(n2);
    desired.state.previous_primary = Some(old.clone());
    let o = HaOpts { agents_follow: r.promoted, ..opts(r.timeout) };
    let mut plan = plan::ha::plan_failover(&old, &desired, &cl.ctx(WAIT), &obs, &o).map_err(refused)?;
    plan.notes.splice(0..0, notes);
    let q = format!("Fail over {}: promote {target}; {old} will need a rejoin.", r.name);
    let out = run_plan(env, &cl, desired, plan, apply(&r.name, r.dry_run, r.yes, &q, r.timeout)).await?;
    next(env, &r.name, &out);
    Ok(out)
}

pub async fn rejoin(env: Env<'_>, r: RejoinRequest) -> Result<Outcome, OpError> {
    let store = env.stores.for_cluster(&r.name).await?;
    need_answer_or_yes(env.ui, r.yes, r.dry_run, "rejoin discards what the node wrote on its own")?;
    let _lock =
        if r.dry_run { None } else { Some(store.lock(&r.name, "pgscale rejoin", env.stores.lock_wait()).await?) };
    // Read under the lock: a failover that held it may have just recorded
    // a new primary (the one to rewind from).
    let stored = store.load(&r.name).await?;
    let n = stored
        .node(&r.node)
        .ok_or_else(|| invalid(format!("`{}` is not a node of cluster {}", r.node, r.name)))?
        .clone();
    if stored.is_primary(&r.node) {
        return Err(invalid(format!("{} is the primary; rejoin brings a standby back", r.node)));
    }
    // pg_rewind and pg_basebackup refuse another major version: say so first.
    let scope = Scope {
        only: Some(vec![r.node.to_string()]),
        new_nodes: vec![],
        copy_bytes: None,
        install: false,
        pg_major: None,
        dry_run: r.dry_run,
        timeout: r.timeout,
    };
    if let Some(why) = precheck(env, &stored, &scope).await? {
        return Ok(Outcome::Unchanged(why));
    }
    let cl = Cluster::open(store.clone(), stored.clone(), r.timeout, r.dry_run).await?;
    let obs = pg::probe_all(&cl.targets(), r.timeout).await;
    let h = cl.host(&n.name)?;
    let f = host_facts(&h, &n, &cl.bin_dir, r.timeout).await?;
    let plan = plan::ha::plan_rejoin(
        &stored,
        &r.node,
        &cl.ctx(WAIT),
        &obs,
        &RejoinFacts { initialized: f.initialized },
        r.reclone,
        &HaOpts { copy_max_rate: r.max_rate.clone(), ..opts(r.timeout) },
    )
    .map_err(refused)?;
    let q = format!("Rejoin {} to {}: what it wrote on its own is discarded.", r.node, r.name);
    let out = run_plan(env, &cl, stored, plan, apply(&r.name, r.dry_run, r.yes, &q, r.timeout)).await?;
    next(env, &r.name, &out);
    Ok(out)
}
