//! The HTTP health checks, as Patroni answers them, so HAProxy and load
//! balancers written for Patroni work unchanged: 200 when the node is what
//! the path asks for, 503 otherwise.

/// What the agent knows about its node for the checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeHealth {
    /// PostgreSQL answers.
    pub running: bool,
    /// Running as a primary (not in recovery).
    pub primary: bool,
    /// This node holds the leader key (and is not fenced).
    pub leader: bool,
    /// A standby's WAL receiver is streaming.
    pub streaming: bool,
    /// Bytes behind the last recorded primary position (standbys).
    pub lag_bytes: Option<u64>,
    /// A standby that acknowledges commits (in the synchronous set).
    pub sync: bool,
    /// The agent's own loop ran recently.
    pub loop_alive: bool,
}

/// A size as Patroni's `?lag=` takes it: bytes, or with a unit (kB, MB, GB, TB; 1024-based).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" | "k" => 1 << 10,
        "MB" | "M" => 1 << 20,
        "GB" | "G" => 1 << 30,
        "TB" | "T" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The status code for `path` (without the query) and its query string.
/// None: not a health path (404).
pub fn status(path: &str, query: &str, h: &NodeHealth) -> Option<u16> {
    let ok = |b: bool| Some(if b { 200 } else { 503 });
    let param = |k: &str| {
        query.split('&').filter_map(|kv| kv.split_once('=')).find(|(a, _)| *a == k).map(|(_, b)| b.to_string())
    };
    let primary = h.running && h.primary && h.leader;
    let replica_ok = || {
        let mut r = h.running && !h.primary;
        if let Some(max) = param("lag").and_then(|l| parse_size(&l)) {
            r &= h.lag_bytes.is_some_and(|x| x <= max);
        }
        if let Some(state) = param("replication_state") {
            r &= state == "streaming" && h.streaming;
        }
        r
    };
    match path.trim_end_matches('/') {
        "" | "/primary" | "/master" | "/read-write" => ok(primary),
        "/leader" => ok(h.running && h.leader),
        "/replica" => ok(replica_ok()),
        "/read-only" => ok(primary || replica_ok()),
        "/sync" | "/synchronous" => ok(replica_ok() && h.sync),
        "/async" | "/asynchronous" => ok(replica_ok() && !h.sync),
        "/health" => ok(h.running),
        "/liveness" => ok(h.loop_alive),
        "/readiness" => ok(primary || (h.running && !h.primary && h.streaming)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primary() -> NodeHealth {
        NodeHealth { running: true, primary: true, leader: true, loop_alive: true, ..Default::default() }
    }

    fn replica(lag: u64, sync: bool) -> NodeHealth {
        NodeHealth {
            running: true,
            streaming: true,
            lag_bytes: Some(lag),
            sync,
            loop_alive: true,
            ..Default::default()
        }
    }

    #[test]
    fn primary_paths_answer_200_only_on_the_leader() {
        for p in ["/", "/primary", "/master", "/read-write", "/leader", "/read-only", "/health", "/readiness"] {
            assert_eq!(status(p, "", &primary()), Some(200), "{p}");
        }
        for p in ["/replica", "/sync", "/async"] {
            assert_eq!(status(p, "", &primary()), Some(503), "{p}");
        }
        let fenced = NodeHealth { leader: false, ..primary() };
        assert_eq!(status("/primary", "", &fenced), Some(503), "a primary without the key is not the primary");
    }

    #[test]
    fn replica_paths_with_lag_and_state() {
        let r = replica(2 << 20, false);
        assert_eq!(status("/replica", "", &r), Some(200));
        assert_eq!(status("/replica", "lag=1MB", &r), Some(503));
        assert_eq!(status("/replica", "lag=4MB", &r), Some(200));
        assert_eq!(status("/replica", "lag=4194304&replication_state=streaming", &r), Some(200));
        let stalled = NodeHealth { streaming: false, ..r.clone() };
        assert_eq!(status("/replica", "replication_state=streaming", &stalled), Some(503));
        assert_eq!(status("/async", "", &r), Some(200));
        assert_eq!(status("/sync", "", &r), Some(503));
        assert_eq!(status("/sync", "", &replica(0, true)), Some(200));
        assert_eq!(status("/primary", "", &r), Some(503));
        assert_eq!(status("/nope", "", &r), None);
        let dead = NodeHealth { running: false, loop_alive: true, ..Default::default() };
        assert_eq!(status("/health", "", &dead), Some(503));
        assert_eq!(status("/liveness", "", &dead), Some(200), "the agent lives even if PostgreSQL does not");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("16MB"), Some(16 << 20));
        assert_eq!(parse_size("1kB"), Some(1024));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("5 parsecs"), None);
    }
}
