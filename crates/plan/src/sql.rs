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
    fn ensure_role_never_contains_clear_text_marker() {
        let s = ensure_role("repl", true, "SCRAM-SHA-256$4096:abc$def:ghi");
        assert!(s.contains("REPLICATION"));
        assert!(s.contains("'SCRAM-SHA-256$4096:abc$def:ghi'"));
        assert!(s.contains("CREATE ROLE %I"));
    }
}
