//! Groups joining and leaving a sharded cluster: their database and
//! catalog, the DDL they missed, the coordinator's foreign server, and the
//! pg_hba lines that let the groups in to each other.

use super::{Group, Sharded};
use crate::apply_config::{roll, Roll};
use crate::error::{failed, OpError};
use crate::Env;
use pg::{Db, Target};
use plan::shard::sql;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// Create the database unless it exists (on the server of `t`).
pub async fn ensure_database(t: &Target, dbname: &str, d: Duration) -> Result<(), OpError> {
    let db = Db::open(t, "postgres", d).await?;
    let have: bool = db
        .one("look for the database", "SELECT count(*) > 0 FROM pg_database WHERE datname = $1", &[&dbname])
        .await?
        .get(0);
    if !have {
        db.exec("create the database", &format!("CREATE DATABASE {}", plan::sql::ident(dbname))).await?;
    }
    Ok(())
}

/// A data group made ready to hold shards: database, catalog, and every
/// logged DDL statement it has not run yet (in order, each recorded in the
/// same transaction).
pub async fn prepare_data(sh: &Sharded<'_>, coord: &Db, group: &str, d: Duration) -> Result<(), OpError> {
    let g = sh.group(group)?;
    ensure_database(&g.primary_target(), &sh.database, d).await?;
    let db = sh.group_db(group, d).await?;
    db.exec("create the shard catalog", &sql::data_catalog()).await?;
    let log = coord.rows("read the DDL log", "SELECT id, sql FROM pgscale.ddl ORDER BY id", &[]).await?;
    let done: Vec<i64> = db
        .rows("read applied DDL", "SELECT id FROM pgscale.applied_ddl", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for r in log {
        let (id, stmt): (i64, String) = (r.get(0), r.get(1));
        if done.contains(&id) {
            continue;
        }
        let t = format!(
            "BEGIN;\nSET LOCAL search_path = public;\n{stmt};\nINSERT INTO pgscale.applied_ddl (id) VALUES ({id});\nCOMMIT;"
        );
        if let Err(e) = db.exec("replay DDL", &t).await {
            let _ = db.exec("roll back", "ROLLBACK").await;
            return Err(failed(format!("group {group}: replay DDL #{id}: {e}")));
        }
    }
    Ok(())
}

/// The group known to the coordinator: its row, its foreign server (all
/// its nodes: libpq finds the primary) and the admin's user mapping.
pub async fn register(coord: &Db, g: &Group, database: &str) -> Result<(), OpError> {
    coord
        .modify("record the group", "INSERT INTO pgscale.groups (name) VALUES ($1) ON CONFLICT DO NOTHING", &[&g.name])
        .await?;
    coord.exec("create the foreign server", &sql::ensure_server(&g.name, &g.hosts(), database)).await?;
    let admin = g.inv.postgres.admin_user.clone();
    coord.exec("quiet the log", sql::QUIET).await?;
    let t = format!("BEGIN;\n{}COMMIT;", sql::ensure_user_mapping(&g.name, &admin, &g.admin_password()));
    let r = coord.exec("create the user mapping", &t).await;
    if r.is_err() {
        let _ = coord.exec("roll back", "ROLLBACK").await;
    }
    coord.exec("log again", sql::UNQUIET).await?;
    Ok(r?)
}

/// Every node address of each group.
pub async fn addresses(groups: &[&model::Inventory], d: Duration) -> BTreeMap<String, Vec<IpAddr>> {
    let futs = groups.iter().map(|inv| async move {
        let mut v = Vec::new();
        for n in inv.staying() {
            v.extend(crate::resolve::addrs_of(&n.host, d).await);
        }
        v.sort();
        v.dedup();
        (inv.name.clone(), v)
    });
    futures::future::join_all(futs).await.into_iter().collect()
}

/// For each group, the other groups' addresses (its pg_hba peers).
pub fn peers_of(addrs: &BTreeMap<String, Vec<IpAddr>>) -> BTreeMap<String, Vec<IpAddr>> {
    addrs
        .keys()
        .map(|name| {
            let mut v: Vec<IpAddr> =
                addrs.iter().filter(|(n, _)| *n != name).flat_map(|(_, a)| a.iter().copied()).collect();
            v.sort();
            v.dedup();
            (name.clone(), v)
        })
        .collect()
}

/// Record each group's peers and roll pg_hba.conf out where they changed
/// (under each group's lock).
pub async fn refresh_peers(env: Env<'_>, groups: &[Group], timeout: Duration) -> Result<(), OpError> {
    let invs: Vec<&model::Inventory> = groups.iter().map(|g| &g.inv).collect();
    let peers = peers_of(&addresses(&invs, timeout).await);
    for g in groups {
        let want = peers.get(&g.inv.name).cloned().unwrap_or_default();
        let mut stored = g.store.load(&g.inv.name).await?;
        let Some(s) = stored.sharding.as_mut() else { continue };
        if s.peers == want {
            continue;
        }
        let _lock = g.store.lock(&g.inv.name, "pgscale (sharding peers)", env.stores.lock_wait()).await?;
        s.peers = want;
        let rerun = format!("pgscale rebalance -n {}", s.cluster);
        roll(env, g.store.clone(), stored, Roll { save_anyway: true, yes: true, dry_run: false, timeout, rerun })
            .await?;
    }
    Ok(())
}
