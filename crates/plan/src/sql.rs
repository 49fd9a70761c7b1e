//! SQL text builders. Identifiers and literals are quoted here, once.

/// `"name"` with embedded quotes doubled.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled. We always run with
/// standard_conforming_strings=on (the default since 9.1), so backslashes
/// are literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub fn alter_system_set(name: &str, value: &str) -> String {
    format!("ALTER SYSTEM SET {} = {}", ident(name), literal(value))
}

pub fn alter_system_reset(name: &str) -> String {
    format!("ALTER SYSTEM RESET {}", ident(name))
}

/// Create the role or, when it exists, bring it to the wanted attributes and
/// password. `verifier` is a SCRAM verifier, never a clear-text password.
pub fn ensure_role(role: &str, replication: bool, verifier: &str) -> String {
    let attrs = if replication { "LOGIN REPLICATION" } else { "LOGIN SUPERUSER" };
    // A DO block keeps this one idempotent statement; format() with %I/%L
    // quotes again on the server side.
    format!(
        "DO $pgscale$ BEGIN \
         IF EXISTS (SELECT FROM pg_roles WHERE rolname = {r}) THEN \
         EXECUTE format('ALTER ROLE %I WITH {attrs} PASSWORD %L', {r}, {v}); \
         ELSE \
         EXECUTE format('CREATE ROLE %I WITH {attrs} PASSWORD %L', {r}, {v}); \
         END IF; END $pgscale$",
        r = literal(role),
        v = literal(verifier),
    )
}

/// Create a physical slot (reserving WAL now) unless it exists.
pub fn create_slot(name: &str) -> String {
    format!(
        "SELECT pg_create_physical_replication_slot({n}, true) WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = {n})",
        n = literal(name)
    )
}

/// Drop a slot if it exists. A slot still held by a walsender (a node that
/// was frozen or killed) is freed first by ending that walsender; the loop
/// is bounded (5 s) so this never waits forever.
pub fn drop_slot(name: &str) -> String {
    format!(
        "DO $pgscale$ DECLARE pid int; BEGIN \
         FOR i IN 1..100 LOOP \
         SELECT active_pid INTO pid FROM pg_replication_slots WHERE slot_name = {n}; \
         EXIT WHEN pid IS NULL; \
         PERFORM pg_terminate_backend(pid); PERFORM pg_sleep(0.05); \
         END LOOP; \
         IF EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = {n}) THEN \
         PERFORM pg_drop_replication_slot({n}); END IF; END $pgscale$",
        n = literal(name)
    )
}

/// pg_rewind as the replication role reads files through these functions.
pub fn grant_rewind(role: &str) -> String {
    // Each GRANT only when missing: a GRANT rewrites its catalog row even
    // when nothing changes, and that commit waits for a synchronous standby
    // which may be the very node about to be rewound. Checks write nothing.
    // When a grant is missing (a cluster never rewound before) its commit
    // is local only: a lost grant costs nothing but a retry, while waiting
    // for a synchronous standby that is down would block the very rejoin
    // that brings it back.
    let (r, l) = (ident(role), literal(role));
    let grants: String = [
        "pg_catalog.pg_ls_dir(text, boolean, boolean)",
        "pg_catalog.pg_stat_file(text, boolean)",
        "pg_catalog.pg_read_binary_file(text)",
        "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
    ]
    .iter()
    .map(|f| {
        format!(
            "IF NOT has_function_privilege({l}, {fl}, 'EXECUTE') THEN GRANT EXECUTE ON FUNCTION {f} TO {r}; END IF; ",
            fl = literal(f)
        )
    })
    .collect();
    format!("DO $pgscale$ BEGIN PERFORM set_config('synchronous_commit', 'local', true); {grants}END $pgscale$")
}

/// Drop every physical slot but `keep` (a node that stopped being a
/// primary keeps the slots of its former standbys, which pin WAL). Each
/// slot's walsender is ended first; the wait is bounded (5 s per slot).
pub fn drop_slots_except(keep: &[String]) -> String {
    // `x NOT IN (NULL)` is never true: with nothing to keep, no condition.
    let cond = if keep.is_empty() {
        "true".to_string()
    } else {
        format!("slot_name NOT IN ({})", keep.iter().map(|k| literal(k)).collect::<Vec<_>>().join(", "))
    };
    format!(
        "DO $pgscale$ DECLARE s text; pid int; BEGIN \
         FOR s IN SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'physical' AND {cond} LOOP \
         FOR i IN 1..100 LOOP \
         SELECT active_pid INTO pid FROM pg_replication_slots WHERE slot_name = s; \
         EXIT WHEN pid IS NULL; \
         PERFORM pg_terminate_backend(pid); PERFORM pg_sleep(0.05); \
         END LOOP; \
         PERFORM pg_drop_replication_slot(s); \
         END LOOP; END $pgscale$"
    )
}

pub const RELOAD: &str = "SELECT pg_reload_conf()";

/// Errors the server finds in pg_hba.conf as it is now on disk.
pub const HBA_ERRORS: &str =
    "SELECT line_number, coalesce(error, '') FROM pg_hba_file_rules WHERE error IS NOT NULL ORDER BY line_number";

pub const CHECKPOINT: &str = "CHECKPOINT";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(alter_system_set("work_mem", "4MB"), "ALTER SYSTEM SET \"work_mem\" = '4MB'");
    }

    #[test]
    fn slot_statements_are_guarded() {
        assert!(create_slot("pg2").contains("WHERE NOT EXISTS"));
        let d = drop_slot("pg2");
        assert!(d.contains("IF EXISTS") && d.contains("pg_terminate_backend") && d.contains("1..100"));
    }

    #[test]
    fn drop_slots_except_keeps_the_named_ones() {
        let s = drop_slots_except(&["pg3".into()]);
        assert!(s.contains("NOT IN ('pg3')"));
        let all = drop_slots_except(&[]);
        assert!(all.contains("AND true LOOP") && !all.contains("NOT IN"), "{all}");
    }

    #[test]
    fn ensure_role_never_contains_clear_text_marker() {
        let s = ensure_role("repl", true, "SCRAM-SHA-256$4096:abc$def:ghi");
        assert!(s.contains("REPLICATION"));
        assert!(s.contains("'SCRAM-SHA-256$4096:abc$def:ghi'"));
        assert!(s.contains("CREATE ROLE %I"));
    }
}

#[cfg(test)]
mod grant_tests {
    use super::*;

    #[test]
    fn rewind_grants_are_conditional_and_quoted() {
        let s = grant_rewind("repl\"x");
        assert!(
            s.starts_with("DO $pgscale$ BEGIN PERFORM set_config('synchronous_commit', 'local', true); IF NOT has_function_privilege('repl\"x', "),
            "{s}"
        );
        assert_eq!(s.matches("GRANT EXECUTE").count(), 4);
        assert!(s.contains("TO \"repl\"\"x\"; END IF;"), "{s}");
        assert!(s.ends_with("END $pgscale$"));
    }
}
