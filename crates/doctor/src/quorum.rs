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

/// Whether `candidate` may be promoted in synchronous mode: enough ackers
/// reported, the candidate is eligible and at least as far as every report.
/// Ok: the highest reported position.
pub fn proof(v: &View, candidate: &str, candidate_lsn: u64) -> Result<u64, Blocked> {
    let s = &v.sync;
    if !s.eligible.iter().any(|e| e == candidate) {
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
