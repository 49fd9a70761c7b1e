//! Server settings pgscale owns, and the first `postgresql.auto.conf`.
//!
//! We never parse postgresql.conf. Before the first start the server cannot
//! take `ALTER SYSTEM`, so init writes `postgresql.auto.conf` whole (the file
//! ALTER SYSTEM itself maintains); every later change goes through
//! `ALTER SYSTEM`.

use model::{Inventory, NodeSpec};

/// Parameters set from the inventory's node fields or managed by pgscale's
/// operations; the user may not set them in `postgres.parameters`.
pub const RESERVED: &[(&str, &str)] = &[
    ("port", "set by the node's `port` field"),
    ("listen_addresses", "set from the node's `host` field"),
    ("unix_socket_directories", "set from the node's `socket_dir` field"),
    ("primary_conninfo", "managed by pgscale for standbys"),
    ("primary_slot_name", "managed by pgscale for standbys"),
    ("synchronous_standby_names", "managed by pgscale from the nodes' `sync` fields"),
    ("hba_file", "pgscale writes pg_hba.conf in the data directory"),
    ("ident_file", "pgscale keeps the data directory layout"),
    ("config_file", "pgscale keeps the data directory layout"),
    ("data_directory", "set by the node's `data_dir` field"),
    ("cluster_name", "set to <cluster>/<node> by pgscale"),
    ("logging_collector", "pgscale keeps the server log under <data_dir>/log"),
];

pub fn reserved_reason(name: &str) -> Option<&'static str> {
    RESERVED.iter().find(|(n, _)| *n == name).map(|(_, why)| *why)
}

/// The settings a replicated cluster needs, in order. Values are strings as
/// ALTER SYSTEM stores them.
pub fn managed_settings(inv: &Inventory, node: &NodeSpec) -> Vec<(String, String)> {
    // Room for every node as a sender target plus a few for base copies and
    // rewinds running at the same time.
    let senders = (inv.nodes.len() * 2 + 4).max(10).to_string();
    let mut v: Vec<(String, String)> = vec![
        ("listen_addresses".into(), node.host.clone()),
        ("port".into(), node.port.to_string()),
        ("unix_socket_directories".into(), node.socket_dir().display().to_string()),
        ("cluster_name".into(), format!("{}/{}", inv.name, node.name)),
        ("wal_level".into(), "replica".into()),
        ("max_wal_senders".into(), senders.clone()),
        ("max_replication_slots".into(), senders),
        ("hot_standby".into(), "on".into()),
        // pg_rewind needs hint bits WAL-logged (checksums do it too).
        ("wal_log_hints".into(), "on".into()),
        // pg_rewind reads the target's own WAL back to the last common
        // checkpoint: keep some, or a rejoin has to re-clone.
        ("wal_keep_size".into(), "128MB".into()),
        ("password_encryption".into(), "scram-sha-256".into()),
        ("logging_collector".into(), "on".into()),
        ("log_directory".into(), "log".into()),
    ];
    // Role-specific settings: a standby streams from its upstream through
    // its own slot; the primary names its synchronous standbys.
    match inv.upstream_of(&node.name) {
        Some(up) => {
            v.push(("primary_conninfo".into(), primary_conninfo(inv, node, up)));
            v.push(("primary_slot_name".into(), model::slot_name(&node.name)));
        }
        // Standbys still joining are not named: a sync standby enters the
        // list only once it streams (the scale-out plan's last steps).
        None => v.push(("synchronous_standby_names".into(), crate::sync::member_standby_names(inv))),
    }
    let set = |v: &mut Vec<(String, String)>, k: &str, val: String| match v.iter_mut().find(|(n, _)| n == k) {
        Some(slot) => slot.1 = val,
        None => v.push((k.to_string(), val)),
    };
    for (k, val) in &inv.postgres.parameters {
        set(&mut v, k, val.to_string());
    }
    // A sharded cluster's groups: what moving shards needs (after the
    // user's parameters: a move cannot work without them).
    if let Some(sh) = &inv.sharding {
        if sh.is_coordinator() {
            // PG <= 15 generic plans lock every partition: a cut-over's
            // lock of one shard would stall the whole table.
            set(&mut v, "plan_cache_mode", "force_custom_plan".into());
        } else {
            set(&mut v, "wal_level", "logical".into());
            let logical = (inv.nodes.len() * 2 + 4).max(10) + 8;
            set(&mut v, "max_wal_senders", logical.to_string());
            set(&mut v, "max_replication_slots", logical.to_string());
            // A move's slot must not fill the disk if the move stalls.
            set(&mut v, "max_slot_wal_keep_size", "8GB".into());
            // The launcher starts one subscription's worker per interval
            // (5 s by default): moves one after another would wait it out.
            set(&mut v, "wal_retrieve_retry_interval", "200ms".into());
        }
    }
    v
}

/// The replication password file on a standby's host: in the node's own
/// 0700 socket directory, outside the data directory (a base copy taken
/// from this node must not carry it).
pub fn passfile(node: &NodeSpec) -> std::path::PathBuf {
    node.socket_dir().join("pgpass")
}

/// A libpq conninfo value: single-quoted, `\` and `'` escaped.
fn conn_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The connection pg_rewind uses to read the primary `up`, from `node`.
pub fn rewind_source(inv: &Inventory, node: &NodeSpec, up: &NodeSpec) -> String {
    format!(
        "host={} port={} user={} dbname=postgres passfile={} connect_timeout=5",
        conn_value(&up.host),
        up.port,
        conn_value(&inv.postgres.replication_user),
        conn_value(&passfile(node).display().to_string())
    )
}

/// How `node` reaches `up`: as the replication role, named by its
/// application_name, the password read from its passfile (never inline).
pub fn primary_conninfo(inv: &Inventory, node: &NodeSpec, up: &NodeSpec) -> String {
    format!(
        "host={} port={} user={} application_name={} passfile={} connect_timeout=5",
        conn_value(&up.host),
        up.port,
        conn_value(&inv.postgres.replication_user),
        conn_value(&node.name),
        conn_value(&passfile(node).display().to_string())
    )
}

/// Quote a value the way ALTER SYSTEM writes it.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// The whole `postgresql.auto.conf` for a node's first start.
pub fn auto_conf(inv: &Inventory, node: &NodeSpec) -> String {
    let mut s =
        String::from("# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n");
    for (k, v) in managed_settings(inv, node) {
        s.push_str(&format!("{k} = {}\n", quote(&v)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{ParamValue, PostgresSpec};

    fn inv() -> Inventory {
        let mut pg = PostgresSpec::default();
        pg.parameters.insert("shared_buffers".into(), ParamValue::Str("128MB".into()));
        pg.parameters.insert("wal_level".into(), ParamValue::Str("logical".into()));
        pg.parameters.insert("jit".into(), ParamValue::Bool(false));
        Inventory {
            name: "demo".into(),
            postgres: pg,
            nodes: vec![NodeSpec {
                name: "pg1".into(),
                host: "127.0.0.2".into(),
                port: 5501,
                data_dir: "/d/o'brien".into(),
                role: None,
                upstream: None,
                sync: None,
                ssh: None,
                transport: None,
                socket_dir: None,
                state: Default::default(),
            }],
            dcs: None,
            ha: Default::default(),
            sharding: None,
            state: Default::default(),
        }
    }

    #[test]
    fn auto_conf_has_replication_settings_and_user_overrides() {
        let i = inv();
        let c = auto_conf(&i, &i.nodes[0]);
        assert!(c.contains("listen_addresses = '127.0.0.2'\n"));
        assert!(c.contains("port = '5501'\n"));
        assert!(c.contains("unix_socket_directories = '/d/o''brien.sock'\n"), "{c}");
        assert!(c.contains("wal_log_hints = 'on'\n"));
        assert!(c.contains("wal_level = 'logical'\n"), "user value wins: {c}");
        assert!(!c.contains("wal_level = 'replica'"));
        assert!(c.contains("shared_buffers = '128MB'\n"));
        assert!(c.contains("jit = 'off'\n"));
    }

    #[test]
    fn reserved_names_say_why() {
        assert!(reserved_reason("port").unwrap().contains("port"));
        assert!(reserved_reason("work_mem").is_none());
    }
}
