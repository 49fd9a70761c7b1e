//! scale-out and scale-in: plans from (desired inventory, observations).
//! Each plan holds only what is left, so an interrupted run re-plans to the
//! same end. The orderings that keep commits flowing are enforced here, with
//! the reason next to each.

use crate::steps::{Action, Ctx, Plan};
use crate::validate::{DirState, NodeFacts};
use crate::{argv, conf, hba, sql, sync};
use model::{slot_name, Inventory, NodeSpec, Observed, ObservedRole, Phase, RunState};
use std::collections::BTreeMap;

/// What the new node's host shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinFacts {
    pub dirs: NodeFacts,
    /// The base copy finished (`backup_manifest` exists).
    pub copied: bool,
    /// pg_ctl status says a server runs in the data directory.
    pub running: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleOpts {
    pub parallel: usize,
    /// How long to wait for a new standby to stream and catch up.
    pub catchup_secs: u64,
    /// scale-in: how long a leaving node gets to stop.
    pub stop_secs: u64,
    /// pg_basebackup `--max-rate` of each copy.
    pub copy_max_rate: Option<String>,
}

pub(crate) fn running(obs: &Observed, n: &str) -> bool {
    obs.get(n).is_some_and(|o| o.state == RunState::Running && o.role != ObservedRole::Unknown)
}

/// pg_hba on every running member that is not joining, when it differs
/// from the inventory's (new peers added, leaving peers removed).
pub(crate) fn hba_steps(
    p: &mut Plan,
    wave: u32,
    inv: &Inventory,
    ctx: &Ctx,
    obs: &Observed,
    hba: &BTreeMap<String, String>,
) {
    let want = hba::render(inv, &ctx.os_user, &ctx.peers);
    for n in inv.staying().filter(|n| !n.state.joining) {
        if !running(obs, &n.name) {
            p.notes.push(format!(
                "{} is not running: its pg_hba.conf is not updated; run `pgscale apply-config` when it is back",
                n.name
            ));
            continue;
        }
        if hba.get(&n.name) == Some(&want) {
            continue;
        }
        if ctx.unreachable.contains(&n.name) {
            p.notes.push(format!(
                "{}: its host cannot be reached: its pg_hba.conf is not updated; run `pgscale apply-config` when it is back",
                n.name
            ));
            continue;
        }
        let l = n.name.as_str();
        p.push_in(
            wave,
            l,
            l,
            "hba",
            Action::WriteFile { path: n.data_dir.join("pg_hba.conf"), mode: 0o600, contents: want.clone() },
            "pg_hba follows the inventory: one scram-sha-256 line per peer address",
        );
        p.push_in(wave, l, l, "check-hba", Action::CheckHba, "never reload a pg_hba.conf the server rejects");
        p.push_in(wave, l, l, "reload-hba", Action::Reload, "apply the new pg_hba.conf");
    }
}

/// synchronous_standby_names on the primary, when it differs.
pub(crate) fn sync_steps(p: &mut Plan, wave: u32, inv: &Inventory, obs: &Observed, why: &str) {
    let Some(primary) = inv.primary() else { return };
    let want = sync::standby_names(inv);
    let have = obs.get(&primary.name).and_then(|o| o.synchronous_standby_names.clone()).unwrap_or_default();
    if have == want {
        return;
    }
    p.push_in(
        wave,
        "",
        &primary.name,
        "sync-names",
        Action::Sql { sql: sql::alter_system_set("synchronous_standby_names", &want) },
        format!("'{have}' → '{want}': {why}"),
    );
    p.push_in(wave, "", &primary.name, "sync-reload", Action::Reload, "walsenders pick up the new list at once");
}

fn depth(inv: &Inventory, n: &NodeSpec) -> u32 {
    let mut d = 1;
    let mut cur = inv.upstream_of(&n.name);
    while let Some(u) = cur {
        if !u.state.joining {
            break;
        }
        d += 1;
        cur = inv.upstream_of(&u.name);
    }
    d
}

/// Configure a stopped node as a standby of `up` and start it: its own
/// whole `postgresql.auto.conf` (address, port, socket, primary_conninfo
/// with its passfile, its slot), `standby.signal` (never a primary), the
/// inventory's pg_hba, start. Used by scale-out, switchover (the old
/// primary) and rejoin.
pub(crate) fn standby_start_steps(
    p: &mut Plan,
    wave: u32,
    desired: &Inventory,
    ctx: &Ctx,
    n: &NodeSpec,
    up: &NodeSpec,
) {
    let l = n.name.as_str();
    let write = |path: std::path::PathBuf, contents: String| Action::WriteFile { path, mode: 0o600, contents };
    p.push_in(
        wave,
        l,
        l,
        "conf",
        write(n.data_dir.join("postgresql.auto.conf"), conf::auto_conf(desired, n)),
        format!("its own address, port and socket; streams from {} as application_name {}", up.name, n.name),
    );
    p.push_in(
        wave,
        l,
        l,
        "standby-signal",
        write(n.data_dir.join("standby.signal"), String::new()),
        "start as a standby, never as a primary",
    );
    p.push_in(
        wave,
        l,
        l,
        "hba",
        write(n.data_dir.join("pg_hba.conf"), hba::render(desired, &ctx.os_user, &ctx.peers)),
        "pg_hba generated from the inventory, like every node's",
    );
    p.push_in(
        wave,
        l,
        l,
        "start",
        Action::Start {
            data_dir: n.data_dir.clone(),
            argv: argv::pg_ctl_start(&ctx.bin_dir, &n.data_dir, &n.socket_dir(), ctx.wait_secs),
        },
        "start the standby",
    );
}

/// Add the nodes marked `joining` in `desired`.
pub fn plan_scale_out(
    desired: &Inventory,
    ctx: &Ctx,
    obs: &Observed,
    hba: &BTreeMap<String, String>,
    facts: &BTreeMap<String, JoinFacts>,
    opts: &ScaleOpts,
) -> Result<Plan, String> {
    let mut p = Plan::new(&desired.name, "scale-out");
    p.parallel = opts.parallel.max(1);
    let primary = desired.primary().ok_or("the cluster has no primary")?;
    if !(running(obs, &primary.name) && obs.get(&primary.name).is_some_and(|o| o.role == ObservedRole::Primary)) {
        return Err(format!(
            "the primary {} is not running as a primary ({}): scale-out needs it; see `pgscale status -n {}`",
            primary.name,
            obs.get(&primary.name).and_then(|o| o.error.clone()).unwrap_or_else(|| "no answer".into()),
            desired.name
        ));
    }
    let joining: Vec<&NodeSpec> = desired.nodes.iter().filter(|n| n.state.joining).collect();
    // Upstreams must run, and have free walsenders and slots: a base copy
    // with -X stream holds two walsenders while it runs.
    let mut need: BTreeMap<&str, (i32, i32)> = BTreeMap::new();
    for n in &joining {
        let u = desired.upstream_of(&n.name).ok_or_else(|| format!("{} has no upstream", n.name))?;
        if !u.state.joining && !running(obs, &u.name) {
            return Err(format!(
                "the upstream {} of {} is not running: start it first, or choose another upstream",
                u.name, n.name
            ));
        }
        if u.state.joining {
            continue;
        }
        let done = facts.get(&n.name).is_some_and(|f| f.running);
        let e = need.entry(u.name.as_str()).or_default();
        e.0 += if done { 0 } else { 2 };
        e.1 +=
            if obs.get(&u.name).is_some_and(|o| o.slots.iter().any(|s| s.name == slot_name(&n.name))) { 0 } else { 1 };
    }
    for (u, (senders, slots)) in need {
        let o = obs.get(u).expect("running upstream observed");
        let (max_s, max_r) = (o.max_wal_senders.unwrap_or(10), o.max_replication_slots.unwrap_or(10));
        let used_s = o.downstreams.len() as i32;
        if used_s + senders > max_s {
            return Err(format!(
                "{u} has {used_s} of max_wal_senders={max_s} in use and the new nodes need {senders} more while they copy: raise max_wal_senders with `pgscale apply-config` (restart) or add fewer nodes at once"
            ));
        }
        if o.slots.len() as i32 + slots > max_r {
            return Err(format!(
                "{u} has {} of max_replication_slots={max_r} in use and the new nodes need {slots} more: raise max_replication_slots with `pgscale apply-config` (restart)",
                o.slots.len()
            ));
        }
    }
    if joining.is_empty() {
        // Nothing to add; still converge synchronous_standby_names (an
        // earlier run may have stopped just before setting it).
        sync_steps(&mut p, 1, desired, obs, "the inventory's sync standbys");
        return Ok(p);
    }
    p.push_in(
        0,
        "",
        "",
        "record",
        Action::SaveInventory { phase: Phase::Ready },
        "record the intent: an interrupted scale-out can be re-run or resumed",
    );
    // The upstreams must let the new addresses in before the copy starts.
    hba_steps(&mut p, 0, desired, ctx, obs, hba);
    let mut last_wave = 0;
    let mut ordered = joining.clone();
    ordered.sort_by_key(|n| depth(desired, n));
    for n in ordered {
        let w = depth(desired, n);
        last_wave = last_wave.max(w);
        let u = desired.upstream_of(&n.name).expect("checked above");
        let f = facts.get(&n.name).cloned().unwrap_or(JoinFacts {
            dirs: NodeFacts { data_dir: DirState::Missing, socket_dir: DirState::Missing, port_in_use: false },
            copied: false,
            running: false,
        });
        let l = n.name.as_str();
        // The slot comes before the copy (pg_basebackup -S): WAL the new
        // node still needs is kept from the first byte.
        let has_slot = obs.get(&u.name).is_some_and(|o| o.slots.iter().any(|s| s.name == slot_name(&n.name)));
        if !has_slot {
            p.push_in(
                w,
                l,
                &u.name,
                "slot",
                Action::Sql { sql: sql::create_slot(&slot_name(&n.name)) },
                format!("slot {} on {} keeps the WAL the copy needs", n.name, u.name),
            );
        }
        for (verb, path, st) in
            [("data-dir", n.data_dir.clone(), f.dirs.data_dir), ("socket-dir", n.socket_dir(), f.dirs.socket_dir)]
        {
            match st {
                DirState::Missing => p.push_in(
                    w,
                    l,
                    l,
                    verb,
                    Action::CreateDir { path, adopt: false },
                    format!("missing; created owned by {}", ctx.os_user),
                ),
                DirState::Empty => {
                    p.push_in(w, l, l, verb, Action::CreateDir { path, adopt: true }, "exists and is empty")
                }
                _ => {}
            }
        }
        p.push_in(
            w,
            l,
            l,
            "passfile",
            Action::WritePassfile { path: conf::passfile(n), user: desired.postgres.replication_user.clone() },
            "the copy and the WAL receiver read the replication password from this 0600 file",
        );
        if !f.copied && !f.running {
            if f.dirs.data_dir == DirState::NotEmpty {
                // A copy left running by a pgscale that died (on any host)
                // would go on writing into the directory: end it on the
                // upstream first, then empty the directory.
                p.push_in(
                    w,
                    l,
                    &u.name,
                    "end-copy",
                    Action::EndCopy { node: n.name.clone() },
                    "a copy still in flight must not write into the directory being emptied",
                );
                p.push_in(
                    w,
                    l,
                    l,
                    "clean-partial-copy",
                    Action::EmptyDir { path: n.data_dir.clone() },
                    "an interrupted copy left a partial data directory (ours): start over",
                );
            }
            p.push_in(
                w,
                l,
                l,
                "basebackup",
                Action::BaseBackup {
                    data_dir: n.data_dir.clone(),
                    passfile: conf::passfile(n),
                    argv: argv::pg_basebackup(
                        &ctx.bin_dir,
                        &n.data_dir,
                        &u.host,
                        u.port,
                        &desired.postgres.replication_user,
                        &slot_name(&n.name),
                        opts.copy_max_rate.as_deref(),
                    ),
                },
                format!("base copy of {} through slot {}", u.name, n.name),
            );
        }
        if !f.running {
            standby_start_steps(&mut p, w, desired, ctx, n, u);
        }
        // Add a synchronous standby as async first: it enters
        // synchronous_standby_names only once it streams and has caught up,
        // so commits never wait on a node that is still copying.
        p.push_in(
            w,
            l,
            &u.name,
            "wait-streaming",
            Action::WaitStreaming { standby: n.name.clone(), timeout_secs: opts.catchup_secs },
            format!("{} must stream from {} and catch up before it counts", n.name, u.name),
        );
    }
    let fin = last_wave + 1;
    sync_steps(&mut p, fin, desired, obs, "only now that the new standbys stream and have caught up (raise last)");
    // Members are recorded last: until then a re-run or `resume` sees the
    // node as joining and finishes whatever is left (sync names included).
    for n in desired.nodes.iter().filter(|n| n.state.joining) {
        p.push_in(
            fin,
            "",
            "",
            &format!("member-{}", n.name),
            Action::MarkMember { node: n.name.clone() },
            "it streams and counts: record it as a member",
        );
    }
    p.push_in(fin, "", "", "done", Action::SaveInventory { phase: Phase::Ready }, "the inventory matches the cluster");
    Ok(p)
}

/// Re-point running standbys that stream from somewhere other than their
/// desired upstream: the slot on the new upstream first, then
/// primary_conninfo and primary_slot_name, reload, and wait until they
/// stream there.
pub(crate) fn repoint_steps(p: &mut Plan, wave: u32, desired: &Inventory, obs: &Observed, catchup_secs: u64) {
    for d in desired.staying().filter(|n| !desired.is_primary(&n.name) && !n.state.needs_rejoin) {
        let Some(u) = desired.upstream_of(&d.name) else { continue };
        let Some(o) = obs.get(&d.name) else { continue };
        let streams_from_u = o.upstream_host.as_deref() == Some(u.host.as_str()) && o.upstream_port == Some(u.port);
        if streams_from_u || o.state != RunState::Running || o.role != ObservedRole::Standby {
            if o.state != RunState::Running {
                p.notes.push(format!(
                    "{} is not running: it is not re-pointed now; it will stream from {} when it starts",
                    d.name, u.name
                ));
            }
            continue;
        }
        let l = d.name.as_str();
        let has_slot = obs.get(&u.name).is_some_and(|uo| uo.slots.iter().any(|s| s.name == slot_name(&d.name)));
        if !has_slot {
            p.push_in(
                wave,
                l,
                &u.name,
                "slot",
                Action::Sql { sql: sql::create_slot(&slot_name(&d.name)) },
                format!("slot {} on its new upstream {} first", d.name, u.name),
            );
        }
        p.push_in(
            wave,
            l,
            l,
            "conninfo",
            Action::Sql { sql: sql::alter_system_set("primary_conninfo", &conf::primary_conninfo(desired, d, u)) },
            format!("stream from {} instead", u.name),
        );
        p.push_in(
            wave,
            l,
            l,
            "slot-name",
            Action::Sql { sql: sql::alter_system_set("primary_slot_name", &slot_name(&d.name)) },
            "through its own slot there",
        );
        p.push_in(wave, l, l, "reload", Action::Reload, "the WAL receiver reconnects to the new upstream");
        p.push_in(
            wave,
            l,
            &u.name,
            "wait-streaming",
            Action::WaitStreaming { standby: d.name.clone(), timeout_secs: catchup_secs },
            format!("{} streams from {}", d.name, u.name),
        );
    }
}

/// Remove the nodes marked `leaving` in `desired` (which already names their
/// downstreams' new upstreams and any sync replacement).
pub fn plan_scale_in(
    desired: &Inventory,
    ctx: &Ctx,
    obs: &Observed,
    hba: &BTreeMap<String, String>,
    opts: &ScaleOpts,
) -> Result<Plan, String> {
    // Stop at the first failure: never stop a node whose downstream could
    // not be re-pointed. A node that does not answer is not a failure: its
    // stop is best effort and the live nodes are still cleaned.
    let mut p = Plan::new(&desired.name, "scale-in");
    let leaving: Vec<&NodeSpec> = desired.nodes.iter().filter(|n| n.state.leaving).collect();
    if leaving.is_empty() {
        return Ok(p);
    }
    let primary = desired.primary().ok_or("the cluster has no primary")?;
    if leaving.iter().any(|n| n.name == primary.name) {
        return Err(format!(
            "{} is the primary and cannot be removed: switch over to another node first",
            primary.name
        ));
    }
    p.push_in(
        0,
        "",
        "",
        "record",
        Action::SaveInventory { phase: Phase::Ready },
        "record the intent: an interrupted scale-in can be re-run or resumed",
    );
    repoint_steps(&mut p, 1, desired, obs, opts.catchup_secs);
    // Take the leaving node out of synchronous_standby_names, its
    // replacement in, in one reload, BEFORE it stops, so no commit ever
    // waits on a node that is leaving. The replacement is in the list only
    // once it streams from the primary and has caught up (children were
    // re-pointed just above): raise before lower, never stall.
    if running(obs, &primary.name) {
        let have = obs.get(&primary.name).and_then(|o| o.synchronous_standby_names.clone()).unwrap_or_default();
        let waited = |p: &Plan, name: &str| {
            p.steps.iter().any(|s| {
                s.node == primary.name && matches!(&s.action, Action::WaitStreaming { standby, .. } if standby == name)
            })
        };
        for r in desired
            .staying()
            .filter(|n| n.sync == Some(model::SyncMode::Sync) && !have.contains(&format!("\"{}\"", n.name)))
        {
            if waited(&p, &r.name) {
                continue;
            }
            p.push_in(
                1,
                "",
                &primary.name,
                &format!("catch-up-{}", r.name),
                Action::WaitStreaming { standby: r.name.clone(), timeout_secs: opts.catchup_secs },
                format!(
                    "{} becomes synchronous: it must stream from {} and have caught up first",
                    r.name, primary.name
                ),
            );
        }
        sync_steps(&mut p, 1, desired, obs, "before anything stops: commits must not wait on a leaving node");
    } else {
        p.notes.push(format!("the primary {} is not running: synchronous_standby_names is not changed", primary.name));
    }
    for n in &leaving {
        let l = n.name.as_str();
        let st = obs.get(l).map(|o| o.state).unwrap_or(RunState::Unreachable);
        if st == RunState::Unreachable {
            p.notes.push(format!(
                "{l} did not answer: it is not stopped and its directories are kept; it is removed from pg_hba and its slot is dropped, so it cannot stream again"
            ));
            continue;
        }
        p.push_in(
            2,
            l,
            l,
            "stop",
            Action::stop(ctx, &n.data_dir, "fast", opts.stop_secs),
            format!(
                "fast shutdown, at most {}s; a node that does not stop is reported and left as it is",
                opts.stop_secs
            ),
        );
        if !n.state.clear_dir {
            p.steps.last_mut().expect("just pushed").best_effort = true;
        }
    }
    hba_steps(&mut p, 3, desired, ctx, obs, hba);
    // Drop the leaving nodes' slots wherever they are: an orphan slot pins
    // WAL until the disk fills.
    for n in &leaving {
        for holder in desired.staying().filter(|h| running(obs, &h.name)) {
            if obs.get(&holder.name).is_some_and(|o| o.slots.iter().any(|s| s.name == slot_name(&n.name))) {
                p.push_in(
                    3,
                    &holder.name,
                    &holder.name,
                    &format!("drop-slot-{}", n.name),
                    Action::Sql { sql: sql::drop_slot(&slot_name(&n.name)) },
                    format!("{} leaves: its slot must not pin WAL", n.name),
                );
            }
        }
    }
    for n in &leaving {
        let l = n.name.as_str();
        let st = obs.get(l).map(|o| o.state).unwrap_or(RunState::Unreachable);
        if !n.state.clear_dir || st == RunState::Unreachable {
            continue;
        }
        for d in &n.state.created_dirs {
            p.push_in(4, l, l, "remove-dir", Action::RemoveDir { path: d.clone() }, "--clear-dir: pgscale created it");
        }
        for d in [n.data_dir.clone(), n.socket_dir()]
            .into_iter()
            .filter(|d| n.state.adopted_dirs.contains(d) && !n.state.created_dirs.contains(d))
        {
            p.push_in(
                4,
                l,
                l,
                "empty-dir",
                Action::EmptyDir { path: d },
                "--clear-dir: it was empty when pgscale took it; the directory stays",
            );
        }
        if n.state.created_dirs.is_empty() && n.state.adopted_dirs.is_empty() {
            p.notes.push(format!("{l}: --clear-dir removes only directories pgscale created; none are recorded"));
        }
    }
    for n in &leaving {
        p.push_in(
            5,
            "",
            "",
            &format!("forget-{}", n.name),
            Action::ForgetNode { node: n.name.clone() },
            "it is out of the cluster",
        );
    }
    p.push_in(5, "", "", "done", Action::SaveInventory { phase: Phase::Ready }, "the inventory matches the cluster");
    Ok(p)
}

#[cfg(test)]
mod tests;
