//! ddl: schema changes of a sharded cluster, run on every data group (the
//! roots there carry them to every shard) and on the coordinator (its root
//! carries them to the middle partitions and foreign leaves). Tried first
//! everywhere and rolled back, so a statement that fails anywhere changes
//! nothing; logged, so groups added later replay it. Refused while a move
//! runs: logical replication does not carry DDL.

use super::table::refuse_during_moves;
use super::{groups, ShardLock, Sharded};
use crate::error::{failed, invalid, OpError};
use crate::{Env, Outcome};
use plan::shard::script::Stmt;
use std::time::Duration;

pub struct Request {
    pub name: String,
    /// The statements (a file's text or `-c`).
    pub sql: String,
    pub dry_run: bool,
    pub timeout: Duration,
}

pub async fn run(env: Env<'_>, r: Request) -> Result<Outcome, OpError> {
    if r.sql.trim().trim_end_matches(';').trim().is_empty() {
        return Err(invalid("no SQL given: pass -f FILE or -c 'ALTER TABLE ...'"));
    }
    let script = plan::shard::script::classify(&r.sql).map_err(invalid)?;
    let sh = Sharded::open(env.stores, &r.name).await?;
    let _lock = ShardLock::take(&sh, "ddl", r.timeout).await?;
    let coord = sh.coord_db(r.timeout).await?;
    refuse_during_moves(&coord, "DDL").await?;
    if script.iter().all(|s| matches!(s, Stmt::Everywhere(_))) {
        let all: Vec<String> =
            script.into_iter().map(|s| if let Stmt::Everywhere(s) = s { s } else { unreachable!() }).collect();
        return everywhere(&sh, &coord, &all.join(";\n"), r.dry_run, r.timeout).await;
    }
    if r.dry_run {
        let lines: Vec<String> = script
            .iter()
            .map(|s| match s {
                Stmt::Everywhere(x) => format!("everywhere: {}", first_line(x)),
                Stmt::Sharded { table, key, .. } => format!("sharded table {table} by {key}"),
                Stmt::Reference { table, .. } => format!("table {table} on the coordinator only"),
            })
            .collect();
        return Ok(Outcome::Done(format!(
            "would run, in order:\n  {}\nnothing changed (--dry-run)",
            lines.join("\n  ")
        )));
    }
    // In the script's order; consecutive statements for every group go together.
    let mut batch: Vec<String> = Vec::new();
    let mut done = Vec::new();
    for s in script {
        if let Stmt::Everywhere(x) = s {
            batch.push(x);
            continue;
        }
        if !batch.is_empty() {
            everywhere(&sh, &coord, &batch.join(";\n"), false, r.timeout).await?;
            done.push(format!("{} statement(s) on every group", batch.len()));
            batch.clear();
        }
        match s {
            Stmt::Sharded { table, key, create } => {
                let q = super::table::Request {
                    name: r.name.clone(),
                    table: table.clone(),
                    key,
                    create,
                    timeout: r.timeout,
                };
                super::table::create_locked(&sh, &coord, &q).await?;
                done.push(format!("sharded table {table}"));
            }
            Stmt::Reference { table, create } => {
                let t = format!("BEGIN;\nSET LOCAL search_path = public;\n{create};\nCOMMIT;");
                if let Err(e) = coord.exec("create the coordinator's table", &t).await {
                    let _ = coord.exec("roll back", "ROLLBACK").await;
                    return Err(failed(format!("table {table} on the coordinator: {e}")));
                }
                done.push(format!("table {table} on the coordinator"));
            }
            Stmt::Everywhere(_) => unreachable!(),
        }
    }
    if !batch.is_empty() {
        everywhere(&sh, &coord, &batch.join(";\n"), false, r.timeout).await?;
        done.push(format!("{} statement(s) on every group", batch.len()));
    }
    Ok(Outcome::Done(format!("done: {}", done.join(", "))))
}

fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--")).unwrap_or(s).trim()
}

/// Statements for every group: tried everywhere and rolled back, then run
/// on every data group (logged) and on the coordinator.
async fn everywhere(
    sh: &Sharded<'_>,
    coord: &pg::Db,
    stmt: &str,
    dry_run: bool,
    timeout: Duration,
) -> Result<Outcome, OpError> {
    let body = format!("SET LOCAL search_path = public;\n{stmt};\n");
    // Every group and the coordinator first, each rolled back.
    let mut dbs = Vec::new();
    for g in sh.data.keys() {
        groups::prepare_data(sh, coord, g, timeout).await?;
        dbs.push((g.clone(), sh.group_db(g, timeout).await?));
    }
    for (g, db) in dbs.iter().chain(std::iter::once(&("coordinator".to_string(), sh.coord_db(timeout).await?))) {
        let t = format!("BEGIN;\n{body}");
        let res = db.exec("try the DDL", &t).await;
        db.exec("roll back", "ROLLBACK").await?;
        if let Err(e) = res {
            return Err(invalid(format!("the DDL fails on {g}, nothing changed: {e}")));
        }
    }
    if dry_run {
        return Ok(Outcome::Done(format!(
            "the DDL runs on the coordinator and {} data group(s); nothing changed (--dry-run)",
            dbs.len()
        )));
    }
    let id: i64 =
        coord.one("log the DDL", "INSERT INTO pgscale.ddl (sql) VALUES ($1) RETURNING id", &[&body]).await?.get(0);
    for (g, db) in &dbs {
        let t = format!("BEGIN;\n{body}INSERT INTO pgscale.applied_ddl (id) VALUES ({id});\nCOMMIT;");
        if let Err(e) = db.exec("run the DDL", &t).await {
            let _ = db.exec("roll back", "ROLLBACK").await;
            return Err(failed(format!(
                "the DDL failed on group {g} after passing its trial: {e}; groups that ran it keep it (logged as #{id}); \
                 fix the cause and run `pgscale rebalance -n {}` to replay it where it is missing",
                sh.name
            )));
        }
    }
    if let Err(e) = coord.exec("run the DDL", &format!("BEGIN;\n{body}COMMIT;")).await {
        let _ = coord.exec("roll back", "ROLLBACK").await;
        return Err(failed(format!("the DDL ran on every data group but failed on the coordinator: {e}")));
    }
    Ok(Outcome::Done(format!("the DDL ran on the coordinator and {} data group(s)", dbs.len())))
}
