//! check: health findings with Nagios severities. When pgscale itself
//! cannot do its job (no such cluster, an unreadable home, an internal
//! error) the caller reports UNKNOWN; a node that cannot be reached is a
//! CRITICAL finding.

use crate::cluster::{observed_hba, Cluster, WAIT};
use crate::error::OpError;
use plan::check::{overall, CheckInput, Finding, Severity};
use std::time::Duration;
use store::Stores;

pub struct Checked {
    pub cluster: String,
    pub nodes: usize,
    pub findings: Vec<Finding>,
    pub status: Severity,
}

/// Disk use of a directory's filesystem, percent (`df -P`).
async fn disk_pct(h: &host::Host, path: &std::path::Path, d: Duration) -> Option<u8> {
    let argv = vec!["df".to_string(), "-P".into(), path.display().to_string()];
    let o = h.run(&host::Run::new(&argv, d)).await.ok()?;
    let line = o.stdout.lines().nth(1)?;
    line.split_whitespace().nth(4)?.trim_end_matches('%').parse().ok()
}

/// A sharded cluster's check covers every group and the sharding itself.
pub async fn run(stores: &Stores, name: &str, node: Option<&str>, timeout: Duration) -> Result<Checked, OpError> {
    let store = stores.for_cluster(name).await?;
    let inv = store.load(name).await?;
    let Some(sh) = inv.sharding.clone().filter(|s| s.is_coordinator()) else {
        return run_one(stores, inv, node, timeout).await;
    };
    let groups = sh.groups.iter().map(|g| async move {
        let c = model::group_cluster(name, g);
        let inv = stores.for_cluster(&c).await?.load(&c).await?;
        run_one(stores, inv, node, timeout).await
    });
    let (mine, theirs, shards) = futures::future::join3(
        run_one(stores, inv, node, timeout),
        futures::future::join_all(groups),
        crate::shard::show::findings(stores, name, timeout),
    )
    .await;
    let mut all = mine?;
    for g in theirs {
        match g {
            Ok(c) => {
                all.nodes += c.nodes;
                all.findings.extend(c.findings);
            }
            Err(e) => all.findings.push(Finding {
                severity: Severity::Unknown,
                node: String::new(),
                check: "group",
                message: e.message,
            }),
        }
    }
    if node.is_none() {
        all.findings.extend(shards);
    }
    all.status = overall(&all.findings);
    Ok(all)
}

async fn run_one(
    stores: &Stores,
    inv: model::Inventory,
    node: Option<&str>,
    timeout: Duration,
) -> Result<Checked, OpError> {
    let name = inv.name.clone();
    let store = stores.for_cluster(&name).await?;
    let cl = Cluster::open(store.clone(), inv.clone(), timeout, true).await?;
    let obs = pg::probe_all(&cl.targets(), timeout).await;
    let mut input = CheckInput { hba: observed_hba(&cl, &obs, timeout).await, ..Default::default() };
    let disks = futures::future::join_all(inv.nodes.iter().map(|n| {
        let h = cl.hosts.get(&n.name).and_then(|h| h.as_ref().ok()).cloned();
        async move {
            match h {
                Some(h) => (n.name.clone(), disk_pct(&h, &n.data_dir, timeout).await),
                None => (n.name.clone(), None),
            }
        }
    }))
    .await;
    for (n, p) in disks {
        if let Some(p) = p {
            input.disk_used_pct.insert(n, p);
        }
    }
    let mut findings = plan::check::check(&inv, &obs, &cl.ctx(WAIT), &input);
    if let Some(n) = node {
        findings.retain(|f| f.node == n);
    }
    let status = overall(&findings);
    Ok(Checked { cluster: inv.name.clone(), nodes: inv.nodes.len(), findings, status })
}
