use super::{host_facts, Cluster, WAIT};
use crate::args::{FailoverArgs, OutputFormat, RejoinArgs, SwitchoverArgs};
use crate::fail::{invalid, refused};
use crate::output::{confirm, finish, print_plan, progress};
use journal::Home;
use model::{Inventory, ObservedRole, RunState};
use plan::ha::{HaOpts, RejoinFacts};
use plan::Plan;
use std::time::Duration;

fn need_terminal_or_yes(yes: bool, dry_run: bool, what: &str) -> anyhow::Result<()> {
    if !yes && !dry_run && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(invalid(format!("{what}: refusing without a terminal; pass --yes to confirm")));
    }
    Ok(())
}

fn opts(timeout: Duration) -> HaOpts {
    HaOpts { max_lag_bytes: 16 << 20, catchup_secs: 120, promote_secs: 30, stop_secs: timeout.as_secs().max(1) }
}

struct Ask<'a> {
    fmt: OutputFormat,
    dry_run: bool,
    yes: bool,
    question: &'a str,
    timeout: Duration,
}

async fn run_plan(
    home: &Home,
    cl: &Cluster,
    desired: Inventory,
    plan: Plan,
    ask: Ask<'_>,
    argv: &[String],
) -> anyhow::Result<u8> {
    let Ask { fmt, dry_run, yes, question, timeout } = ask;
    if dry_run {
        print_plan(&plan, fmt);
        return Ok(0);
    }
    if !yes {
        print_plan(&plan, OutputFormat::Table);
        if !confirm(question, "yes", false)? {
            return Err(refused("not confirmed: nothing changed"));
        }
    }
    let rt = cl.runtime(home, desired.clone(), timeout, WAIT)?;
    let report = exec::apply(&plan, &rt, argv, &mut progress()).await;
    for n in &plan.notes {
        eprintln!("note: {n}");
    }
    finish(
        &report,
        &format!("{} of cluster {}", plan.operation, desired.name),
        &format!("pgscale resume -n {}", desired.name),
    )?;
    eprintln!("next: pgscale status -n {} ; pgscale check -n {}", desired.name, desired.name);
    Ok(0)
}

pub async fn switchover(home: &Home, fmt: OutputFormat, a: SwitchoverArgs, argv: &[String]) -> anyhow::Result<u8> {
    let stored = home.load(&a.name)?;
    if stored.node(&a.to).is_none() {
        return Err(invalid(format!("`{}` is not a node of cluster {}", a.to, a.name)));
    }
    // A re-run of an interrupted switchover starts from the recorded intent.
    let old = match &stored.state.previous_primary {
        Some(p) if stored.is_primary(&a.to) => p.clone(),
        _ => stored.primary().map(|p| p.name.clone()).unwrap_or_default(),
    };
    if old == a.to {
        eprintln!("{} is already the primary: nothing to do", a.to);
        return Ok(0);
    }
    if stored.node(&a.to).is_some_and(|n| n.state.needs_rejoin) {
        return Err(refused(format!("{} needs a rejoin first", a.to)));
    }
    need_terminal_or_yes(a.yes, a.dry_run, "switchover briefly stops writes")?;
    let _lock = if a.dry_run { None } else { Some(home.lock(&a.name, "pgscale switchover")?) };
    let cl = Cluster::open(home, stored.clone(), a.timeout, a.dry_run).await?;
    let obs = pg::probe_all(&cl.targets(), a.timeout).await;
    let (mut desired, notes) = if stored.is_primary(&a.to) {
        (stored.clone(), vec![])
    } else {
        plan::ha::promote_in_inventory(&stored, &a.to, &obs, false)
    };
    desired.state.previous_primary = Some(old.clone());
    let mut o = opts(a.timeout);
    o.max_lag_bytes = a.max_lag;
    let mut plan = plan::ha::plan_switchover(&old, &desired, &cl.ctx(WAIT), &obs, &o).map_err(refused)?;
    plan.notes.splice(0..0, notes);
    let q = format!("Switch over {}: {} becomes primary, {old} a standby.", a.name, a.to);
    run_plan(
        home,
        &cl,
        desired,
        plan,
        Ask { fmt, dry_run: a.dry_run, yes: a.yes, question: &q, timeout: a.timeout },
        argv,
    )
    .await
}

pub async fn failover(home: &Home, fmt: OutputFormat, a: FailoverArgs, argv: &[String]) -> anyhow::Result<u8> {
    let stored = home.load(&a.name)?;
    let old = match &stored.state.previous_primary {
        Some(p) => p.clone(),
        None => stored.primary().map(|p| p.name.clone()).unwrap_or_default(),
    };
    need_terminal_or_yes(a.yes, a.dry_run, "failover promotes a standby")?;
    let _lock = if a.dry_run { None } else { Some(home.lock(&a.name, "pgscale failover")?) };
    let cl = Cluster::open(home, stored.clone(), a.timeout, a.dry_run).await?;
    let obs = pg::probe_all(&cl.targets(), a.timeout).await;
    let resumed = stored.state.previous_primary.is_some();
    let old_answers = obs.get(&old).is_some_and(|o| o.state == RunState::Running && o.role == ObservedRole::Primary);
    if old_answers && !a.force && !resumed {
        return Err(refused(format!("the primary {old} still answers: use `pgscale switchover` (or --force to fail over anyway; {old} is then stopped)")));
    }
    let candidates = plan::ha::rank_candidates(&stored, &obs, &old);
    let target = match &a.to {
        Some(t) if resumed && stored.is_primary(t) => t.clone(),
        Some(t) => candidates
            .iter()
            .find(|c| &c.name == t)
            .map(|c| c.name.clone())
            .ok_or_else(|| refused(format!("{t} is not a running standby that could be promoted")))?,
        None if resumed => stored.primary().map(|p| p.name.clone()).unwrap_or_default(),
        None => {
            candidates.first().map(|c| c.name.clone()).ok_or_else(|| refused("no running standby can be promoted"))?
        }
    };
    let mut notes = Vec::new();
    if !resumed {
        let best = candidates.first().map(|c| u64::from(c.received)).unwrap_or(0);
        let chosen = candidates.iter().find(|c| c.name == target).expect("chosen from candidates");
        let behind = best.saturating_sub(u64::from(chosen.received));
        let note = format!(
            "{target} chosen: {}; {behind} bytes behind the most advanced standby; what {old} wrote after {} is unknown and may be lost",
            chosen.why, chosen.received
        );
        if let Err(why) = plan::ha::failover_safety(&candidates, &target) {
            if !a.force {
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
    let mut plan = plan::ha::plan_failover(&old, &desired, &cl.ctx(WAIT), &obs, &opts(a.timeout)).map_err(refused)?;
    plan.notes.splice(0..0, notes);
    let q = format!("Fail over {}: promote {target}; {old} will need a rejoin.", a.name);
    run_plan(
        home,
        &cl,
        desired,
        plan,
        Ask { fmt, dry_run: a.dry_run, yes: a.yes, question: &q, timeout: a.timeout },
        argv,
    )
    .await
}

pub async fn rejoin(home: &Home, fmt: OutputFormat, a: RejoinArgs, argv: &[String]) -> anyhow::Result<u8> {
    let stored = home.load(&a.name)?;
    let n = stored
        .node(&a.node)
        .ok_or_else(|| invalid(format!("`{}` is not a node of cluster {}", a.node, a.name)))?
        .clone();
    if stored.is_primary(&a.node) {
        return Err(invalid(format!("{} is the primary; rejoin brings a standby back", a.node)));
    }
    need_terminal_or_yes(a.yes, a.dry_run, "rejoin discards what the node wrote on its own")?;
    let _lock = if a.dry_run { None } else { Some(home.lock(&a.name, "pgscale rejoin")?) };
    let cl = Cluster::open(home, stored.clone(), a.timeout, a.dry_run).await?;
    let obs = pg::probe_all(&cl.targets(), a.timeout).await;
    let h = cl.hosts[&n.name].clone().map_err(|e| crate::fail::failed(format!("reach {}: {e}", n.name)))?;
    let f = host_facts(&h, &n, &cl.bin_dir, a.timeout).await?;
    let plan = plan::ha::plan_rejoin(
        &stored,
        &a.node,
        &cl.ctx(WAIT),
        &obs,
        &RejoinFacts { initialized: f.initialized },
        a.reclone,
        &opts(a.timeout),
    )
    .map_err(refused)?;
    let q = format!("Rejoin {} to {}: what it wrote on its own is discarded.", a.node, a.name);
    run_plan(
        home,
        &cl,
        stored,
        plan,
        Ask { fmt, dry_run: a.dry_run, yes: a.yes, question: &q, timeout: a.timeout },
        argv,
    )
    .await
}
