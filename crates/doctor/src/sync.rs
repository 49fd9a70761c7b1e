//! The leader keeps the synchronous standby count the spec asks for: when a
//! named synchronous standby stops streaming, another direct standby that
//! streams takes its place; when it streams again, it gets its place back.
//!
//! Order (DOCTOR.md §4), so that Fence B's `ackers` in etcd always contain
//! every standby the live setting lets acknowledge: a name is published in
//! `ackers` *before* the setting names it; a name leaves `ackers` only
//! *after* the setting no longer names it (the leader derives `ackers`
//! from the live setting each tick). `eligible` (sure to hold every
//! acknowledged commit) takes a newly named standby only once it flushed
//! past the primary's position at the moment it was named.

/// A parsed `synchronous_standby_names`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conf {
    pub k: usize,
    pub names: Vec<String>,
}

/// Parse `FIRST k (a, "b")`, `ANY k (...)`, `k (...)` or a bare list
/// (`a, b`: one synchronous). Empty: asynchronous (k = 0).
pub fn parse(s: &str) -> Conf {
    let s = s.trim();
    if s.is_empty() {
        return Conf::default();
    }
    let (head, list) = match (s.find('('), s.rfind(')')) {
        (Some(a), Some(b)) if a < b => (&s[..a], &s[a + 1..b]),
        _ => ("", s),
    };
    let names: Vec<String> =
        list.split(',').map(|n| n.trim().trim_matches('"').to_string()).filter(|n| !n.is_empty()).collect();
    let k = head.split_whitespace().filter_map(|w| w.parse::<usize>().ok()).next().unwrap_or(1);
    Conf { k, names }
}

/// What the spec asks of the leader's direct standbys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Want {
    /// How many acknowledge each commit (the spec's `sync` nodes).
    pub k: usize,
    /// The spec's `sync` nodes, then its `potential` ones, in order.
    pub preferred: Vec<String>,
    /// Every other direct standby (asynchronous in the spec), in order.
    pub others: Vec<String>,
}

/// What a standby about to be promoted names before `pg_promote`, so that
/// its first commit as a primary already waits for a standby (strict: a
/// commit acknowledged by the new primary alone would be lost to a second
/// fault before any standby streams from it). `k`: the spec's count of
/// synchronous nodes; `nodes`: every other node in the spec's order of
/// preference (sync, potential, async); `old`: the old leader, named last
/// (it counts once it is rewound and streams). None when k is 0.
pub fn at_promotion(k: usize, nodes: &[String], old: Option<&str>) -> Option<Conf> {
    if k == 0 {
        return None;
    }
    let mut names: Vec<String> = nodes.iter().filter(|n| Some(n.as_str()) != old).cloned().collect();
    if let Some(o) = old {
        if nodes.iter().any(|n| n == o) {
            names.push(o.to_string());
        }
    }
    if names.is_empty() {
        return None;
    }
    Some(Conf { k: k.min(names.len()), names })
}

/// A change of the live setting: publish `ackers` first (when it grows),
/// then set the setting to `to` (rendered `FIRST k (names)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub ackers: Vec<String>,
    pub to: Conf,
    pub why: String,
}

/// The next change, if any. `streaming`: names whose WAL sender streams now.
/// Never fewer than `k` names: when not enough standbys stream, the live
/// setting stays (commits wait: nothing acknowledged is ever only local).
pub fn next(want: &Want, live: &Conf, streaming: &[String]) -> Option<Change> {
    if want.k == 0 {
        return None;
    }
    let streams = |n: &String| streaming.contains(n);
    let mut names: Vec<String> = want.preferred.iter().filter(|n| streams(n)).cloned().collect();
    let sync_streaming = names.len().min(want.k);
    // Stand-ins for missing synchronous standbys, the ones named now first
    // (no needless swap between two asynchronous standbys).
    let mut extra: Vec<&String> = want.others.iter().filter(|n| streams(n)).collect();
    extra.sort_by_key(|n| !live.names.contains(n));
    for n in extra {
        if names.len() >= want.k {
            break;
        }
        names.push(n.clone());
    }
    if names.len() < want.k {
        return None;
    }
    // Every preferred name that streams stays named, so a returning
    // synchronous standby takes its place back under FIRST's order.
    let to = Conf { k: want.k, names };
    if to == *live {
        return None;
    }
    let mut ackers = live.names.clone();
    for n in &to.names {
        if !ackers.contains(n) {
            ackers.push(n.clone());
        }
    }
    let why = if sync_streaming < want.k {
        format!(
            "{} of the {} synchronous standbys stream: {} stand(s) in",
            sync_streaming,
            want.k,
            to.names.len() - sync_streaming
        )
    } else {
        "the synchronous standbys stream again".to_string()
    };
    Some(Change { ackers, to, why })
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_promoted_standby_names_the_others_first_and_the_old_leader_last() {
        let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = at_promotion(1, &n(&["pg1", "pg3"]), Some("pg1")).unwrap();
        assert_eq!(c, Conf { k: 1, names: n(&["pg3", "pg1"]) });
        assert_eq!(at_promotion(0, &n(&["pg3"]), None), None, "asynchronous: nothing named");
        assert_eq!(at_promotion(2, &n(&["pg3"]), None), Some(Conf { k: 1, names: n(&["pg3"]) }));
        assert_eq!(at_promotion(1, &[], Some("pg1")), None);
    }

    use super::*;
    use proptest::prelude::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn want() -> Want {
        Want { k: 1, preferred: s(&["pg2"]), others: s(&["pg3", "pg4"]) }
    }

    #[test]
    fn parses_the_forms_postgres_accepts() {
        assert_eq!(parse(""), Conf::default());
        assert_eq!(parse("FIRST 1 (\"pg2\", \"pg3\")"), Conf { k: 1, names: s(&["pg2", "pg3"]) });
        assert_eq!(parse("ANY 2 (a, b, c)"), Conf { k: 2, names: s(&["a", "b", "c"]) });
        assert_eq!(parse("2 (a, b)"), Conf { k: 2, names: s(&["a", "b"]) });
        assert_eq!(parse("a, b"), Conf { k: 1, names: s(&["a", "b"]) });
    }

    #[test]
    fn a_lost_sync_standby_is_replaced_by_a_streaming_one_published_first() {
        let live = parse("FIRST 1 (\"pg2\")");
        let c = next(&want(), &live, &s(&["pg3", "pg4"])).expect("a change");
        assert_eq!(c.to, Conf { k: 1, names: s(&["pg3"]) });
        // ackers in etcd first: the old name and the new one.
        assert_eq!(c.ackers, s(&["pg2", "pg3"]));
    }

    #[test]
    fn the_returning_sync_standby_gets_its_place_back_then_the_stand_in_goes() {
        let live = parse("FIRST 1 (\"pg3\")");
        let c = next(&want(), &live, &s(&["pg2", "pg3"])).expect("a change");
        assert_eq!(c.to, Conf { k: 1, names: s(&["pg2"]) });
        assert_eq!(c.ackers, s(&["pg3", "pg2"]));
        assert_eq!(next(&want(), &c.to, &s(&["pg2", "pg3"])), None, "settled");
    }

    #[test]
    fn nothing_changes_when_nobody_can_stand_in_or_all_is_well() {
        let live = parse("FIRST 1 (\"pg2\")");
        assert_eq!(next(&want(), &live, &[]), None, "commits wait rather than go unprotected");
        assert_eq!(next(&want(), &live, &s(&["pg2", "pg3"])), None);
        let asynchronous = Want { k: 0, ..want() };
        assert_eq!(next(&asynchronous, &parse(""), &s(&["pg3"])), None);
    }

    #[test]
    fn a_stand_in_already_named_is_kept() {
        let live = parse("FIRST 1 (\"pg4\")");
        assert_eq!(next(&want(), &live, &s(&["pg3", "pg4"])), None);
    }

    proptest! {
        /// Whatever streams: a change names at least k streaming standbys,
        /// and ackers published first cover every name before and after.
        #[test]
        fn changes_keep_k_and_ackers_cover_both_settings(
            live_names in proptest::sample::subsequence(vec!["pg2", "pg3", "pg4", "pg5"], 0..4),
            streaming in proptest::sample::subsequence(vec!["pg2", "pg3", "pg4", "pg5"], 0..4),
            k in 1usize..3,
        ) {
            let w = Want { k, preferred: s(&["pg2", "pg3"][..k.min(2)]), others: s(&["pg4", "pg5"]) };
            let live = Conf { k, names: s(&live_names) };
            let streaming = s(&streaming);
            if let Some(c) = next(&w, &live, &streaming) {
                let after = c.to.clone();
                prop_assert_eq!(after.k, k);
                prop_assert!(after.names.len() >= k);
                prop_assert!(after.names.iter().all(|n| streaming.contains(n)));
                prop_assert!(live.names.iter().chain(&after.names).all(|n| c.ackers.contains(n)));
            }
        }
    }
}
