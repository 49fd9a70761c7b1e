//! What `adopt` reads from a server pgscale did not create.

use crate::conn::{connect, Target};
use crate::probe::q;
use crate::PgError;
use model::ServerFacts;
use std::time::Duration;

const FACTS_SQL: &str = "SELECT (SELECT system_identifier::text FROM pg_control_system()),
  pg_is_in_recovery(),
  current_setting('server_version'),
  current_setting('server_version_num')::int,
  current_setting('data_directory'),
  current_setting('config_file'),
  current_setting('hba_file'),
  current_setting('port')::int,
  current_setting('unix_socket_directories'),
  current_setting('wal_level'),
  current_setting('hot_standby'),
  current_setting('wal_log_hints'),
  current_setting('data_checksums'),
  (SELECT setting FROM pg_config WHERE name = 'BINDIR'),
  (SELECT sender_host FROM pg_stat_wal_receiver),
  (SELECT sender_port FROM pg_stat_wal_receiver),
  coalesce((SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = $1), false),
  (SELECT rolcanlogin FROM pg_roles WHERE rolname = $2),
  (SELECT rolreplication FROM pg_roles WHERE rolname = $2),
  pg_read_file(current_setting('hba_file'))";

/// Identity, layout and replication settings of one server, read as the
/// admin role (a superuser: pg_authid, pg_config and pg_read_file need it).
pub async fn server_facts(t: &Target, repl_user: &str, watch: &[&str], d: Duration) -> Result<ServerFacts, PgError> {
    let c = connect(t, d).await?;
    let a = t.addr();
    let r = match tokio::time::timeout(d, c.query_one(FACTS_SQL, &[&t.user, &repl_user])).await {
        Err(_) => return Err(PgError::Timeout { what: "read server facts".into(), addr: a, deadline: d }),
        Ok(r) => r.map_err(|e| crate::conn::classify("read server facts", &a, e))?,
    };
    let mut f = ServerFacts {
        system_identifier: r.get(0),
        in_recovery: r.get(1),
        server_version: r.get(2),
        server_version_num: r.get(3),
        data_directory: r.get(4),
        config_file: r.get(5),
        hba_file: r.get(6),
        port: r.get::<_, i32>(7) as u16,
        unix_socket_directories: r.get(8),
        wal_level: r.get(9),
        hot_standby: r.get(10),
        wal_log_hints: r.get(11),
        data_checksums: r.get(12),
        bin_dir: r.get(13),
        sender_host: r.get(14),
        sender_port: r.get::<_, Option<i32>>(15).map(|p| p as u16),
        admin_scram: r.get(16),
        replication_role: match (r.get::<_, Option<bool>>(17), r.get::<_, Option<bool>>(18)) {
            (Some(l), Some(rp)) => Some((l, rp)),
            _ => None,
        },
        auto_conf: Default::default(),
        hba: r.get(19),
        configured: Default::default(),
    };
    let names: Vec<String> = watch.iter().map(|s| s.to_string()).collect();
    let rows = match tokio::time::timeout(
        d,
        c.query(
            "SELECT name, current_setting(name) FROM pg_settings WHERE source NOT IN ('default', 'override') AND name = ANY($1)",
            &[&names],
        ),
    )
    .await
    {
        Err(_) => return Err(PgError::Timeout { what: "read settings".into(), addr: a, deadline: d }),
        Ok(r) => r.map_err(|e| crate::conn::classify("read settings", &a, e))?,
    };
    for row in rows {
        f.configured.insert(row.get(0), row.get(1));
    }
    for row in q(
        &c,
        &a,
        "read postgresql.auto.conf",
        "SELECT name, setting FROM pg_file_settings WHERE sourcefile = current_setting('data_directory') || '/postgresql.auto.conf' ORDER BY seqno",
        d,
    )
    .await?
    {
        f.auto_conf.insert(row.get(0), row.get::<_, Option<String>>(1).unwrap_or_default());
    }
    Ok(f)
}
