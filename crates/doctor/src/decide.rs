//! One tick of one agent: from what it sees to what it does.

use crate::quorum;
use crate::state::{HaMode, PgRun, View};
use serde::Serialize;

/// Why there is no automatic failover now (published in `status`,
/// `/metrics` as `pgscale_failover_blocked{reason}` and `history`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Blocked {
    /// This standby is not sure to hold every acknowledged commit.
    NotEligible,
    /// Fence B: too few of the standbys that could acknowledge for the old
    /// primary have stopped receiving and reported.
    NoQuorumProof { have: usize, need: usize, missing: Vec<String> },
    /// Another standby reported WAL this one does not have.
    Behind { mine: u64, reported: u64 },
    /// Asynchronous mode: too far behind the last recorded primary position.
    LagTooLarge { lag: u64, max: u64 },
    /// Asynchronous mode: no primary position was ever recorded.
    NoLeaderPosition,
    /// The old primary's agent says its PostgreSQL still runs as a primary.
    OldPrimaryAlive,
    /// etcd did not answer: nobody is promoted without it.
    StoreUnavailable,
}

impl Blocked {
    /// The label of `pgscale_failover_blocked{reason}`.
    pub fn label(&self) -> &'static str {
        match self {
            Blocked::NotEligible => "not_eligible",
            Blocked::NoQuorumProof { .. } => "no_quorum_proof",
            Blocked::Behind { .. } => "behind",
            Blocked::LagTooLarge { .. } => "lag_too_large",
            Blocked::NoLeaderPosition => "no_leader_position",
            Blocked::OldPrimaryAlive => "old_primary_alive",
            Blocked::StoreUnavailable => "store_unavailable",
        }
    }
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blocked::NotEligible => write!(f, "this standby is not in the eligible set (it may miss acknowledged commits)"),
            Blocked::NoQuorumProof { have, need, missing } => write!(
                f,
                "{have} of the {need} reports needed to prove the old primary can no longer acknowledge commits (missing: {})",
                missing.join(", ")
            ),
            Blocked::Behind { mine, reported } => {
                write!(f, "this standby flushed up to {mine}, another reported {reported}: it would lose commits")
            }
            Blocked::LagTooLarge { lag, max } => {
                write!(f, "{lag} bytes behind the last recorded primary position (maximum_lag_on_failover: {max})")
            }
            Blocked::NoLeaderPosition => write!(f, "no primary position was recorded: the lag cannot be checked"),
            Blocked::OldPrimaryAlive => write!(f, "the old primary's agent says its PostgreSQL still runs as a primary"),
            Blocked::StoreUnavailable => write!(f, "etcd does not answer: no promotion without it"),
        }
    }
}

/// What the agent does this tick.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Nothing to change; `why` says what the agent sees.
    Idle { why: String },
    /// Keep the leader key: the local primary is healthy.
    Renew,
    /// Take the free leader key as the running primary (the first time, or
    /// after the key was lost while no other node was promoted).
    TakeLeader,
    /// Stop acknowledging now: stop PostgreSQL (immediate; SIGSTOP and
    /// SIGKILL of the postmaster and its children when it does not stop in
    /// time). `release`: then delete the leader key at once, so the
    /// standbys need not wait for the lease.
    Fence { why: String, release: bool },
    /// The local server runs as a primary but `leader` holds the key (it
    /// was promoted): fence this one; it comes back as a standby.
    Demote { leader: String },
    /// Give the leader key up without touching the server (it runs as a
    /// standby now: a command switched the roles over).
    Release { why: String },
    /// Fence B: stop receiving WAL (clear primary_conninfo, wait until the
    /// WAL receiver is gone) and report the flushed position for `term`.
    Withdraw { term: i64 },
    /// Take the leader key (compare: absent) and promote. `reported_max`:
    /// the highest position any standby reported (this one has it).
    Promote { term: i64, reported_max: u64 },
    /// Synchronous mode, the leader lost before its lease expired
    /// ([`View::leader_lost`]) and the proof had: delete `from`'s key
    /// (only if its agent and the sync set stayed as read), then promote
    /// as [`Decision::Promote`] does.
    TakeOver { from: String, term: i64, reported_max: u64 },
    /// Let a better candidate go first.
    Defer { to: String },
    /// Stream from `upstream` (re-point primary_conninfo, reload).
    Follow { upstream: String },
    /// Start the local server, always as a standby (of `leader` when there
    /// is one); `rejoin`: it was a primary: rewind first if it diverged.
    StartStandby { leader: Option<String>, rejoin: bool },
    /// No automatic failover now.
    Blocked(Blocked),
}

impl Decision {
    /// Whether carrying it out changes a server or the leader key.
    pub fn acts(&self) -> bool {
        !matches!(self, Decision::Idle { .. } | Decision::Renew | Decision::Blocked(_) | Decision::Defer { .. })
    }
}

fn idle(why: impl Into<String>) -> Decision {
    Decision::Idle { why: why.into() }
}

/// Decide one tick for the agent of `v.me`.
pub fn decide(v: &View) -> Decision {
    let acts = v.mode == HaMode::Enabled;
    let off = match v.mode {
        HaMode::Enabled => "",
        HaMode::Disabled => "automatic failover is disabled",
        HaMode::Paused => "automatic failover is paused (maintenance)",
    };
    let l = &v.local;
    let leader = v.leader.as_ref().map(|x| x.name.as_str());
    let is_leader = leader == Some(v.me.as_str());

    // A primary (running or hung: both may still acknowledge).
    if l.run != PgRun::Stopped && !l.in_recovery {
        if !v.store_ok {
            // etcd does not answer: Fence A unless failsafe holds.
            if acts && v.lease_margin_ms <= 0 {
                if v.failsafe && v.is_sync() && l.run == PgRun::Running {
                    return idle("etcd does not answer; failsafe: kept as primary while its synchronous standbys have not withdrawn (Fence B protects the data)");
                }
                return Decision::Fence { why: "the leader lease could not be renewed in time".into(), release: false };
            }
            return idle("etcd does not answer; the lease is still valid");
        }
        match leader {
            Some(_) if is_leader => {
                if acts && l.run == PgRun::Hung {
                    return Decision::Fence {
                        why: "PostgreSQL does not answer fresh connections (hung)".into(),
                        release: true,
                    };
                }
                if acts && v.lease_margin_ms <= 0 {
                    if v.failsafe && v.is_sync() && l.run == PgRun::Running {
                        // etcd answers again and the key is still ours: the
                        // keep-alive will renew the lease; failsafe kept
                        // this primary so far, Fence B still guards it.
                        return Decision::Renew;
                    }
                    return Decision::Fence {
                        why: "the leader lease could not be renewed in time".into(),
                        release: false,
                    };
                }
                return Decision::Renew;
            }
            Some(other) => {
                let other_primary = v.members.get(other).is_some_and(|m| m.primary);
                if v.inventory_primary.as_deref() == Some(v.me.as_str()) && !other_primary {
                    // A switchover made this node the primary; the old
                    // leader (a standby now) has not given the key up yet.
                    return idle(format!(
                        "{other} still holds the leader key and runs as a standby: waiting for it to release it"
                    ));
                }
                if acts {
                    return Decision::Demote { leader: other.to_string() };
                }
                return idle(format!(
                    "{other} holds the leader key while this node runs as a primary; {off}: nothing is done (resolve by hand)"
                ));
            }
            None => {
                if l.run == PgRun::Hung {
                    if acts {
                        return Decision::Fence {
                            why: "PostgreSQL is hung and holds no leader key".into(),
                            release: false,
                        };
                    }
                    return idle(format!("PostgreSQL is hung; {off}"));
                }
                let mine = v.last_leader.as_deref().is_none_or(|n| n == v.me)
                    || v.inventory_primary.as_deref() == Some(v.me.as_str());
                let newest = v.members.iter().filter(|(n, _)| **n != v.me).all(|(_, m)| m.timeline <= l.timeline);
                let other_primary = v.members.iter().any(|(n, m)| *n != v.me && m.primary);
                if mine && newest && !other_primary {
                    return Decision::TakeLeader;
                }
                if acts {
                    return Decision::Fence {
                        why: "a primary that was not the last leader (another node may have been promoted)".into(),
                        release: false,
                    };
                }
                return idle(format!("a primary that was not the last leader; {off}"));
            }
        }
    }

    // The local server is stopped.
    if l.run == PgRun::Stopped {
        if is_leader {
            // Nothing acknowledges any more: free the key at once.
            if acts {
                return Decision::Fence { why: "PostgreSQL stopped on the leader".into(), release: true };
            }
            return idle(format!("PostgreSQL stopped on the leader; {off}"));
        }
        if acts && l.was_primary && leader.is_none() {
            // It can only come back as a standby of a new primary.
            return idle("PostgreSQL stopped here (a former primary): waiting for a new leader to rejoin it");
        }
        if acts {
            return Decision::StartStandby { leader: leader.map(String::from), rejoin: l.was_primary };
        }
        return idle(format!("PostgreSQL is not running; {off}: nobody starts it"));
    }

    // A standby.
    if l.run == PgRun::Hung {
        return idle("PostgreSQL does not answer fresh connections");
    }
    if let Some(x) = &v.leader {
        if x.name == v.me {
            if v.inventory_primary.as_deref().is_some_and(|p| p != v.me) && !v.local.was_primary {
                // Won the key, but the recorded primary is another node:
                // either a promotion that failed before it recorded its
                // intent, or a switchover that made this node a standby.
                return Decision::Release {
                    why: format!(
                        "this node runs as a standby and the inventory names {} as the primary",
                        v.inventory_primary.as_deref().unwrap_or("")
                    ),
                };
            }
            // Won the key, promotion not finished (or the agent restarted).
            return Decision::Promote { term: x.term, reported_max: l.flush_lsn };
        }
        if acts && v.store_ok && v.leader_lost && v.is_sync() && v.last_leader.as_deref() == Some(x.name.as_str()) {
            // Its agent is silent and its server unreachable: Fence B's
            // proof makes the lease's expiry unnecessary.
            return race(v, Some(&x.name));
        }
        if l.receiving && l.upstream.as_deref() == Some(x.name.as_str()) {
            return idle(format!("streaming from {}", x.name));
        }
        if l.receiving && l.upstream.is_some() && v.members.contains_key(l.upstream.as_deref().unwrap_or("")) {
            // Cascaded from a live standby: as the inventory wants.
            return idle(format!("streaming from {}", l.upstream.as_deref().unwrap_or("")));
        }
        if acts {
            return Decision::Follow { upstream: x.name.clone() };
        }
        return idle(format!("not streaming from the leader {}; {off}", x.name));
    }
    // No leader.
    if !v.store_ok {
        return Decision::Blocked(Blocked::StoreUnavailable);
    }
    if !acts {
        return idle(format!("no leader; {off}"));
    }
    if v.last_leader.is_none() {
        return idle("no leader yet: waiting for the primary's agent to take the key");
    }
    if let Some(p) = v.inventory_primary.as_deref() {
        if Some(p) != v.last_leader.as_deref() && v.members.get(p).is_some_and(|m| m.primary && m.healthy) {
            // A command switched the roles over and the old leader gave the
            // key up: the recorded primary runs and takes it next. No race
            // (withdrawing would stop a standby streaming from it).
            return idle(format!("no leader; {p}, the recorded primary, takes the key"));
        }
    }
    if v.old_primary_alive == Some(true) {
        return Decision::Blocked(Blocked::OldPrimaryAlive);
    }
    race(v, None)
}

/// The race for a lost leader: withdraw, prove, defer or promote. `from`:
/// the lost leader still holds its key (synchronous mode only), so the
/// winner takes it over.
fn race(v: &View, from: Option<&str>) -> Decision {
    let l = &v.local;
    let me_lsn = l.flush_lsn;
    if v.is_sync() {
        // The ackers withdraw for Fence B; the other standbys that streamed
        // from the old primary too: one of them may be further along.
        let streamed = v.sync.streaming.contains(&v.me);
        if (v.sync.ackers.contains(&v.me) || streamed) && !v.races.contains_key(&v.me) {
            return Decision::Withdraw { term: v.last_term };
        }
        let max = match quorum::proof(v, &v.me, me_lsn) {
            Ok(max) => max,
            Err(b) => return Decision::Blocked(b),
        };
        let pending: Vec<&str> = v
            .sync
            .streaming
            .iter()
            .filter(|n| **n != v.me && Some(n.as_str()) != v.last_leader.as_deref() && !v.races.contains_key(*n))
            .filter(|n| v.members.get(*n).is_some_and(|m| m.healthy && !m.primary))
            .map(String::as_str)
            .collect();
        if !pending.is_empty() && v.race_age_ms < REPORT_WAIT_MS {
            return idle(format!(
                "waiting for {} to report how far it received (at most {} ms): promoting the furthest standby leaves none to rewind",
                pending.join(", "),
                REPORT_WAIT_MS
            ));
        }
        if let Some(to) = better_sync(v, me_lsn) {
            return Decision::Defer { to };
        }
        return match from {
            Some(from) => Decision::TakeOver { from: from.to_string(), term: v.last_term, reported_max: max },
            None => Decision::Promote { term: v.last_term, reported_max: max },
        };
    }
    let Some(last) = v.last_leader_lsn else {
        return Decision::Blocked(Blocked::NoLeaderPosition);
    };
    let lag = last.saturating_sub(me_lsn);
    if lag > v.max_lag_on_failover {
        return Decision::Blocked(Blocked::LagTooLarge { lag, max: v.max_lag_on_failover });
    }
    if let Some(to) = better(v, me_lsn) {
        return Decision::Defer { to };
    }
    Decision::Promote { term: v.last_term, reported_max: me_lsn }
}

/// How long a candidate waits for the reports of the other standbys that
/// streamed from the old primary (a frozen agent costs at most this).
pub const REPORT_WAIT_MS: u64 = 1500;

/// Synchronous mode: a healthy standby that may also be promoted and is
/// further along, or as far and eligible when this one is not, or as far,
/// as eligible and with a smaller name: it goes first. Promoting the
/// furthest leaves no standby with WAL past the new timeline's fork.
fn better_sync(v: &View, me_lsn: u64) -> Option<String> {
    let eligible = |n: &str| v.sync.eligible.iter().any(|e| e == n);
    let rank = |n: &str, lsn: u64| (lsn, eligible(n), std::cmp::Reverse(n.to_string()));
    let mine = rank(&v.me, me_lsn);
    v.members
        .iter()
        .filter(|(n, m)| **n != v.me && m.healthy && !m.primary)
        .filter(|(n, _)| Some(n.as_str()) != v.last_leader.as_deref())
        .filter_map(|(n, m)| {
            let pos = v.races.get(n).copied().or_else(|| eligible(n).then_some(m.flush_lsn))?;
            quorum::holds_the_past(v, n, pos).then(|| (n, rank(n, pos)))
        })
        .filter(|(_, r)| *r > mine)
        .max_by(|a, b| a.1.cmp(&b.1))
        .map(|(n, _)| n.clone())
}

/// A healthy standby that may also be promoted and is further along (or as
/// far, with a smaller name): it goes first.
fn better(v: &View, me_lsn: u64) -> Option<String> {
    let pos = |n: &str| v.races.get(n).copied().or_else(|| v.members.get(n).map(|m| m.flush_lsn));
    v.members
        .iter()
        .filter(|(n, m)| **n != v.me && m.healthy && !m.primary)
        .filter(|(n, _)| Some(n.as_str()) != v.last_leader.as_deref())
        .filter_map(|(n, _)| pos(n).map(|p| (n, p)))
        .filter(|(n, p)| *p > me_lsn || (*p == me_lsn && n.as_str() < v.me.as_str()))
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(n, _)| n.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Leader, Local, Member, SyncSet};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn member(primary: bool, lsn: u64) -> Member {
        Member { primary, timeline: 1, flush_lsn: lsn, healthy: true }
    }

    /// pg1 was the leader (term 7) and is gone; pg2 is the named sync
    /// standby, pg3 asynchronous.
    fn after_primary_loss(me: &str) -> View {
        let mut members = BTreeMap::new();
        members.insert("pg2".to_string(), member(false, 1000));
        members.insert("pg3".to_string(), member(false, 900));
        View {
            me: me.into(),
            mode: HaMode::Enabled,
            leader: None,
            last_term: 7,
            last_leader: Some("pg1".into()),
            members,
            sync: SyncSet { k: 1, ackers: vec!["pg2".into()], eligible: vec!["pg2".into()], streaming: vec![] },
            last_leader_lsn: Some(1000),
            races: BTreeMap::new(),
            old_primary_alive: None,
            local: Local {
                run: PgRun::Running,
                in_recovery: true,
                timeline: 1,
                flush_lsn: if me == "pg2" { 1000 } else { 900 },
                receiving: false,
                upstream: None,
                was_primary: false,
            },
            max_lag_on_failover: 1 << 20,
            lease_margin_ms: 0,
            failsafe: false,
            store_ok: true,
            inventory_primary: None,
            race_age_ms: 0,
            leader_silent_ms: 0,
            leader_lost: false,
        }
    }

    /// pg1 still holds its key (term 7, lease not expired) but is lost.
    fn leader_lost(me: &str) -> View {
        let mut v = after_primary_loss(me);
        v.leader = Some(Leader { name: "pg1".into(), term: 7 });
        v.leader_lost = true;
        v.leader_silent_ms = 1500;
        v
    }

    #[test]
    fn a_lost_leader_is_taken_over_with_the_proof_before_its_lease_expires() {
        let mut v = leader_lost("pg2");
        assert_eq!(decide(&v), Decision::Withdraw { term: 7 });
        v.races.insert("pg2".into(), 1000);
        assert_eq!(decide(&v), Decision::TakeOver { from: "pg1".into(), term: 7, reported_max: 1000 });
        // pg3 is not eligible: it withdraws if it streamed, else waits.
        let mut w = leader_lost("pg3");
        w.races.insert("pg2".into(), 1000);
        assert!(!matches!(decide(&w), Decision::TakeOver { .. } | Decision::Promote { .. }), "{:?}", decide(&w));
    }

    #[test]
    fn a_lost_leader_is_not_taken_over_without_a_synchronous_standby_or_when_seen_alive() {
        // Asynchronous: no proof, the lease must expire first.
        let mut v = leader_lost("pg2");
        v.sync = SyncSet::default();
        assert_eq!(decide(&v), Decision::Follow { upstream: "pg1".into() });
        // Its agent speaks or its server answers: nothing changes.
        let mut v = leader_lost("pg2");
        v.leader_lost = false;
        v.local.receiving = true;
        v.local.upstream = Some("pg1".into());
        assert_eq!(decide(&v), Decision::Idle { why: "streaming from pg1".into() });
        // Paused: observe only.
        let mut v = leader_lost("pg2");
        v.mode = HaMode::Paused;
        v.races.insert("pg2".into(), 1000);
        assert!(!decide(&v).acts(), "{:?}", decide(&v));
        // A key that is not the last leader's (a newer term was seen): no takeover.
        let mut v = leader_lost("pg2");
        v.races.insert("pg2".into(), 1000);
        v.last_leader = Some("pg3".into());
        assert!(!matches!(decide(&v), Decision::TakeOver { .. }), "{:?}", decide(&v));
    }

    #[test]
    fn the_sync_standby_withdraws_then_promotes_alone() {
        let mut v = after_primary_loss("pg2");
        assert_eq!(decide(&v), Decision::Withdraw { term: 7 });
        v.races.insert("pg2".into(), 1000);
        assert_eq!(decide(&v), Decision::Promote { term: 7, reported_max: 1000 });
    }

    #[test]
    fn no_race_while_the_recorded_primary_of_a_switchover_takes_the_key() {
        let mut v = after_primary_loss("pg3");
        v.inventory_primary = Some("pg2".into());
        v.members.insert("pg2".into(), member(true, 1000));
        assert!(matches!(decide(&v), Decision::Idle { .. }), "{:?}", decide(&v));
        // The recorded primary is not running as one: a race as before.
        v.members.insert("pg2".into(), member(false, 1000));
        let raced = decide(&View { inventory_primary: None, ..v.clone() });
        assert_eq!(decide(&v), raced);
        assert!(!matches!(raced, Decision::Idle { .. }), "{raced:?}");
    }

    #[test]
    fn an_async_standby_never_promotes_in_sync_mode() {
        let mut v = after_primary_loss("pg3");
        v.races.insert("pg2".into(), 1000);
        assert_eq!(decide(&v), Decision::Blocked(Blocked::NotEligible));
    }

    #[test]
    fn any_one_of_two_needs_both_reports_and_the_furthest_candidate() {
        let mut v = after_primary_loss("pg2");
        v.sync = SyncSet {
            k: 1,
            ackers: vec!["pg2".into(), "pg3".into()],
            eligible: vec!["pg2".into(), "pg3".into()],
            streaming: vec![],
        };
        v.races.insert("pg2".into(), 1000);
        match decide(&v) {
            Decision::Blocked(Blocked::NoQuorumProof { have: 1, need: 2, missing }) => assert_eq!(missing, vec!["pg3"]),
            d => panic!("{d:?}"),
        }
        v.races.insert("pg3".into(), 1200);
        assert_eq!(decide(&v), Decision::Blocked(Blocked::Behind { mine: 1000, reported: 1200 }));
        let mut w = v.clone();
        w.me = "pg3".into();
        w.local.flush_lsn = 1200;
        assert_eq!(decide(&w), Decision::Promote { term: 7, reported_max: 1200 });
    }

    #[test]
    fn equal_candidates_defer_to_the_smaller_name() {
        let mut v = after_primary_loss("pg3");
        v.sync = SyncSet {
            k: 1,
            ackers: vec!["pg2".into(), "pg3".into()],
            eligible: vec!["pg2".into(), "pg3".into()],
            streaming: vec![],
        };
        v.races.insert("pg2".into(), 1000);
        v.races.insert("pg3".into(), 1000);
        v.local.flush_lsn = 1000;
        assert_eq!(decide(&v), Decision::Defer { to: "pg2".into() });
    }

    /// pg3 (asynchronous) streamed from pg1 too and received more than pg2
    /// (the synchronous one) had flushed: pg3 is promoted, pg2 follows it
    /// without a rewind.
    #[test]
    fn a_standby_further_than_the_sync_one_is_promoted_instead() {
        let mut v3 = after_primary_loss("pg3");
        v3.sync.streaming = vec!["pg2".into(), "pg3".into()];
        v3.local.flush_lsn = 1200;
        v3.races.insert("pg2".into(), 1000);
        assert_eq!(decide(&v3), Decision::Withdraw { term: 7 }, "it reports too");
        v3.races.insert("pg3".into(), 1200);
        assert_eq!(decide(&v3), Decision::Promote { term: 7, reported_max: 1000 });
        let mut v2 = v3.clone();
        v2.me = "pg2".into();
        v2.local.flush_lsn = 1000;
        assert_eq!(decide(&v2), Decision::Defer { to: "pg3".into() });
        // Behind the synchronous one's report: it would lose commits.
        v3.races.insert("pg3".into(), 900);
        v3.local.flush_lsn = 900;
        assert_eq!(decide(&v3), Decision::Blocked(Blocked::NotEligible));
        v2.races.insert("pg3".into(), 900);
        assert_eq!(decide(&v2), Decision::Promote { term: 7, reported_max: 1000 });
    }

    #[test]
    fn a_standby_that_did_not_stream_from_the_old_primary_or_did_not_report_is_never_promoted() {
        let mut v = after_primary_loss("pg3");
        v.local.flush_lsn = 1200;
        v.races.insert("pg2".into(), 1000);
        v.races.insert("pg3".into(), 1200);
        assert_eq!(decide(&v), Decision::Blocked(Blocked::NotEligible), "not streaming: another history");
        v.sync.streaming = vec!["pg3".into()];
        v.races.remove("pg3");
        v.sync.ackers = vec!["pg2".into(), "pg4".into()];
        v.races.insert("pg4".into(), 1000);
        assert_eq!(decide(&v), Decision::Withdraw { term: 7 });
        v.races.insert("pg3".into(), 1200);
        v.races.remove("pg2");
        // No eligible node reported: what was acknowledged before the
        // synchronous setting may be past pg3.
        v.sync.k = 2;
        assert_eq!(decide(&v), Decision::Blocked(Blocked::NotEligible));
    }

    #[test]
    fn a_candidate_waits_a_bounded_time_for_the_others_reports() {
        let mut v = after_primary_loss("pg2");
        v.sync.streaming = vec!["pg2".into(), "pg3".into()];
        v.races.insert("pg2".into(), 1000);
        assert!(matches!(decide(&v), Decision::Idle { .. }), "{:?}", decide(&v));
        v.race_age_ms = REPORT_WAIT_MS;
        assert_eq!(decide(&v), Decision::Promote { term: 7, reported_max: 1000 });
        v.race_age_ms = 0;
        v.members.get_mut("pg3").unwrap().healthy = false;
        assert_eq!(decide(&v), Decision::Promote { term: 7, reported_max: 1000 }, "an unhealthy one is not waited for");
        v.members.get_mut("pg3").unwrap().healthy = true;
        v.races.insert("pg3".into(), 1000);
        assert_eq!(decide(&v), Decision::Promote { term: 7, reported_max: 1000 }, "as far, and eligible");
    }

    #[test]
    fn as_far_the_eligible_one_goes_first_whatever_its_name() {
        let mut v = after_primary_loss("pg2");
        v.sync = SyncSet {
            k: 1,
            ackers: vec!["pg3".into()],
            eligible: vec!["pg3".into()],
            streaming: vec!["pg2".into(), "pg3".into()],
        };
        v.members.get_mut("pg3").unwrap().flush_lsn = 1000;
        v.races.insert("pg2".into(), 1000);
        v.races.insert("pg3".into(), 1000);
        assert_eq!(decide(&v), Decision::Defer { to: "pg3".into() });
    }

    #[test]
    fn async_mode_promotes_only_within_the_lag_limit() {
        let mut v = after_primary_loss("pg3");
        v.sync = SyncSet::default();
        v.members.remove("pg2");
        v.max_lag_on_failover = 50;
        assert_eq!(decide(&v), Decision::Blocked(Blocked::LagTooLarge { lag: 100, max: 50 }));
        v.max_lag_on_failover = 100;
        assert_eq!(decide(&v), Decision::Promote { term: 7, reported_max: 900 });
        v.last_leader_lsn = None;
        assert_eq!(decide(&v), Decision::Blocked(Blocked::NoLeaderPosition));
    }

    #[test]
    fn the_old_primary_alive_or_etcd_down_or_ha_off_blocks_promotion() {
        let mut v = after_primary_loss("pg2");
        v.races.insert("pg2".into(), 1000);
        v.old_primary_alive = Some(true);
        assert_eq!(decide(&v), Decision::Blocked(Blocked::OldPrimaryAlive));
        v.old_primary_alive = None;
        v.store_ok = false;
        assert_eq!(decide(&v), Decision::Blocked(Blocked::StoreUnavailable));
        v.store_ok = true;
        v.mode = HaMode::Paused;
        assert!(!decide(&v).acts());
    }

    fn primary_view() -> View {
        let mut v = after_primary_loss("pg1");
        v.leader = Some(Leader { name: "pg1".into(), term: 7 });
        v.local = Local { run: PgRun::Running, in_recovery: false, timeline: 1, flush_lsn: 1000, ..Default::default() };
        v.lease_margin_ms = 800;
        v
    }

    #[test]
    fn the_leader_renews_and_fences_when_hung_or_out_of_lease() {
        let mut v = primary_view();
        assert_eq!(decide(&v), Decision::Renew);
        v.local.run = PgRun::Hung;
        assert!(matches!(decide(&v), Decision::Fence { release: true, .. }));
        v.local.run = PgRun::Running;
        v.lease_margin_ms = -1;
        assert!(matches!(decide(&v), Decision::Fence { release: false, .. }));
        v.mode = HaMode::Paused;
        assert_eq!(decide(&v), Decision::Renew, "paused: the key is kept, nothing fenced");
    }

    #[test]
    fn etcd_down_fences_at_the_deadline_unless_failsafe_in_sync_mode() {
        let mut v = primary_view();
        v.store_ok = false;
        assert!(matches!(decide(&v), Decision::Idle { .. }), "the lease is still valid");
        v.lease_margin_ms = 0;
        assert!(matches!(decide(&v), Decision::Fence { release: false, .. }));
        v.failsafe = true;
        assert!(matches!(decide(&v), Decision::Idle { .. }));
        // etcd back, the key still ours, the lease not renewed yet: kept.
        let mut back = v.clone();
        back.store_ok = true;
        assert_eq!(decide(&back), Decision::Renew, "failsafe: the key is still ours");
        back.failsafe = false;
        assert!(matches!(decide(&back), Decision::Fence { release: false, .. }));
        v.sync = SyncSet::default();
        assert!(matches!(decide(&v), Decision::Fence { .. }), "failsafe needs synchronous standbys");
    }

    #[test]
    fn a_primary_without_the_key_takes_it_only_as_the_last_leader_on_the_newest_timeline() {
        let mut v = primary_view();
        v.leader = None;
        v.last_leader = None;
        assert_eq!(decide(&v), Decision::TakeLeader, "bootstrap");
        v.last_leader = Some("pg1".into());
        assert_eq!(decide(&v), Decision::TakeLeader, "the key was lost, nothing else changed");
        v.members.get_mut("pg2").unwrap().timeline = 2;
        assert!(matches!(decide(&v), Decision::Fence { .. }), "someone was promoted meanwhile");
        v.members.get_mut("pg2").unwrap().timeline = 1;
        v.last_leader = Some("pg2".into());
        assert!(matches!(decide(&v), Decision::Fence { .. }));
        v.leader = Some(Leader { name: "pg2".into(), term: 8 });
        assert_eq!(decide(&v), Decision::Demote { leader: "pg2".into() });
    }

    #[test]
    fn a_stopped_leader_releases_and_every_stopped_node_starts_as_a_standby() {
        let mut v = primary_view();
        v.local.run = PgRun::Stopped;
        assert!(matches!(decide(&v), Decision::Fence { release: true, .. }));
        v.leader = Some(Leader { name: "pg2".into(), term: 8 });
        v.local.was_primary = true;
        assert_eq!(decide(&v), Decision::StartStandby { leader: Some("pg2".into()), rejoin: true });
        v.leader = None;
        assert!(matches!(decide(&v), Decision::Idle { .. }), "a former primary waits for a new leader");
        v.local.was_primary = false;
        assert_eq!(decide(&v), Decision::StartStandby { leader: None, rejoin: false });
    }

    #[test]
    fn after_a_switchover_by_command_the_old_leader_releases_and_the_new_primary_waits_then_takes() {
        // pg1 (old leader, now a standby) still holds the key; the inventory names pg2.
        let mut old = after_primary_loss("pg1");
        old.leader = Some(Leader { name: "pg1".into(), term: 7 });
        old.inventory_primary = Some("pg2".into());
        old.local.was_primary = false;
        assert!(matches!(decide(&old), Decision::Release { .. }));
        // pg2 runs as the primary: it waits rather than demote itself.
        let mut new = primary_view();
        new.me = "pg2".into();
        new.inventory_primary = Some("pg2".into());
        new.members.insert("pg1".into(), member(false, 1000));
        assert!(matches!(decide(&new), Decision::Idle { .. }), "{:?}", decide(&new));
        // A real conflict (the key holder runs as a primary too): demote.
        new.members.insert("pg1".into(), member(true, 1000));
        assert_eq!(decide(&new), Decision::Demote { leader: "pg1".into() });
        // The key released: the recorded primary takes it although it was not the last leader.
        new.leader = None;
        new.members.insert("pg1".into(), member(false, 1000));
        new.last_leader = Some("pg1".into());
        assert_eq!(decide(&new), Decision::TakeLeader);
    }

    #[test]
    fn standbys_follow_the_new_leader() {
        let mut v = after_primary_loss("pg3");
        v.leader = Some(Leader { name: "pg2".into(), term: 8 });
        assert_eq!(decide(&v), Decision::Follow { upstream: "pg2".into() });
        v.local.receiving = true;
        v.local.upstream = Some("pg2".into());
        assert!(matches!(decide(&v), Decision::Idle { .. }));
    }

    fn arb_view() -> impl Strategy<Value = View> {
        (
            1usize..5,
            0usize..4,
            proptest::collection::vec(
                (0u64..2000, proptest::bool::weighted(0.7), proptest::bool::weighted(0.7), any::<bool>()),
                5,
            ),
            (0u64..3000, proptest::collection::vec(any::<bool>(), 5)),
            0u64..2000,
            prop_oneof![4 => Just(HaMode::Enabled), 1 => Just(HaMode::Disabled), 1 => Just(HaMode::Paused)],
            proptest::bool::weighted(0.85),
            (proptest::bool::weighted(0.3), any::<bool>()),
            proptest::bool::weighted(0.15),
            (proptest::bool::weighted(0.8), prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)], any::<bool>()),
        )
            .prop_map(
                |(
                    n,
                    k,
                    per,
                    (race_age, streams),
                    my_lsn,
                    mode,
                    store_ok,
                    (has_leader, lost),
                    old_alive,
                    (rec, run, was),
                )| {
                    let names: Vec<String> = (1..=5).map(|i| format!("pg{i}")).collect();
                    let mut v = after_primary_loss("pg2");
                    v.mode = mode;
                    v.store_ok = store_ok;
                    v.members.clear();
                    v.races.clear();
                    let ackers: Vec<String> = names[1..=n.min(4)].to_vec();
                    v.sync = SyncSet {
                        k: k.min(ackers.len()),
                        eligible: ackers.iter().zip(&per).filter(|(_, p)| p.2).map(|(a, _)| a.clone()).collect(),
                        ackers,
                        streaming: names[1..]
                            .iter()
                            .zip(&streams)
                            .filter(|(_, s)| **s)
                            .map(|(a, _)| a.clone())
                            .collect(),
                    };
                    v.race_age_ms = race_age;
                    for (name, (lsn, reported, _, healthy)) in names[1..].iter().zip(&per) {
                        v.members.insert(
                            name.clone(),
                            Member { primary: false, timeline: 1, flush_lsn: *lsn, healthy: *healthy },
                        );
                        if *reported {
                            v.races.insert(name.clone(), *lsn);
                        }
                    }
                    v.leader = has_leader.then(|| Leader { name: "pg1".into(), term: 7 });
                    v.leader_lost = lost;
                    v.old_primary_alive = old_alive.then_some(true);
                    v.local.flush_lsn = my_lsn;
                    v.local.in_recovery = rec;
                    v.local.run = [PgRun::Running, PgRun::Stopped, PgRun::Hung][run as usize];
                    v.local.was_primary = was;
                    v
                },
            )
    }

    /// The random views do reach promotions (the property below is not vacuous).
    #[test]
    fn random_views_include_promotions_of_both_modes() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut sync, mut async_) = (0, 0);
        for _ in 0..20_000 {
            let v = arb_view().new_tree(&mut runner).unwrap().current();
            if matches!(decide(&v), Decision::Promote { .. } | Decision::TakeOver { .. }) {
                if v.sync.k > 0 {
                    sync += 1;
                } else {
                    async_ += 1;
                }
            }
        }
        assert!(sync > 100 && async_ > 100, "sync {sync}, async {async_}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// A promotion only ever happens with HA on, etcd answering, no
        /// leader, the old primary not claiming to live, a running standby,
        /// and (sync mode) the quorum proof with this node eligible and at
        /// least as far as every report; (async) within the lag limit.
        #[test]
        fn promotion_needs_every_condition(v in arb_view()) {
            let d = decide(&v);
            if let Decision::TakeOver { from, term, .. } = &d {
                // Before the lease expired: only for the lost last leader,
                // in synchronous mode (below: with the whole proof).
                prop_assert!(v.leader_lost && v.sync.k > 0);
                prop_assert_eq!(v.leader.as_ref().map(|l| (l.name.as_str(), l.term)), Some((from.as_str(), *term)));
                prop_assert_eq!(v.last_leader.as_deref(), Some(from.as_str()));
            }
            let max = match d {
                Decision::Promote { reported_max, .. } => {
                    prop_assert!(v.leader.is_none());
                    prop_assert!(v.old_primary_alive != Some(true));
                    Some(reported_max)
                }
                Decision::TakeOver { reported_max, .. } => Some(reported_max),
                _ => None,
            };
            if let Some(reported_max) = max {
                prop_assert_eq!(v.mode, HaMode::Enabled);
                prop_assert!(v.store_ok);
                // (A lost leader's member entry is stale: what it said last
                // is not asked; its agent's silence and its unreachable
                // server are what `leader_lost` means.)
                prop_assert!(v.local.in_recovery && v.local.run == PgRun::Running);
                prop_assert!(v.local.flush_lsn >= reported_max);
                if v.sync.k > 0 {
                    // Eligible, or it streamed from the old primary, reported,
                    // and is at or past an eligible node's report.
                    let eligible_report = v.sync.eligible.iter().filter_map(|e| v.races.get(e)).any(|l| *l <= v.local.flush_lsn);
                    prop_assert!(
                        v.sync.eligible.contains(&v.me)
                            || (v.sync.streaming.contains(&v.me) && v.races.contains_key(&v.me) && eligible_report)
                    );
                    let reported: Vec<u64> = v.sync.ackers.iter().filter_map(|a| v.races.get(a).copied()).collect();
                    prop_assert!(reported.len() >= quorum::required_reports(v.sync.ackers.len(), v.sync.k));
                    // The ackers still able to acknowledge for the old primary cannot complete a commit.
                    prop_assert!(v.sync.ackers.len() - reported.len() < v.sync.k);
                    prop_assert!(reported.iter().all(|l| *l <= v.local.flush_lsn));
                } else {
                    prop_assert!(v.last_leader_lsn.unwrap_or(u64::MAX).saturating_sub(v.local.flush_lsn) <= v.max_lag_on_failover);
                }
            }
        }

        /// With HA disabled or paused, no decision changes a server.
        #[test]
        fn off_or_paused_never_acts(v in arb_view()) {
            let d = decide(&v);
            if v.mode != HaMode::Enabled {
                prop_assert!(!d.acts() || matches!(d, Decision::TakeLeader | Decision::Release { .. }), "{:?}", d);
            }
        }

        /// A stopped server is only ever started as a standby.
        #[test]
        fn a_stopped_server_never_comes_back_as_primary(v in arb_view()) {
            if v.local.run == PgRun::Stopped {
                let d = decide(&v);
                prop_assert!(
                    matches!(d, Decision::StartStandby { .. } | Decision::Fence { .. } | Decision::Idle { .. }),
                    "{:?}", d
                );
            }
        }
    }
}
