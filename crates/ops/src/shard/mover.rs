//! One shard move: copy by logical replication, catch up, then a cut-over
//! that locks only that shard's partition on the coordinator, waits for a
//! marker row written on the source to show on the target (apply runs in
//! commit order, so every earlier write of the shard is there), flushes the
//! target, and switches the routing and `pgscale.shards` in one
//! transaction. A cut-over that cannot finish within `max_pause` rolls back
//! and is tried again, so writers never wait longer than that.
//!
//! Journal: `pgscale.moves.state` is `started` (nothing trusted yet),
//! `copying` (publication, slot and subscription made for the primaries
//! recorded beside it), `switched`, `done`. The placement row decides:
//! switched means the target holds the shard whatever the journal says.
//! Every step is idempotent; a move whose source or target primary
//! changed, whose slot vanished or whose subscription stopped on an error
//! is torn down and redone.

use super::catalog::{self, MoveRow};
use super::leftovers;
use super::{Group, Sharded};
use crate::error::{failed, OpError};
use crate::ui::Meter;
use crate::Env;
use pg::Db;
use plan::shard::names::{move_name, shard_table};
use plan::shard::sql;
use std::time::{Duration, Instant};

/// How moves run.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Longest write pause of one cut-over attempt.
    pub max_pause: Duration,
    /// Deadline of one call.
    pub timeout: Duration,
    /// Lag (bytes) under which the cut-over is tried.
    pub lag_gate: u64,
    /// Longest copy + catch-up before the move gives up (re-running continues it).
    pub follow_limit: Duration,
    /// Cut-over attempts before the move gives up (re-running continues it).
    pub attempts: u32,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            max_pause: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            lag_gate: 1 << 20,
            follow_limit: Duration::from_secs(6 * 3600),
            attempts: 30,
        }
    }
}

/// What one move did, for `--output json` and the benchmark.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Figures {
    pub id: i64,
    pub shard: u32,
    pub from: String,
    pub to: String,
    /// Bytes of the shard on the source when the copy started.
    pub bytes: u64,
    pub copy_secs: f64,
    pub copy_mb_per_s: f64,
    pub catchup_secs: f64,
    /// Cut-over attempts (1 when the first one succeeded).
    pub attempts: u32,
    /// Of the successful attempt: waiting for the shard's lock, waiting for
    /// the marker, and the whole write pause (lock request to commit).
    pub lock_wait_ms: f64,
    pub catchup_ms: f64,
    pub pause_ms: f64,
    /// The longest pause of the attempts that rolled back.
    pub max_rolled_back_pause_ms: f64,
    /// Times the move was torn down and started over (a failover, a lost slot).
    pub redos: i32,
    /// Finished by a later run (this run only cleaned up after a switch).
    pub resumed: bool,
    /// When this run took the move up and when it finished it (RFC 3339,
    /// UTC): moves of one `--parallel` wave overlap.
    pub started: String,
    pub finished: String,
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Why following a move stopped before the cut-over.
enum Stop {
    /// Redo the move from the start (say why).
    Redo(String),
    Fail(OpError),
}

impl From<OpError> for Stop {
    fn from(e: OpError) -> Self {
        Stop::Fail(e)
    }
}

impl From<pg::PgError> for Stop {
    fn from(e: pg::PgError) -> Self {
        Stop::Fail(e.into())
    }
}

/// One move's two groups, as this pass of the loop found them, and what
/// every step of it needs.
#[derive(Clone, Copy)]
struct Pair<'a, 's> {
    sh: &'a Sharded<'s>,
    src: &'a Group,
    dst: &'a Group,
    tables: &'a [String],
    mv: &'a MoveRow,
    o: &'a Opts,
}

/// Record a move (or find the unfinished one of that shard).
pub async fn register(coord: &Db, shard: u32, src: &str, dst: &str) -> Result<MoveRow, OpError> {
    coord
        .modify(
            "record the move",
            "INSERT INTO pgscale.moves (shard, src, dst) VALUES ($1, $2, $3) ON CONFLICT (shard) WHERE state <> 'done' DO NOTHING",
            &[&(shard as i32), &src, &dst],
        )
        .await?;
    let all = catalog::moves(coord, true).await?;
    all.into_iter().find(|m| m.shard == shard).ok_or_else(|| failed(format!("the move of shard {shard} vanished")))
}

async fn set_state(coord: &Db, id: i64, state: &str) -> Result<(), OpError> {
    coord.modify("record the move's step", "UPDATE pgscale.moves SET state = $2 WHERE id = $1", &[&id, &state]).await?;
    Ok(())
}

/// Run (or finish) one move.
pub async fn run(env: Env<'_>, sh: &Sharded<'_>, mut mv: MoveRow, o: &Opts) -> Result<Figures, OpError> {
    exec::failpoint("move:registered");
    let coord = sh.coord_db(o.timeout).await?;
    let tables = catalog::table_names(&coord).await?;
    let key = format!("shard {} {}→{}", mv.shard, mv.src, mv.dst);
    let mut redone_here = 0;
    let mut f = Figures {
        id: mv.id,
        shard: mv.shard,
        from: mv.src.clone(),
        to: mv.dst.clone(),
        redos: mv.redos,
        started: now(),
        ..Default::default()
    };
    loop {
        let src = fresh(sh, &mv.src).await?;
        let dst = fresh(sh, &mv.dst).await?;
        // Each step gets the two groups as this pass found them, and the move as it is now.
        macro_rules! pair {
            () => {
                Pair { sh, src: &src, dst: &dst, tables: &tables, mv: &mv, o }
            };
        }
        let at = catalog::placement(&coord).await?.get(&mv.shard).cloned();
        if at.as_deref() == Some(mv.dst.as_str()) {
            // Switched (perhaps by a run that died before recording it).
            f.resumed = f.attempts == 0;
            cleanup(&pair!()).await?;
            exec::failpoint("move:cleaned");
            f.finished = now();
            finish(&coord, &mv, &f).await?;
            env.ui.meter(&Meter { key: &key, phase: "done", done: 1, total: 1, detail: "", finished: true });
            return Ok(f);
        }
        if at.as_deref() != Some(mv.src.as_str()) {
            // Nothing of it may stay behind (best effort: the groups may be gone).
            let _ = teardown(&pair!()).await;
            set_state(&coord, mv.id, "done").await?;
            return Err(failed(format!(
                "shard {} is on {} now, not on {}: the move was dropped; run the command again to plan afresh",
                mv.shard,
                at.unwrap_or_default(),
                mv.src
            )));
        }
        let (sp, dp) = (primary_id(sh, &src, o.timeout).await?, primary_id(sh, &dst, o.timeout).await?);
        if mv.state == "copying" && (mv.src_primary.as_deref() != Some(&sp) || mv.dst_primary.as_deref() != Some(&dp)) {
            let (which, was, now) = if mv.src_primary.as_deref() != Some(&sp) {
                ("source", &mv.src_primary, &sp)
            } else {
                ("target", &mv.dst_primary, &dp)
            };
            env.ui.say(&format!(
                "{key}: the {which} group's primary changed since the copy began ({} → {now}): the move starts over",
                was.as_deref().unwrap_or("?")
            ));
            mv = redo(&coord, mv).await?;
            f.redos = mv.redos;
        }
        if mv.state == "started" {
            teardown(&pair!()).await?;
            set_up(&pair!()).await?;
            coord
                .modify(
                    "record the move's step",
                    "UPDATE pgscale.moves SET state = 'copying', src_primary = $2, dst_primary = $3 WHERE id = $1",
                    &[&mv.id, &sp, &dp],
                )
                .await?;
            exec::failpoint("move:set-up");
            mv.state = "copying".into();
            mv.src_primary = Some(sp.clone());
            mv.dst_primary = Some(dp.clone());
        }
        match follow(env, &pair!(), &key, &mut f).await {
            Ok(()) => {}
            Err(Stop::Redo(why)) => {
                redone_here += 1;
                if redone_here > 5 {
                    let _ = teardown(&pair!()).await;
                    return Err(failed(format!(
                        "{key}: {why}; redone 5 times in this run: stopping (the move's objects are removed; \
                         run the command again once the cause is fixed)"
                    )));
                }
                env.ui.say(&format!("{key}: {why}: the move starts over"));
                mv = redo(&coord, mv).await?;
                f.redos = mv.redos;
                continue;
            }
            Err(Stop::Fail(e)) => return Err(changed_primary(sh, &mv, e).await),
        }
        exec::failpoint("move:caught-up");
        env.ui.meter(&Meter { key: &key, phase: "cut-over", done: 1, total: 1, detail: "", finished: false });
        match cut_over(&pair!(), &mut f).await {
            Ok(true) => {
                exec::failpoint("move:switched");
                mv.state = "switched".into();
                continue; // cleanup through the placement check above
            }
            Ok(false) => {
                return Err(failed(format!(
                    "{key}: no cut-over finished within --max-pause {}ms in {} attempts (the target does not catch up \
                     fast enough, or long transactions hold the shard); the move stays ready: run the command again, \
                     or raise --max-pause",
                    o.max_pause.as_millis(),
                    f.attempts
                )))
            }
            Err(e) => return Err(changed_primary(sh, &mv, e).await),
        }
    }
}

/// An error while a group's primary changed is the failover's doing: say
/// that re-running redoes the move.
async fn changed_primary(sh: &Sharded<'_>, mv: &MoveRow, e: OpError) -> OpError {
    for (g, was) in [(&mv.src, &mv.src_primary), (&mv.dst, &mv.dst_primary)] {
        if let Ok(now) = fresh(sh, g).await {
            if was.as_deref().is_some_and(|w| w.split(" (").next() != Some(&now.primary_name())) {
                return failed(format!(
                    "{}; group {g}'s primary is {} now: run the command again (or `pgscale resume`) and the move of shard {} starts over",
                    e.message,
                    now.primary_name(),
                    mv.shard
                ));
            }
        }
    }
    e
}

/// A group's primary as a move records it: its name and timeline. Every
/// promotion starts a timeline, so a node that lost the role and got it
/// back while pgscale was away (A → B → A) is told apart too: the move's
/// slot on it may be a stale copy kept by pg_rewind, and is not trusted.
async fn primary_id(sh: &Sharded<'_>, g: &Group, d: Duration) -> Result<String, OpError> {
    // The group as just loaded (`sh` may name an earlier primary).
    let db = sh.db_of(g, d).await?;
    let tl: i32 = db
        .one(
            "read the primary's timeline",
            "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int",
            &[],
        )
        .await?
        .get(0);
    Ok(format!("{} (timeline {tl})", g.primary_name()))
}

async fn fresh(sh: &Sharded<'_>, group: &str) -> Result<Group, OpError> {
    Group::load(sh.stores, &model::group_cluster(&sh.name, group), group).await
}

async fn redo(coord: &Db, mut mv: MoveRow) -> Result<MoveRow, OpError> {
    coord
        .modify(
            "record a redo",
            "UPDATE pgscale.moves SET state = 'started', redos = redos + 1 WHERE id = $1",
            &[&mv.id],
        )
        .await?;
    mv.state = "started".into();
    mv.redos += 1;
    Ok(mv)
}

async fn finish(coord: &Db, mv: &MoveRow, f: &Figures) -> Result<(), OpError> {
    let json = serde_json::to_string(f).unwrap_or_default();
    coord
        .modify(
            "record the move done",
            "UPDATE pgscale.moves SET state = 'done', finished_at = now(), figures = coalesce($2::text::jsonb, figures) WHERE id = $1",
            &[&mv.id, &json],
        )
        .await?;
    Ok(())
}

/// The target's leaves (empty), the publication on the source, and the
/// subscription (which creates the slot and starts the copy).
async fn set_up(p: &Pair<'_, '_>) -> Result<(), OpError> {
    let Pair { sh, src, dst, tables, mv, o } = *p;
    let name = move_name(mv.shard, &mv.dst);
    let d = sh.group_db(&dst.name, o.timeout).await?;
    let leaves: Vec<String> = tables.iter().map(|t| shard_table(t, mv.shard)).collect();
    for t in tables {
        d.exec("create the shard's table", &sql::data_shard(t, sh.shards, mv.shard)).await?;
    }
    if !leaves.is_empty() {
        d.exec("empty the shard's table", &format!("TRUNCATE {}", leaves.join(", "))).await?;
    }
    let s = sh.group_db(&src.name, o.timeout).await?;
    s.exec("create the publication", &sql::create_publication(&name, tables, mv.shard)).await?;
    let t = src.primary_target();
    let port = t.port.to_string();
    let conninfo = sql::conninfo(&[
        ("host", &t.host),
        ("port", &port),
        ("dbname", &sh.database),
        ("user", &t.user),
        ("password", &t.password),
        ("application_name", &name),
        ("connect_timeout", "10"),
    ]);
    d.exec("quiet the log", sql::QUIET).await?;
    // Creating the slot waits for transactions running on the source.
    let r = d.exec_within("create the subscription", &sql::create_subscription(&name, &conninfo), o.timeout * 6).await;
    d.exec("log again", sql::UNQUIET).await?;
    r?;
    Ok(())
}

/// Everything a move made, gone, except what the switch made true: the
/// subscription, the slot and publication on the current source primary,
/// and the target's copies (emptied).
async fn teardown(p: &Pair<'_, '_>) -> Result<(), OpError> {
    let Pair { sh, src, dst, tables, mv, o } = *p;
    let name = move_name(mv.shard, &mv.dst);
    let d = sh.group_db(&dst.name, o.timeout).await?;
    let sub = drop_subscription(&d, &name).await?;
    let leaves: Vec<String> = tables.iter().map(|t| shard_table(t, mv.shard)).collect();
    for l in &leaves {
        d.exec(
            "empty a copy",
            &format!(
                "DO $pgscale$ BEGIN IF to_regclass({}) IS NOT NULL THEN EXECUTE 'TRUNCATE {l}'; END IF; END $pgscale$",
                plan::sql::literal(l)
            ),
        )
        .await?;
    }
    let s = sh.group_db(&src.name, o.timeout).await?;
    drop_source(&s, &name, sub, o).await
}

/// The subscription dropped (disabled and detached from its slot first, so
/// this never waits on the source). Returns its oid and the target's system
/// identifier: the names of the table-sync slots it may leave on the source.
pub(super) async fn drop_subscription(d: &Db, name: &str) -> Result<Option<(u32, u64)>, OpError> {
    let ids = d
        .opt(
            "read the subscription",
            "SELECT s.oid::int8, (SELECT system_identifier::text FROM pg_control_system()) FROM pg_subscription s WHERE s.subname = $1",
            &[&name],
        )
        .await?
        .map(|r| (r.get::<_, i64>(0) as u32, leftovers::system_id(&r.get::<_, String>(1))));
    d.exec("detach the subscription from its slot", &sql::drop_subscription(name)).await?;
    d.exec("drop the subscription", &format!("DROP SUBSCRIPTION IF EXISTS {}", plan::sql::ident(name))).await?;
    Ok(ids)
}

/// Publication and slot off the source, and the table-sync slots of the
/// dropped subscription `sub` (a subscription detached from its slot does
/// not drop them itself); each slot once its walsender ended.
async fn drop_source(s: &Db, name: &str, sub: Option<(u32, u64)>, o: &Opts) -> Result<(), OpError> {
    s.exec("drop the publication", &sql::drop_source_side(name)).await?;
    leftovers::drop_slot(s, name, o.timeout).await?;
    let Some(sub) = sub else { return Ok(()) };
    let syncs = leftovers::sync_slots(s).await?.into_iter().filter(|n| leftovers::sync_slot(n) == Some(sub));
    for n in syncs {
        leftovers::drop_slot(s, &n, o.timeout).await?;
    }
    Ok(())
}

/// After the switch: the replication objects and the source's rows go.
async fn cleanup(p: &Pair<'_, '_>) -> Result<(), OpError> {
    let Pair { sh, src, dst, tables, mv, o } = *p;
    let name = move_name(mv.shard, &mv.dst);
    // Markers: only this pair's moves write them (moves at the same time
    // never share a group), and the subscription is gone.
    let d = sh.group_db(&dst.name, o.timeout).await?;
    let sub = drop_subscription(&d, &name).await?;
    d.exec("clear markers", "DELETE FROM pgscale.marker").await?;
    let s = sh.group_db(&src.name, o.timeout).await?;
    drop_source(&s, &name, sub, o).await?;
    for t in tables {
        s.exec("drop the source's copy", &format!("DROP TABLE IF EXISTS {}", shard_table(t, mv.shard))).await?;
    }
    s.exec("clear markers", "DELETE FROM pgscale.marker").await?;
    Ok(())
}

/// Wait for the copy, then for the lag to fall under the gate; a stopped
/// subscription or a lost slot means a redo.
async fn follow(env: Env<'_>, p: &Pair<'_, '_>, key: &str, f: &mut Figures) -> Result<(), Stop> {
    let Pair { sh, src, dst, tables, mv, o } = *p;
    let name = &move_name(mv.shard, &mv.dst);
    let s = sh.group_db(&src.name, o.timeout).await?;
    let d = sh.group_db(&dst.name, o.timeout).await?;
    let leaves: Vec<String> = tables.iter().map(|t| shard_table(t, f.shard)).collect();
    let size_q = format!(
        "SELECT coalesce(sum(pg_table_size(c)), 0)::bigint FROM unnest(ARRAY[{}]::regclass[]) c",
        leaves.iter().map(|l| plan::sql::literal(l)).collect::<Vec<_>>().join(", ")
    );
    f.bytes = shard_size(&s, &size_q, leaves.is_empty()).await?;
    let start = Instant::now();
    let mut copied_at: Option<Instant> = None;
    let mut last_lag: Option<(Instant, i64)> = None;
    loop {
        if start.elapsed() > o.follow_limit {
            return Err(Stop::Fail(failed(format!(
                "{key}: not caught up after {:?}; it stays ready: run the command again",
                o.follow_limit
            ))));
        }
        let sub = d
            .opt(
                "read the subscription",
                "SELECT s.subenabled, (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid AND r.srsubstate NOT IN ('r', 's')), \
                 coalesce((SELECT apply_error_count + sync_error_count FROM pg_stat_subscription_stats t WHERE t.subid = s.oid), 0) \
                 FROM pg_subscription s WHERE s.subname = $1",
                &[&name],
            )
            .await?;
        let Some(sub) = sub else { return Err(Stop::Redo("its subscription is gone".into())) };
        let (enabled, syncing, errors): (bool, i64, i64) = (sub.get(0), sub.get(1), sub.get(2));
        if !enabled {
            return Err(Stop::Redo(format!(
                "its subscription stopped after {errors} error(s) (see the target's server log)"
            )));
        }
        if syncing > 0 {
            let done = shard_size(&d, &size_q, leaves.is_empty()).await?;
            env.ui.meter(&Meter {
                key,
                phase: "copy",
                done: done.min(f.bytes),
                total: f.bytes.max(1),
                detail: "",
                finished: false,
            });
        } else {
            let at = *copied_at.get_or_insert_with(|| {
                f.copy_secs = start.elapsed().as_secs_f64();
                f.copy_mb_per_s = if f.copy_secs > 0.0 { f.bytes as f64 / 1e6 / f.copy_secs } else { 0.0 };
                Instant::now()
            });
            let lag = s
                .opt(
                    "read the slot's lag",
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1",
                    &[&name],
                )
                .await?;
            let Some(lag) = lag else { return Err(Stop::Redo("its slot on the source is gone".into())) };
            let lag: i64 = lag.get::<_, Option<i64>>(0).unwrap_or(i64::MAX);
            // Seconds behind, from how fast the lag shrank since the last look.
            let secs = match last_lag {
                Some((t, l)) if l > lag && lag > 0 => {
                    format!(", ~{:.1}s", lag as f64 / ((l - lag) as f64 / t.elapsed().as_secs_f64()))
                }
                _ => String::new(),
            };
            last_lag = Some((Instant::now(), lag));
            let detail = format!("lag {} bytes{secs}", lag.max(0));
            env.ui.meter(&Meter {
                key,
                phase: "catch-up",
                done: f.bytes,
                total: f.bytes.max(1),
                detail: &detail,
                finished: false,
            });
            if lag >= 0 && (lag as u64) < o.lag_gate {
                f.catchup_secs = at.elapsed().as_secs_f64();
                return Ok(());
            }
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

/// How often `follow` looks at the copy and the lag. A shard's copy often
/// takes under a second: a coarser poll would add a noticeable share to it
/// (the queries are catalog reads, cheap on both sides).
const FOLLOW_POLL: Duration = Duration::from_millis(25);

/// Cut-over attempts until one fits in `max_pause`. Ok(true): switched.
async fn cut_over(p: &Pair<'_, '_>, f: &mut Figures) -> Result<bool, OpError> {
    let Pair { sh, src, dst, tables, mv, o } = *p;
    let c = sh.coord_db(o.timeout).await?;
    let s = sh.group_db(&src.name, o.timeout).await?;
    let d = sh.group_db(&dst.name, o.timeout).await?;
    let mids: Vec<String> = tables.iter().map(|t| shard_table(t, mv.shard)).collect();
    // Lock wait, marker wait and the switch share the pause budget.
    let lock_ms = (o.max_pause.as_millis() as u64 / 4).clamp(5, 200);
    // A pgscale frozen or cut off while it holds the shard: the server ends
    // the transaction (and the lock) on its own.
    let idle = o.max_pause.as_millis() as u64 + 2000;
    let mut switch = String::new();
    for t in tables {
        switch += &sql::detach_leaf(t, mv.shard, &mv.src);
        switch += &sql::attach_leaf(t, mv.shard, &mv.dst);
    }
    // Only if the journal still says what this run set up: another run
    // that redid the move meanwhile (emptying the target) wins.
    switch += &format!(
        "UPDATE pgscale.shards SET grp = {dst} WHERE shard = {shard};\n\
         DO $pgscale$ BEGIN UPDATE pgscale.moves SET state = 'switched' WHERE id = {id} AND state = 'copying' AND redos = {redos}; \
         IF NOT FOUND THEN RAISE EXCEPTION 'pgscale: move {id} changed under this run'; END IF; END $pgscale$;\n",
        dst = plan::sql::literal(&mv.dst),
        shard = mv.shard,
        id = mv.id,
        redos = mv.redos
    );
    // Room left for the flush and the switch.
    let margin = Duration::from_millis(60).min(o.max_pause / 5);
    for attempt in 1..=o.attempts {
        f.attempts = attempt;
        // Never used before: a marker left by a killed run cannot pass for this one.
        let id: i64 = c.one("draw a marker id", "SELECT nextval('pgscale.marker_ids')", &[]).await?.get(0);
        let t0 = Instant::now();
        let lock = if mids.is_empty() {
            "BEGIN;".to_string()
        } else {
            format!(
                "BEGIN; SET LOCAL lock_timeout = '{lock_ms}ms'; SET LOCAL idle_in_transaction_session_timeout = '{idle}ms'; \
                 LOCK TABLE {} IN ACCESS EXCLUSIVE MODE;",
                mids.join(", ")
            )
        };
        if let Err(e) = c.exec("lock the shard", &lock).await {
            c.exec("roll back", "ROLLBACK").await?;
            if e.sqlstate() != Some("55P03") {
                return Err(e.into());
            }
            f.max_rolled_back_pause_ms = f.max_rolled_back_pause_ms.max(ms(t0.elapsed()));
            backoff(attempt).await;
            continue;
        }
        let locked = t0.elapsed();
        exec::failpoint("move:locked");
        let budget = o.max_pause.saturating_sub(margin);
        let caught_up = async {
            s.modify("write the marker", "INSERT INTO pgscale.marker (id) VALUES ($1)", &[&id]).await?;
            loop {
                let seen = d.opt("look for the marker", "SELECT 1 FROM pgscale.marker WHERE id = $1", &[&id]).await?;
                if seen.is_some() {
                    return Ok::<bool, pg::PgError>(true);
                }
                if t0.elapsed() >= budget {
                    return Ok(false);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        let seen =
            match tokio::time::timeout(budget.saturating_sub(t0.elapsed()).max(Duration::from_millis(1)), caught_up)
                .await
            {
                Ok(r) => r,
                Err(_) => Ok(false),
            };
        let seen = match seen {
            Ok(v) => v,
            Err(e) => {
                c.exec("roll back", "ROLLBACK").await?;
                return Err(e.into());
            }
        };
        let marker_at = t0.elapsed();
        exec::failpoint("move:marker-seen");
        // Seen, but late (a timer fires late, a query was under way): the
        // cap holds all the same.
        if !seen || marker_at >= budget {
            c.exec("roll back", "ROLLBACK").await?;
            f.max_rolled_back_pause_ms = f.max_rolled_back_pause_ms.max(ms(t0.elapsed()));
            backoff(attempt).await;
            continue;
        }
        // Apply commits asynchronously: one synchronous write makes every
        // applied transaction before it durable (and on the target's
        // synchronous standbys) before the routing moves.
        let left = o.max_pause.saturating_sub(t0.elapsed()).max(Duration::from_millis(50));
        let flush =
            format!("BEGIN; SET LOCAL synchronous_commit = on; DELETE FROM pgscale.marker WHERE id = {id}; COMMIT;");
        if let Err(e) = d.exec_within("flush the target", &flush, left).await {
            c.exec("roll back", "ROLLBACK").await?;
            if matches!(e, pg::PgError::Timeout { .. }) {
                f.max_rolled_back_pause_ms = f.max_rolled_back_pause_ms.max(ms(t0.elapsed()));
                backoff(attempt).await;
                continue;
            }
            return Err(e.into());
        }
        if t0.elapsed() >= budget {
            c.exec("roll back", "ROLLBACK").await?;
            f.max_rolled_back_pause_ms = f.max_rolled_back_pause_ms.max(ms(t0.elapsed()));
            backoff(attempt).await;
            continue;
        }
        if let Err(e) = c.exec("switch the shard", &format!("{switch}COMMIT;")).await {
            let _ = c.exec("roll back", "ROLLBACK").await;
            return Err(e.into());
        }
        f.lock_wait_ms = ms(locked);
        f.catchup_ms = ms(marker_at - locked);
        f.pause_ms = ms(t0.elapsed());
        return Ok(true);
    }
    Ok(false)
}

async fn shard_size(db: &Db, q: &str, empty: bool) -> Result<u64, pg::PgError> {
    if empty {
        return Ok(0);
    }
    Ok(db.one("read the shard's size", q, &[]).await?.get::<_, i64>(0).max(0) as u64)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Between cut-over attempts: writers get through, the target catches up.
async fn backoff(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10)))).await;
}
