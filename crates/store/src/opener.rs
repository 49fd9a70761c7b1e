//! Which store holds a cluster: `--etcd` (or PGSCALE_ETCD) first, then the
//! spec's `dcs`, then what this machine remembers (a cluster created or
//! seen in etcd from here), then the home directory.

use crate::etcd::{self, EtcdStore};
use crate::{HomeStore, Store, StoreError};
use model::{Dcs, EtcdSpec};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct StoresConfig {
    /// The home directory (always local: caches, the key, the passwords file).
    pub home: PathBuf,
    /// etcd given on the command line or in the environment.
    pub etcd: Option<EtcdSpec>,
    /// The key sealing passwords in etcd (default `<home>/etcd.key`).
    pub key_file: Option<PathBuf>,
    /// Deadline of one store call.
    pub deadline: Duration,
    /// TTL of the etcd lock's lease.
    pub lock_ttl: Duration,
    /// How long a command waits for a busy cluster's lock before refusing.
    pub lock_wait: Duration,
}

impl StoresConfig {
    pub fn new(home: impl Into<PathBuf>) -> StoresConfig {
        StoresConfig {
            home: home.into(),
            etcd: None,
            key_file: None,
            deadline: Duration::from_secs(5),
            lock_ttl: Duration::from_secs(5),
            lock_wait: Duration::ZERO,
        }
    }
}

pub struct Stores {
    cfg: StoresConfig,
    home: Arc<HomeStore>,
    etcd: tokio::sync::Mutex<BTreeMap<String, Arc<EtcdStore>>>,
}

impl Stores {
    pub fn new(cfg: StoresConfig) -> Stores {
        let home = Arc::new(HomeStore::new(journal::Home::new(cfg.home.clone())));
        Stores { cfg, home, etcd: Default::default() }
    }

    pub fn config(&self) -> &StoresConfig {
        &self.cfg
    }

    pub fn local_home(&self) -> &journal::Home {
        self.home.home()
    }

    pub fn lock_wait(&self) -> Duration {
        self.cfg.lock_wait
    }

    pub fn home(&self) -> Arc<dyn Store> {
        self.home.clone()
    }

    pub async fn etcd(&self, spec: &EtcdSpec) -> Result<Arc<dyn Store>, StoreError> {
        Ok(self.etcd_store(spec).await?)
    }

    pub async fn etcd_store(&self, spec: &EtcdSpec) -> Result<Arc<EtcdStore>, StoreError> {
        let id = format!("{}|{}", spec.urls().join(","), spec.prefix);
        let mut m = self.etcd.lock().await;
        if let Some(s) = m.get(&id) {
            return Ok(s.clone());
        }
        let key = self.cfg.key_file.clone().unwrap_or_else(|| etcd::key_path_default(&self.cfg.home));
        let s = Arc::new(
            EtcdStore::connect(
                spec.clone(),
                journal::Home::new(self.cfg.home.clone()),
                key,
                self.cfg.deadline,
                self.cfg.lock_ttl,
            )
            .await?,
        );
        m.insert(id, s.clone());
        Ok(s)
    }

    /// The store of an existing cluster.
    pub async fn for_cluster(&self, name: &str) -> Result<Arc<dyn Store>, StoreError> {
        if let Some(e) = &self.cfg.etcd {
            return self.etcd(e).await;
        }
        match etcd::pointer(self.home.home(), name) {
            Some(e) => self.etcd(&e).await,
            None => Ok(self.home()),
        }
    }

    /// The store a spec asks for (`init`, `adopt`).
    pub async fn for_spec(&self, name: &str, dcs: Option<&Dcs>) -> Result<Arc<dyn Store>, StoreError> {
        if let Some(e) = self.cfg.etcd.as_ref().or(dcs.and_then(|d| d.etcd.as_ref())) {
            return self.etcd(e).await;
        }
        self.for_cluster(name).await
    }

    /// Every cluster this machine can name, with its store: with `--etcd`,
    /// those in etcd; otherwise those in the home and those this machine
    /// remembers in etcd.
    pub async fn listing(&self) -> Result<Vec<(String, Arc<dyn Store>)>, StoreError> {
        if let Some(e) = &self.cfg.etcd {
            let s = self.etcd(e).await?;
            return Ok(s.list().await?.into_iter().map(|n| (n, s.clone())).collect());
        }
        let mut out: Vec<(String, Arc<dyn Store>)> =
            self.home.list().await?.into_iter().map(|n| (n, self.home())).collect();
        let root = self.home.home().root();
        let mut remembered: Vec<String> = std::fs::read_dir(root)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().join(etcd::POINTER).is_file())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        remembered.sort();
        for n in remembered {
            if let Some(spec) = etcd::pointer(self.home.home(), &n) {
                out.push((n, self.etcd(&spec).await?));
            }
        }
        Ok(out)
    }

    /// Finish background work of every store opened (log writes, lock releases).
    pub async fn close(&self) {
        let m = self.etcd.lock().await;
        futures::future::join_all(m.values().map(|s| s.close())).await;
    }
}
