//! etcd v3 as a store. Keys, under the prefix (default `/pgscale`):
//!
//! - `clusters/<name>/inventory`: the inventory as JSON; every write is a
//!   transaction comparing the mod revision this object read (and, while
//!   it holds the lock, that the lock key is still on its lease);
//! - `clusters/<name>/lock`: the holder (host, pid, command, start) on a
//!   lease of a few seconds that the holder keeps alive;
//! - `clusters/<name>/secrets`: the passwords, sealed (see `crypt`);
//! - `clusters/<name>/log/<time>-<pid>`: the operation log, one event per key.
//!
//! Every call has the store's deadline; a failed call says which endpoints
//! failed. This machine keeps in its home, per cluster, the last inventory
//! seen (for `status` while etcd is down), where the cluster lives (so
//! `-n NAME` finds it without flags) and the passwords file for PGPASSFILE.

mod crypt;
mod health;
mod lock;
pub mod meeting;

use crate::{Event, Kind, Lock, Secrets, Store, StoreError};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, SortOrder, SortTarget, Txn, TxnOp};
use model::{Dcs, EtcdSpec, Inventory};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

pub use crypt::Key;
pub use health::diagnose;
pub use meeting::{Kv, Meeting};

pub struct EtcdStore {
    spec: EtcdSpec,
    client: Client,
    deadline: Duration,
    lock_ttl: Duration,
    key_file: PathBuf,
    /// This machine's home: caches, pointers, the passwords file.
    local: journal::Home,
    /// Per cluster: the inventory's mod revision as last read or written (0: absent).
    seen: Mutex<HashMap<String, i64>>,
    /// Saves from this process (parallel lanes of one plan) go one at a
    /// time: each compares the revision the previous one wrote.
    save_turn: tokio::sync::Mutex<()>,
    held: lock::HeldMap,
    pending: Arc<Mutex<Vec<JoinHandle<()>>>>,
    log_tx: Mutex<Option<tokio::sync::mpsc::UnboundedSender<(String, String)>>>,
    log_task: Mutex<Option<JoinHandle<()>>>,
}

/// What a machine remembers about a cluster kept in etcd.
pub const POINTER: &str = "store.json";
const CACHE: &str = "inventory.cache.json";

impl EtcdStore {
    /// Connect (lazily: nothing fails here when etcd is down; the first
    /// call does, within the deadline, naming the endpoints).
    pub async fn connect(
        spec: EtcdSpec,
        local: journal::Home,
        key_file: PathBuf,
        deadline: Duration,
        lock_ttl: Duration,
    ) -> Result<EtcdStore, StoreError> {
        let problems = spec.problems();
        if !problems.is_empty() {
            return Err(StoreError::Invalid(problems.join("; ")));
        }
        let opts = ConnectOptions::new()
            .with_connect_timeout(deadline)
            .with_timeout(deadline)
            .with_keep_alive(Duration::from_secs(1), deadline)
            .with_require_leader(true);
        let urls = spec.urls();
        let client = match tokio::time::timeout(deadline, Client::connect(urls.clone(), Some(opts))).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(unavailable(&spec, &health::short(&e.to_string()), deadline).await),
            Err(_) => return Err(unavailable(&spec, "no answer within the deadline", deadline).await),
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let log_task = tokio::spawn(log_writer(client.clone(), rx, deadline));
        Ok(EtcdStore {
            spec,
            client,
            deadline,
            lock_ttl,
            key_file,
            local,
            seen: Mutex::new(HashMap::new()),
            save_turn: tokio::sync::Mutex::new(()),
            held: Default::default(),
            pending: Default::default(),
            log_tx: Mutex::new(Some(tx)),
            log_task: Mutex::new(Some(log_task)),
        })
    }

    pub fn spec(&self) -> &EtcdSpec {
        &self.spec
    }

    fn key(&self, name: &str, leaf: &str) -> String {
        format!("{}/clusters/{name}/{leaf}", self.spec.prefix)
    }

    /// Run one etcd call within the deadline; failures name the endpoints.
    /// A request that never left (no TCP connection to the endpoint the
    /// client picked: a dead member) is retried until the deadline, so one
    /// dead member costs a retry, not a failure.
    pub(crate) async fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let until = tokio::time::Instant::now() + self.deadline;
        let mut last = "no answer within the deadline".to_string();
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, f(self.client.clone())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if health::retryable(&e.to_string()) => {
                    last = health::short(&e.to_string());
                    tokio::time::sleep(Duration::from_millis(50).min(left)).await;
                }
                Ok(Err(e)) => return Err(unavailable(&self.spec, &health::short(&e.to_string()), self.deadline).await),
                Err(_) => {
                    last = "no answer within the deadline".into();
                    break;
                }
            }
        }
        Err(unavailable(&self.spec, &last, self.deadline).await)
    }

    fn remember(&self, name: &str, rev: i64) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(name.into(), rev);
    }

    /// Best effort: this machine's memory of the cluster.
    fn write_local(&self, inv: &Inventory) {
        let dir = self.local.cluster_dir(&inv.name);
        let pointer = serde_json::json!({ "etcd": self.spec });
        let r = std::fs::DirBuilder::new()
            .recursive(true)
            .create(&dir)
            .and_then(|_| std::fs::write(dir.join(POINTER), pointer.to_string()))
            .and_then(|_| std::fs::write(dir.join(CACHE), serde_json::to_string(inv).unwrap_or_default()));
        if let Err(e) = r {
            tracing::warn!("cache of {} in {}: {e}", inv.name, dir.display());
        }
    }

    fn passwords_path(&self, name: &str) -> PathBuf {
        self.local.secrets_path(name)
    }

    /// The sealed passwords and the key that opens them.
    async fn read_secrets(&self, name: &str) -> Result<Option<crypt::Sealed>, StoreError> {
        self.get_json(&self.key(name, "secrets"))
            .await?
            .map_err(|e| StoreError::Key(format!("the sealed passwords of {name} in etcd are unreadable: {e}")))
    }

    /// One key's value as JSON: Ok(Ok(None)) when absent; the inner error
    /// when it does not parse (the caller says what it was).
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        k: &str,
    ) -> Result<Result<Option<T>, serde_json::Error>, StoreError> {
        let r = self
            .call(|mut c| {
                let k = k.to_string();
                async move { c.get(k, None).await }
            })
            .await?;
        Ok(match r.kvs().first() {
            None => Ok(None),
            Some(kv) => serde_json::from_slice(kv.value()).map(Some),
        })
    }

    /// Write the passwords of `name` (sealed) to etcd.
    async fn seal_secrets(&self, name: &str, map: &BTreeMap<String, String>) -> Result<(), StoreError> {
        let key = Key::load(&self.key_file, true)?.ok_or_else(|| StoreError::Key("no key".into()))?;
        let sealed = key.seal(name, map)?;
        let v = serde_json::to_string(&sealed).map_err(|e| StoreError::Key(e.to_string()))?;
        let k = self.key(name, "secrets");
        self.call(|mut c| {
            let (k, v) = (k.clone(), v.clone());
            async move { c.put(k, v, None).await }
        })
        .await?;
        Ok(())
    }
}

async fn unavailable(spec: &EtcdSpec, what: &str, deadline: Duration) -> StoreError {
    let per = health::diagnose(&spec.urls(), deadline.min(Duration::from_secs(1))).await;
    StoreError::Unavailable { store: format!("etcd ({})", spec.endpoints.join(",")), detail: format!("{what} [{per}]") }
}

/// Writes the operation log in order, off the operation's path.
async fn log_writer(client: Client, mut rx: tokio::sync::mpsc::UnboundedReceiver<(String, String)>, d: Duration) {
    // What queued up while the last write was in flight goes in one
    // transaction: one round trip (and one fsync per member) for many lines.
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < LOG_BATCH {
            match rx.try_recv() {
                Ok(x) => batch.push(x),
                Err(_) => break,
            }
        }
        let txn = Txn::new().and_then(batch.into_iter().map(|(k, v)| TxnOp::put(k, v, None)).collect::<Vec<_>>());
        let until = tokio::time::Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, client.clone().txn(txn.clone())).await {
                Ok(Ok(_)) => break,
                // A dead member the channel picked: send again within the deadline.
                Ok(Err(e)) if health::retryable(&e.to_string()) && !left.is_zero() => {
                    tokio::time::sleep(Duration::from_millis(50).min(left)).await;
                    if tokio::time::Instant::now() >= until {
                        tracing::warn!("operation log in etcd: {}", health::short(&e.to_string()));
                        break;
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!("operation log in etcd: {}", health::short(&e.to_string()));
                    break;
                }
                Err(_) => {
                    tracing::warn!("operation log in etcd: no answer within {d:?}");
                    break;
                }
            }
        }
    }
}

/// Log lines per transaction (etcd's default limit is 128 operations).
const LOG_BATCH: usize = 100;

#[async_trait::async_trait]
impl Store for EtcdStore {
    fn kind(&self) -> Kind {
        Kind::Etcd
    }

    fn describe(&self) -> String {
        format!("etcd ({}, prefix {})", self.spec.endpoints.join(","), self.spec.prefix)
    }

    fn dcs(&self) -> Option<Dcs> {
        Some(Dcs { etcd: Some(self.spec.clone()) })
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        let base = format!("{}/clusters/", self.spec.prefix);
        let r = self
            .call(|mut c| {
                let k = base.clone();
                async move { c.get(k, Some(GetOptions::new().with_prefix().with_keys_only())).await }
            })
            .await?;
        let mut v: Vec<String> = r
            .kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok()?.strip_prefix(&base)?.strip_suffix("/inventory").map(String::from))
            .filter(|n| !n.contains('/'))
            .collect();
        v.sort();
        Ok(v)
    }

    async fn exists(&self, name: &str) -> Result<bool, StoreError> {
        let r = self
            .call(|mut c| {
                let k = self.key(name, "inventory");
                async move { c.get(k, Some(GetOptions::new().with_keys_only())).await }
            })
            .await?;
        let rev = r.kvs().first().map(|kv| kv.mod_revision()).unwrap_or(0);
        self.remember(name, rev);
        Ok(rev != 0)
    }

    async fn load(&self, name: &str) -> Result<Inventory, StoreError> {
        let k = self.key(name, "inventory");
        let r = self
            .call(|mut c| {
                let k = k.clone();
                async move { c.get(k, None).await }
            })
            .await?;
        let Some(kv) = r.kvs().first() else {
            self.remember(name, 0);
            return Err(StoreError::Unknown { name: name.into(), store: self.describe(), hint: String::new() });
        };
        self.remember(name, kv.mod_revision());
        let inv: Inventory = serde_json::from_slice(kv.value())
            .map_err(|e| StoreError::Invalid(format!("the inventory of {name} in {}: {e}", self.describe())))?;
        self.write_local(&inv);
        Ok(inv)
    }

    async fn save(&self, inv: &Inventory) -> Result<(), StoreError> {
        let _turn = self.save_turn.lock().await;
        let mut inv = inv.clone();
        inv.dcs = self.dcs();
        let key = self.key(&inv.name, "inventory");
        let lock_key = self.key(&inv.name, "lock");
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(&inv.name).copied().unwrap_or(0);
        let lease = self.held.lease(&inv.name);
        let mut when = vec![Compare::mod_revision(key.clone(), CompareOp::Equal, seen)];
        if let Some(l) = lease {
            when.push(Compare::lease(lock_key.clone(), CompareOp::Equal, l));
        }
        let value = serde_json::to_string(&inv).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let txn = Txn::new()
            .when(when)
            .and_then([TxnOp::put(key.clone(), value.clone(), None)])
            .or_else([TxnOp::get(lock_key.clone(), None), TxnOp::get(key.clone(), None)]);
        let r = self
            .call(|mut c| {
                let t = txn.clone();
                async move { c.txn(t).await }
            })
            .await?;
        let ours_already = r.op_responses().iter().any(|o| match o {
            etcd_client::TxnOpResponse::Get(g) => {
                g.kvs().first().is_some_and(|kv| kv.key() == key.as_bytes() && kv.value() == value.as_bytes())
            }
            _ => false,
        });
        // A retried write whose first attempt committed: the value is ours.
        if !r.succeeded() && !ours_already {
            let lock_is_ours = r.op_responses().iter().any(|o| match o {
                etcd_client::TxnOpResponse::Get(g) => {
                    g.kvs().first().is_some_and(|kv| kv.key() == lock_key.as_bytes() && Some(kv.lease()) == lease)
                }
                _ => false,
            });
            if lease.is_some() && !lock_is_ours {
                return Err(StoreError::LockLost {
                    cluster: inv.name.clone(),
                    store: self.describe(),
                    why: "its lease expired and the lock is gone or another command's".into(),
                });
            }
            return Err(StoreError::Conflict { cluster: inv.name.clone(), store: self.describe() });
        }
        let rev = if r.succeeded() {
            r.header().map(|h| h.revision()).unwrap_or(0)
        } else {
            r.op_responses()
                .iter()
                .find_map(|o| match o {
                    etcd_client::TxnOpResponse::Get(g) => {
                        g.kvs().first().filter(|kv| kv.key() == key.as_bytes()).map(|kv| kv.mod_revision())
                    }
                    _ => None,
                })
                .unwrap_or(0)
        };
        self.remember(&inv.name, rev);
        self.write_local(&inv);
        Ok(())
    }

    async fn forget(&self, name: &str) -> Result<(), StoreError> {
        let txn = Txn::new().and_then([
            TxnOp::delete(self.key(name, "inventory"), None),
            TxnOp::delete(self.key(name, "secrets"), None),
            TxnOp::delete(self.key(name, "log/"), Some(etcd_client::DeleteOptions::new().with_prefix())),
        ]);
        self.call(|mut c| {
            let t = txn.clone();
            async move { c.txn(t).await }
        })
        .await?;
        self.remember(name, 0);
        let _ = std::fs::remove_dir_all(self.local.cluster_dir(name));
        Ok(())
    }

    async fn lock(&self, name: &str, command: &str, wait: Duration) -> Result<Lock, StoreError> {
        lock::acquire(self, name, command, wait).await
    }

    fn lock_lost(&self, name: &str) -> Option<String> {
        self.held.lost(name)
    }

    async fn secrets(&self, name: &str, users: &[&str], persist: bool) -> Result<Secrets, StoreError> {
        let path = self.passwords_path(name);
        let map = match self.read_secrets(name).await? {
            None => BTreeMap::new(),
            Some(sealed) => {
                let key = Key::load(&self.key_file, false)?.ok_or_else(|| {
                    StoreError::Key(format!(
                        "the passwords of cluster {name} in etcd are sealed with key {}, and this machine has no key \
                         file at {}: copy it (mode 0600) from the machine that created the cluster, or point \
                         --etcd-key-file / PGSCALE_ETCD_KEY_FILE at it. The key is never stored in etcd.",
                        sealed.key_id,
                        self.key_file.display()
                    ))
                })?;
                key.open(name, &sealed, &self.key_file)?
            }
        };
        let (secrets, changed) = Secrets::from_map(&path, map, users);
        if changed && !persist {
            return Ok(secrets);
        }
        if changed {
            self.seal_secrets(name, secrets.all()).await?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(self.local.cluster_dir(name))
            .map_err(|e| StoreError::Key(format!("create {}: {e}", self.local.cluster_dir(name).display())))?;
        secrets.save()?;
        Ok(secrets)
    }

    async fn put_secrets(&self, name: &str, map: &BTreeMap<String, String>) -> Result<(), StoreError> {
        self.seal_secrets(name, map).await
    }

    async fn ha(&self, name: &str) -> Result<Option<model::HaSetting>, StoreError> {
        let k = self.key(name, "ha/mode");
        self.get_json(&k).await?.map_err(|e| StoreError::Invalid(format!("{k} in etcd is unreadable: {e}")))
    }

    async fn set_ha(&self, name: &str, s: &model::HaSetting) -> Result<(), StoreError> {
        let k = self.key(name, "ha/mode");
        let v = serde_json::to_string(s).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.call(|mut c| {
            let (k, v) = (k.clone(), v.clone());
            async move { c.put(k, v, None).await }
        })
        .await?;
        Ok(())
    }

    async fn ha_keys(&self, name: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let base = self.key(name, "ha/");
        let r = self
            .call(|mut c| {
                let k = base.clone();
                async move { c.get(k, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        Ok(r.kvs()
            .iter()
            .filter_map(|kv| {
                let k = kv.key_str().ok()?.strip_prefix(&base)?.to_string();
                Some((k, String::from_utf8_lossy(kv.value()).into_owned()))
            })
            .collect())
    }

    async fn forget_record(&self, name: &str) -> Result<(), StoreError> {
        let txn = Txn::new().and_then([
            TxnOp::delete(self.key(name, "inventory"), None),
            TxnOp::delete(self.key(name, "secrets"), None),
        ]);
        self.call(|mut c| {
            let t = txn.clone();
            async move { c.txn(t).await }
        })
        .await?;
        self.remember(name, 0);
        forget_pointer(&self.local, name);
        Ok(())
    }

    fn record(&self, name: &str, event: &Event<'_>) {
        let now = std::time::SystemTime::now();
        let nanos = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let line = serde_json::json!({
            "ts": humantime::format_rfc3339_millis(now).to_string(),
            "pid": std::process::id(),
            "event": event,
        });
        let key = self.key(name, &format!("log/{nanos:020}-{}", std::process::id()));
        if let Some(tx) = self.log_tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send((key, line.to_string()));
        }
    }

    async fn log(&self, name: &str, limit: usize) -> Result<Vec<serde_json::Value>, StoreError> {
        let opts =
            GetOptions::new().with_prefix().with_sort(SortTarget::Key, SortOrder::Descend).with_limit(limit as i64);
        let k = self.key(name, "log/");
        let r = self
            .call(|mut c| {
                let (k, o) = (k.clone(), opts.clone());
                async move { c.get(k, Some(o)).await }
            })
            .await?;
        let mut v: Vec<serde_json::Value> =
            r.kvs().iter().filter_map(|kv| serde_json::from_slice(kv.value()).ok()).collect();
        v.reverse();
        // The event's fields at the top level, as in the home's journal.
        Ok(v.into_iter()
            .map(|mut l| {
                if let Some(serde_json::Value::Object(ev)) = l.get_mut("event").map(serde_json::Value::take) {
                    if let serde_json::Value::Object(o) = &mut l {
                        o.remove("event");
                        o.extend(ev);
                    }
                }
                l
            })
            .collect())
    }

    fn cached(&self, name: &str) -> Option<(Inventory, String)> {
        let p = self.local.cluster_dir(name).join(CACHE);
        let inv = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
        let when = std::fs::metadata(&p).and_then(|m| m.modified()).ok()?;
        Some((inv, humantime::format_rfc3339_seconds(when).to_string()))
    }

    /// Flush the operation log and wait for lock releases.
    async fn close(&self) {
        let tx = self.log_tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(tx);
        let task = self.log_task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut t) = task {
            if tokio::time::timeout(self.deadline, &mut t).await.is_err() {
                tracing::warn!("operation log in etcd: records not written within {:?} were dropped", self.deadline);
                t.abort();
            }
        }
        // Still usable after a flush: a fresh writer for later records.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *self.log_task.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(tokio::spawn(log_writer(self.client.clone(), rx, self.deadline)));
        *self.log_tx.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        let pending: Vec<_> = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = tokio::time::timeout(self.deadline, futures::future::join_all(pending)).await;
    }
}

/// Where a cluster kept in etcd is, as this machine remembers it.
pub fn pointer(home: &journal::Home, name: &str) -> Option<EtcdSpec> {
    let text = std::fs::read(home.cluster_dir(name).join(POINTER)).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    serde_json::from_value(v.get("etcd")?.clone()).ok()
}

/// Forget this machine's memory of a cluster kept in etcd (after a migration home).
pub fn forget_pointer(home: &journal::Home, name: &str) {
    let dir = home.cluster_dir(name);
    let _ = std::fs::remove_file(dir.join(POINTER));
    let _ = std::fs::remove_file(dir.join(CACHE));
}

pub fn key_path_default(home: &Path) -> PathBuf {
    home.join("etcd.key")
}
