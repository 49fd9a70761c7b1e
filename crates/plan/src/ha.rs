//! Role changes: switchover, failover, rejoin. Pure planners over (desired
//! inventory, observations); the candidate choice returns its reasons.

use crate::scale::{repoint_steps, running, sync_steps};
use crate::steps::{Action, Ctx, Plan};
use crate::{argv, conf, sql, sync};
use model::{slot_name, Inventory, NodeSpec, Observed, ObservedRole, PgLsn, Phase, RunState, SyncMode};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaOpts {
    /// Switchover: refuse when the target is further behind than this.
    pub max_lag_bytes: u64,
    pub catchup_secs: u64,
    pub promote_secs: u64,
    /// How long the old primary gets to stop.
    pub stop_secs: u64,
    /// rejoin --reclone: pg_basebackup `--max-rate`.
    pub copy_max_rate: Option<String>,
    /// Failover recorded for an agent: the standbys' agents re-point them
    /// and the leader's agent names the synchronous ones, so the plan does
    /// neither (nor waits for them while it holds the cluster's lock).
    pub agents_follow: bool,
}

/// A ranked failover candidate and why it ranks there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub timeline: u32,
    pub received: PgLsn,
    pub was_sync: bool,
    pub why: String,
}

/// Running standbys that could be promoted, best first: the highest
/// timeline, then the highest received LSN (nothing any standby has is
/// lost), then a synchronous standby on a tie.
pub fn rank_candidates(inv: &Inventory, obs: &Observed, old_primary: &str) -> Vec<Candidate> {
    let mut v: Vec<Candidate> = inv
        .staying()
        .filter(|n| n.name != old_primary && !n.state.needs_rejoin)
        .filter_map(|n| {
            let o = obs.get(&n.name)?;
            if o.state != RunState::Running || o.role != ObservedRole::Standby {
                return None;
            }
            let received = o.receive_lsn.or(o.lsn)?;
            let timeline = o.timeline.unwrap_or(0);
            let was_sync = n.sync_mode() == SyncMode::Sync;
            Some(Candidate {
                name: n.name.clone(),
                timeline,
                received,
                was_sync,
                why: format!(
                    "timeline {timeline}, received up to {received}{}",
                    if was_sync { ", synchronous" } else { "" }
                ),
            })
        })
        .collect();
    v.sort_by(|a, b| {
        (b.timeline, u64::from(b.received), b.was_sync, &a.name).cmp(&(
            a.timeline,
            u64::from(a.received),
            a.was_sync,
            &b.name,
        ))
    });
    v
}

/// Whether promoting `chosen` can lose committed transactions: it cannot
/// when a synchronous standby was running and `chosen` is not behind it
/// (every acknowledged commit is on the synchronous standby). Err: why not,
/// for the refusal message (`--force` overrides).
pub fn failover_safety(candidates: &[Candidate], chosen: &str) -> Result<(), String> {
    let c = candidates.iter().find(|c| c.name == chosen).ok_or_else(|| format!("{chosen} is not a candidate"))?;
    let key = |c: &Candidate| (c.timeline, u64::from(c.received));
    match candidates.iter().filter(|c| c.was_sync).max_by_key(|c| key(c)) {
        None => Err("no standby was synchronous, so committed transactions could be lost".into()),
        Some(s) if key(c) < key(s) => Err(format!(
            "{chosen} is {} bytes behind the synchronous standby {}, so committed transactions could be lost; choose {}",
            u64::from(s.received).saturating_sub(u64::from(c.received)),
            s.name,
            s.name
        )),
        Some(_) => Ok(()),
    }
}

/// The inventory after `new` becomes primary: roles swapped, the new
/// primary no longer a sync standby, someone else synchronous in its place
/// when it was (a potential standby first), direct standbys of the old
/// primary now stream from the new one. `old_needs_rejoin`: failover.
pub fn promote_in_inventory(
    inv: &Inventory,
    new: &str,
    obs: &Observed,
    old_needs_rejoin: bool,
) -> (Inventory, Vec<String>) {
    let mut d = inv.clone();
    let mut notes = Vec::new();
    let old = inv.primary().map(|p| p.name.clone()).unwrap_or_default();
    let was_sync = inv.node(new).is_some_and(|n| n.sync_mode() == SyncMode::Sync);
    for n in &mut d.nodes {
        n.role = None;
        if n.upstream.as_deref() == Some(new) {
            n.upstream = None;
        }
    }
    {
        let x = d.node_mut(new).expect("candidate is a node");
        x.role = Some(model::Role::Primary);
        x.upstream = None;
        x.sync = None;
    }
    if let Some(o) = d.node_mut(&old) {
        o.upstream = None;
        o.sync = None;
        o.state.needs_rejoin |= old_needs_rejoin;
    }
    if was_sync {
        // Keep the number of synchronous standbys: a potential one first,
        // then a running direct standby. (The caught-up check is a step.)
        let pick = d
            .staying()
            .filter(|n| {
                n.name != new
                    && n.name != old
                    && !n.state.needs_rejoin
                    && d.upstream_of(&n.name).is_some_and(|u| u.name == new)
            })
            .filter(|n| obs.get(&n.name).is_some_and(|o| o.state == RunState::Running))
            .min_by_key(|n| match n.sync_mode() {
                SyncMode::Potential => 0,
                SyncMode::Async => 1,
                SyncMode::Sync => 2,
            })
            .map(|n| n.name.clone());
        match pick {
            Some(p) => {
                d.node_mut(&p).expect("exists").sync = Some(SyncMode::Sync);
                notes.push(format!("{p} becomes synchronous in place of {new}"));
            }
            // The old primary is the only one left: it takes the place, but
            // counts only once it is a standby again (after `rejoin`).
            None if inv.node(&old).is_some() => {
                d.node_mut(&old).expect("exists").sync = Some(SyncMode::Sync);
                notes.push(if old_needs_rejoin {
                    format!("{old} becomes synchronous once rejoined; until then replication is asynchronous")
                } else {
                    format!("{old} becomes synchronous in place of {new}")
                });
            }
            None => notes.push(format!(
                "no standby can replace {new} as synchronous standby: replication is asynchronous until one joins"
            )),
        }
    }
    (d, notes)
}

/// Steps that make the stopped `old` a standby of the new primary without a
/// rewind (its shutdown was clean and the new primary replayed past it).
fn restart_as_standby(p: &mut Plan, desired: &Inventory, ctx: &Ctx, obs: &Observed, old: &NodeSpec, new: &NodeSpec) {
    let l = old.name.as_str();
    if !obs.get(&new.name).is_some_and(|o| o.slots.iter().any(|s| s.name == slot_name(&old.name))) {
        p.push_in(
            0,
            l,
            &new.name,
            "slot",
            Action::Sql { sql: sql::create_slot(&slot_name(&old.name)) },
            format!("{} will stream from {} through its own slot", old.name, new.name),
        );
    }
    p.push_in(
        0,
        l,
        l,
        "passfile",
        Action::WritePassfile { path: conf::passfile(old), user: desired.postgres.replication_user.clone() },
        "its WAL receiver reads the replication password here",
    );
    crate::scale::standby_start_steps(p, 0, desired, ctx, old, new);
    p.push_in(
        0,
        l,
        &new.name,
        "wait-streaming",
        Action::WaitStreaming { standby: old.name.clone(), timeout_secs: 120 },
        format!("{} streams from {}", old.name, new.name),
    );
}

/// Slots a former primary kept for its standbys pin WAL on it once it is a
/// standby: drop all but those of its own downstreams. Not known by name
/// when it was down at planning time, so the statement finds them itself.
fn drop_foreign_slots(p: &mut Plan, desired: &Inventory, n: &NodeSpec, obs: &Observed) {
    let keep: Vec<String> = desired.downstreams_of(&n.name).iter().map(|d| slot_name(&d.name)).collect();
    let seen = obs.get(&n.name).map(|o| o.slots.iter().filter(|s| !keep.contains(&s.name)).count());
    if seen == Some(0)
        && obs.get(&n.name).is_some_and(|o| o.state == RunState::Running && o.role == ObservedRole::Standby)
    {
        return;
    }
    p.push_in(
        0,
        "",
        &n.name,
        "drop-old-slots",
        Action::Sql { sql: sql::drop_slots_except(&keep) },
        format!("slots {} kept as a primary would pin WAL on it now", n.name),
    );
}

/// Lower the retry interval and reload before promoting: a promote asked
/// just as the WAL receiver's connection drops otherwise waits out
/// wal_retrieve_retry_interval (5 s by default); the reload also wakes the
/// startup process from that wait.
fn fast_retry(p: &mut Plan, new: &NodeSpec) {
    let n = new.name.as_str();
    if p.steps.iter().any(|s| s.id == format!("{n}:fast-retry")) {
        return;
    }
    p.push_in(
        0,
        n,
        n,
        "fast-retry",
        Action::Sql { sql: sql::alter_system_set("wal_retrieve_retry_interval", "50ms") },
        "promotion must not wait out wal_retrieve_retry_interval",
    );
    p.push_in(0, n, n, "fast-retry-reload", Action::Reload, "wakes the startup process from its retry wait");
}

fn promote_steps(p: &mut Plan, desired: &Inventory, new: &NodeSpec, opts: &HaOpts) {
    // Back to what the cluster wants (a sharded data group keeps it low:
    // its subscriptions start that much sooner), else the default.
    let managed = crate::conf::managed_settings(desired, new);
    let reset = match managed.iter().find(|(k, _)| k == "wal_retrieve_retry_interval") {
        Some((k, v)) => sql::alter_system_set(k, v),
        None => sql::alter_system_reset("wal_retrieve_retry_interval"),
    };
    let n = new.name.as_str();
    fast_retry(p, new);
    p.push_in(
        0,
        n,
        n,
        "promote",
        Action::Promote { timeout_secs: opts.promote_secs },
        format!("{n} becomes the primary"),
    );
    p.push_in(0, n, n, "retry-reset", Action::Sql { sql: reset }, "back to the cluster's setting");
    p.push_in(0, n, n, "retry-reset-reload", Action::Reload, "apply it");
}

/// Catch-up waits for new sync standbys, then synchronous_standby_names on
/// the new primary (only once they stream from it and have caught up).
fn sync_after_promotion(p: &mut Plan, desired: &Inventory, new: &str, obs: &Observed, catchup: u64) {
    let have = obs.get(new).and_then(|o| o.synchronous_standby_names.clone()).unwrap_or_default();
    let want = sync::standby_names(desired);
    if have == want {
        return;
    }
    for r in desired.staying().filter(|n| n.sync == Some(SyncMode::Sync) && n.name != new) {
        let waited = p
            .steps
            .iter()
            .any(|s| s.node == new && matches!(&s.action, Action::WaitStreaming { standby, .. } if *standby == r.name));
        if !waited {
            p.push_in(
                0,
                "",
                new,
                &format!("catch-up-{}", r.name),
                Action::WaitStreaming { standby: r.name.clone(), timeout_secs: catchup },
                format!("{} must stream from {new} and catch up before it counts", r.name),
            );
        }
    }
    sync_steps(p, 0, desired, obs, "the cluster keeps the synchronous standbys it asked for");
}

/// Planned role change. `stored`: the inventory before; `desired`: after
/// `promote_in_inventory`.
pub fn plan_switchover(
    old: &str,
    desired: &Inventory,
    ctx: &Ctx,
    obs: &Observed,
    opts: &HaOpts,
) -> Result<Plan, String> {
    let mut p = Plan::new(&desired.name, "switchover");
    let new = desired.primary().ok_or("no target")?.clone();
    let old = desired.node(old).ok_or("the old primary is not in the inventory")?.clone();
    if old.name == new.name {
        return Err(format!("{} is already the primary", new.name));
    }
    let o_old = obs.get(&old.name);
    let o_new = obs.get(&new.name).ok_or("target not observed")?;
    let old_is_primary = o_old.is_some_and(|o| o.state == RunState::Running && o.role == ObservedRole::Primary);
    let new_is_primary = o_new.state == RunState::Running && o_new.role == ObservedRole::Primary;
    if old_is_primary && new_is_primary {
        return Err(format!(
            "both {} and {} answer as primary: stop one of them yourself, then run `pgscale rejoin`",
            old.name, new.name
        ));
    }
    if !new_is_primary {
        if o_new.state != RunState::Running || o_new.role != ObservedRole::Standby {
            return Err(format!(
                "{} is not a running standby ({}): it cannot take over",
                new.name,
                o_new.state.as_str()
            ));
        }
        if old_is_primary {
            let row = o_old.and_then(|o| o.downstreams.iter().find(|d| d.application_name == new.name));
            let Some(row) = row.filter(|r| r.state == "streaming") else {
                return Err(format!(
                    "{} is not streaming from {}: a switchover to it could lose data; see `pgscale status -n {}`",
                    new.name, old.name, desired.name
                ));
            };
            let head = o_old.and_then(|o| o.lsn).map(u64::from).unwrap_or(0);
            let lag = head.saturating_sub(row.flush_lsn.map(u64::from).unwrap_or(0));
            if lag > opts.max_lag_bytes {
                return Err(format!(
                    "{} is {lag} bytes behind {} (more than --max-lag {}): wait until it catches up, or raise --max-lag",
                    new.name, old.name, opts.max_lag_bytes
                ));
            }
        } else if o_old.is_some_and(|o| o.state == RunState::Unreachable) {
            return Err(format!("{} does not answer: use `pgscale failover`", old.name));
        }
    }
    p.push_in(
        0,
        "",
        "",
        "record",
        Action::SaveInventory { phase: Phase::Ready },
        format!("record the intent: {} becomes primary, {} a standby", new.name, old.name),
    );
    if !new_is_primary {
        let o = old.name.as_str();
        fast_retry(&mut p, &new);
        if old_is_primary {
            p.push_in(
                0,
                o,
                o,
                "checkpoint",
                Action::Sql { sql: sql::CHECKPOINT.into() },
                "a checkpoint now keeps the shutdown checkpoint short",
            );
        }
        p.push_in(
            0,
            o,
            o,
            "stop",
            Action::stop(ctx, &old.data_dir, "fast", opts.stop_secs),
            "a clean stop: its last WAL, the shutdown checkpoint, reaches the standbys",
        );
        p.push_in(
            0,
            o,
            o,
            "wait-replay",
            Action::WaitReplay {
                argv: argv::pg_controldata(&ctx.bin_dir, &old.data_dir),
                standby: new.name.clone(),
                timeout_secs: opts.catchup_secs,
            },
            format!(
                "{} must have replayed everything {} wrote: then nothing committed is lost and {} needs no rewind",
                new.name, old.name, old.name
            ),
        );
        promote_steps(&mut p, desired, &new, opts);
    }
    let old_is_standby = o_old.is_some_and(|o| o.state == RunState::Running && o.role == ObservedRole::Standby);
    if !old_is_standby {
        restart_as_standby(&mut p, desired, ctx, obs, &old, &new);
    }
    repoint_steps(&mut p, 0, desired, obs, opts.catchup_secs);
    sync_after_promotion(&mut p, desired, &new.name, obs, opts.catchup_secs);
    drop_foreign_slots(&mut p, desired, &old, obs);
    p.push_in(0, "", "", "done", Action::ClearIntent, "the switchover is complete");
    Ok(p)
}

/// The primary is gone: promote `desired`'s primary.
pub fn plan_failover(old: &str, desired: &Inventory, ctx: &Ctx, obs: &Observed, opts: &HaOpts) -> Result<Plan, String> {
    let mut p = Plan::new(&desired.name, "failover");
    let new = desired.primary().ok_or("no target")?.clone();
    let old = desired.node(old).ok_or("the old primary is not in the inventory")?.clone();
    let o_new = obs.get(&new.name).ok_or("target not observed")?;
    let new_is_primary = o_new.state == RunState::Running && o_new.role == ObservedRole::Primary;
    if !new_is_primary && (o_new.state != RunState::Running || o_new.role != ObservedRole::Standby) {
        return Err(format!("{} is not a running standby: it cannot take over", new.name));
    }
    p.push_in(
        0,
        "",
        "",
        "record",
        Action::SaveInventory { phase: Phase::Ready },
        format!(
            "record the intent: {} becomes primary; {} needs a rejoin and is never started as a primary again",
            new.name, old.name
        ),
    );
    // Make sure the old primary cannot take writes: stop it where its host
    // answers (immediate: it is being replaced, not preserved).
    match obs.get(&old.name).map(|o| o.state) {
        Some(RunState::Running) => {
            p.push_in(
                0,
                &old.name,
                &old.name,
                "stop",
                Action::stop(ctx, &old.data_dir, "immediate", opts.stop_secs),
                "the old primary still runs: it must not take writes once another node is primary",
            );
        }
        Some(RunState::Stopped) => {}
        _ => p.notes.push(format!(
            "{} does not answer: it cannot be stopped from here; it is marked as needing a rejoin",
            old.name
        )),
    }
    if !new_is_primary {
        promote_steps(&mut p, desired, &new, opts);
    }
    // Refusing connections, it takes no writes now; stop whatever may be
    // starting up there, after the promotion so it costs no downtime.
    if obs.get(&old.name).map(|o| o.state) == Some(RunState::Stopped) {
        p.push_in(
            0,
            &old.name,
            &old.name,
            "stop",
            Action::stop(ctx, &old.data_dir, "immediate", opts.stop_secs),
            "make sure it is not starting up",
        );
        p.best_effort();
    }
    if opts.agents_follow {
        p.notes.push("the agents re-point the standbys and name the synchronous ones".into());
    } else {
        repoint_steps(&mut p, 0, desired, obs, opts.catchup_secs);
        sync_after_promotion(&mut p, desired, &new.name, obs, opts.catchup_secs);
    }
    p.push_in(0, "", "", "done", Action::ClearIntent, "the failover is complete");
    Ok(p)
}

/// Facts about the node to rejoin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejoinFacts {
    /// PG_VERSION exists.
    pub initialized: bool,
}

/// Bring a former primary (or any diverged node) back as a standby of the
/// primary: stop, pg_rewind (or a fresh copy with `reclone`), config, slot,
/// start, wait until it streams.
pub fn plan_rejoin(
    desired: &Inventory,
    node: &str,
    ctx: &Ctx,
    obs: &Observed,
    f: &RejoinFacts,
    reclone: bool,
    opts: &HaOpts,
) -> Result<Plan, String> {
    let mut p = Plan::new(&desired.name, "rejoin");
    let n = desired.node(node).ok_or_else(|| format!("`{node}` is not a node of the cluster"))?.clone();
    let primary = desired.primary().ok_or("no primary")?.clone();
    if primary.name == n.name {
        return Err(format!("{node} is the primary in the inventory; rejoin brings back a standby"));
    }
    let up = desired.upstream_of(node).ok_or("no upstream")?.clone();
    if !running(obs, &up.name) {
        return Err(format!("{} (the node {node} will stream from) is not running", up.name));
    }
    let l = n.name.as_str();
    p.push_in(
        0,
        l,
        l,
        "stop",
        Action::stop(ctx, &n.data_dir, "fast", opts.stop_secs),
        "it must be stopped to be rewound or copied",
    );
    p.push_in(
        0,
        l,
        l,
        "passfile",
        Action::WritePassfile { path: conf::passfile(&n), user: desired.postgres.replication_user.clone() },
        "pg_rewind/pg_basebackup and the WAL receiver read the password here",
    );
    if !obs.get(&up.name).is_some_and(|o| o.slots.iter().any(|s| s.name == slot_name(&n.name))) {
        p.push_in(
            0,
            l,
            &up.name,
            "slot",
            Action::Sql { sql: sql::create_slot(&slot_name(&n.name)) },
            format!("slot {} on {} before it copies or streams", n.name, up.name),
        );
    }
    if reclone || !f.initialized {
        // A copy left running by a pgscale that died would go on writing
        // into the directory we are about to empty: end it first.
        p.push_in(
            0,
            l,
            &up.name,
            "end-copy",
            Action::EndCopy { node: n.name.clone() },
            "a copy still in flight must not write into the emptied directory",
        );
        p.push_in(
            0,
            l,
            l,
            "empty",
            Action::EmptyDir { path: n.data_dir.clone() },
            "--reclone: start from an empty data directory",
        );
        p.push_in(
            0,
            l,
            l,
            "basebackup",
            Action::BaseBackup {
                data_dir: n.data_dir.clone(),
                passfile: conf::passfile(&n),
                argv: argv::pg_basebackup(
                    &ctx.bin_dir,
                    &n.data_dir,
                    &up.host,
                    up.port,
                    &desired.postgres.replication_user,
                    &slot_name(&n.name),
                    opts.copy_max_rate.as_deref(),
                ),
            },
            format!("a fresh copy of {}", up.name),
        );
    } else {
        p.push_in(
            0,
            l,
            &primary.name,
            "grant-rewind",
            Action::Sql { sql: sql::grant_rewind(&desired.postgres.replication_user) },
            "pg_rewind reads the primary's files as the replication role",
        );
        // Before PostgreSQL 16, pg_rewind reads the source's timeline from
        // its control file, which a just-promoted primary updates only at
        // its next checkpoint: without one the rewind computes the wrong
        // divergence and the node cannot start.
        p.push_in(
            0,
            l,
            &primary.name,
            "checkpoint",
            Action::Sql { sql: sql::CHECKPOINT.into() },
            "the primary's control file must show its current timeline for pg_rewind",
        );
        p.push_in(
            0,
            l,
            l,
            "rewind",
            Action::Rewind {
                data_dir: n.data_dir.clone(),
                controldata: argv::pg_controldata(&ctx.bin_dir, &n.data_dir),
                argv: argv::pg_rewind(&ctx.bin_dir, &n.data_dir, &conf::rewind_source(desired, &n, &primary)),
            },
            format!("undo what {node} wrote after the timelines diverged"),
        );
    }
    crate::scale::standby_start_steps(&mut p, 0, desired, ctx, &n, &up);
    p.push_in(
        0,
        l,
        l,
        "hba",
        Action::WriteFile {
            path: n.data_dir.join("pg_hba.conf"),
            mode: 0o600,
            contents: crate::hba::render(desired, &ctx.os_user, &ctx.peers),
        },
        "pg_hba from the inventory",
    );
    p.push_in(
        0,
        l,
        l,
        "start",
        Action::Start {
            data_dir: n.data_dir.clone(),
            argv: argv::pg_ctl_start(&ctx.bin_dir, &n.data_dir, &n.socket_dir(), ctx.wait_secs),
        },
        "start as a standby",
    );
    p.push_in(
        0,
        l,
        &up.name,
        "wait-streaming",
        Action::WaitStreaming { standby: n.name.clone(), timeout_secs: opts.catchup_secs },
        format!("{node} streams from {} and has caught up", up.name),
    );
    // Once it streams it counts again (it may be the sync standby the
    // cluster asked for): sync names as they are after the rejoin.
    let mut after = desired.clone();
    after.node_mut(&n.name).expect("exists").state.needs_rejoin = false;
    sync_steps(&mut p, 0, &after, obs, "the inventory's sync standbys, this node included now");
    drop_foreign_slots(&mut p, desired, &n, &Observed::default());
    p.push_in(0, "", "", "rejoined", Action::MarkRejoined { node: n.name.clone() }, "it is a standby again");
    p.push_in(0, "", "", "done", Action::SaveInventory { phase: Phase::Ready }, "the inventory matches the cluster");
    Ok(p)
}

#[cfg(test)]
mod tests;
