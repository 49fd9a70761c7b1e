//! status: probe every node in parallel (each with a deadline) and report.

use crate::error::OpError;
use crate::resolve;
use plan::status::StatusReport;
use std::time::Duration;
use store::Stores;

pub async fn run(stores: &Stores, name: &str, timeout: Duration) -> Result<StatusReport, OpError> {
    let (store, inv, secrets, store_error) = crate::cluster::for_reading(stores, name).await?;
    // Status talks only SQL, from here; it needs no host access, so a dead
    // host cannot slow it beyond the probe deadline.
    let targets = resolve::targets(&inv, &secrets);
    let obs = pg::probe_all(&targets, timeout).await;
    let mut r = plan::status::report(&inv, &obs);
    r.store = store.describe();
    if store_error.is_none() && store.kind() == store::Kind::Etcd {
        r.automatic_failover = Some(store.ha(name).await.ok().flatten().map(|s| s.mode).unwrap_or_default());
    }
    r.store_error = store_error;
    Ok(r)
}

/// A sharded cluster's status: the coordinator's report, then each data
/// group's (probed at the same time). A plain cluster: its one report.
pub async fn run_all(stores: &Stores, name: &str, timeout: Duration) -> Result<Vec<StatusReport>, OpError> {
    let first = run(stores, name, timeout).await?;
    let store = stores.for_cluster(name).await?;
    let groups = match store.load(name).await.ok().and_then(|i| i.sharding).filter(|s| s.is_coordinator()) {
        Some(s) => s.groups,
        None => return Ok(vec![first]),
    };
    let rest = futures::future::join_all(
        groups.iter().map(|g| async move { run(stores, &model::group_cluster(name, g), timeout).await }),
    )
    .await;
    let mut out = vec![first];
    for r in rest {
        out.push(r?);
    }
    Ok(out)
}
