//! table create: a sharded table from the user's `CREATE TABLE`: on every
//! data group a hash-partitioned root with the shards it holds as leaves;
//! on the coordinator the same root, one middle partition per shard and a
//! postgres_fdw leaf on the group holding it. Re-running finishes a
//! creation that stopped half-way.

use super::{catalog, groups, ShardLock, Sharded};
use crate::error::{failed, invalid, refused, OpError};
use crate::{Env, Outcome};
use plan::shard::names::{valid_column, valid_table};
use plan::shard::sql;
use std::time::Duration;

pub struct Request {
    pub name: String,
    pub table: String,
    pub key: String,
    /// The user's `CREATE TABLE t (...)`.
    pub create: String,
    pub timeout: Duration,
}

pub async fn create(env: Env<'_>, r: Request) -> Result<Outcome, OpError> {
    if !valid_table(&r.table) {
        return Err(invalid(format!(
            "`{}` is not a usable sharded table name: 1 to 30 of a-z, 0-9, _ (not starting with a digit, not an SQL keyword)",
            r.table
        )));
    }
    if !valid_column(&r.key) {
        return Err(invalid(format!("`{}` is not a usable key column name: a-z, 0-9, _ (unquoted)", r.key)));
    }
    let head: String = r.create.split_whitespace().take(2).collect::<Vec<_>>().join(" ").to_lowercase();
    if head != "create table" {
        return Err(invalid(
            "the statement must be one `CREATE TABLE <table> (...)` (without PARTITION BY: pgscale adds it)",
        ));
    }
    let sh = Sharded::open(env.stores, &r.name).await?;
    let _lock = ShardLock::take(&sh, "table create", r.timeout).await?;
    let coord = sh.coord_db(r.timeout).await?;
    refuse_during_moves(&coord, "table create").await?;
    let _ = env;
    create_locked(&sh, &coord, &r).await
}

/// The creation itself, under the shard lock the caller holds.
pub(crate) async fn create_locked(sh: &Sharded<'_>, coord: &pg::Db, r: &Request) -> Result<Outcome, OpError> {
    if catalog::tables(coord).await?.iter().any(|(t, _)| *t == r.table) {
        return Ok(Outcome::Unchanged(format!("table {} is already sharded in {}", r.table, sh.name)));
    }
    let data_stmt = sql::partitioned_create(&r.create, &r.key);
    // 1. The whole shape on the coordinator, rolled back: the reasons to
    //    refuse show before any group changes.
    let probe = format!("BEGIN;\n{data_stmt}");
    if let Err(e) = coord.exec("try the statement", &probe).await {
        coord.exec("roll back", "ROLLBACK").await?;
        return Err(refused_statement(r, &e.to_string()));
    }
    let shape = check_shape(coord, r).await;
    coord.exec("roll back", "ROLLBACK").await?;
    shape?;
    // 2. Logged, so groups added later replay it.
    let id: i64 =
        match coord.opt("find the logged statement", "SELECT id FROM pgscale.ddl WHERE sql = $1", &[&data_stmt]).await?
        {
            Some(row) => row.get(0),
            None => coord
                .one("log the statement", "INSERT INTO pgscale.ddl (sql) VALUES ($1) RETURNING id", &[&data_stmt])
                .await?
                .get(0),
        };
    let _ = id;
    // 3. Every data group: the root (the logged statement) and its leaves.
    let placement = catalog::placement(coord).await?;
    for g in sh.data.keys() {
        groups::prepare_data(sh, coord, g, r.timeout).await?;
        let db = sh.group_db(g, r.timeout).await?;
        let mut leaves = String::new();
        for (s, at) in &placement {
            if at == g {
                leaves += &sql::data_shard(&r.table, sh.shards, *s);
            }
        }
        db.exec("create the shards", &leaves).await.map_err(|e| failed(format!("group {g}: {e}")))?;
    }
    // 4. The coordinator, in one transaction: root, middles, foreign leaves, record.
    let mut t = format!("BEGIN;\n{data_stmt}{}", sql::drop_unique(&r.table));
    for (s, g) in &placement {
        t += &sql::coordinator_shard(&r.table, &r.key, sh.shards, *s, g);
    }
    t += &format!(
        "INSERT INTO pgscale.tables (name, key) VALUES ({}, {});\nCOMMIT;",
        plan::sql::literal(&r.table),
        plan::sql::literal(&r.key)
    );
    if let Err(e) = coord.exec("create the sharded table", &t).await {
        let _ = coord.exec("roll back", "ROLLBACK").await;
        return Err(failed(format!("coordinator: {e}")));
    }
    Ok(Outcome::Done(format!(
        "table {} is sharded by {} into {} shards over {} group(s); applications use it through the coordinator ({})",
        r.table,
        r.key,
        sh.shards,
        sh.data.len(),
        sh.coord.primary_name()
    )))
}

/// The table the statement made (inside the probe transaction) must be
/// `public.<table>`, partitioned by the key, with a primary key holding it.
async fn check_shape(coord: &pg::Db, r: &Request) -> Result<(), OpError> {
    let kind = coord
        .one(
            "look at the table",
            "SELECT coalesce((SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)), '')",
            &[&format!("public.{}", r.table)],
        )
        .await?
        .get::<_, String>(0);
    if kind != "p" {
        return Err(invalid(format!("the statement does not create table `{}` (in schema public)", r.table)));
    }
    let pk: Vec<String> = coord.one("read the primary key", &sql::primary_key_columns(&r.table), &[]).await?.get(0);
    if pk.is_empty() {
        return Err(refused(format!(
            "table {} has no primary key: a shard move replicates UPDATE and DELETE by it (logical replication's \
             replica identity), and the data groups enforce uniqueness with it; add `PRIMARY KEY (..., {})`",
            r.table, r.key
        )));
    }
    Ok(())
}

fn refused_statement(r: &Request, e: &str) -> OpError {
    if e.contains("must include all partitioning columns") {
        return refused(format!(
            "the primary key of {} must include the key column {}: each shard enforces it on its own group ({e})",
            r.table, r.key
        ));
    }
    invalid(format!("the statement failed on the coordinator, nothing changed: {e}"))
}

/// DDL and new tables wait for moves: logical replication does not carry DDL.
pub async fn refuse_during_moves(coord: &pg::Db, what: &str) -> Result<(), OpError> {
    let active = catalog::moves(coord, true).await?;
    if let Some(m) = active.first() {
        return Err(refused(format!(
            "{what} is refused while shard moves are unfinished (logical replication does not carry DDL): shard {} {}→{} ({}); \
             finish it with `pgscale rebalance` or `pgscale resume`, then run this again",
            m.shard, m.src, m.dst, m.state
        )));
    }
    Ok(())
}
