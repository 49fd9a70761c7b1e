//! `pgscale store migrate`: move a cluster's state (inventory, passwords,
//! operation log stays behind) from one store to another, under both
//! stores' locks, without touching its servers. The target must not know
//! the cluster; the source forgets it only after the target has it.

use crate::{Store, StoreError};
use std::time::Duration;

pub async fn migrate(name: &str, from: &dyn Store, to: &dyn Store, wait: Duration) -> Result<(), StoreError> {
    let _a = from.lock(name, &format!("pgscale store migrate -n {name}"), wait).await?;
    let _b = to.lock(name, &format!("pgscale store migrate -n {name}"), wait).await?;
    let inv = from.load(name).await?;
    if to.exists(name).await? {
        return Err(StoreError::Invalid(format!(
            "cluster {name} is already recorded in {}; nothing was moved",
            to.describe()
        )));
    }
    if inv.state.phase == model::Phase::Initializing
        || inv.nodes.iter().any(|n| n.state.joining || n.state.leaving)
        || inv.state.previous_primary.is_some()
    {
        return Err(StoreError::Invalid(format!(
            "an operation on {name} was interrupted: finish it first (`pgscale resume -n {name}`), then migrate"
        )));
    }
    let users: Vec<&str> = vec![inv.postgres.admin_user.as_str(), inv.postgres.replication_user.as_str()];
    let secrets = from.secrets(name, &users, false).await?;
    // The target gets the same passwords the servers already have.
    to.put_secrets(name, secrets.all()).await?;
    to.save(&inv).await?;
    from.forget_record(name).await?;
    Ok(())
}
