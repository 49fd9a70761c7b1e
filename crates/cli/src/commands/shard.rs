//! The sharding commands: table create, ddl, expand, shrink, rebalance, shards.

use super::show;
use crate::args::{DdlArgs, ExpandArgs, MoveArgs, OutputFormat, RebalanceArgs, ShardsArgs, ShrinkArgs, TableCommand};
use comfy_table::{presets, Table};
use ops::error::{invalid, OpError};
use ops::shard::rebalance::{self, Report, Request};
use ops::shard::{ddl, show as shards_show, table};
use ops::Env;

pub async fn table(env: Env<'_>, fmt: OutputFormat, c: TableCommand) -> Result<u8, OpError> {
    let TableCommand::Create(a) = c;
    let r = table::Request { name: a.name, table: a.table, key: a.key, create: a.create.join(" "), timeout: a.timeout };
    let out = table::create(env, r).await?;
    Ok(show(env, fmt, &out))
}

pub async fn ddl(env: Env<'_>, fmt: OutputFormat, a: DdlArgs) -> Result<u8, OpError> {
    let sql = match (a.file, a.command) {
        (Some(f), _) => std::fs::read_to_string(&f).map_err(|e| invalid(format!("read {}: {e}", f.display())))?,
        (None, Some(c)) => c,
        (None, None) => return Err(invalid("pass -f FILE or -c SQL")),
    };
    let out = ddl::run(env, ddl::Request { name: a.name, sql, dry_run: a.dry_run, timeout: a.timeout }).await?;
    Ok(show(env, fmt, &out))
}

fn request(name: &str, m: &MoveArgs) -> Request {
    let mut r = Request::new(name);
    r.dry_run = m.dry_run;
    r.parallel = m.parallel.max(1);
    r.moves.max_pause = m.max_pause;
    r.moves.attempts = m.attempts.max(1);
    r.moves.timeout = m.timeout;
    r.min_free = m.min_free;
    r
}

pub async fn expand(env: Env<'_>, fmt: OutputFormat, a: ExpandArgs) -> Result<u8, OpError> {
    let e = rebalance::ExpandRequest {
        rebalance: request(&a.name, &a.moves),
        config: a.config,
        install: a.install,
        no_rebalance: a.no_rebalance,
    };
    let rep = rebalance::expand(env, &e).await?;
    print_report(&rep, fmt);
    Ok(0)
}

pub async fn shrink(env: Env<'_>, fmt: OutputFormat, a: ShrinkArgs) -> Result<u8, OpError> {
    let rep = rebalance::shrink(env, &request(&a.name, &a.moves), &a.drain, a.yes).await?;
    print_report(&rep, fmt);
    Ok(0)
}

pub async fn move_one(env: Env<'_>, fmt: OutputFormat, a: crate::args::MoveOneArgs) -> Result<u8, OpError> {
    let rep = rebalance::move_one(env, &request(&a.name, &a.moves), a.shard, &a.to).await?;
    print_report(&rep, fmt);
    Ok(0)
}

pub async fn rebalance(env: Env<'_>, fmt: OutputFormat, a: RebalanceArgs) -> Result<u8, OpError> {
    let rep = rebalance::rebalance(env, &request(&a.name, &a.moves)).await?;
    print_report(&rep, fmt);
    Ok(0)
}

fn print_report(r: &Report, fmt: OutputFormat) {
    if fmt == OutputFormat::Json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    if r.planned.is_empty() && r.moves.is_empty() {
        println!("{}: nothing to move: the shards are balanced", r.cluster);
    }
    if !r.planned.is_empty() {
        let mut t = Table::new();
        t.load_preset(presets::NOTHING);
        t.set_header(["SHARD", "FROM", "TO", "MB"]);
        for m in &r.planned {
            t.add_row([m.shard.to_string(), m.from.clone(), m.to.clone(), format!("{:.1}", m.bytes as f64 / 1e6)]);
        }
        println!("{t}");
        let mb: f64 = r.planned.iter().map(|m| m.bytes as f64 / 1e6).sum();
        println!(
            "{} move(s), {mb:.1} MB; ETA {:.0}s at {:.1} MB/s per move (measured by earlier moves, else assumed)",
            r.planned.len(),
            r.eta_secs,
            r.rate_mb_per_s
        );
    }
    if !r.moves.is_empty() {
        let mut t = Table::new();
        t.load_preset(presets::NOTHING);
        t.set_header([
            "SHARD",
            "FROM",
            "TO",
            "MB",
            "COPY_S",
            "MB/S",
            "PAUSE_MS",
            "LOCK_MS",
            "CATCHUP_MS",
            "ATTEMPTS",
            "REDOS",
        ]);
        for f in &r.moves {
            t.add_row([
                f.shard.to_string(),
                f.from.clone(),
                f.to.clone(),
                format!("{:.1}", f.bytes as f64 / 1e6),
                format!("{:.2}", f.copy_secs),
                format!("{:.1}", f.copy_mb_per_s),
                format!("{:.1}", f.pause_ms),
                format!("{:.1}", f.lock_wait_ms),
                format!("{:.1}", f.catchup_ms),
                f.attempts.to_string(),
                f.redos.to_string(),
            ]);
        }
        println!("{t}");
        println!("{} move(s) in {:.1}s", r.moves.len(), r.elapsed_secs);
    }
}

pub async fn shards(env: Env<'_>, fmt: OutputFormat, a: ShardsArgs) -> Result<u8, OpError> {
    let _ = env;
    let r = shards_show::shards(env.stores, &a.name, a.timeout).await?;
    if fmt == OutputFormat::Json {
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
        return Ok(0);
    }
    println!("sharded cluster {}: coordinator {} (database {})", r.cluster, r.coordinator, r.database);
    if r.tables.is_empty() {
        println!(
            "no sharded tables yet: `pgscale table create -n {} --table T --key COL -- 'CREATE TABLE ...'`",
            r.cluster
        );
    } else {
        let ts: Vec<String> = r.tables.iter().map(|(t, k)| format!("{t} (key {k})")).collect();
        println!("sharded tables: {}", ts.join(", "));
    }
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(["GROUP", "PRIMARY", "SHARDS", "MB", "STATE"]);
    for g in &r.groups {
        t.add_row([
            g.group.clone(),
            g.primary.clone(),
            g.shards.to_string(),
            format!("{:.1}", g.bytes as f64 / 1e6),
            if g.draining { "draining".into() } else { "active".to_string() },
        ]);
    }
    println!("{t}");
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(["SHARD", "GROUP", "MB"]);
    for s in &r.shards {
        t.add_row([s.shard.to_string(), s.group.clone(), format!("{:.2}", s.bytes as f64 / 1e6)]);
    }
    println!("{t}");
    for m in &r.moves {
        println!("moving: shard {} {} → {} ({}, redone {} times)", m.shard, m.src, m.dst, m.state, m.redos);
    }
    Ok(0)
}
