//! Reading the coordinator's catalog: groups, placement, tables, the DDL
//! log and the moves' journal; and the shards' sizes on their groups.

use super::Sharded;
use crate::error::OpError;
use pg::Db;
use plan::shard::names::shard_rel;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug, serde::Serialize)]
pub struct MoveRow {
    pub id: i64,
    pub shard: u32,
    pub src: String,
    pub dst: String,
    pub state: String,
    pub src_primary: Option<String>,
    pub dst_primary: Option<String>,
    pub redos: i32,
}

pub async fn placement(db: &Db) -> Result<BTreeMap<u32, String>, OpError> {
    let rows = db.rows("read shard placement", "SELECT shard, grp FROM pgscale.shards ORDER BY shard", &[]).await?;
    Ok(rows.iter().map(|r| (r.get::<_, i32>(0) as u32, r.get(1))).collect())
}

/// Groups and whether each is draining.
pub async fn groups(db: &Db) -> Result<Vec<(String, bool)>, OpError> {
    let rows = db.rows("read groups", "SELECT name, draining FROM pgscale.groups ORDER BY name", &[]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Sharded tables and their keys.
pub async fn tables(db: &Db) -> Result<Vec<(String, String)>, OpError> {
    let rows = db.rows("read sharded tables", "SELECT name, key FROM pgscale.tables ORDER BY name", &[]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub async fn table_names(db: &Db) -> Result<Vec<String>, OpError> {
    Ok(tables(db).await?.into_iter().map(|(t, _)| t).collect())
}

pub async fn moves(db: &Db, active_only: bool) -> Result<Vec<MoveRow>, OpError> {
    let q = format!(
        "SELECT id, shard, src, dst, state, src_primary, dst_primary, redos FROM pgscale.moves {} ORDER BY id",
        if active_only { "WHERE state <> 'done'" } else { "" }
    );
    let rows = db.rows("read moves", &q, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| MoveRow {
            id: r.get(0),
            shard: r.get::<_, i32>(1) as u32,
            src: r.get(2),
            dst: r.get(3),
            state: r.get(4),
            src_primary: r.get(5),
            dst_primary: r.get(6),
            redos: r.get(7),
        })
        .collect())
}

/// Whether the catalog exists (a sharded cluster whose setup finished).
pub async fn exists(db: &Db) -> Result<bool, OpError> {
    Ok(db.one("look for the catalog", "SELECT to_regclass('pgscale.shards') IS NOT NULL", &[]).await?.get(0))
}

/// Each shard's size on the group holding it (all its tables), bytes. A
/// group that cannot be asked is left out (its shards count as 0).
pub async fn shard_sizes(
    sh: &Sharded<'_>,
    placement: &BTreeMap<u32, String>,
    tables: &[String],
    d: Duration,
) -> BTreeMap<u32, u64> {
    let futs = sh.data.keys().map(|g| async move {
        let rows = async {
            let db = sh.group_db(g, d).await.ok()?;
            db.rows(
                "read shard sizes",
                "SELECT c.relname::text, pg_total_relation_size(c.oid) FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pgscale_shards' AND c.relkind = 'r'",
                &[],
            )
            .await
            .ok()
        }
        .await
        .unwrap_or_default();
        let m: BTreeMap<String, i64> = rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1))).collect();
        (g.clone(), m)
    });
    let by_group: BTreeMap<String, BTreeMap<String, i64>> = futures::future::join_all(futs).await.into_iter().collect();
    placement
        .iter()
        .map(|(s, g)| {
            let b: i64 =
                by_group.get(g).map(|m| tables.iter().filter_map(|t| m.get(&shard_rel(t, *s))).sum()).unwrap_or(0);
            (*s, b.max(0) as u64)
        })
        .collect()
}
