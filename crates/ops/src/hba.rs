//! hba: a node's pg_hba.conf as the server has it, and whether it matches
//! what the inventory renders.

use crate::cluster::Cluster;
use crate::error::{failed, invalid, OpError};
use std::time::Duration;
use store::Stores;

pub struct Hba {
    pub cluster: String,
    pub node: String,
    pub have: String,
    pub matches: bool,
}

pub async fn read(stores: &Stores, name: &str, node: Option<&str>, timeout: Duration) -> Result<Hba, OpError> {
    let store = stores.for_cluster(name).await?;
    let inv = store.load(name).await?;
    let node = match node {
        Some(n) => inv.node(n).ok_or_else(|| invalid(format!("node `{n}` is not in cluster {}", inv.name)))?.clone(),
        None => inv.primary().ok_or_else(|| invalid("the cluster has no nodes"))?.clone(),
    };
    let cl = Cluster::open(store.clone(), inv.clone(), timeout, true).await?;
    let want = plan::hba::render(&inv, &cl.os_user, &cl.peers);
    let target =
        cl.targets().into_iter().find(|(n, _)| *n == node.name).map(|(_, t)| t).expect("every node has a target");
    let obs = pg::config_obs(&target, &[], timeout)
        .await
        .map_err(|e| failed(format!("read pg_hba.conf of {}: {e}", node.name)))?;
    let have = obs.hba.unwrap_or_default();
    Ok(Hba { cluster: inv.name, node: node.name, matches: have == want, have })
}
