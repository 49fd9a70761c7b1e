//! Opening a cluster: its inventory, a host per node, its secrets, its
//! binaries and peers; and what a node's host shows (directories, server).

use crate::error::{failed, invalid, problems, OpError};
use crate::resolve;
use exec::{NodeRt, Runtime};
use host::Host;
use model::Inventory;
use plan::Locations;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use store::Store;

/// pg_ctl waits: long enough for crash recovery of a busy server.
pub const WAIT: Duration = Duration::from_secs(60);

/// Parse and statically validate an inventory file.
pub fn read_inventory_file(path: &Path) -> Result<(Inventory, Locations), OpError> {
    let text = std::fs::read_to_string(path).map_err(|e| invalid(format!("read {}: {e}", path.display())))?;
    let file = path.display().to_string();
    let (inv, locs) = plan::parse_inventory(&file, &text).map_err(|p| problems(&p))?;
    let mut ps = plan::validate::user_state_problems(Some(&inv.state), &inv.nodes, &locs);
    if inv.sharding.is_some() {
        ps.push(locs.problem(
            "sharding",
            "`sharding` is written by pgscale; a sharded cluster's spec has `coordinator:` and `data:` instead of `nodes:`",
        ));
    }
    ps.extend(plan::validate::validate_static(&inv, &locs));
    if !ps.is_empty() {
        return Err(problems(&ps));
    }
    Ok((inv, locs))
}

/// A recorded cluster's store and inventory.
pub async fn stored(stores: &store::Stores, name: &str) -> Result<(Arc<dyn Store>, Inventory), OpError> {
    let store = stores.for_cluster(name).await?;
    let inv = store.load(name).await?;
    Ok((store, inv))
}

/// For commands that only read the servers (status, psql): the inventory
/// and passwords, from the store or, when the store cannot be reached,
/// from what this machine saw last (the third value says so and why).
pub async fn for_reading(
    stores: &store::Stores,
    name: &str,
) -> Result<(Arc<dyn Store>, Inventory, journal::Secrets, Option<String>), OpError> {
    let store = stores.for_cluster(name).await?;
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
    Ok((store, inv, secrets, store_error))
}

/// A cluster ready to be acted on.
pub struct Cluster {
    /// Where its state lives.
    pub store: Arc<dyn Store>,
    pub inv: Inventory,
    pub hosts: BTreeMap<String, Result<Host, String>>,
    pub secrets: journal::Secrets,
    pub bin_dir: PathBuf,
    pub os_user: String,
    pub peers: Vec<std::net::IpAddr>,
    /// This machine's addresses towards the nodes that are not node
    /// addresses, recorded in the inventory by every run.
    pub admin_addrs: Vec<std::net::IpAddr>,
}

impl Cluster {
    /// Resolve hosts (SSH connections made here, in parallel, each with the
    /// deadline). `dry_run`: write nothing to the home (secrets stay in memory).
    pub async fn open(
        store: Arc<dyn Store>,
        inv: Inventory,
        deadline: Duration,
        dry_run: bool,
    ) -> Result<Cluster, OpError> {
        Cluster::open_skipping(store, inv, deadline, dry_run, &[]).await
    }

    /// [`Cluster::open`] without trying to reach the `down` nodes (their
    /// hosts are unreachable from the start): a caller that knows a node is
    /// gone (an agent whose peer's lease expired) does not pay a deadline
    /// to learn it again.
    pub async fn open_skipping(
        store: Arc<dyn Store>,
        inv: Inventory,
        deadline: Duration,
        dry_run: bool,
        down: &[String],
    ) -> Result<Cluster, OpError> {
        let users = resolve::secret_users(&inv);
        let mut reach = inv.clone();
        reach.nodes.retain(|n| !down.contains(&n.name));
        let (hosts, peers, secrets) = tokio::join!(
            resolve::hosts(&reach, deadline),
            resolve::peers(&inv, deadline),
            store.secrets(&inv.name, &users, !dry_run)
        );
        let (mut hosts, secrets) = (hosts?, secrets?);
        let (peers, admin_addrs) = peers;
        for n in down {
            hosts.insert(n.clone(), Err(format!("{n} is down (its agent's lease expired): not tried")));
        }
        let os_user = resolve::os_user_name(&inv);
        let primary = inv.primary().ok_or_else(|| invalid("the inventory has no nodes"))?;
        let bin_dir = match (&inv.postgres.bin_dir, hosts.get(&primary.name)) {
            (Some(b), _) => b.clone(),
            (None, Some(Ok(h))) => resolve::bin_dir(&inv, h, deadline).await?,
            (None, Some(Err(e))) => return Err(failed(format!("reach the primary {}: {e}", primary.name))),
            (None, None) => return Err(invalid("the primary has no host")),
        };
        Ok(Cluster { store, inv, hosts, secrets, bin_dir, os_user, peers, admin_addrs })
    }

    pub fn ctx(&self, wait: Duration) -> plan::steps::Ctx {
        plan::steps::Ctx {
            bin_dir: self.bin_dir.clone(),
            os_user: self.os_user.clone(),
            peers: self.peers.clone(),
            wait_secs: wait.as_secs().max(1),
            unreachable: self.hosts.iter().filter(|(_, h)| h.is_err()).map(|(n, _)| n.clone()).collect(),
        }
    }

    pub fn targets(&self) -> Vec<(String, pg::Target)> {
        resolve::targets(&self.inv, &self.secrets)
    }

    /// The host of a node, or why it cannot be reached.
    pub fn host(&self, node: &str) -> Result<Host, OpError> {
        match self.hosts.get(node) {
            Some(Ok(h)) => Ok(h.clone()),
            Some(Err(e)) => Err(failed(format!("reach {node}: {e}"))),
            None => Err(invalid(format!("`{node}` is not a node of cluster {}", self.inv.name))),
        }
    }

    pub fn runtime(&self, mut desired: Inventory, call: Duration, long: Duration) -> Runtime<'_> {
        // Remember where this run came from: later runs elsewhere (an
        // agent on a node) keep it in pg_hba.conf.
        for a in &self.admin_addrs {
            if !desired.state.admin_addrs.contains(a) {
                desired.state.admin_addrs.push(*a);
            }
        }
        let targets: BTreeMap<_, _> = self.targets().into_iter().collect();
        let nodes = self
            .hosts
            .iter()
            .filter_map(|(n, h)| {
                Some((n.clone(), NodeRt { host: h.as_ref().ok()?.clone(), target: targets.get(n)?.clone() }))
            })
            .collect();
        Runtime {
            store: self.store.as_ref(),
            inventory: std::sync::Mutex::new(desired),
            nodes,
            secrets: self.secrets.clone(),
            call_deadline: call,
            long_deadline: long,
        }
    }
}

/// What a node's host shows about its directories and server.
pub struct HostFacts {
    pub dirs: plan::validate::NodeFacts,
    /// PG_VERSION exists.
    pub initialized: bool,
    /// backup_manifest exists: a base copy finished.
    pub copied: bool,
    /// pg_ctl status: a server runs in the data directory.
    pub running: bool,
}

pub async fn host_facts(h: &Host, n: &model::NodeSpec, bin_dir: &Path, d: Duration) -> Result<HostFacts, OpError> {
    let data = h.dir_state(&n.data_dir, d).await?;
    let sock = h.dir_state(&n.socket_dir(), d).await?;
    let initialized = h.file_exists(&n.data_dir.join("PG_VERSION"), d).await?;
    let copied = h.file_exists(&n.data_dir.join("backup_manifest"), d).await?;
    let running =
        initialized && h.run(&host::Run::new(&plan::argv::pg_ctl_status(bin_dir, &n.data_dir), d)).await?.ok();
    let port_in_use = pg::tcp_listening(&n.host, n.port, Duration::from_secs(1).min(d)).await;
    Ok(HostFacts {
        dirs: plan::validate::NodeFacts { data_dir: data, socket_dir: sock, port_in_use },
        initialized,
        copied,
        running,
    })
}

/// The facts of several nodes, gathered in parallel; a node whose host
/// cannot be reached is an error naming it.
pub async fn host_facts_all(
    cl: &Cluster,
    nodes: &[&model::NodeSpec],
    d: Duration,
) -> Result<BTreeMap<String, HostFacts>, OpError> {
    let futs = nodes.iter().map(|n| async move {
        let h =
            cl.hosts[&n.name].clone().map_err(|e| invalid(format!("{}: its host cannot be reached: {e}", n.name)))?;
        Ok::<_, OpError>((n.name.clone(), host_facts(&h, n, &cl.bin_dir, d).await?))
    });
    futures::future::join_all(futs).await.into_iter().collect()
}

/// pg_hba.conf of every running node (for planners that keep it right).
pub async fn observed_hba(cl: &Cluster, obs: &model::Observed, d: Duration) -> BTreeMap<String, String> {
    let futs = cl
        .targets()
        .into_iter()
        .filter(|(n, _)| obs.get(n).is_some_and(|o| o.is_running()))
        .map(|(n, t)| async move { (n, pg::config_obs(&t, &[], d).await.ok().and_then(|o| o.hba)) });
    futures::future::join_all(futs).await.into_iter().filter_map(|(n, h)| Some((n, h?))).collect()
}
