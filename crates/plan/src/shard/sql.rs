//! The SQL text of sharding: catalogs, foreign servers, shard tables, the
//! moves' publications and subscriptions, and the cut-over. Names come
//! from `names` (validated parts); values are quoted with `literal`.

use super::names::{foreign_leaf, server, shard_table, CATALOG_SCHEMA, SHARD_SCHEMA};
use crate::sql::literal;

/// Before statements that carry a password (on pgscale's own session):
/// the server must not log them, even when they fail.
pub const QUIET: &str = "SET log_min_error_statement = panic; SET log_statement = 'none'; \
     SET log_min_duration_statement = -1; SET log_min_duration_sample = -1; \
     SET pg_stat_statements.track_utility = off;";
/// After them.
pub const UNQUIET: &str = "RESET log_min_error_statement; RESET log_statement; RESET log_min_duration_statement; \
     RESET log_min_duration_sample; RESET pg_stat_statements.track_utility;";

/// The coordinator's catalog: groups, where each shard is, the sharded
/// tables, the DDL to replay on a new group, and the moves' journal. At
/// most one unfinished move per shard.
pub fn coordinator_catalog() -> String {
    format!(
        "CREATE EXTENSION IF NOT EXISTS postgres_fdw;\n\
         CREATE SCHEMA IF NOT EXISTS {c};\n\
         CREATE SCHEMA IF NOT EXISTS {s};\n\
         CREATE TABLE IF NOT EXISTS {c}.groups (name text PRIMARY KEY, draining boolean NOT NULL DEFAULT false);\n\
         CREATE TABLE IF NOT EXISTS {c}.shards (shard int PRIMARY KEY, grp text NOT NULL REFERENCES {c}.groups(name));\n\
         CREATE TABLE IF NOT EXISTS {c}.tables (name text PRIMARY KEY, key text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());\n\
         CREATE TABLE IF NOT EXISTS {c}.ddl (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), sql text NOT NULL);\n\
         CREATE TABLE IF NOT EXISTS {c}.moves (id bigserial PRIMARY KEY, shard int NOT NULL, src text NOT NULL, dst text NOT NULL, \
         state text NOT NULL DEFAULT 'started', src_primary text, dst_primary text, redos int NOT NULL DEFAULT 0, \
         started_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz, figures jsonb);\n\
         CREATE UNIQUE INDEX IF NOT EXISTS moves_one_per_shard ON {c}.moves (shard) WHERE state <> 'done';\n\
         CREATE SEQUENCE IF NOT EXISTS {c}.marker_ids;\n",
        c = CATALOG_SCHEMA,
        s = SHARD_SCHEMA
    )
}

/// A data group's part: the shard schema and the move marker (no key:
/// inserts never conflict; identity FULL so its rows can be deleted while
/// it is published).
pub fn data_catalog() -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS {c};\n\
         CREATE SCHEMA IF NOT EXISTS {s};\n\
         CREATE TABLE IF NOT EXISTS {c}.marker (id bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());\n\
         ALTER TABLE {c}.marker REPLICA IDENTITY FULL;\n\
         CREATE TABLE IF NOT EXISTS {c}.applied_ddl (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());\n",
        c = CATALOG_SCHEMA,
        s = SHARD_SCHEMA
    )
}

/// libpq's multi-host form: the connection goes to whichever node of the
/// group is the primary now, so a failover needs no change here.
fn hosts_options(hosts: &[(String, u16)]) -> (String, String) {
    let h: Vec<&str> = hosts.iter().map(|(h, _)| h.as_str()).collect();
    let p: Vec<String> = hosts.iter().map(|(_, p)| p.to_string()).collect();
    (h.join(","), p.join(","))
}

/// The foreign server of a data group (created, or its hosts updated).
pub fn ensure_server(group: &str, hosts: &[(String, u16)], dbname: &str) -> String {
    let (h, p) = hosts_options(hosts);
    let srv = server(group);
    format!(
        "DO $pgscale$ BEGIN\n\
         IF NOT EXISTS (SELECT 1 FROM pg_foreign_server WHERE srvname = {lsrv}) THEN\n\
         CREATE SERVER {srv} FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host {h}, port {p}, dbname {d}, \
         target_session_attrs 'read-write', connect_timeout '10', keepalives_idle '5', keepalives_interval '2', \
         keepalives_count '3');\n\
         ELSE\n\
         ALTER SERVER {srv} OPTIONS (SET host {h}, SET port {p});\n\
         END IF; END $pgscale$;\n",
        lsrv = literal(&srv),
        h = literal(&h),
        p = literal(&p),
        d = literal(dbname)
    )
}

/// The admin role's user mapping on a group's server (carries a password:
/// run after [`QUIET`]).
pub fn ensure_user_mapping(group: &str, admin: &str, password: &str) -> String {
    let srv = server(group);
    format!(
        "DROP USER MAPPING IF EXISTS FOR {u} SERVER {srv};\n\
         CREATE USER MAPPING FOR {u} SERVER {srv} OPTIONS (user {lu}, password {pw});\n",
        u = crate::sql::ident(admin),
        lu = literal(admin),
        pw = literal(password)
    )
}

/// The user's `CREATE TABLE` made the root of a hash-partitioned table.
pub fn partitioned_create(stmt: &str, key: &str) -> String {
    let body = stmt.trim().trim_end_matches(';').trim_end();
    format!("SET LOCAL search_path = public;\n{body} PARTITION BY HASH ({key});\n")
}

/// The columns of `table`'s primary key (a query with one text[] column).
pub fn primary_key_columns(table: &str) -> String {
    format!(
        "SELECT coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_constraint c \
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) \
         WHERE c.conrelid = 'public.{table}'::regclass AND c.contype = 'p'), '{{}}'::text[])"
    )
}

/// On the coordinator, unique constraints and indexes cannot span foreign
/// partitions: the data groups enforce them per shard (the key is in them).
pub fn drop_unique(table: &str) -> String {
    format!(
        "DO $pgscale$ DECLARE r record; BEGIN\n\
         FOR r IN SELECT conname FROM pg_constraint WHERE conrelid = 'public.{table}'::regclass AND contype IN ('p', 'u') LOOP\n\
         EXECUTE format('ALTER TABLE public.{table} DROP CONSTRAINT %I', r.conname);\n\
         END LOOP;\n\
         FOR r IN SELECT indexrelid::regclass AS i FROM pg_index WHERE indrelid = 'public.{table}'::regclass AND indisunique LOOP\n\
         EXECUTE format('DROP INDEX %s', r.i);\n\
         END LOOP; END $pgscale$;\n"
    )
}

fn bound(shards: u32, shard: u32) -> String {
    format!("FOR VALUES WITH (MODULUS {shards}, REMAINDER {shard})")
}

/// A shard on the coordinator: the middle partition and its foreign leaf on `group`.
pub fn coordinator_shard(table: &str, key: &str, shards: u32, shard: u32, group: &str) -> String {
    format!(
        "CREATE TABLE {mid} PARTITION OF public.{table} {b} PARTITION BY HASH ({key});\n{leaf}",
        mid = shard_table(table, shard),
        b = bound(shards, shard),
        leaf = attach_leaf(table, shard, group)
    )
}

/// The foreign leaf of `shard` on `group`, attached to its middle partition.
pub fn attach_leaf(table: &str, shard: u32, group: &str) -> String {
    format!(
        "CREATE FOREIGN TABLE {leaf} PARTITION OF {mid} FOR VALUES WITH (MODULUS 1, REMAINDER 0) \
         SERVER {srv} OPTIONS (schema_name {sch}, table_name {rel});\n",
        leaf = foreign_leaf(table, shard, group),
        mid = shard_table(table, shard),
        srv = server(group),
        sch = literal(SHARD_SCHEMA),
        rel = literal(&super::names::shard_rel(table, shard))
    )
}

/// The foreign leaf of `shard` on `group`, detached and dropped (the rows
/// stay on the group).
pub fn detach_leaf(table: &str, shard: u32, group: &str) -> String {
    format!(
        "ALTER TABLE {mid} DETACH PARTITION {leaf};\nDROP FOREIGN TABLE {leaf};\n",
        mid = shard_table(table, shard),
        leaf = foreign_leaf(table, shard, group)
    )
}

/// A data group's leaf of `shard` (rows live here).
pub fn data_shard(table: &str, shards: u32, shard: u32) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF public.{table} {};\n",
        shard_table(table, shard),
        bound(shards, shard)
    )
}

/// The publication of a move: the shard's leaves and the marker.
pub fn create_publication(name: &str, tables: &[String], shard: u32) -> String {
    let mut list: Vec<String> = tables.iter().map(|t| shard_table(t, shard)).collect();
    list.push(format!("{CATALOG_SCHEMA}.marker"));
    format!("CREATE PUBLICATION {name} FOR TABLE {};\n", list.join(", "))
}

/// A libpq connection string, each value quoted as libpq wants.
pub fn conninfo(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The subscription of a move (carries a password: run after [`QUIET`]).
/// The copy is binary, an apply error disables it (pgscale then redoes the
/// move) and its slot on the source is named like it.
pub fn create_subscription(name: &str, conninfo: &str) -> String {
    format!(
        "CREATE SUBSCRIPTION {name} CONNECTION {c} PUBLICATION {name} WITH (copy_data = true, binary = true, \
         disable_on_error = true, create_slot = true, slot_name = {n});\n",
        c = literal(conninfo),
        n = literal(name)
    )
}

/// Make a subscription droppable without the source: disabled, detached
/// from its slot, and pointed at nothing (PostgreSQL 15's DROP SUBSCRIPTION
/// still connects to drop the table-sync slots of an unfinished copy, and
/// would wait out connect_timeout on a dead host). pgscale drops the slot
/// and the table-sync slots on the source itself.
pub fn drop_subscription(name: &str) -> String {
    format!(
        "DO $pgscale$ BEGIN\n\
         IF EXISTS (SELECT 1 FROM pg_subscription WHERE subname = {n}) THEN\n\
         ALTER SUBSCRIPTION {name} DISABLE;\n\
         ALTER SUBSCRIPTION {name} SET (slot_name = NONE);\n\
         ALTER SUBSCRIPTION {name} CONNECTION 'host=/nonexistent/pgscale-detached';\n\
         END IF; END $pgscale$;\n",
        n = literal(name)
    )
}

/// The source's side of a move, gone: the walsender ended, the slot and
/// the publication dropped.
pub fn drop_source_side(name: &str) -> String {
    format!("{}DROP PUBLICATION IF EXISTS {name};\n", end_walsender(name))
}

/// The walsender holding a slot (if any) ended, so the slot can go.
pub fn end_walsender(slot: &str) -> String {
    format!(
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = {} AND active_pid IS NOT NULL;\n",
        literal(slot)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_statement_gets_the_partitioning() {
        let s = partitioned_create("CREATE TABLE t (id bigint PRIMARY KEY, v text);  \n", "id");
        assert!(s.ends_with("CREATE TABLE t (id bigint PRIMARY KEY, v text) PARTITION BY HASH (id);\n"), "{s}");
    }

    #[test]
    fn passwords_are_quoted_in_conninfo_and_sql() {
        let c = conninfo(&[("host", "127.0.0.2"), ("password", "a'b\\c")]);
        assert_eq!(c, "host='127.0.0.2' password='a\\'b\\\\c'");
        let s = create_subscription("pgscale_mv_1_dg3", &c);
        assert!(s.contains("CONNECTION 'host=''127.0.0.2'' password=''a\\''b\\\\c'''"), "{s}");
        let m = ensure_user_mapping("dg1", "postgres", "p'w");
        assert!(m.contains("password 'p''w'"), "{m}");
    }

    #[test]
    fn shard_objects() {
        let s = coordinator_shard("orders", "id", 64, 7, "dg2");
        assert!(
            s.contains("pgscale_shards.orders_7 PARTITION OF public.orders FOR VALUES WITH (MODULUS 64, REMAINDER 7)")
        );
        assert!(s.contains("pgscale_shards.orders_7_dg2 PARTITION OF pgscale_shards.orders_7"));
        assert!(s.contains("SERVER pgscale_dg2 OPTIONS (schema_name 'pgscale_shards', table_name 'orders_7')"));
        let p = create_publication("pgscale_mv_7_dg3", &["a".into(), "b".into()], 7);
        assert_eq!(
            p,
            "CREATE PUBLICATION pgscale_mv_7_dg3 FOR TABLE pgscale_shards.a_7, pgscale_shards.b_7, pgscale.marker;\n"
        );
    }
}
