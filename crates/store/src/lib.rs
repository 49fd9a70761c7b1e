//! Where a cluster's state lives: its inventory (with the record of an
//! interrupted operation in its `state`), its lock, its operation log and
//! its passwords. One trait, [`Store`], two implementations: the home
//! directory ([`HomeStore`], the default: one machine, no server) and etcd v3
//! ([`EtcdStore`]: any machine with the endpoints sees the same clusters).
//! Everything above this crate (the `ops` layer, the CLI, the agent) talks
//! to the trait only; [`Stores`] picks the implementation.

mod error;
pub mod etcd;
mod home;
mod migrate;
mod opener;

pub use error::StoreError;
pub use etcd::EtcdStore;
pub use home::HomeStore;
pub use journal::{Event, Holder, Secrets};
pub use migrate::migrate;
pub use opener::{Stores, StoresConfig};

use model::Inventory;

/// Which kind of store holds a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Home,
    Etcd,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Home => "home",
            Kind::Etcd => "etcd",
        })
    }
}

/// Held while a mutating operation runs; dropping it releases the lock.
pub struct Lock {
    _inner: Box<dyn Send + Sync>,
}

impl Lock {
    pub(crate) fn new(inner: impl Send + Sync + 'static) -> Lock {
        Lock { _inner: Box::new(inner) }
    }
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lock")
    }
}

/// A cluster's state. Every write of the inventory compares what this
/// store object last read (or that nothing exists, if it read nothing): a
/// write that would overwrite another admin's is refused with
/// [`StoreError::Conflict`].
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    fn kind(&self) -> Kind;
    /// For messages: `home /root/.pgscale`, `etcd http://…,… prefix /pgscale`.
    fn describe(&self) -> String;
    /// The dcs section an inventory kept here carries.
    fn dcs(&self) -> Option<model::Dcs>;
    /// Clusters recorded here, sorted.
    async fn list(&self) -> Result<Vec<String>, StoreError>;
    async fn exists(&self, name: &str) -> Result<bool, StoreError>;
    /// The recorded inventory; [`StoreError::Unknown`] when there is none.
    async fn load(&self, name: &str) -> Result<Inventory, StoreError>;
    /// Write the inventory if nobody else wrote it since this object read it.
    async fn save(&self, inv: &Inventory) -> Result<(), StoreError>;
    /// Remove everything recorded about the cluster.
    async fn forget(&self, name: &str) -> Result<(), StoreError>;
    /// Take the cluster's lock for `command`; a holder is named in
    /// [`StoreError::Held`]. With `wait`, retry until it is free or `wait` passes.
    async fn lock(&self, name: &str, command: &str, wait: std::time::Duration) -> Result<Lock, StoreError>;
    /// Why the lock this object holds on `name` may no longer be ours
    /// (etcd: the lease could not be renewed in time). Checked before each step.
    fn lock_lost(&self, _name: &str) -> Option<String> {
        None
    }
    /// The cluster's passwords, in a local 0600 file for PGPASSFILE; missing
    /// ones for `users` are generated and (with `persist`) recorded.
    async fn secrets(&self, name: &str, users: &[&str], persist: bool) -> Result<Secrets, StoreError>;
    /// Record these passwords (those the servers already have), replacing any.
    async fn put_secrets(&self, name: &str, map: &std::collections::BTreeMap<String, String>)
        -> Result<(), StoreError>;
    /// Automatic failover's setting; None when never set (always for the home).
    async fn ha(&self, _name: &str) -> Result<Option<model::HaSetting>, StoreError> {
        Ok(None)
    }
    /// Set automatic failover's mode. Only etcd can: the agents meet there.
    async fn set_ha(&self, name: &str, _s: &model::HaSetting) -> Result<(), StoreError> {
        Err(StoreError::Invalid(format!(
            "automatic failover needs the cluster's state in etcd, where its agents meet; {name} is kept in {}: move it with `pgscale store migrate -n {name} --to etcd --etcd URL,...`",
            self.describe()
        )))
    }
    /// The agents' keys (`ha/...` under the cluster: leader, members/<node>,
    /// sync, status, history/...), by their path below `ha/`, values as stored.
    async fn ha_keys(&self, _name: &str) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        Ok(Default::default())
    }
    /// Forget the cluster's record here after it moved to another store;
    /// this machine's passwords file stays (the other store rewrites it).
    async fn forget_record(&self, name: &str) -> Result<(), StoreError>;
    /// Append to the operation log (best effort: losing the log never
    /// stops an operation; the databases and the inventory are the truth).
    fn record(&self, name: &str, event: &Event<'_>);
    /// The operation log, oldest first, at most `limit` lines.
    async fn log(&self, name: &str, limit: usize) -> Result<Vec<serde_json::Value>, StoreError>;
    /// The last inventory this machine saw, when the store cannot be read
    /// (for `status` with etcd down). None for the home store.
    fn cached(&self, _name: &str) -> Option<(Inventory, String)> {
        None
    }
    /// Finish background work (log writes, lock releases) before exit.
    async fn close(&self) {}
}
