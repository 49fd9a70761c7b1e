//! Fence B: the proof that the old primary can no longer acknowledge a
//! commit, and that the candidate holds every commit it acknowledged.
//!
//! With k acknowledgements needed per commit and n nodes that could give
//! one (`ackers`), once R = n − k + 1 of them have stopped receiving from
//! the old primary, at most k − 1 remain: the old primary cannot complete
//! another commit, whatever its clock, agent or guard do. Every commit it
//! did acknowledge is on k ackers, and R + k > n, so at least one reporter
//! holds it: a candidate at or past every reported position holds them all.

use crate::state::View;
use crate::Blocked;

/// Reports needed before a promotion (0 in asynchronous mode).
pub fn required_reports(n_ackers: usize, k: usize) -> usize {
    if k == 0 {
        0
    } else {
        n_ackers.saturating_sub(k) + 1
    }
}

/// The lowest position an eligible node reported: every commit the old
/// primary acknowledged before its synchronous setting took effect is below
/// it (an eligible node flushed past that point). None: no eligible report.
pub fn eligible_floor(v: &View) -> Option<u64> {
    v.sync.eligible.iter().filter_map(|e| v.races.get(e).copied()).min()
}

/// Whether `name` at `lsn` is sure to hold every commit acknowledged before
/// the synchronous setting: it is eligible, or it streamed from the old
/// primary (the same WAL history), reported its own position after it
/// stopped receiving, and is at or past an eligible node's report.
pub fn holds_the_past(v: &View, name: &str, lsn: u64) -> bool {
    if v.sync.eligible.iter().any(|e| e == name) {
        return true;
    }
    v.sync.streaming.iter().any(|s| s == name)
        && v.races.contains_key(name)
        && eligible_floor(v).is_some_and(|floor| lsn >= floor)
}

/// Whether `candidate` may be promoted in synchronous mode: enough ackers
/// reported, the candidate holds every commit acknowledged before the
/// setting ([`holds_the_past`]) and is at least as far as every acker's
/// report (so it holds every commit acknowledged under the setting).
/// Ok: the highest reported position.
pub fn proof(v: &View, candidate: &str, candidate_lsn: u64) -> Result<u64, Blocked> {
    let s = &v.sync;
    if !holds_the_past(v, candidate, candidate_lsn) {
        return Err(Blocked::NotEligible);
    }
    let need = required_reports(s.ackers.len(), s.k);
    let reported: Vec<(&String, u64)> = s.ackers.iter().filter_map(|a| v.races.get(a).map(|l| (a, *l))).collect();
    if reported.len() < need {
        let missing = s.ackers.iter().filter(|a| !v.races.contains_key(*a)).cloned().collect();
        return Err(Blocked::NoQuorumProof { have: reported.len(), need, missing });
    }
    let max = reported.iter().map(|(_, l)| *l).max().unwrap_or(0);
    if candidate_lsn < max {
        return Err(Blocked::Behind { mine: candidate_lsn, reported: max });
    }
    Ok(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_needed_follow_r_plus_w_greater_than_n() {
        assert_eq!(required_reports(1, 1), 1, "one named sync standby decides alone");
        assert_eq!(required_reports(2, 1), 2, "ANY 1 of 2: both must withdraw");
        assert_eq!(required_reports(3, 2), 2);
        assert_eq!(required_reports(3, 0), 0, "asynchronous: no proof");
        for n in 1..8usize {
            for k in 1..=n {
                let r = required_reports(n, k);
                assert!(r + k > n, "a reporter overlaps every ack set");
                assert!(n - r < k, "the remaining ackers cannot complete a commit");
            }
        }
    }
}
