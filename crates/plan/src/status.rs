//! The status report: inventory + observations → the rows `status` prints
//! and the JSON object scripts read. Pure, so every mapping is unit-tested.

use model::{Inventory, Observed, ObservedRole, PgLsn, RunState};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub data_dir: String,
    /// Role the server reports: primary | standby | unknown.
    pub role: &'static str,
    /// running | stopped | unreachable
    pub state: &'static str,
    pub upstream: Option<String>,
    pub timeline: Option<u32>,
    pub lsn: Option<String>,
    pub lag_bytes: Option<i64>,
    /// sync | potential | async | quorum, as the upstream reports it.
    pub sync_state: Option<String>,
    /// Role the inventory expects.
    pub expected_role: &'static str,
    pub needs_rejoin: bool,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusReport {
    pub cluster: String,
    /// The node that reports itself primary (the inventory's primary first
    /// if several do).
    pub primary: Option<String>,
    pub nodes: Vec<NodeStatus>,
    /// Where the cluster's state lives (`the home …`, `etcd (…)`).
    pub store: String,
    /// The store could not be read: the servers of the inventory this
    /// machine saw last were probed instead; says why and since when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
    /// Automatic failover (`pgscale ha`): enabled, disabled or paused;
    /// absent when the store cannot say (the home, or etcd unreachable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automatic_failover: Option<model::HaMode>,
}

fn lsn(l: Option<PgLsn>) -> Option<String> {
    l.map(|x| x.to_string())
}

pub fn report(inv: &Inventory, obs: &Observed) -> StatusReport {
    let primaries: Vec<&str> = inv
        .nodes
        .iter()
        .filter(|n| obs.get(&n.name).is_some_and(|o| o.state == RunState::Running && o.role == ObservedRole::Primary))
        .map(|n| n.name.as_str())
        .collect();
    let primary = primaries.iter().find(|p| inv.is_primary(p)).or(primaries.first()).map(|s| s.to_string());
    let nodes = inv
        .nodes
        .iter()
        .map(|n| {
            let o = obs.get(&n.name);
            let state = o.map_or(RunState::Unreachable, |o| o.state);
            let role = match o {
                Some(o) if state == RunState::Running => o.role,
                _ => ObservedRole::Unknown,
            };
            // Upstream: the node whose address the WAL receiver streams from.
            let upstream = o.and_then(|o| {
                let (h, p) = (o.upstream_host.as_deref()?, o.upstream_port?);
                inv.nodes.iter().find(|u| u.host == h && u.port == p).map(|u| u.name.clone())
            });
            // The upstream's pg_stat_replication row for this node.
            let row = upstream
                .as_deref()
                .and_then(|u| obs.get(u))
                .and_then(|uo| uo.downstreams.iter().find(|d| d.application_name == n.name));
            let head = upstream.as_deref().and_then(|u| obs.get(u)).and_then(|uo| uo.lsn);
            let lag_bytes = match (role, head, o.and_then(|o| o.lsn)) {
                (ObservedRole::Standby, Some(h), Some(mine)) => {
                    Some((u64::from(h) as i64 - u64::from(mine) as i64).max(0))
                }
                _ => None,
            };
            NodeStatus {
                name: n.name.clone(),
                host: n.host.clone(),
                port: n.port,
                data_dir: n.data_dir.display().to_string(),
                role: role.as_str(),
                state: state.as_str(),
                upstream: if role == ObservedRole::Standby { upstream.clone() } else { None },
                timeline: o.and_then(|o| o.timeline),
                lsn: lsn(o.and_then(|o| o.lsn)),
                lag_bytes,
                sync_state: row.map(|r| r.sync_state.clone()),
                expected_role: if inv.is_primary(&n.name) { "primary" } else { "standby" },
                needs_rejoin: n.state.needs_rejoin,
                error: o.and_then(|o| o.error.clone()),
            }
        })
        .collect();
    StatusReport {
        cluster: inv.name.clone(),
        primary,
        nodes,
        store: String::new(),
        store_error: None,
        automatic_failover: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_inventory;
    use model::{Downstream, NodeObservation};

    fn inv() -> Inventory {
        let y = "name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 5501\n    data_dir: /d/pg1\n  - name: pg2\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /d/pg2\n  - name: pg3\n    host: 127.0.0.3\n    port: 5501\n    data_dir: /d/pg3\n";
        parse_inventory("c.yaml", y).unwrap().0
    }

    fn running(name: &str, role: ObservedRole, l: u64) -> NodeObservation {
        let mut o = NodeObservation::unanswered(name, RunState::Running, "");
        o.error = None;
        o.role = role;
        o.timeline = Some(1);
        o.lsn = Some(PgLsn::from(l));
        o
    }

    #[test]
    fn primary_standby_and_dead_node() {
        let mut obs = Observed::default();
        let mut p = running("pg1", ObservedRole::Primary, 0x3000100);
        p.downstreams.push(Downstream {
            application_name: "pg2".into(),
            client_addr: Some("127.0.0.1".into()),
            state: "streaming".into(),
            sync_state: "sync".into(),
            replay_lsn: None,
            flush_lsn: None,
            silent: false,
        });
        obs.nodes.insert("pg1".into(), p);
        let mut s = running("pg2", ObservedRole::Standby, 0x3000000);
        s.upstream_host = Some("127.0.0.1".into());
        s.upstream_port = Some(5501);
        obs.nodes.insert("pg2".into(), s);
        obs.nodes.insert("pg3".into(), NodeObservation::unanswered("pg3", RunState::Unreachable, "timed out after 3s"));
        let r = report(&inv(), &obs);
        assert_eq!(r.primary.as_deref(), Some("pg1"));
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["nodes"][0]["role"], "primary");
        assert_eq!(j["nodes"][0]["lsn"], "0/3000100");
        assert_eq!(j["nodes"][0]["upstream"], serde_json::Value::Null);
        assert_eq!(j["nodes"][1]["role"], "standby");
        assert_eq!(j["nodes"][1]["upstream"], "pg1");
        assert_eq!(j["nodes"][1]["lag_bytes"], 256);
        assert_eq!(j["nodes"][1]["sync_state"], "sync");
        assert_eq!(j["nodes"][2]["state"], "unreachable");
        assert_eq!(j["nodes"][2]["role"], "unknown");
        assert_eq!(j["nodes"][2]["timeline"], serde_json::Value::Null);
        assert_eq!(j["nodes"][2]["error"], "timed out after 3s");
    }

    #[test]
    fn no_primary_when_none_answers() {
        let mut obs = Observed::default();
        obs.nodes.insert("pg1".into(), NodeObservation::unanswered("pg1", RunState::Stopped, "refused"));
        let r = report(&inv(), &obs);
        assert_eq!(r.primary, None);
        assert_eq!(r.nodes[0].state, "stopped");
        assert_eq!(r.nodes[1].state, "unreachable", "a node with no observation is unreachable");
    }
}
