//! Whether a standby can stream from a new primary or has to be rewound
//! first: the rule PostgreSQL's WAL sender applies (and pg_rewind), on the
//! new primary's timeline history. A standby that received WAL past the
//! point where the new primary's timeline forked from its own is refused
//! ("requested starting point ... is not in this server's history") and
//! would retry forever: it has diverged.
//!
//! The case that makes it happen: a primary cut off from etcd goes on
//! sending WAL to an asynchronous standby after the synchronous one stopped
//! receiving (Fence B); the synchronous one is promoted behind that WAL.

/// One line of a timeline history file: timeline `parent` ended at `switch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fork {
    pub parent: u32,
    pub switch: u64,
}

/// The lines of a history file (`<tli>\t<X/Y>\t<reason>`); comments and
/// unreadable lines are skipped.
pub fn parse_history(text: &str) -> Vec<Fork> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let parent = f.next()?.parse().ok()?;
            let (hi, lo) = f.next()?.split_once('/')?;
            let switch = (u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?;
            Some(Fork { parent, switch })
        })
        .collect()
}

/// A standby on timeline `tli` that has WAL up to `lsn` can stream from a
/// primary on `leader_tli` with `history` unless it diverged: it is on a
/// later or unrelated timeline, or it has WAL past the fork of its timeline.
/// `tli` 0 (unknown) is never taken as diverged.
pub fn diverged(tli: u32, lsn: u64, leader_tli: u32, history: &[Fork]) -> bool {
    if tli == 0 || tli == leader_tli {
        return false;
    }
    if tli > leader_tli {
        return true;
    }
    match history.iter().find(|f| f.parent == tli) {
        Some(f) => lsn > f.switch,
        None => true,
    }
}

/// The timeline a history file's name stands for (`00000003.history`).
pub fn history_tli(file: &str) -> Option<u32> {
    let hex = file.strip_suffix(".history")?;
    (hex.len() == 8).then(|| u32::from_str_radix(hex, 16).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H3: &str = "1\t0/402AB50\tno recovery target specified\n\n2\t0/5053AB0\tno recovery target specified\n";

    #[test]
    fn parses_postgres_history_files() {
        assert_eq!(
            parse_history(H3),
            vec![Fork { parent: 1, switch: 0x402AB50 }, Fork { parent: 2, switch: 0x5053AB0 }]
        );
        assert_eq!(parse_history("# comment\n3\t1/0\tx\n"), vec![Fork { parent: 3, switch: 1 << 32 }]);
        assert_eq!(history_tli("00000003.history"), Some(3));
        assert_eq!(history_tli("0000000A.history"), Some(10));
        assert_eq!(history_tli("000000010000000000000003"), None);
    }

    #[test]
    fn a_standby_past_its_timelines_fork_has_diverged() {
        let h = parse_history(H3);
        // The async standby got WAL on timeline 2 beyond where timeline 3 forked.
        assert!(diverged(2, 0x5053AB0 + 1, 3, &h));
        // At or before the fork: it can follow.
        assert!(!diverged(2, 0x5053AB0, 3, &h));
        assert!(!diverged(1, 0x402AB50, 3, &h));
        assert!(diverged(1, 0x402AB51, 3, &h));
        // Same timeline, or unknown: not diverged.
        assert!(!diverged(3, u64::MAX, 3, &h));
        assert!(!diverged(0, u64::MAX, 3, &h));
        // A later or unrelated timeline cannot follow.
        assert!(diverged(4, 0, 3, &h));
        assert!(diverged(2, 0, 3, &parse_history("1\t0/1\tx\n")));
    }

    proptest! {
        /// Below or at every fork on the path, a standby never diverged.
        #[test]
        fn at_or_before_the_fork_never_diverged(tli in 1u32..5, extra in 1u32..4, switch in 0u64..1 << 40, back in 0u64..1 << 20) {
            let leader = tli + extra;
            let h: Vec<Fork> = (1..leader).map(|p| Fork { parent: p, switch: switch + u64::from(p) }).collect();
            let at = switch + u64::from(tli);
            prop_assert!(!diverged(tli, at.saturating_sub(back), leader, &h));
            prop_assert!(diverged(tli, at + 1 + back, leader, &h));
        }
    }
}
