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
use std::time::Duration;

pub struct Request {
    pub name: String,
    /// The statements (a file's text or `-c`).
    pub sql: String,
    pub dry_run: bool,
    pub timeout: Duration,
}

pub async fn run(env: Env<'_>, r: Request) -> Result<Outcome, OpError> {
    let stmt = r.sql.trim().trim_end_matches(';').trim().to_string();
    if stmt.is_empty() {
        return Err(invalid("no SQL given: pass -f FILE or -c 'ALTER TABLE ...'"));
    }
    let sh = Sharded::open(env.stores, &r.name).await?;
    let _lock = ShardLock::take(&sh, "ddl", r.timeout).await?;
    let coord = sh.coord_db(r.timeout).await?;
    refuse_during_moves(&coord, "DDL").await?;
    let body = format!("SET LOCAL search_path = public;\n{stmt};\n");
    // Every group and the coordinator first, each rolled back.
    let mut dbs = Vec::new();
    for g in sh.data.keys() {
        groups::prepare_data(&sh, &coord, g, r.timeout).await?;
        dbs.push((g.clone(), sh.group_db(g, r.timeout).await?));
    }
    for (g, db) in dbs.iter().chain(std::iter::once(&("coordinator".to_string(), sh.coord_db(r.timeout).await?))) {
        let t = format!("BEGIN;\n{body}");
        let res = db.exec("try the DDL", &t).await;
        db.exec("roll back", "ROLLBACK").await?;
        if let Err(e) = res {
            return Err(invalid(format!("the DDL fails on {g}, nothing changed: {e}")));
        }
    }
    if r.dry_run {
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
