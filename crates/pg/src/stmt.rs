//! The statements the executor runs, each with its deadline. The SQL text
//! lives here and in `plan::sql`; the executor only calls these.

use crate::conn::{classify, connect, Target};
use crate::PgError;
use model::PgLsn;
use std::time::Duration;
use tokio_postgres::{Client, Row};

pub use tokio_postgres::Client as Session;

async fn within<T>(
    what: &str,
    addr: &str,
    d: Duration,
    fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, PgError> {
    match tokio::time::timeout(d, fut).await {
        Err(_) => Err(PgError::Timeout { what: what.into(), addr: addr.into(), deadline: d }),
        Ok(r) => r.map_err(|e| classify(what, addr, e)),
    }
}

async fn one(c: &Client, addr: &str, what: &str, sql: &str, d: Duration) -> Result<Row, PgError> {
    within(what, addr, d, c.query_one(sql, &[])).await
}

/// Run one or more statements on a fresh connection (connect + run, each
/// within the deadline).
pub async fn execute(t: &Target, sql: &str, d: Duration) -> Result<(), PgError> {
    let c = connect(t, d).await?;
    within("run SQL", &t.addr(), d, c.batch_execute(sql)).await
}

/// Errors the server finds in pg_hba.conf as it is now on disk, one line each.
pub async fn hba_errors(t: &Target, d: Duration) -> Result<Vec<String>, PgError> {
    let c = connect(t, d).await?;
    let q =
        "SELECT line_number, coalesce(error, '') FROM pg_hba_file_rules WHERE error IS NOT NULL ORDER BY line_number";
    let rows = within("read pg_hba_file_rules", &t.addr(), d, c.query(q, &[])).await?;
    Ok(rows.iter().map(|r| format!("line {}: {}", r.get::<_, i32>(0), r.get::<_, String>(1))).collect())
}

/// A base copy's progress on its upstream (bytes streamed, total), found by
/// the copy's application_name.
pub async fn copy_progress(c: &Client, addr: &str, app: &str, d: Duration) -> Result<Option<(u64, u64)>, PgError> {
    let q = "SELECT coalesce(p.backup_streamed, 0), coalesce(p.backup_total, 0) FROM pg_stat_progress_basebackup p \
             JOIN pg_stat_activity a ON a.pid = p.pid WHERE a.application_name = $1";
    let rows = within("read base copy progress", addr, d, c.query(q, &[&app])).await?;
    Ok(rows.first().map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64)))
}

/// What an upstream sees of one standby: its walsender state, the WAL it
/// has flushed, and the upstream's own head (received/replayed on a
/// standby, current on a primary).
pub struct Streaming {
    pub state: Option<String>,
    pub flush: Option<PgLsn>,
    pub head: Option<PgLsn>,
}

pub async fn streaming(c: &Client, addr: &str, standby: &str, d: Duration) -> Result<Streaming, PgError> {
    let q = "SELECT r.state, r.flush_lsn, CASE WHEN pg_is_in_recovery() \
             THEN greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) ELSE pg_current_wal_lsn() END \
             FROM (SELECT 1) x LEFT JOIN pg_stat_replication r ON r.application_name = $1";
    let r = within("read pg_stat_replication", addr, d, c.query_one(q, &[&standby])).await?;
    Ok(Streaming { state: r.get(0), flush: r.get(1), head: r.get(2) })
}

/// `pg_promote`, waiting up to `wait_secs`. Returns whether the node is
/// still in recovery afterwards (the promotion did not finish in time).
pub async fn promote(t: &Target, wait_secs: u64, d: Duration) -> Result<bool, PgError> {
    let c = connect(t, d).await?;
    let dl = Duration::from_secs(wait_secs + 5);
    let q = format!("SELECT pg_is_in_recovery() AND NOT pg_promote(true, {wait_secs})");
    Ok(one(&c, &t.addr(), "promote", &q, dl).await?.get(0))
}

/// How far a standby has WAL: the greater of received and replayed.
pub async fn received_lsn(c: &Client, addr: &str, d: Duration) -> Result<Option<PgLsn>, PgError> {
    let q = "SELECT greatest(pg_last_wal_replay_lsn(), pg_last_wal_receive_lsn())";
    Ok(one(c, addr, "read replay position", q, d).await?.get(0))
}

/// End a base copy still in flight on its upstream: the walsender holding
/// the node's slot and every backend of the copy (its application_name).
/// Bounded (about 5 s); returns how many backends were still there at the
/// start. A copy whose pgscale died would otherwise go on writing into the
/// directory a re-run is about to empty.
pub async fn end_copy(t: &Target, slot: &str, app: &str, d: Duration) -> Result<i64, PgError> {
    let c = connect(t, d).await?;
    let q = "SELECT count(*) FROM pg_stat_activity a WHERE a.pid <> pg_backend_pid() AND (a.application_name = $2 \
             OR a.pid IN (SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1))";
    let found: i64 = within("find a running copy", &t.addr(), d, c.query_one(q, &[&slot, &app])).await?.get(0);
    if found == 0 {
        return Ok(0);
    }
    within("end a running copy", &t.addr(), d + Duration::from_secs(6), c.batch_execute(&end_copy_sql(slot, app)))
        .await?;
    let left: i64 = within("find a running copy", &t.addr(), d, c.query_one(q, &[&slot, &app])).await?.get(0);
    if left > 0 {
        return Err(PgError::Server {
            what: "end a running copy".into(),
            addr: t.addr(),
            message: format!("{left} backend(s) of the copy (slot {slot}, {app}) did not end within 5 s; run again"),
            code: None,
        });
    }
    Ok(found)
}

/// The size of all databases, bytes: what a base copy of the server needs.
pub async fn database_bytes(t: &Target, d: Duration) -> Result<u64, PgError> {
    let c = connect(t, d).await?;
    let q = "SELECT coalesce(sum(pg_database_size(oid)), 0)::bigint FROM pg_database";
    Ok(one(&c, &t.addr(), "read database sizes", q, d).await?.get::<_, i64>(0).max(0) as u64)
}

/// Whether the server takes writes (not in recovery).
pub async fn is_primary(c: &Client, addr: &str, d: Duration) -> Result<bool, PgError> {
    Ok(!one(c, addr, "probe", "SELECT pg_is_in_recovery()", d).await?.get::<_, bool>(0))
}

/// How many of `ids` are in `table`'s `id` column (a write probe's ledger).
/// `table` is a constant of the caller's, quoted here.
pub async fn count_ids(t: &Target, table: &str, ids: &[i64], d: Duration) -> Result<i64, PgError> {
    let c = connect(t, d).await?;
    let q = format!("SELECT count(*) FROM \"{}\" WHERE id = ANY($1)", table.replace('"', "\"\""));
    Ok(within("count ledger ids", &t.addr(), d, c.query_one(q.as_str(), &[&ids])).await?.get(0))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Terminate, in a bounded loop, until no backend of the copy is left.
fn end_copy_sql(slot: &str, app: &str) -> String {
    format!(
        "DO $pgscale$ DECLARE n int; BEGIN \
         FOR i IN 1..100 LOOP \
         SELECT count(pg_terminate_backend(a.pid)) INTO n FROM pg_stat_activity a \
         WHERE a.pid <> pg_backend_pid() AND (a.application_name = {a} \
         OR a.pid IN (SELECT active_pid FROM pg_replication_slots WHERE slot_name = {s})); \
         EXIT WHEN n = 0; PERFORM pg_sleep(0.05); \
         END LOOP; END $pgscale$",
        a = literal(app),
        s = literal(slot)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn end_copy_is_bounded_and_quoted() {
        let s = super::end_copy_sql("pg'2", "pgscale_copy_pg2");
        assert!(s.contains("1..100") && s.contains("'pg''2'") && s.contains("'pgscale_copy_pg2'"), "{s}");
    }
}
