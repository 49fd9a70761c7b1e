//! shards: which group holds which shard, sizes, moves in progress; and
//! the sharding findings of `check` (a shard routed to no group or two, or
//! elsewhere than the catalog says; a move's publication, subscription or
//! slot left behind; a shard's table left on a group that does not hold it).

use super::catalog::{self, MoveRow};
use super::Sharded;
use crate::error::OpError;
use plan::check::{Finding, Severity};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, serde::Serialize)]
pub struct ShardRow {
    pub shard: u32,
    pub group: String,
    pub bytes: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct GroupRow {
    pub group: String,
    pub primary: String,
    pub shards: usize,
    pub bytes: u64,
    pub draining: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct ShardsReport {
    pub cluster: String,
    pub coordinator: String,
    pub database: String,
    pub tables: Vec<(String, String)>,
    pub groups: Vec<GroupRow>,
    pub shards: Vec<ShardRow>,
    pub moves: Vec<MoveRow>,
}

pub async fn shards(stores: &store::Stores, name: &str, timeout: Duration) -> Result<ShardsReport, OpError> {
    let sh = Sharded::open(stores, name).await?;
    let coord = sh.coord_db(timeout).await?;
    let tables = catalog::tables(&coord).await?;
    let names: Vec<String> = tables.iter().map(|(t, _)| t.clone()).collect();
    let placement = catalog::placement(&coord).await?;
    let sizes = catalog::shard_sizes(&sh, &placement, &names, timeout).await;
    let draining: BTreeMap<String, bool> = catalog::groups(&coord).await?.into_iter().collect();
    let groups = sh
        .data
        .values()
        .map(|g| {
            let mine: Vec<u32> = placement.iter().filter(|(_, x)| **x == g.name).map(|(s, _)| *s).collect();
            GroupRow {
                group: g.name.clone(),
                primary: g.primary_name(),
                shards: mine.len(),
                bytes: mine.iter().map(|s| sizes.get(s).copied().unwrap_or(0)).sum(),
                draining: draining.get(&g.name).copied().unwrap_or(false),
            }
        })
        .collect();
    Ok(ShardsReport {
        cluster: sh.name.clone(),
        coordinator: sh.coord.primary_name(),
        database: sh.database.clone(),
        tables,
        groups,
        shards: placement
            .iter()
            .map(|(s, g)| ShardRow { shard: *s, group: g.clone(), bytes: sizes.get(s).copied().unwrap_or(0) })
            .collect(),
        moves: catalog::moves(&coord, true).await?,
    })
}

fn finding(severity: Severity, node: &str, message: String) -> Finding {
    Finding { severity, node: node.to_string(), check: "shards", message }
}

/// The sharding findings of a sharded cluster (none when it is not one).
pub async fn findings(stores: &store::Stores, name: &str, timeout: Duration) -> Vec<Finding> {
    let sh = match Sharded::open(stores, name).await {
        Ok(sh) => sh,
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    let coord = match sh.coord_db(timeout).await {
        Ok(c) => c,
        Err(e) => {
            return vec![finding(
                Severity::Critical,
                "coordinator",
                format!("cannot read the shard catalog: {}", e.message),
            )]
        }
    };
    let read = async {
        let tables = catalog::table_names(&coord).await?;
        let placement = catalog::placement(&coord).await?;
        let moves = catalog::moves(&coord, true).await?;
        // Foreign leaves attached under each middle partition, with their server.
        let rows = coord
            .rows(
                "read the routing",
                "SELECT mid.relname::text, srv.srvname::text FROM pg_inherits i \
                 JOIN pg_class mid ON mid.oid = i.inhparent JOIN pg_namespace n ON n.oid = mid.relnamespace \
                 JOIN pg_foreign_table ft ON ft.ftrelid = i.inhrelid JOIN pg_foreign_server srv ON srv.oid = ft.ftserver \
                 WHERE n.nspname = 'pgscale_shards'",
                &[],
            )
            .await?;
        Ok::<_, OpError>((tables, placement, moves, rows))
    };
    let (tables, placement, moves, rows) = match read.await {
        Ok(x) => x,
        Err(e) => {
            return vec![finding(
                Severity::Critical,
                "coordinator",
                format!("cannot read the shard catalog: {}", e.message),
            )]
        }
    };
    let mut routed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows {
        routed.entry(r.get(0)).or_default().push(r.get(1));
    }
    for t in &tables {
        for (s, g) in &placement {
            let mid = plan::shard::names::shard_rel(t, *s);
            let servers = routed.get(&mid).cloned().unwrap_or_default();
            let want = plan::shard::names::server(g);
            if servers != [want.clone()] {
                out.push(finding(
                    Severity::Critical,
                    "coordinator",
                    format!("shard {s} of {t} is routed to [{}], the catalog says {g}", servers.join(", ")),
                ));
            }
        }
    }
    for m in &moves {
        out.push(finding(
            Severity::Warning,
            "coordinator",
            format!(
                "shard {} is moving {}→{} ({}); finish it with `pgscale rebalance -n {}` or `pgscale resume -n {}`",
                m.shard, m.src, m.dst, m.state, sh.name, sh.name
            ),
        ));
    }
    let moving: Vec<String> = moves.iter().map(|m| plan::shard::names::move_name(m.shard, &m.dst)).collect();
    let (left, errors) = super::leftovers::find(&sh, timeout, &moving).await;
    for (g, e) in errors {
        out.push(finding(Severity::Critical, &g, e.message));
    }
    for l in left {
        out.push(finding(
            Severity::Warning,
            &l.group,
            format!("{}; `pgscale rebalance -n {}` removes it", l.describe(), sh.name),
        ));
    }
    let futs = sh.data.keys().map(|g| {
        let placement = &placement;
        let tables = &tables;
        let moves = &moves;
        let sh = &sh;
        async move {
            let mut out = Vec::new();
            // A group that cannot be read is reported above.
            let Ok(db) = sh.group_db(g, timeout).await else { return out };
            let q = "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = 'pgscale_shards' AND c.relkind = 'r'";
            if let Ok(rows) = db.rows("find shard tables", q, &[]).await {
                for r in rows {
                    let rel: String = r.get(0);
                    let Some((t, s)) =
                        rel.rsplit_once('_').and_then(|(t, s)| Some((t.to_string(), s.parse::<u32>().ok()?)))
                    else {
                        continue;
                    };
                    let holds = placement.get(&s).is_some_and(|x| x == g);
                    let incoming = moves.iter().any(|m| m.shard == s && (m.dst == *g || m.src == *g));
                    if tables.contains(&t) && !holds && !incoming {
                        out.push(finding(
                            Severity::Warning,
                            g,
                            format!(
                                "table pgscale_shards.{rel} is here but shard {s} is on {}: a leftover copy",
                                placement.get(&s).cloned().unwrap_or_default()
                            ),
                        ));
                    }
                }
            }
            out
        }
    });
    for f in futures::future::join_all(futs).await {
        out.extend(f);
    }
    out
}
