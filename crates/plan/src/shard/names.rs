//! Names of the objects a sharded table and a move create. Every name is
//! built here from validated parts, so SQL quoting is never needed.

/// Schema of the shard tables (coordinator: the middle partitions and
/// their foreign leaves; data groups: the leaves holding rows).
pub const SHARD_SCHEMA: &str = "pgscale_shards";
/// Schema of pgscale's catalog (coordinator) and the move marker (data groups).
pub const CATALOG_SCHEMA: &str = "pgscale";
/// Longest sharded table name: room for `_<shard>_<group>` within 63 bytes.
pub const MAX_TABLE: usize = 30;

/// `[a-z_][a-z0-9_]{0,29}`: a table or column name usable unquoted.
pub fn valid_table(s: &str) -> bool {
    valid_ident(s, MAX_TABLE)
}

/// A column name: `[a-z_][a-z0-9_]{0,62}`.
pub fn valid_column(s: &str) -> bool {
    valid_ident(s, 63)
}

fn valid_ident(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        && !RESERVED.contains(&s)
}

/// Words that would need quoting as identifiers (the common ones).
const RESERVED: &[&str] = &[
    "all",
    "and",
    "any",
    "as",
    "check",
    "column",
    "constraint",
    "create",
    "default",
    "desc",
    "do",
    "else",
    "end",
    "false",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "in",
    "limit",
    "not",
    "null",
    "on",
    "or",
    "order",
    "primary",
    "references",
    "select",
    "table",
    "then",
    "to",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "when",
    "where",
    "with",
];

/// A shard's table (a middle partition on the coordinator, the leaf holding
/// rows on a data group): `pgscale_shards.<table>_<shard>`.
pub fn shard_table(table: &str, shard: u32) -> String {
    format!("{SHARD_SCHEMA}.{table}_{shard}")
}

/// The bare name of a shard's table (without schema).
pub fn shard_rel(table: &str, shard: u32) -> String {
    format!("{table}_{shard}")
}

/// The coordinator's foreign leaf of a shard on `group`.
pub fn foreign_leaf(table: &str, shard: u32, group: &str) -> String {
    format!("{SHARD_SCHEMA}.{table}_{shard}_{group}")
}

/// The coordinator's foreign server of a data group.
pub fn server(group: &str) -> String {
    format!("pgscale_{group}")
}

/// The publication, slot and subscription of a move of `shard` to `dst`.
pub fn move_name(shard: u32, dst: &str) -> String {
    format!("pgscale_mv_{shard}_{dst}")
}

/// Prefix of every move object: a leftover one is a `check` finding.
pub const MOVE_PREFIX: &str = "pgscale_mv_";

/// Whether `name` is one `move_name` makes (`pgscale_mv_<shard>_<group>`,
/// a group name being `[a-z0-9_]+`): only such objects are a move's.
pub fn is_move_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(MOVE_PREFIX) else { return false };
    let Some((shard, group)) = rest.split_once('_') else { return false };
    shard.parse::<u32>().is_ok()
        && !shard.starts_with('+')
        && !group.is_empty()
        && group.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_names_are_recognised() {
        assert!(is_move_name(&move_name(7, "dg3")));
        assert!(is_move_name("pgscale_mv_0_dg_2"));
        for n in
            ["pgscale_mv2_x", "pgscale_mv_x_dg1", "pgscale_mv_7_", "pgscale_mv_7_DG1", "pgscale_mv_+7_dg1", "mv_7_dg1"]
        {
            assert!(!is_move_name(n), "{n}");
        }
    }

    #[test]
    fn names_are_checked_and_fit() {
        assert!(valid_table("orders") && valid_table("_t1"));
        assert!(!valid_table("Orders") && !valid_table("1t") && !valid_table("a-b") && !valid_table(""));
        assert!(!valid_table("select") && !valid_table(&"a".repeat(31)));
        let longest = foreign_leaf(&"a".repeat(MAX_TABLE), 1023, &"g".repeat(26));
        assert!(longest.len() - SHARD_SCHEMA.len() - 1 <= 63, "{longest}");
        assert_eq!(move_name(7, "dg3"), "pgscale_mv_7_dg3");
    }
}
