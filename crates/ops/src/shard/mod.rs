//! Sharded clusters: a coordinator group and data groups (each an ordinary
//! cluster, so every other operation works on each), sharded tables on
//! PostgreSQL's own partitioning and postgres_fdw, and shard moves by
//! native logical replication with a one-shard cut-over.
//!
//! The truth about where a shard is lives in the coordinator's database
//! (`pgscale.shards`), changed in the very transaction that switches the
//! routing; the moves' journal (`pgscale.moves`) sits beside it. Every step
//! of a move is idempotent, so re-running a command finishes or redoes it.

pub mod catalog;
pub mod ddl;
pub mod groups;
pub mod init;
pub mod leftovers;
pub mod mover;
pub mod rebalance;
pub mod show;
pub mod table;

use crate::error::{failed, invalid, OpError};
use model::Inventory;
use pg::{Db, Target};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use store::{Store, Stores};

/// One group: its cluster's record and passwords.
#[derive(Clone)]
pub struct Group {
    pub name: String,
    pub inv: Inventory,
    pub store: Arc<dyn Store>,
    pub secrets: journal::Secrets,
}

impl Group {
    pub async fn load(stores: &Stores, cluster: &str, group: &str) -> Result<Group, OpError> {
        let store = stores.for_cluster(cluster).await?;
        let inv = store.load(cluster).await?;
        let users = crate::resolve::secret_users(&inv);
        let secrets = store.secrets(cluster, &users, false).await?;
        Ok(Group { name: group.to_string(), inv, store, secrets })
    }

    /// The admin connection to the group's primary (per its record).
    pub fn primary_target(&self) -> Target {
        let p = self.primary_name();
        crate::resolve::targets(&self.inv, &self.secrets)
            .into_iter()
            .find(|(n, _)| *n == p)
            .map(|(_, t)| t)
            .expect("the primary has a target")
    }

    pub fn primary_name(&self) -> String {
        self.inv.primary().map(|p| p.name.clone()).unwrap_or_default()
    }

    /// Every staying node's address, for libpq's multi-host form.
    pub fn hosts(&self) -> Vec<(String, u16)> {
        self.inv.staying().map(|n| (n.host.clone(), n.port)).collect()
    }

    pub fn admin_password(&self) -> String {
        self.secrets.password(&self.inv.postgres.admin_user).unwrap_or_default().to_string()
    }
}

/// A sharded cluster, opened: the coordinator and its data groups.
pub struct Sharded<'s> {
    pub name: String,
    pub shards: u32,
    pub database: String,
    pub coord: Group,
    pub data: BTreeMap<String, Group>,
    pub stores: &'s Stores,
}

impl<'s> Sharded<'s> {
    pub async fn open(stores: &'s Stores, name: &str) -> Result<Sharded<'s>, OpError> {
        let coord = Group::load(stores, name, model::sharding::COORDINATOR).await?;
        let Some(sh) = coord.inv.sharding.clone().filter(|s| s.is_coordinator()) else {
            return Err(invalid(not_sharded(name, &coord.inv)));
        };
        let mut data = BTreeMap::new();
        for g in &sh.groups {
            data.insert(g.clone(), Group::load(stores, &model::group_cluster(name, g), g).await?);
        }
        Ok(Sharded { name: name.into(), shards: sh.shards, database: sh.database, coord, data, stores })
    }

    /// Re-read a group's record (its primary may have changed).
    pub async fn reload(&mut self, group: &str) -> Result<(), OpError> {
        let g = Group::load(self.stores, &model::group_cluster(&self.name, group), group).await?;
        if group == model::sharding::COORDINATOR {
            self.coord = g;
        } else {
            self.data.insert(group.into(), g);
        }
        Ok(())
    }

    pub fn group(&self, name: &str) -> Result<&Group, OpError> {
        self.data.get(name).ok_or_else(|| {
            invalid(format!(
                "`{name}` is not a data group of {} (groups: {})",
                self.name,
                self.data.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// A session on the coordinator's primary, in the sharding database.
    pub async fn coord_db(&self, d: Duration) -> Result<Db, OpError> {
        Db::open(&self.coord.primary_target(), &self.database, d)
            .await
            .map_err(|e| failed(format!("coordinator of {}: {e}", self.name)))
    }

    /// A session on a data group's primary, in the sharding database.
    pub async fn group_db(&self, group: &str, d: Duration) -> Result<Db, OpError> {
        self.db_of(self.group(group)?, d).await
    }

    /// A session on `g`'s primary (a group as loaded by the caller, which
    /// may be newer than this one's), in the sharding database.
    pub async fn db_of(&self, g: &Group, d: Duration) -> Result<Db, OpError> {
        Db::open(&g.primary_target(), &self.database, d)
            .await
            .map_err(|e| failed(format!("group {} of {}: {e}", g.name, self.name)))
    }
}

pub(crate) fn not_sharded(name: &str, inv: &Inventory) -> String {
    match &inv.sharding {
        Some(s) => format!(
            "{name} is data group `{}` of sharded cluster {}: run this on `-n {}`",
            s.group, s.cluster, s.cluster
        ),
        None => format!(
            "cluster {name} is not sharded; a sharded cluster is created by `pgscale init` from a spec with \
             `coordinator:` and `data:` (see `pgscale init --gen-template --sharded`)"
        ),
    }
}

/// Session-wide advisory lock key of shard work (moves, DDL) on the coordinator.
pub const SHARD_LOCK: i64 = 0x0070_6773_6361_6c65; // "pgscale"

/// Held while a command moves shards or changes DDL: a session on the
/// coordinator holding `pg_try_advisory_lock`. It ends with the session,
/// so a killed pgscale never leaves it behind.
pub struct ShardLock {
    pub db: Db,
}

impl ShardLock {
    pub async fn take(sh: &Sharded<'_>, what: &str, d: Duration) -> Result<ShardLock, OpError> {
        let db = sh.coord_db(d).await?;
        db.exec(
            "name the session",
            &format!("SET application_name = {}", plan::sql::literal(&format!("pgscale {what}"))),
        )
        .await?;
        let got: bool = db.one("take the shard lock", "SELECT pg_try_advisory_lock($1)", &[&SHARD_LOCK]).await?.get(0);
        if !got {
            let who = db
                .opt(
                    "find the shard lock's holder",
                    "SELECT a.application_name || ' (pid ' || a.pid || ', since ' || date_trunc('second', a.backend_start)::text || ')' \
                     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE l.locktype = 'advisory' AND l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = $1",
                    &[&SHARD_LOCK],
                )
                .await?
                .map(|r| r.get::<_, String>(0))
                .unwrap_or_else(|| "another session".into());
            return Err(crate::error::refused(format!(
                "another shard operation runs on {}: {who}; wait for it to end (or stop it), then run this again",
                sh.name
            )));
        }
        // The catalog as this version of pgscale has it (idempotent).
        db.exec("bring the catalog up to date", &plan::shard::sql::coordinator_catalog()).await?;
        Ok(ShardLock { db })
    }
}
