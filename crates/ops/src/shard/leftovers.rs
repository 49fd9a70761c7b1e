//! What a move can leave behind on the data groups when it dies, or is torn
//! down at a bad moment: its publication, subscription or logical slot
//! (`pgscale_mv_*`), and the table-sync slots PostgreSQL makes for a
//! subscription's initial copy (`pg_<subscription oid>_sync_<relid>_<system
//! id>`), which a subscription dropped after detaching its slot leaves on
//! the source. `check` reports them; every move command removes them first
//! (those of unfinished moves excepted: the moves still need them).

use super::Sharded;
use crate::error::{failed, OpError};
use plan::shard::names::{is_move_name, move_name};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// One object a move left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    pub group: String,
    /// "publication", "subscription", "replication slot" or "table-sync slot".
    pub kind: &'static str,
    pub name: String,
}

impl Leftover {
    pub fn describe(&self) -> String {
        match self.kind {
            "table-sync slot" => {
                format!("table-sync slot {} is left over from a dropped subscription (it holds WAL back)", self.name)
            }
            kind => format!("{kind} {} is left over from a move that is not running", self.name),
        }
    }
}

/// A table-sync slot's name: the subscription's oid and the subscriber's
/// system identifier (`pg_%u_sync_%u_%llu` in PostgreSQL's tablesync.c).
pub fn sync_slot(name: &str) -> Option<(u32, u64)> {
    let mut p = name.split('_');
    let (pg, oid, sync, relid, sysid) = (p.next()?, p.next()?, p.next()?, p.next()?, p.next()?);
    if pg != "pg" || sync != "sync" || p.next().is_some() {
        return None;
    }
    relid.parse::<u32>().ok()?;
    Some((oid.parse().ok()?, sysid.parse().ok()?))
}

/// A system identifier as `pg_control_system()` prints it (a bigint, so
/// negative past 2^63), as the unsigned number slot names carry.
pub fn system_id(text: &str) -> u64 {
    text.trim().parse::<i64>().map(|v| v as u64).unwrap_or(0)
}

/// The table-sync slots (by their name's shape) on a server.
pub async fn sync_slots(db: &pg::Db) -> Result<Vec<String>, OpError> {
    let q = "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE 'pg\\_%\\_sync\\_%'";
    Ok(db.rows("find table-sync slots", q, &[]).await?.iter().map(|r| r.get(0)).collect())
}

/// What one group's primary holds.
struct Seen {
    sysid: u64,
    subscriptions: BTreeSet<u32>,
    /// (kind, name) of `pgscale_mv_*` objects.
    moves: Vec<(&'static str, String)>,
    sync_slots: Vec<String>,
}

async fn read(sh: &Sharded<'_>, g: &str, timeout: Duration) -> Result<Seen, OpError> {
    let db = sh.group_db(g, timeout).await?;
    let sysid: String = db
        .one("read the system identifier", "SELECT system_identifier::text FROM pg_control_system()", &[])
        .await?
        .get(0);
    let subscriptions = db
        .rows("list subscriptions", "SELECT oid::int8 FROM pg_subscription", &[])
        .await?
        .iter()
        .map(|r| r.get::<_, i64>(0) as u32)
        .collect();
    // Only names a move makes (`_` is a wildcard of LIKE: checked again).
    let like = "pgscale\\_mv\\_%";
    let q = "SELECT 'publication', pubname::text FROM pg_publication WHERE pubname LIKE $1 \
             UNION ALL SELECT 'subscription', subname::text FROM pg_subscription WHERE subname LIKE $1 \
             UNION ALL SELECT 'replication slot', slot_name::text FROM pg_replication_slots WHERE slot_name LIKE $1";
    let moves = db
        .rows("find move leftovers", q, &[&like])
        .await?
        .iter()
        .filter(|r| is_move_name(&r.get::<_, String>(1)))
        .map(|r| {
            let kind = match r.get::<_, String>(0).as_str() {
                "publication" => "publication",
                "subscription" => "subscription",
                _ => "replication slot",
            };
            (kind, r.get::<_, String>(1))
        })
        .collect();
    let sync_slots = sync_slots(&db).await?;
    Ok(Seen { sysid: system_id(&sysid), subscriptions, moves, sync_slots })
}

/// Every data group's leftovers (`moving`: the names of unfinished moves,
/// whose objects are not leftovers); a group that cannot be read is an error
/// of its own.
pub async fn find(sh: &Sharded<'_>, timeout: Duration, moving: &[String]) -> (Vec<Leftover>, Vec<(String, OpError)>) {
    let reads =
        futures::future::join_all(sh.data.keys().map(|g| async move { (g.clone(), read(sh, g, timeout).await) }));
    let mut seen = BTreeMap::new();
    let mut errors = Vec::new();
    for (g, r) in reads.await {
        match r {
            Ok(s) => {
                seen.insert(g, s);
            }
            Err(e) => errors.push((g, e)),
        }
    }
    // Subscriptions by the system identifier of the cluster holding them (two
    // groups with one identifier, a copy restored as a new group: the union).
    let mut by_sysid: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
    for s in seen.values() {
        by_sysid.entry(s.sysid).or_default().extend(&s.subscriptions);
    }
    let mut out = Vec::new();
    for (g, s) in &seen {
        for (kind, name) in &s.moves {
            if !moving.contains(name) {
                out.push(Leftover { group: g.clone(), kind, name: name.clone() });
            }
        }
        for name in &s.sync_slots {
            // Only slots of our own groups' subscriptions, and only once the
            // subscription is gone.
            let Some((oid, sysid)) = sync_slot(name) else { continue };
            if by_sysid.get(&sysid).is_some_and(|subs| !subs.contains(&oid)) {
                out.push(Leftover { group: g.clone(), kind: "table-sync slot", name: name.clone() });
            }
        }
    }
    (out, errors)
}

/// Remove what `find` reports: subscriptions first (their workers end, so
/// the slots they held on the sources go idle), then publications and
/// slots. Returns how many objects went.
pub async fn remove(sh: &Sharded<'_>, timeout: Duration, moving: &[String]) -> Result<usize, OpError> {
    let look = || async {
        let (left, errors) = find(sh, timeout, moving).await;
        match errors.into_iter().next() {
            Some((g, e)) => Err(failed(format!("cannot look for a move's leftovers on group {g}: {}", e.message))),
            None => Ok(left),
        }
    };
    let mut left = look().await?;
    let subs: Vec<&Leftover> = left.iter().filter(|l| l.kind == "subscription").collect();
    let mut n = subs.len();
    if n > 0 {
        for l in subs {
            let db = sh.group_db(&l.group, timeout).await?;
            super::mover::drop_subscription(&db, &l.name).await?;
        }
        // Their table-sync slots are orphans now.
        left = look().await?;
    }
    for l in left.iter().filter(|l| l.kind == "publication") {
        let db = sh.group_db(&l.group, timeout).await?;
        db.exec("drop a leftover publication", &format!("DROP PUBLICATION IF EXISTS {}", plan::sql::ident(&l.name)))
            .await?;
    }
    for l in left.iter().filter(|l| l.kind.ends_with("slot")) {
        let db = sh.group_db(&l.group, timeout).await?;
        drop_slot(&db, &l.name, timeout).await?;
    }
    n += left.len();
    Ok(n)
}

/// Before a move command moves anything (under the shard lock): what earlier
/// moves left behind goes, those of unfinished moves excepted.
pub async fn sweep(env: crate::Env<'_>, sh: &Sharded<'_>, coord: &pg::Db, timeout: Duration) -> Result<(), OpError> {
    let moving: Vec<String> =
        super::catalog::moves(coord, true).await?.iter().map(|m| move_name(m.shard, &m.dst)).collect();
    let n = remove(sh, timeout, &moving).await?;
    if n > 0 {
        env.ui.say(&format!("{}: removed {n} object(s) left behind by earlier moves", sh.name));
    }
    Ok(())
}

/// A slot dropped once no walsender holds it (its walsender ended first; one
/// still held after `timeout` is an error that says so).
pub async fn drop_slot(db: &pg::Db, name: &str, timeout: Duration) -> Result<(), OpError> {
    let until = Instant::now() + timeout;
    loop {
        db.exec("end the slot's walsender", &plan::shard::sql::end_walsender(name)).await?;
        db.modify(
            "drop the slot",
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active",
            &[&name],
        )
        .await?;
        let left: i64 = db
            .one("look for the slot", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", &[&name])
            .await?
            .get(0);
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(failed(format!("slot {name} is still in use on {}; run again", db.addr())));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_identifiers_past_2_63_read_as_slot_names_print_them() {
        assert_eq!(system_id("7441785238137371905"), 7441785238137371905);
        assert_eq!(system_id("-1"), u64::MAX);
        assert_eq!(system_id("x"), 0);
    }

    #[test]
    fn table_sync_slot_names_are_read() {
        assert_eq!(sync_slot("pg_16403_sync_16390_7441785238137371905"), Some((16403, 7441785238137371905)));
        assert_eq!(sync_slot("pgscale_mv_3_dg2"), None);
        assert_eq!(sync_slot("pg_16403_sync_16390"), None);
        assert_eq!(sync_slot("pg_16403_sync_16390_74_x"), None);
        assert_eq!(sync_slot("pg_x_sync_16390_74"), None);
        assert_eq!(sync_slot("pg_1_other_2_3"), None);
    }
}
