//! Which shards move where: the fewest moves that leave every active group
//! within one shard of the others and the draining groups empty.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Move {
    pub shard: u32,
    pub from: String,
    pub to: String,
    /// The shard's size on its group (all its tables), bytes.
    pub bytes: u64,
}

/// `placement`: shard → group; `active`: the groups that may hold shards;
/// every other group holding shards (draining, removed) gives all of them
/// away. Smaller shards move first (less to copy for the same balance).
pub fn balance(placement: &BTreeMap<u32, String>, active: &[String], sizes: &BTreeMap<u32, u64>) -> Vec<Move> {
    if active.is_empty() {
        return Vec::new();
    }
    let mut held: BTreeMap<&str, Vec<u32>> = active.iter().map(|g| (g.as_str(), Vec::new())).collect();
    for (s, g) in placement {
        held.entry(g.as_str()).or_default().push(*s);
    }
    let n = placement.len();
    let (base, extra) = (n / active.len(), n % active.len());
    // The groups already holding the most keep the `+1` places: fewest moves.
    let mut order: Vec<&str> = active.iter().map(|g| g.as_str()).collect();
    order.sort_by_key(|g| (std::cmp::Reverse(held[g].len()), active.iter().position(|a| a == g)));
    let target: BTreeMap<&str, usize> =
        order.iter().enumerate().map(|(i, g)| (*g, base + usize::from(i < extra))).collect();
    let size = |s: &u32| sizes.get(s).copied().unwrap_or(0);
    // Givers: shards above target, smallest first.
    let mut give: Vec<(u32, &str)> = Vec::new();
    for (g, shards) in &held {
        let keep = target.get(g).copied().unwrap_or(0);
        if shards.len() > keep {
            let mut v = shards.clone();
            v.sort_by_key(|s| (size(s), *s));
            give.extend(v[..shards.len() - keep].iter().map(|s| (*s, *g)));
        }
    }
    give.sort_by_key(|(s, g)| (size(s), *g, *s));
    let mut room: Vec<(&str, usize)> = order
        .iter()
        .filter_map(|g| {
            let want = target[g];
            (held[g].len() < want).then(|| (*g, want - held[g].len()))
        })
        .collect();
    let mut out = Vec::new();
    for (s, from) in give {
        // The group missing the most receives next.
        room.sort_by_key(|(g, r)| (std::cmp::Reverse(*r), active.iter().position(|a| a == g)));
        let Some(slot) = room.first_mut().filter(|(_, r)| *r > 0) else { break };
        slot.1 -= 1;
        out.push(Move { shard: s, from: from.to_string(), to: slot.0.to_string(), bytes: size(&s) });
    }
    out
}

/// Moves grouped into waves that can run at the same time: within a wave
/// no group is in two moves (disjoint pairs), at most `parallel` moves.
pub fn waves(moves: &[Move], parallel: usize) -> Vec<Vec<Move>> {
    let parallel = parallel.max(1);
    let mut left: Vec<Move> = moves.to_vec();
    let mut out = Vec::new();
    while !left.is_empty() {
        let mut busy: BTreeSet<String> = BTreeSet::new();
        let mut wave = Vec::new();
        left.retain(|m| {
            if wave.len() < parallel && !busy.contains(&m.from) && !busy.contains(&m.to) {
                busy.insert(m.from.clone());
                busy.insert(m.to.clone());
                wave.push(m.clone());
                false
            } else {
                true
            }
        });
        out.push(wave);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn groups(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("dg{i}")).collect()
    }

    fn apply(p: &BTreeMap<u32, String>, moves: &[Move]) -> BTreeMap<u32, String> {
        let mut p = p.clone();
        for m in moves {
            assert_eq!(p[&m.shard], m.from, "a move starts where the shard is");
            p.insert(m.shard, m.to.clone());
        }
        p
    }

    #[test]
    fn expanding_two_groups_of_64_to_three_moves_21() {
        let p: BTreeMap<u32, String> = (0..64).map(|s| (s, format!("dg{}", s % 2 + 1))).collect();
        let moves = balance(&p, &groups(3), &BTreeMap::new());
        assert_eq!(moves.len(), 21);
        assert!(moves.iter().all(|m| m.to == "dg3"));
        let after = apply(&p, &moves);
        let count = |g: &str| after.values().filter(|x| *x == g).count();
        assert_eq!((count("dg1"), count("dg2"), count("dg3")), (22, 21, 21));
    }

    #[test]
    fn draining_empties_the_group_and_smaller_shards_go_first() {
        let p: BTreeMap<u32, String> = (0..6).map(|s| (s, format!("dg{}", s % 3 + 1))).collect();
        let sizes: BTreeMap<u32, u64> = (0..6).map(|s| (s, 100 - u64::from(s))).collect();
        let moves = balance(&p, &groups(2), &sizes);
        assert_eq!(moves.len(), 2);
        assert!(moves.iter().all(|m| m.from == "dg3"));
        assert_eq!(moves[0].shard, 5, "the smaller shard first");
        let w = waves(&moves, 4);
        assert_eq!(w.len(), 2, "both leave dg3: one at a time");
    }

    #[test]
    fn waves_pair_disjoint_groups() {
        let m = |s, f: &str, t: &str| Move { shard: s, from: f.into(), to: t.into(), bytes: 0 };
        let moves = vec![m(1, "a", "c"), m(2, "b", "d"), m(3, "a", "d"), m(4, "b", "c")];
        let w = waves(&moves, 2);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].iter().map(|m| m.shard).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(waves(&moves, 1).len(), 4);
    }

    proptest! {
        #[test]
        fn balance_is_minimal_and_even(
            shards in 1u32..200,
            have in 1usize..6,
            active_mask in 1u32..64,
            seed in any::<u64>(),
        ) {
            let all = groups(have.max(1));
            let p: BTreeMap<u32, String> = (0..shards)
                .map(|s| (s, all[((u64::from(s) * 2654435761 + seed) % all.len() as u64) as usize].clone()))
                .collect();
            let mut active: Vec<String> = groups(6).into_iter().enumerate()
                .filter(|(i, _)| active_mask & (1 << i) != 0).map(|(_, g)| g).collect();
            if active.is_empty() { active.push("dg1".into()); }
            let moves = balance(&p, &active, &BTreeMap::new());
            let after = apply(&p, &moves);
            let counts: Vec<usize> = active.iter().map(|g| after.values().filter(|x| *x == g).count()).collect();
            let (lo, hi) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "{counts:?}");
            prop_assert!(after.values().all(|g| active.contains(g)), "a draining group keeps a shard");
            let moved: BTreeSet<u32> = moves.iter().map(|m| m.shard).collect();
            prop_assert_eq!(moved.len(), moves.len(), "a shard moves once");
            // Minimal: each move leaves a group above its share or outside the active set.
            let base = shards as usize / active.len();
            for m in &moves {
                let before = p.values().filter(|x| **x == m.from).count();
                prop_assert!(!active.contains(&m.from) || before > base);
            }
            for w in waves(&moves, 3) {
                let mut seen = BTreeSet::new();
                for m in &w {
                    prop_assert!(seen.insert(m.from.clone()) && seen.insert(m.to.clone()));
                }
            }
        }
    }
}
