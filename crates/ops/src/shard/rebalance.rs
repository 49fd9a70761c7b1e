//! rebalance, expand and shrink: unfinished moves first, then the fewest
//! moves that even the shards out over the active groups (a draining group
//! gives all of its shards away), in waves of disjoint group pairs.

use super::catalog::{self, MoveRow};
use super::mover::{self, Figures, Opts};
use super::{groups, leftovers, Group, ShardLock, Sharded};
use crate::error::{invalid, problems, refused, OpError};
use crate::{Env, Outcome};
use plan::shard::{balance, waves, Move};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Request {
    pub name: String,
    pub dry_run: bool,
    /// Moves at the same time (each between its own pair of groups).
    pub parallel: usize,
    pub moves: Opts,
    /// Keep at least this much free on every node of a target group, on
    /// top of what its incoming shards need.
    pub min_free: u64,
    /// Only finish unfinished moves (`resume`), plan none.
    pub only_unfinished: bool,
}

impl Request {
    pub fn new(name: &str) -> Request {
        Request {
            name: name.to_string(),
            dry_run: false,
            parallel: 1,
            moves: Opts::default(),
            min_free: 0,
            only_unfinished: false,
        }
    }
}

/// What a rebalance did or would do.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub cluster: String,
    /// `--dry-run`: the moves, in order.
    pub planned: Vec<Move>,
    /// Estimated time of the planned moves, from the copy rate measured
    /// by earlier moves (50 MB/s when none finished yet).
    pub eta_secs: f64,
    pub rate_mb_per_s: f64,
    /// Moves that ran (finished ones first).
    pub moves: Vec<Figures>,
    pub elapsed_secs: f64,
}

/// rebalance: finish unfinished moves, then even the shards out.
pub async fn rebalance(env: Env<'_>, r: &Request) -> Result<Report, OpError> {
    let sh = Sharded::open(env.stores, &r.name).await?;
    run(env, &sh, r).await
}

pub(crate) async fn run(env: Env<'_>, sh: &Sharded<'_>, r: &Request) -> Result<Report, OpError> {
    let _lock = if r.dry_run { None } else { Some(ShardLock::take(sh, "rebalance", r.moves.timeout).await?) };
    run_held(env, sh, r).await
}

/// rebalance with the shard lock held (or a dry run).
async fn run_held(env: Env<'_>, sh: &Sharded<'_>, r: &Request) -> Result<Report, OpError> {
    let start = std::time::Instant::now();
    let coord = sh.coord_db(r.moves.timeout).await?;
    let mut report = Report { cluster: sh.name.clone(), ..Default::default() };
    let unfinished = catalog::moves(&coord, true).await?;
    let tables = catalog::table_names(&coord).await?;
    let placement = catalog::placement(&coord).await?;
    let sizes = catalog::shard_sizes(sh, &placement, &tables, r.moves.timeout).await;
    let active: Vec<String> = catalog::groups(&coord).await?.into_iter().filter(|(_, d)| !d).map(|(g, _)| g).collect();
    report.rate_mb_per_s = measured_rate(&coord).await?;
    if r.dry_run {
        // Unfinished moves run first, then the balance as it would be after them.
        let mut after = placement.clone();
        for m in &unfinished {
            report.planned.push(Move {
                shard: m.shard,
                from: m.src.clone(),
                to: m.dst.clone(),
                bytes: sizes.get(&m.shard).copied().unwrap_or(0),
            });
            after.insert(m.shard, m.dst.clone());
        }
        if !r.only_unfinished {
            report.planned.extend(balance(&after, &active, &sizes));
        }
        report.eta_secs = eta(&report.planned, report.rate_mb_per_s, r);
        return Ok(report);
    }
    for g in sh.data.keys() {
        // DDL a group missed (a failed `pgscale ddl`) comes first.
        groups::prepare_data(sh, &coord, g, r.moves.timeout).await?;
    }
    leftovers::sweep(env, sh, &coord, r.moves.timeout).await?;
    if !unfinished.is_empty() {
        env.ui.say(&format!("finishing {} unfinished move(s) first", unfinished.len()));
        let ms: Vec<Move> = unfinished
            .iter()
            .map(|m| Move { shard: m.shard, from: m.src.clone(), to: m.dst.clone(), bytes: 0 })
            .collect();
        run_waves(env, sh, &coord, &ms, Some(&unfinished), r, &mut report).await?;
    }
    if r.only_unfinished {
        report.elapsed_secs = start.elapsed().as_secs_f64();
        return Ok(report);
    }
    let placement = catalog::placement(&coord).await?;
    let planned = balance(&placement, &active, &sizes);
    disk_room(sh, &planned, r).await?;
    if planned.is_empty() {
        env.ui.say(&format!("{}: the shards are balanced ({} groups)", sh.name, active.len()));
    } else {
        let bytes: u64 = planned.iter().map(|m| m.bytes).sum();
        env.ui.say(&format!("{}: {} move(s), {:.1} MB to copy", sh.name, planned.len(), bytes as f64 / 1e6));
        run_waves(env, sh, &coord, &planned, None, r, &mut report).await?;
    }
    report.elapsed_secs = start.elapsed().as_secs_f64();
    Ok(report)
}

async fn run_waves(
    env: Env<'_>,
    sh: &Sharded<'_>,
    coord: &pg::Db,
    moves: &[Move],
    known: Option<&[MoveRow]>,
    r: &Request,
    report: &mut Report,
) -> Result<(), OpError> {
    for wave in waves(moves, r.parallel) {
        let mut rows = Vec::new();
        for m in &wave {
            let row = match known.and_then(|k| k.iter().find(|x| x.shard == m.shard)) {
                Some(row) => row.clone(),
                None => mover::register(coord, m.shard, &m.from, &m.to).await?,
            };
            rows.push(row);
        }
        let results = futures::future::join_all(rows.into_iter().map(|row| mover::run(env, sh, row, &r.moves))).await;
        let mut first_err = None;
        for res in results {
            match res {
                Ok(f) => {
                    env.ui.say(&format!(
                        "shard {} {}→{}: {:.1} MB copied in {:.2}s, write pause {:.0} ms ({} attempt{})",
                        f.shard,
                        f.from,
                        f.to,
                        f.bytes as f64 / 1e6,
                        f.copy_secs,
                        f.pause_ms,
                        f.attempts,
                        if f.attempts == 1 { "" } else { "s" }
                    ));
                    report.moves.push(f);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(crate::error::failed(format!(
                "{}\nRe-running the same command (or `pgscale resume -n {}`) finishes or redoes the move.",
                e.message, sh.name
            )));
        }
    }
    Ok(())
}

/// Every node of each target group must have room for its incoming
/// shards (their size, a fifth more for WAL and index builds, 64 MiB) and
/// `min_free` besides: refused before anything is copied.
async fn disk_room(sh: &Sharded<'_>, planned: &[Move], r: &Request) -> Result<(), OpError> {
    let mut incoming: std::collections::BTreeMap<&str, u64> = Default::default();
    for m in planned {
        *incoming.entry(m.to.as_str()).or_default() += m.bytes;
    }
    let mut short = Vec::new();
    for (g, bytes) in incoming {
        let need = bytes + bytes / 5 + (64 << 20) + r.min_free;
        let grp = sh.group(g)?;
        let hosts = crate::resolve::hosts(&grp.inv, r.moves.timeout).await?;
        for n in grp.inv.staying() {
            let Some(Ok(h)) = hosts.get(&n.name) else {
                short.push(format!("{g}/{}: its host cannot be reached to check its disk", n.name));
                continue;
            };
            match free_bytes(h, &n.data_dir, r.moves.timeout).await {
                Some(free) if free < need => short.push(format!(
                    "{g}/{}: {:.1} MB free under {}, the moves need {:.1} MB",
                    n.name,
                    free as f64 / 1e6,
                    n.data_dir.display(),
                    need as f64 / 1e6
                )),
                Some(_) => {}
                None => {
                    short.push(format!("{g}/{}: free space of {} unknown (df failed)", n.name, n.data_dir.display()))
                }
            }
        }
    }
    if short.is_empty() {
        return Ok(());
    }
    Err(refused(format!(
        "not enough disk on the target groups, nothing copied:\n  {}\nFree space there, or drain onto other groups.",
        short.join("\n  ")
    )))
}

/// Bytes available to the data directory's filesystem (`df -P -B1`).
async fn free_bytes(h: &host::Host, dir: &std::path::Path, d: Duration) -> Option<u64> {
    let argv = vec!["df".to_string(), "-P".into(), "-B1".into(), dir.display().to_string()];
    let o = h.run(&host::Run::new(&argv, d)).await.ok()?;
    o.stdout.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// `--dry-run` of expand and shrink: the moves that would even the shards
/// out over `active`, with their bytes and an ETA at the measured rate.
async fn preview(sh: &Sharded<'_>, coord: &pg::Db, active: &[String], r: &Request) -> Result<Report, OpError> {
    let placement = catalog::placement(coord).await?;
    let tables = catalog::table_names(coord).await?;
    let sizes = catalog::shard_sizes(sh, &placement, &tables, r.moves.timeout).await;
    let planned = balance(&placement, active, &sizes);
    let rate = measured_rate(coord).await?;
    Ok(Report {
        cluster: sh.name.clone(),
        eta_secs: eta(&planned, rate, r),
        rate_mb_per_s: rate,
        planned,
        ..Default::default()
    })
}

/// Seconds to copy `moves` at `rate` MB/s per move, `--parallel` at a time.
fn eta(moves: &[Move], rate: f64, r: &Request) -> f64 {
    let at_once = r.parallel.clamp(1, moves.len().max(1));
    moves.iter().map(|m| m.bytes).sum::<u64>() as f64 / 1e6 / rate / at_once as f64
}

/// MB/s of the copies of finished moves (the last 20), 50 without any.
async fn measured_rate(coord: &pg::Db) -> Result<f64, OpError> {
    let row = coord
        .one(
            "read measured copy rates",
            "SELECT avg((figures->>'copy_mb_per_s')::float8) FROM (SELECT figures FROM pgscale.moves \
             WHERE state = 'done' AND (figures->>'copy_mb_per_s')::float8 > 0 ORDER BY id DESC LIMIT 20) x",
            &[],
        )
        .await?;
    Ok(row.get::<_, Option<f64>>(0).filter(|r| *r > 0.0).unwrap_or(50.0))
}

pub struct ExpandRequest {
    pub rebalance: Request,
    /// The file with the `data:` groups to add.
    pub config: PathBuf,
    pub install: bool,
    /// Add the groups only; move shards later with `rebalance`.
    pub no_rebalance: bool,
}

/// expand: create the new data groups (hosts checked and made ready as
/// for scale-out), let every group in to each other, register them on the
/// coordinator, then rebalance onto them.
pub async fn expand(env: Env<'_>, e: &ExpandRequest) -> Result<Report, OpError> {
    let r = &e.rebalance;
    let file = e.config.display().to_string();
    let text = std::fs::read_to_string(&e.config).map_err(|x| invalid(format!("read {file}: {x}")))?;
    let (add, locs) = plan::load::parse_add_groups(&file, &text).map_err(|p| problems(&p))?;
    let sh = Sharded::open(env.stores, &r.name).await?;
    let known: Vec<String> = sh.data.keys().cloned().collect();
    // Groups of this file already created by an earlier run are not new.
    let fresh: Vec<_> = add.data.iter().filter(|g| !known.contains(&g.name)).cloned().collect();
    let mut ps = plan::shard::spec::group_problems(&add.data, &[], &locs);
    let mut all: Vec<(String, &model::NodeSpec)> = Vec::new();
    for g in std::iter::once(&sh.coord).chain(sh.data.values()) {
        if add.data.iter().any(|a| a.name == g.name) {
            continue;
        }
        all.extend(g.inv.nodes.iter().map(|n| (format!("group {}", g.name), n)));
    }
    for (i, d) in add.data.iter().enumerate() {
        all.extend(d.nodes.iter().enumerate().map(|(j, n)| (format!("data[{i}].nodes[{j}]"), n)));
    }
    ps.extend(plan::shard::spec::cross_node_problems(&all, &locs));
    let stored = &sh.coord.inv;
    let sharding = stored.sharding.clone().expect("opened as sharded");
    let mut base = stored.clone();
    base.postgres.bin_dir = None;
    base.state = Default::default();
    let mut new_invs = Vec::new();
    for (i, d) in add.data.iter().enumerate() {
        let inv =
            plan::shard::spec::group_inventory(&base, &sh.name, &d.name, d.nodes.clone(), sh.shards, &sh.database);
        let glocs = locs.group(&format!("data[{i}]."));
        ps.extend(plan::validate::user_state_problems(None, &inv.nodes, &glocs));
        ps.extend(plan::validate::validate_static(&inv, &glocs));
        new_invs.push((d.name.clone(), inv, glocs));
    }
    if !ps.is_empty() {
        return Err(problems(&ps));
    }
    // Peers: every group's addresses, the new ones included.
    let mut invs: Vec<&model::Inventory> = vec![&sh.coord.inv];
    invs.extend(sh.data.values().map(|g| &g.inv));
    invs.extend(new_invs.iter().map(|(_, i, _)| i));
    let peers = groups::peers_of(&groups::addresses(&invs, r.moves.timeout).await);
    let init = crate::init::Request {
        config: e.config.clone(),
        dry_run: r.dry_run,
        timeout: r.moves.timeout,
        parallel: None,
        catchup: Duration::from_secs(600),
        install: e.install,
        pg_major: None,
        max_rate: None,
    };
    let rerun = format!("pgscale expand -n {} -c {file}", sh.name);
    for (g, mut inv, glocs) in new_invs {
        if let Some(s) = inv.sharding.as_mut() {
            s.peers = peers.get(&inv.name).cloned().unwrap_or_default();
        }
        env.ui.say(&format!("group {g} (cluster {}):", inv.name));
        match crate::init::run_inventory(env, inv, &glocs, &init, rerun.clone()).await? {
            Outcome::Unchanged(why) => env.ui.say(&why),
            Outcome::Planned(p) if r.dry_run => env.ui.say(&format!("  would run {} step(s)", p.steps.len())),
            _ => {}
        }
    }
    if r.dry_run {
        env.ui.say(&format!(
            "then: the groups let each other in (pg_hba), {} registered on the coordinator, and the shards rebalanced",
            fresh.iter().map(|g| g.name.clone()).collect::<Vec<_>>().join(", ")
        ));
        // The moves as they would be with the new groups taking shards.
        let coord = sh.coord_db(r.moves.timeout).await?;
        let mut active: Vec<String> =
            catalog::groups(&coord).await?.into_iter().filter(|(_, d)| !d).map(|(g, _)| g).collect();
        active.extend(fresh.iter().map(|g| g.name.clone()));
        if e.no_rebalance {
            active = sh.data.keys().cloned().collect();
        }
        return preview(&sh, &coord, &active, r).await;
    }
    // The coordinator lists the new groups (under its lock).
    {
        let store = &sh.coord.store;
        let _lock = store.lock(&sh.name, "pgscale expand", env.stores.lock_wait()).await?;
        let mut inv = store.load(&sh.name).await?;
        let s = inv.sharding.as_mut().expect("sharded");
        for d in &add.data {
            if !s.groups.contains(&d.name) {
                s.groups.push(d.name.clone());
            }
        }
        if s.groups != sharding.groups {
            store.save(&inv).await?;
        }
    }
    let sh = Sharded::open(env.stores, &r.name).await?;
    let all: Vec<Group> = std::iter::once(sh.coord.clone()).chain(sh.data.values().cloned()).collect();
    groups::refresh_peers(env, &all, r.moves.timeout).await?;
    let sh = Sharded::open(env.stores, &r.name).await?;
    super::init::setup(&sh, r.moves.timeout).await?;
    if e.no_rebalance {
        env.ui.say(&format!("groups added; move shards onto them with `pgscale rebalance -n {}`", sh.name));
        return Ok(Report { cluster: sh.name.clone(), ..Default::default() });
    }
    run(env, &sh, r).await
}

/// move: one shard to a group (an unfinished move of that shard is
/// finished instead, wherever it was going).
pub async fn move_one(env: Env<'_>, r: &Request, shard: u32, to: &str) -> Result<Report, OpError> {
    let start = std::time::Instant::now();
    let sh = Sharded::open(env.stores, &r.name).await?;
    sh.group(to)?;
    // Placement and moves are read under the lock (a dry run reads without).
    let _lock = if r.dry_run { None } else { Some(ShardLock::take(&sh, "move", r.moves.timeout).await?) };
    let coord = sh.coord_db(r.moves.timeout).await?;
    let placement = catalog::placement(&coord).await?;
    let Some(from) = placement.get(&shard).cloned() else {
        return Err(invalid(format!("{} has shards 0 to {}; there is no shard {shard}", sh.name, sh.shards - 1)));
    };
    let unfinished = catalog::moves(&coord, true).await?.into_iter().find(|m| m.shard == shard);
    if from == to && unfinished.is_none() {
        return Ok(Report { cluster: sh.name.clone(), ..Default::default() });
    }
    if catalog::groups(&coord).await?.iter().any(|(g, d)| g == to && *d) {
        return Err(refused(format!("group {to} is draining: it takes no shards")));
    }
    let tables = catalog::table_names(&coord).await?;
    let sizes = catalog::shard_sizes(&sh, &placement, &tables, r.moves.timeout).await;
    let mv = Move { shard, from: from.clone(), to: to.to_string(), bytes: sizes.get(&shard).copied().unwrap_or(0) };
    let mut report =
        Report { cluster: sh.name.clone(), rate_mb_per_s: measured_rate(&coord).await?, ..Default::default() };
    if r.dry_run {
        report.eta_secs = eta(std::slice::from_ref(&mv), report.rate_mb_per_s, r);
        report.planned.push(mv);
        return Ok(report);
    }
    leftovers::sweep(env, &sh, &coord, r.moves.timeout).await?;
    if unfinished.is_none() {
        disk_room(&sh, std::slice::from_ref(&mv), r).await?;
    }
    let rows: Option<Vec<MoveRow>> = unfinished.map(|u| vec![u]);
    let ms: Vec<Move> = match &rows {
        Some(u) => vec![Move { shard, from: u[0].src.clone(), to: u[0].dst.clone(), bytes: mv.bytes }],
        None => vec![mv],
    };
    run_waves(env, &sh, &coord, &ms, rows.as_deref(), r, &mut report).await?;
    report.elapsed_secs = start.elapsed().as_secs_f64();
    Ok(report)
}

/// shrink: move every shard off `group`, then drop its foreign server and
/// remove the group (its cluster destroyed), and the others stop letting
/// it in.
pub async fn shrink(env: Env<'_>, r: &Request, group: &str, yes: bool) -> Result<Report, OpError> {
    crate::ui::need_answer_or_yes(
        env.ui,
        yes,
        r.dry_run,
        &format!(
            "shrink removes group {group} of {} (its servers and data directories) once its shards moved off",
            r.name
        ),
    )?;
    let sh = Sharded::open(env.stores, &r.name).await?;
    if !sh.data.contains_key(group) {
        // A run that died after forgetting the group: finish removing it.
        let cluster = model::group_cluster(&r.name, group);
        let store = env.stores.for_cluster(&cluster).await?;
        if store.exists(&cluster).await? && !r.dry_run {
            let inv = store.load(&cluster).await?;
            if inv.sharding.as_ref().is_some_and(|s| s.cluster == r.name && s.group == group) {
                remove_cluster(env, &cluster, r.moves.timeout).await?;
                return Ok(Report { cluster: r.name.clone(), ..Default::default() });
            }
        }
        sh.group(group)?;
    }
    if sh.data.len() < 2 {
        return Err(refused(format!("{group} is the last data group of {}: the shards have nowhere to go", r.name)));
    }
    let coord = sh.coord_db(r.moves.timeout).await?;
    if r.dry_run {
        // As if draining: the plan moves everything off it.
        let active: Vec<String> = sh.data.keys().filter(|g| *g != group).cloned().collect();
        return preview(&sh, &coord, &active, r).await;
    }
    // The lock is held until the group is gone: no other shard operation
    // sees it half-removed, and a shrink refused by another one's lock
    // leaves the group as it was.
    let _lock = ShardLock::take(&sh, "shrink", r.moves.timeout).await?;
    coord
        .modify("mark the group draining", "UPDATE pgscale.groups SET draining = true WHERE name = $1", &[&group])
        .await?;
    let mut report = run_held(env, &sh, r).await?;
    let left: i64 = coord
        .one("count the group's shards", "SELECT count(*) FROM pgscale.shards WHERE grp = $1", &[&group])
        .await?
        .get(0);
    if left > 0 {
        return Err(crate::error::failed(format!("{left} shard(s) are still on {group}; run the command again")));
    }
    let srv = plan::shard::names::server(group);
    coord
        .exec(
            "drop the group's foreign server",
            &format!(
                "DO $pgscale$ BEGIN IF EXISTS (SELECT 1 FROM pg_foreign_server WHERE srvname = {l}) THEN \
                 DROP USER MAPPING IF EXISTS FOR CURRENT_USER SERVER {srv}; DROP SERVER {srv}; END IF; END $pgscale$;\n\
                 DELETE FROM pgscale.groups WHERE name = {g};",
                l = plan::sql::literal(&srv),
                g = plan::sql::literal(group)
            ),
        )
        .await
        .map_err(|e| refused(format!("the foreign server of {group} is still in use: {e}")))?;
    {
        let store = &sh.coord.store;
        let _lock = store.lock(&sh.name, "pgscale shrink", env.stores.lock_wait()).await?;
        let mut inv = store.load(&sh.name).await?;
        if let Some(s) = inv.sharding.as_mut() {
            s.groups.retain(|g| g != group);
        }
        store.save(&inv).await?;
    }
    remove_cluster(env, &model::group_cluster(&r.name, group), r.moves.timeout).await?;
    let sh = Sharded::open(env.stores, &r.name).await?;
    let all: Vec<Group> = std::iter::once(sh.coord.clone()).chain(sh.data.values().cloned()).collect();
    groups::refresh_peers(env, &all, r.moves.timeout).await?;
    report.elapsed_secs = report.elapsed_secs.max(0.0);
    env.ui.say(&format!("group {group} is removed from {}", r.name));
    Ok(report)
}

async fn remove_cluster(env: Env<'_>, cluster: &str, timeout: Duration) -> Result<(), OpError> {
    let req = crate::destroy::Request { name: cluster.to_string(), yes: true, dry_run: false, timeout };
    crate::destroy::run(env, req).await?;
    Ok(())
}
