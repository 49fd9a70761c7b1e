//! `check`: what `repmgr node check` tells, and more, as findings with a
//! Nagios severity. Pure: inventory + observations (+ pg_hba texts and disk
//! use gathered by the caller).

use crate::hba;
use crate::steps::Ctx;
use model::{slot_name, Inventory, Observed, ObservedRole, RunState};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Severity {
    /// Nagios exit code.
    pub fn code(self) -> u8 {
        match self {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
            Severity::Unknown => 3,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub node: String,
    pub check: &'static str,
    pub message: String,
}

#[derive(Clone, Debug, Default)]
pub struct CheckInput {
    /// pg_hba.conf text per running node.
    pub hba: BTreeMap<String, String>,
    /// Disk use of each node's data directory, percent.
    pub disk_used_pct: BTreeMap<String, u8>,
}

const LAG_WARN: i64 = 16 << 20;
const LAG_CRIT: i64 = 1 << 30;
const RETAIN_WARN: i64 = 1 << 30;

pub fn check(inv: &Inventory, obs: &Observed, ctx: &Ctx, input: &CheckInput) -> Vec<Finding> {
    let mut f = Vec::new();
    let mut add =
        |severity, node: &str, check, message: String| f.push(Finding { severity, node: node.into(), check, message });
    let primary = inv.primary().map(|p| p.name.clone()).unwrap_or_default();
    let want_hba = hba::render(inv, &ctx.os_user, &ctx.peers);
    for n in inv.staying() {
        let name = n.name.as_str();
        let Some(o) = obs.get(name) else { continue };
        if n.state.needs_rejoin {
            add(
                Severity::Warning,
                name,
                "role",
                format!(
                    "{name} was a primary that was failed over: run `pgscale rejoin -n {} --node {name}`",
                    inv.name
                ),
            );
            if o.state == RunState::Running && o.role == ObservedRole::Primary {
                add(
                    Severity::Critical,
                    name,
                    "role",
                    format!("{name} runs as a primary besides {primary}: split brain, stop it now"),
                );
            }
            continue;
        }
        match o.state {
            RunState::Running => {}
            s => {
                add(
                    Severity::Critical,
                    name,
                    "state",
                    format!("{name} is {} ({})", s.as_str(), o.error.clone().unwrap_or_default()),
                );
                continue;
            }
        }
        let expected = if name == primary { ObservedRole::Primary } else { ObservedRole::Standby };
        if o.role != expected {
            add(
                Severity::Critical,
                name,
                "role",
                format!("{name} is {} but the inventory expects a {}", o.role.as_str(), expected.as_str()),
            );
            continue;
        }
        if input.hba.get(name).is_some_and(|h| *h != want_hba) {
            add(
                Severity::Warning,
                name,
                "hba",
                format!("{name}'s pg_hba.conf differs from the inventory: `pgscale apply-config` rewrites it"),
            );
        }
        if let Some(pct) = input.disk_used_pct.get(name) {
            if *pct >= 95 {
                add(Severity::Critical, name, "disk", format!("{name}'s data directory disk is {pct}% full"));
            } else if *pct >= 85 {
                add(Severity::Warning, name, "disk", format!("{name}'s data directory disk is {pct}% full"));
            }
        }
        // Downstreams the inventory expects must stream from this node.
        for d in inv.downstreams_of(name).into_iter().filter(|d| !d.state.needs_rejoin) {
            let row = o.downstreams.iter().find(|r| r.application_name == d.name);
            match row {
                Some(r) if r.state == "streaming" => {}
                Some(r) => add(
                    Severity::Warning,
                    name,
                    "downstream",
                    format!("{} is connected to {name} but {}", d.name, r.state),
                ),
                None => add(Severity::Critical, name, "downstream", format!("{} is not streaming from {name}", d.name)),
            }
            match o.slots.iter().find(|s| s.name == slot_name(&d.name)) {
                None => add(
                    Severity::Warning,
                    name,
                    "slot",
                    format!("no slot for {} on {name}: WAL it needs may be recycled", d.name),
                ),
                Some(s) if !s.active => {
                    add(Severity::Warning, name, "slot", format!("slot {} on {name} is inactive", d.name))
                }
                _ => {}
            }
        }
        for s in &o.slots {
            let expected = inv.downstreams_of(name).iter().any(|d| slot_name(&d.name) == s.name);
            if !expected {
                let kept = s.retained_bytes.unwrap_or(0);
                let sev = if kept >= RETAIN_WARN { Severity::Critical } else { Severity::Warning };
                add(
                    sev,
                    name,
                    "slot",
                    format!(
                        "slot {} on {name} belongs to no downstream and keeps {kept} bytes of WAL: drop it",
                        s.name
                    ),
                );
            }
        }
        if name == primary {
            let names = o.synchronous_standby_names.clone().unwrap_or_default();
            let want = crate::sync::standby_names(inv);
            if names != want {
                add(
                    Severity::Warning,
                    name,
                    "sync",
                    format!("synchronous_standby_names is '{names}', the inventory says '{want}'"),
                );
            }
            for s in inv.staying().filter(|s| names.contains(&format!("\"{}\"", s.name))) {
                let live = o.downstreams.iter().any(|r| r.application_name == s.name && r.state == "streaming");
                if !live {
                    add(
                        Severity::Critical,
                        name,
                        "sync",
                        format!("synchronous_standby_names names {} which is not streaming: commits may wait", s.name),
                    );
                }
            }
        } else {
            let head = obs.get(&primary).and_then(|p| p.lsn).map(u64::from);
            if let (Some(h), Some(mine)) = (head, o.lsn.map(u64::from)) {
                let lag = h as i64 - mine as i64;
                if lag >= LAG_CRIT {
                    add(Severity::Critical, name, "lag", format!("{name} is {lag} bytes behind {primary}"));
                } else if lag >= LAG_WARN {
                    add(Severity::Warning, name, "lag", format!("{name} is {lag} bytes behind {primary}"));
                }
            }
            let ptl = obs.get(&primary).and_then(|p| p.timeline);
            if ptl.is_some() && o.timeline.is_some() && ptl != o.timeline {
                add(
                    Severity::Warning,
                    name,
                    "timeline",
                    format!("{name} is on timeline {} but {primary} on {}", o.timeline.unwrap_or(0), ptl.unwrap_or(0)),
                );
            }
            if let Some(u) = inv.upstream_of(name) {
                let ok = o.upstream_host.as_deref() == Some(u.host.as_str()) && o.upstream_port == Some(u.port);
                if !ok {
                    let from = o
                        .upstream_host
                        .clone()
                        .map(|h| format!("{h}:{}", o.upstream_port.unwrap_or(0)))
                        .unwrap_or("nowhere".into());
                    add(
                        Severity::Critical,
                        name,
                        "upstream",
                        format!("{name} streams from {from}, the inventory says {}", u.name),
                    );
                }
            }
        }
    }
    f
}

/// The worst severity, Ok when there is no finding.
pub fn overall(f: &[Finding]) -> Severity {
    f.iter().map(|x| x.severity).max().unwrap_or(Severity::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_inventory;
    use model::{Downstream, NodeObservation, PgLsn, Slot};

    fn ctx() -> Ctx {
        Ctx {
            bin_dir: "/b".into(),
            os_user: "postgres".into(),
            peers: vec!["127.0.0.1".parse().unwrap()],
            wait_secs: 60,
            unreachable: vec![],
        }
    }

    fn inv() -> Inventory {
        let y = "name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 5501\n    data_dir: /d/pg1\n  - name: pg2\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /d/pg2\n    sync: sync\n";
        parse_inventory("c.yaml", y).unwrap().0
    }

    fn healthy() -> Observed {
        let mut p = NodeObservation::unanswered("pg1", RunState::Running, "");
        p.error = None;
        p.role = ObservedRole::Primary;
        p.lsn = Some(PgLsn::from(100));
        p.timeline = Some(1);
        p.synchronous_standby_names = Some("FIRST 1 (\"pg2\")".into());
        p.downstreams.push(Downstream {
            application_name: "pg2".into(),
            client_addr: None,
            state: "streaming".into(),
            sync_state: "sync".into(),
            replay_lsn: None,
            flush_lsn: None,
            silent: false,
        });
        p.slots.push(Slot { name: "pg2".into(), active: true, restart_lsn: None, retained_bytes: Some(0) });
        let mut s = NodeObservation::unanswered("pg2", RunState::Running, "");
        s.error = None;
        s.role = ObservedRole::Standby;
        s.lsn = Some(PgLsn::from(100));
        s.timeline = Some(1);
        s.upstream_host = Some("127.0.0.1".into());
        s.upstream_port = Some(5501);
        let mut o = Observed::default();
        o.nodes.insert("pg1".into(), p);
        o.nodes.insert("pg2".into(), s);
        o
    }

    fn run(o: &Observed) -> Vec<Finding> {
        let i = inv();
        let h = hba::render(&i, "postgres", &ctx().peers);
        let input = CheckInput {
            hba: [("pg1".to_string(), h.clone()), ("pg2".to_string(), h)].into(),
            disk_used_pct: [("pg1".to_string(), 10)].into(),
        };
        check(&i, o, &ctx(), &input)
    }

    #[test]
    fn a_healthy_cluster_has_no_finding() {
        assert_eq!(run(&healthy()), vec![]);
        assert_eq!(overall(&[]), Severity::Ok);
    }

    #[test]
    fn a_stopped_standby_is_critical_twice() {
        let mut o = healthy();
        o.nodes.insert("pg2".into(), NodeObservation::unanswered("pg2", RunState::Stopped, "refused"));
        o.nodes.get_mut("pg1").unwrap().downstreams.clear();
        o.nodes.get_mut("pg1").unwrap().slots[0].active = false;
        let f = run(&o);
        assert!(f.iter().any(|x| x.node == "pg2" && x.check == "state" && x.severity == Severity::Critical));
        assert!(f.iter().any(|x| x.check == "downstream" && x.message.contains("pg2 is not streaming")));
        assert!(f.iter().any(|x| x.check == "sync" && x.severity == Severity::Critical), "{f:?}");
        assert!(f.iter().any(|x| x.check == "slot" && x.message.contains("inactive")));
        assert_eq!(overall(&f).code(), 2);
    }

    #[test]
    fn orphan_slot_lag_and_stale_sync_names() {
        let mut o = healthy();
        o.nodes.get_mut("pg1").unwrap().slots.push(Slot {
            name: "gone".into(),
            active: false,
            restart_lsn: None,
            retained_bytes: Some(2 << 30),
        });
        o.nodes.get_mut("pg1").unwrap().synchronous_standby_names = Some("FIRST 1 (\"pg2\", \"ghost\")".into());
        o.nodes.get_mut("pg1").unwrap().lsn = Some(PgLsn::from(100 + (32 << 20)));
        let f = run(&o);
        assert!(f.iter().any(|x| x.message.contains("slot gone") && x.severity == Severity::Critical), "{f:?}");
        assert!(f.iter().any(|x| x.check == "sync" && x.severity == Severity::Warning));
        assert!(f.iter().any(|x| x.check == "lag" && x.severity == Severity::Warning));
    }

    #[test]
    fn roles_rejoin_and_split_brain() {
        let mut i = inv();
        i.nodes[0].state.needs_rejoin = true;
        i.nodes[1].role = Some(model::Role::Primary);
        let mut o = healthy();
        // pg1 (failed over) still runs as a primary: split brain
        let f = check(&i, &o, &ctx(), &CheckInput::default());
        assert!(f.iter().any(|x| x.message.contains("split brain") && x.severity == Severity::Critical), "{f:?}");
        // pg2 expected primary but is a standby
        assert!(f.iter().any(|x| x.node == "pg2" && x.check == "role" && x.severity == Severity::Critical));
        o.nodes.insert("pg1".into(), NodeObservation::unanswered("pg1", RunState::Stopped, "refused"));
        let f = check(&i, &o, &ctx(), &CheckInput::default());
        assert!(f.iter().any(|x| x.node == "pg1" && x.severity == Severity::Warning && x.message.contains("rejoin")));
    }
}
