//! synchronous_standby_names, derived from the inventory's `sync` fields.
//!
//! Form: `FIRST k ("a", "b", ...)`: the `sync` nodes first, then the
//! `potential` ones; k = the number of `sync` nodes. With FIRST, the first k
//! connected names are synchronous and the rest wait as potential, which is
//! what `sync`/`potential` mean in the inventory. Only direct standbys of the
//! primary can be synchronous. Empty when no node is `sync`: asynchronous.

use model::{Inventory, NodeSpec, Observed, ObservedRole, RunState, SyncMode};

fn candidates<'a>(inv: &'a Inventory, mode: SyncMode) -> impl Iterator<Item = &'a NodeSpec> + 'a {
    // A node that needs a rejoin is not a standby yet: it cannot count.
    inv.staying().filter(move |n| !inv.is_primary(&n.name) && !n.state.needs_rejoin && n.sync_mode() == mode)
}

/// The list with only the standbys that are members now (not joining): what
/// a new primary starts with, so that its first commits never wait on a
/// standby still being copied.
pub fn member_standby_names(inv: &Inventory) -> String {
    let mut members = inv.clone();
    members.nodes.retain(|n| !n.state.joining);
    standby_names(&members)
}

pub fn standby_names(inv: &Inventory) -> String {
    let k = candidates(inv, SyncMode::Sync).count();
    let names: Vec<String> =
        candidates(inv, SyncMode::Sync).chain(candidates(inv, SyncMode::Potential)).map(|n| n.name.clone()).collect();
    render(k, &names)
}

/// `FIRST k ("a", "b", ...)` (names quoted, `"` doubled); empty when k is 0.
pub fn render(k: usize, names: &[String]) -> String {
    if k == 0 || names.is_empty() {
        return String::new();
    }
    let q: Vec<String> = names.iter().map(|n| format!("\"{}\"", n.replace('"', "\"\""))).collect();
    format!("FIRST {k} ({})", q.join(", "))
}

/// Who takes the place of a leaving `sync` node: a `potential` one first,
/// then an asynchronous direct standby of the primary, each only if it is
/// running as a standby. Err: nobody can, with the reason.
pub fn replacement(inv: &Inventory, leaving: &[String], obs: &Observed) -> Result<Option<String>, String> {
    let primary = inv.primary().map(|p| p.name.clone()).unwrap_or_default();
    let direct = |n: &NodeSpec| inv.upstream_of(&n.name).is_some_and(|u| u.name == primary);
    let live = |n: &NodeSpec| {
        obs.get(&n.name).is_some_and(|o| o.state == RunState::Running && o.role == ObservedRole::Standby)
    };
    let sync_leaving =
        inv.nodes.iter().filter(|n| leaving.contains(&n.name) && n.sync_mode() == SyncMode::Sync).count();
    if sync_leaving == 0 {
        return Ok(None);
    }
    let pick = inv
        .staying()
        .filter(|n| !leaving.contains(&n.name) && !inv.is_primary(&n.name) && direct(n) && live(n))
        .filter(|n| n.sync_mode() != SyncMode::Sync)
        .min_by_key(|n| if n.sync_mode() == SyncMode::Potential { 0 } else { 1 });
    match pick {
        Some(n) => Ok(Some(n.name.clone())),
        None => Err(format!(
            "no other running direct standby of {primary} can become synchronous: the cluster drops to asynchronous replication (commits no longer wait for a standby)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_inventory;
    use model::NodeObservation;

    fn inv(extra: &str) -> Inventory {
        let y =
            format!("name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 1\n    data_dir: /d/1\n{extra}");
        parse_inventory("c.yaml", &y).unwrap().0
    }

    fn node(name: &str, sync: &str, upstream: &str) -> String {
        let mut s = format!(
            "  - name: {name}\n    host: 127.0.0.1\n    port: {}\n    data_dir: /d/{name}\n",
            name.len() + 100 + name.as_bytes()[2] as usize
        );
        if !sync.is_empty() {
            s += &format!("    sync: {sync}\n");
        }
        if !upstream.is_empty() {
            s += &format!("    upstream: {upstream}\n");
        }
        s
    }

    fn running_standbys(names: &[&str]) -> Observed {
        let mut o = Observed::default();
        for n in names {
            let mut x = NodeObservation::unanswered(n, RunState::Running, "");
            x.role = ObservedRole::Standby;
            o.nodes.insert(n.to_string(), x);
        }
        o
    }

    #[test]
    fn names_sync_first_then_potential() {
        let i = inv(&(node("pg2", "potential", "") + &node("pg3", "sync", "") + &node("pg4", "", "")));
        assert_eq!(standby_names(&i), "FIRST 1 (\"pg3\", \"pg2\")");
        let i = inv(&node("pg2", "", ""));
        assert_eq!(standby_names(&i), "");
        let mut i = inv(&(node("pg2", "sync", "") + &node("pg3", "sync", "")));
        assert_eq!(standby_names(&i), "FIRST 2 (\"pg2\", \"pg3\")");
        i.nodes[1].state.leaving = true;
        assert_eq!(standby_names(&i), "FIRST 1 (\"pg3\")");
    }

    #[test]
    fn replacement_prefers_potential_then_async_direct_and_says_why_not() {
        let i = inv(&(node("pg2", "sync", "") + &node("pg3", "", "") + &node("pg4", "potential", "")));
        let leaving = vec!["pg2".to_string()];
        let all = running_standbys(&["pg2", "pg3", "pg4"]);
        assert_eq!(replacement(&i, &leaving, &all), Ok(Some("pg4".into())));
        let no_pot = running_standbys(&["pg2", "pg3"]);
        assert_eq!(replacement(&i, &leaving, &no_pot), Ok(Some("pg3".into())));
        let none = running_standbys(&["pg2"]);
        assert!(replacement(&i, &leaving, &none).unwrap_err().contains("asynchronous"));
        // an async node leaving needs no replacement
        assert_eq!(replacement(&i, &["pg3".to_string()], &none), Ok(None));
        // a cascaded standby cannot replace
        let c = inv(&(node("pg2", "sync", "") + &node("pg3", "", "pg2")));
        assert!(replacement(&c, &leaving, &running_standbys(&["pg2", "pg3"])).is_err());
    }
}
