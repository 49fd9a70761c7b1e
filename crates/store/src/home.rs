//! The home directory as a store: what pgscale always did (inventory file,
//! OS file lock, journal file, .pgpass file), behind the [`Store`] trait.

use crate::{Event, Kind, Lock, Secrets, Store, StoreError};
use journal::{Home, Journal};
use model::Inventory;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct HomeStore {
    home: Home,
    /// Per cluster: a hash of the inventory file as last read or written
    /// (None: absent), so a save never overwrites another process's write.
    seen: Mutex<HashMap<String, Option<u64>>>,
    journals: Mutex<HashMap<String, Journal>>,
    /// Clusters this object forgot: their last log lines must not bring
    /// their directory back.
    forgotten: Mutex<std::collections::HashSet<String>>,
    /// Saves from this process (parallel lanes) go one at a time.
    save_turn: Mutex<()>,
}

impl HomeStore {
    pub fn new(home: Home) -> HomeStore {
        HomeStore {
            home,
            seen: Mutex::new(HashMap::new()),
            journals: Mutex::new(HashMap::new()),
            forgotten: Default::default(),
            save_turn: Mutex::new(()),
        }
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    fn file_hash(&self, name: &str) -> Option<u64> {
        let text = std::fs::read(self.home.cluster_dir(name).join("inventory.yaml")).ok()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        Some(h.finish())
    }

    fn remember(&self, name: &str) {
        let h = self.file_hash(name);
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(name.into(), h);
    }
}

#[async_trait::async_trait]
impl Store for HomeStore {
    fn kind(&self) -> Kind {
        Kind::Home
    }

    fn describe(&self) -> String {
        format!("the home {}", self.home.root().display())
    }

    fn dcs(&self) -> Option<model::Dcs> {
        None
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.home.list()?)
    }

    async fn exists(&self, name: &str) -> Result<bool, StoreError> {
        self.remember(name);
        Ok(self.home.exists(name))
    }

    async fn load(&self, name: &str) -> Result<Inventory, StoreError> {
        self.remember(name);
        self.home.load(name).map_err(|e| match StoreError::from(e) {
            StoreError::Unknown { name, .. } => StoreError::Unknown {
                hint: format!(
                    " (its state may be in etcd: give --etcd URL,... or PGSCALE_ETCD; home {})",
                    self.home.root().display()
                ),
                name,
                store: self.describe(),
            },
            e => e,
        })
    }

    async fn save(&self, inv: &Inventory) -> Result<(), StoreError> {
        let _turn = self.save_turn.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.file_hash(&inv.name);
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(&inv.name).copied();
        if let Some(seen) = seen {
            if seen != now {
                return Err(StoreError::Conflict { cluster: inv.name.clone(), store: self.describe() });
            }
        }
        let mut inv = inv.clone();
        inv.dcs = None;
        self.home.save(&inv)?;
        self.forgotten.lock().unwrap_or_else(|e| e.into_inner()).remove(&inv.name);
        self.remember(&inv.name);
        Ok(())
    }

    async fn forget(&self, name: &str) -> Result<(), StoreError> {
        self.journals.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        self.forgotten.lock().unwrap_or_else(|e| e.into_inner()).insert(name.into());
        self.home.forget(name)?;
        self.remember(name);
        Ok(())
    }

    async fn lock(&self, name: &str, command: &str, wait: Duration) -> Result<Lock, StoreError> {
        let t0 = Instant::now();
        loop {
            match self.home.lock(name, command) {
                Ok(g) => return Ok(Lock::new(g)),
                Err(e @ journal::HomeError::Held { .. }) if t0.elapsed() >= wait => return Err(e.into()),
                Err(journal::HomeError::Held { .. }) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn secrets(&self, name: &str, users: &[&str], persist: bool) -> Result<Secrets, StoreError> {
        Ok(if persist { self.home.secrets(name, users)? } else { self.home.secrets_readonly(name, users)? })
    }

    async fn put_secrets(
        &self,
        name: &str,
        map: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(self.home.cluster_dir(name))
            .map_err(|e| StoreError::Invalid(format!("create {}: {e}", self.home.cluster_dir(name).display())))?;
        let (s, _) = Secrets::from_map(&self.home.secrets_path(name), map.clone(), &[]);
        Ok(s.save()?)
    }

    async fn forget_record(&self, name: &str) -> Result<(), StoreError> {
        let p = self.home.cluster_dir(name).join("inventory.yaml");
        std::fs::remove_file(&p).map_err(|e| StoreError::Invalid(format!("remove {}: {e}", p.display())))?;
        self.remember(name);
        Ok(())
    }

    fn record(&self, name: &str, event: &Event<'_>) {
        if self.forgotten.lock().unwrap_or_else(|e| e.into_inner()).contains(name) {
            return;
        }
        let mut js = self.journals.lock().unwrap_or_else(|e| e.into_inner());
        if !js.contains_key(name) {
            match self.home.journal(name) {
                Ok(j) => {
                    js.insert(name.into(), j);
                }
                Err(e) => return tracing::warn!("journal: {e}"),
            }
        }
        if let Some(Err(e)) = js.get_mut(name).map(|j| j.record(event)) {
            tracing::warn!("journal: {e}");
        }
    }

    async fn log(&self, name: &str, limit: usize) -> Result<Vec<serde_json::Value>, StoreError> {
        let path = self.home.cluster_dir(name).join("journal.jsonl");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<_> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        Ok(lines[lines.len().saturating_sub(limit)..].to_vec())
    }
}
