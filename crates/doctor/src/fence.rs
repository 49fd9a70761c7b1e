//! Fence A: the primary stops acknowledging before its leader lease can
//! expire. The lease cannot expire on etcd's clock before `t_send + TTL`,
//! where `t_send` is when the last answered keep-alive was *sent* (on this
//! machine's monotonic clock); the agent fences at `t_send + TTL − guard`.

use serde::Serialize;

/// Lease timing. Rule (our analogue of Patroni's `loop_wait + 2 ×
/// retry_timeout ≤ ttl`): `period + 2 × attempt + guard ≤ ttl`, so a missed
/// renewal and its retry both fit before the fence must fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub ttl_ms: u64,
    /// A keep-alive every `period_ms`.
    pub period_ms: u64,
    /// Each keep-alive attempt's deadline.
    pub attempt_ms: u64,
    /// Margin for the fence itself and clock drift.
    pub guard_ms: u64,
}

impl Profile {
    /// The default: a 2 s lease (etcd's minimum with 100/1000 ms election settings is 2 s).
    pub const DEFAULT: Profile = Profile { ttl_ms: 2000, period_ms: 250, attempt_ms: 500, guard_ms: 300 };
    /// The fast profile: a 1 s lease (needs etcd with a 50 ms heartbeat and 500 ms election).
    pub const FAST: Profile = Profile { ttl_ms: 1000, period_ms: 150, attempt_ms: 300, guard_ms: 200 };

    /// Why the timing cannot be safe, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.ttl_ms < 1000 || !self.ttl_ms.is_multiple_of(1000) {
            return Some(format!("the lease TTL must be whole seconds, at least 1 s (got {} ms)", self.ttl_ms));
        }
        let need = self.period_ms + 2 * self.attempt_ms + self.guard_ms;
        if need > self.ttl_ms {
            return Some(format!(
                "keep-alive period {} ms + 2 × attempt {} ms + guard {} ms = {need} ms exceeds the lease TTL {} ms",
                self.period_ms, self.attempt_ms, self.guard_ms, self.ttl_ms
            ));
        }
        None
    }
}

/// When the primary must be fenced: `t_send + TTL − guard` (ms, monotonic).
pub fn deadline_ms(t_send_ms: u64, p: &Profile) -> u64 {
    (t_send_ms + p.ttl_ms).saturating_sub(p.guard_ms)
}

/// Milliseconds left before the fence must fire (negative: past it).
pub fn margin_ms(now_ms: u64, t_send_ms: u64, p: &Profile) -> i64 {
    deadline_ms(t_send_ms, p) as i64 - now_ms as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profiles_are_safe_and_bad_ones_are_explained() {
        assert_eq!(Profile::DEFAULT.problem(), None);
        assert_eq!(Profile::FAST.problem(), None);
        let slow = Profile { ttl_ms: 1000, period_ms: 500, attempt_ms: 300, guard_ms: 200 };
        assert!(slow.problem().unwrap().contains("exceeds the lease TTL"));
        let frac = Profile { ttl_ms: 1500, ..Profile::DEFAULT };
        assert!(frac.problem().unwrap().contains("whole seconds"));
    }

    #[test]
    fn the_fence_fires_before_the_lease_can_expire() {
        let p = Profile::DEFAULT;
        assert_eq!(deadline_ms(10_000, &p), 11_700);
        assert_eq!(margin_ms(11_000, 10_000, &p), 700);
        assert!(margin_ms(12_000, 10_000, &p) < 0);
        // A renewal sent later moves the deadline later, never earlier.
        assert!(deadline_ms(10_250, &p) > deadline_ms(10_000, &p));
    }
}
