use crate::conn::{classify, connect, Target};
use crate::PgError;
use host::{Host, Run};
use model::{ConfigObs, Downstream, NodeObservation, Observed, ObservedRole, PgLsn, RunState, Slot};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres::Client;

pub(crate) async fn q(
    c: &Client,
    addr: &str,
    what: &str,
    sql: &str,
    deadline: Duration,
) -> Result<Vec<tokio_postgres::Row>, PgError> {
    match tokio::time::timeout(deadline, c.query(sql, &[])).await {
        Err(_) => Err(PgError::Timeout { what: what.into(), addr: addr.into(), deadline }),
        Ok(r) => r.map_err(|e| classify(what, addr, e)),
    }
}

/// A standby's timeline: the greatest of its WAL receiver's, its last
/// checkpoint's, its minimum recovery point's (moved to the new timeline
/// when replay switches) and that of the WAL segments in its pg_wal (a
/// standby writes a timeline's segments only once it streams that
/// timeline; read where the role may: pg_monitor, which a superuser has).
/// The checkpoint's alone lags a timeline switch until the next
/// restartpoint, and the minimum recovery point's may not have moved yet:
/// a standby that followed a new primary and then stopped receiving (it
/// withdrew for a race) would look diverged from it.
const NODE_SQL: &str = "SELECT pg_is_in_recovery(),
  CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,
  pg_last_wal_receive_lsn(),
  current_setting('synchronous_standby_names'),
  current_setting('server_version'),
  CASE WHEN pg_is_in_recovery()
       THEN greatest((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint()),
                     nullif((SELECT min_recovery_end_timeline FROM pg_control_recovery()), 0),
                     CASE WHEN pg_has_role('pg_monitor', 'USAGE')
                          THEN (SELECT max(('x' || substr(name, 1, 8))::bit(32)::int) FROM pg_ls_waldir()
                                WHERE name ~ '^[0-9A-F]{24}$') END)
       ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
  current_setting('max_wal_senders')::int,
  current_setting('max_replication_slots')::int";

const RECEIVER_SQL: &str = "SELECT sender_host, sender_port, status = 'streaming' FROM pg_stat_wal_receiver";
/// `silent`: see [`Downstream::silent`].
const DOWNSTREAM_SQL: &str = "SELECT application_name, client_addr::text, state, sync_state, replay_lsn, flush_lsn,
  coalesce(state = 'streaming' AND sent_lsn > flush_lsn AND now() - reply_time > interval '2 seconds', false)
  FROM pg_stat_replication ORDER BY application_name";
const SLOTS_SQL: &str = "SELECT slot_name::text, active, restart_lsn,
  pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, restart_lsn)::bigint
  FROM pg_replication_slots WHERE slot_type = 'physical' ORDER BY slot_name";

async fn probe_inner(name: &str, t: &Target, deadline: Duration) -> Result<NodeObservation, PgError> {
    let c = connect(t, deadline).await?;
    let a = t.addr();
    let rows = q(&c, &a, "probe", NODE_SQL, deadline).await?;
    let r = &rows[0];
    let in_recovery: bool = r.get(0);
    let mut o = NodeObservation::unanswered(name, RunState::Running, "");
    o.error = None;
    o.role = if in_recovery { ObservedRole::Standby } else { ObservedRole::Primary };
    o.lsn = r.get::<_, Option<PgLsn>>(1);
    o.receive_lsn = r.get::<_, Option<PgLsn>>(2);
    o.synchronous_standby_names = Some(r.get(3));
    o.server_version = Some(r.get(4));
    o.timeline = r.get::<_, Option<i32>>(5).map(|x| x as u32);
    o.max_wal_senders = Some(r.get(6));
    o.max_replication_slots = Some(r.get(7));
    if in_recovery {
        if let Some(rr) = q(&c, &a, "probe wal receiver", RECEIVER_SQL, deadline).await?.first() {
            o.upstream_host = rr.get(0);
            o.upstream_port = rr.get::<_, Option<i32>>(1).map(|p| p as u16);
            o.upstream_streaming = rr.get::<_, Option<bool>>(2).unwrap_or(false);
        }
    }
    for d in q(&c, &a, "probe replication", DOWNSTREAM_SQL, deadline).await? {
        o.downstreams.push(Downstream {
            application_name: d.get(0),
            client_addr: d.get(1),
            state: d.get::<_, Option<String>>(2).unwrap_or_default(),
            sync_state: d.get::<_, Option<String>>(3).unwrap_or_default(),
            replay_lsn: d.get(4),
            flush_lsn: d.get(5),
            silent: d.get(6),
        });
    }
    for s in q(&c, &a, "probe slots", SLOTS_SQL, deadline).await? {
        o.slots.push(Slot { name: s.get(0), active: s.get(1), restart_lsn: s.get(2), retained_bytes: s.get(3) });
    }
    Ok(o)
}

/// Probe one node. Never fails: what went wrong is in the observation
/// (stopped when refused, unreachable at the deadline).
pub async fn probe(name: &str, t: &Target, deadline: Duration) -> NodeObservation {
    match probe_inner(name, t, deadline).await {
        Ok(o) => o,
        Err(e @ PgError::Refused { .. }) => NodeObservation::unanswered(name, RunState::Stopped, e.to_string()),
        // The server answered but would not serve (starting up, shutting
        // down, authentication): it runs, its role is unknown.
        Err(e @ PgError::Server { .. }) => NodeObservation::unanswered(name, RunState::Running, e.to_string()),
        Err(e) => NodeObservation::unanswered(name, RunState::Unreachable, e.to_string()),
    }
}

/// Probe all nodes in parallel, each with its own deadline.
pub async fn probe_all(targets: &[(String, Target)], deadline: Duration) -> Observed {
    let futs = targets.iter().map(|(n, t)| probe(n, t, deadline));
    let nodes = futures::future::join_all(futs).await;
    Observed { nodes: nodes.into_iter().map(|o| (o.name.clone(), o)).collect() }
}

/// A running node's configuration as the server reads it.
pub async fn config_obs(t: &Target, names: &[String], deadline: Duration) -> Result<ConfigObs, PgError> {
    let c = connect(t, deadline).await?;
    let a = t.addr();
    let mut o = ConfigObs { running: true, ..Default::default() };
    let hba = q(&c, &a, "read pg_hba.conf", "SELECT pg_read_file(current_setting('hba_file'))", deadline).await?;
    o.hba = hba.first().map(|r| r.get(0));
    for r in q(
        &c,
        &a,
        "read postgresql.auto.conf",
        "SELECT name, setting FROM pg_file_settings WHERE sourcefile = current_setting('data_directory') || '/postgresql.auto.conf' ORDER BY seqno",
        deadline,
    )
    .await?
    {
        o.auto_conf.insert(r.get(0), r.get::<_, Option<String>>(1).unwrap_or_default());
    }
    let pr =
        q(&c, &a, "read pending_restart", "SELECT count(*) FROM pg_settings WHERE pending_restart", deadline).await?;
    o.pending_restart = pr[0].get::<_, i64>(0) > 0;
    // Contexts of what we will set and of what is set now (a RESET of a
    // restart-only parameter needs a restart too).
    let mut all: Vec<&String> = names.iter().chain(o.auto_conf.keys()).collect();
    all.sort();
    all.dedup();
    let list = all.iter().map(|n| crate_literal(n)).collect::<Vec<_>>().join(",");
    if !list.is_empty() {
        let sql = format!("SELECT name, context FROM pg_settings WHERE name IN ({list})");
        let rows = q(&c, &a, "read pg_settings", &sql, deadline).await?;
        o.contexts =
            rows.into_iter().map(|r| (r.get::<_, String>(0), r.get::<_, String>(1))).collect::<BTreeMap<_, _>>();
    }
    Ok(o)
}

fn crate_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Find the server binaries on a host: pg_config, the usual Debian and RHEL
/// paths (newest version first), then PATH.
pub async fn find_bin_dir(h: &Host, deadline: Duration) -> Result<Option<PathBuf>, host::HostError> {
    let script = r#"for d in "$(pg_config --bindir 2>/dev/null)" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r) $(ls -d /usr/pgsql-*/bin 2>/dev/null | sort -r) /usr/local/pgsql/bin "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")"; do if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; exit 0; fi; done; exit 1"#;
    let argv = ["sh".to_string(), "-c".into(), script.into()];
    let o = h.run(&Run::new(&argv, deadline)).await?;
    Ok(if o.ok() { Some(PathBuf::from(o.stdout.trim())) } else { None })
}
