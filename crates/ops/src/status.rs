//! status: probe every node in parallel (each with a deadline) and report.

use crate::error::OpError;
use crate::resolve;
use plan::status::StatusReport;
use std::time::Duration;
use store::Stores;

pub async fn run(stores: &Stores, name: &str, timeout: Duration) -> Result<StatusReport, OpError> {
    let store = stores.for_cluster(name).await?;
    // With etcd down, the servers still answer: probe those of the
    // inventory this machine saw last, and say that the store is unreachable.
    let (inv, store_error) = match store.load(name).await {
        Ok(inv) => (inv, None),
        Err(e @ store::StoreError::Unavailable { .. }) => match store.cached(name) {
            Some((inv, when)) => (inv, Some(format!("{e} (showing the nodes recorded as of {when})"))),
            None => return Err(e.into()),
        },
        Err(e) => return Err(e.into()),
    };
    let users = resolve::secret_users(&inv);
    let secrets = match &store_error {
        None => store.secrets(&inv.name, &users, true).await?,
        // The passwords file this machine already has.
        Some(_) => stores.home().secrets(&inv.name, &users, false).await?,
    };
    // Status talks only SQL, from here; it needs no host access, so a dead
    // host cannot slow it beyond the probe deadline.
    let targets = resolve::targets(&inv, &secrets);
    let obs = pg::probe_all(&targets, timeout).await;
    let mut r = plan::status::report(&inv, &obs);
    r.store = store.describe();
    r.store_error = store_error;
    Ok(r)
}
