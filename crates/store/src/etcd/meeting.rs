//! Where a cluster's agents meet: the keys under
//! `<prefix>/clusters/<name>/ha/`, with short deadlines (an agent's tick is
//! a fraction of its lease).
//!
//! - `mode`: `pgscale ha`'s setting;
//! - `leader`: the leader's node name, on its agent's lease; created only
//!   if absent, so its create revision is the leader's term;
//! - `members/<node>`: what each agent publishes, on its lease;
//! - `sync`, `status`: written by the leader only (compare: the leader key
//!   is still its own, same term);
//! - `race/<term>/<node>`: a standby's flushed position once it stopped
//!   receiving from the lost leader of `term`;
//! - `history/<time>`: what the agents did and why.

use super::health;
use crate::StoreError;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use model::EtcdSpec;
use std::collections::BTreeMap;
use std::time::Duration;

/// One tick's reading: the `ha/` keys (by leaf) and who holds the
/// cluster lock.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub keys: BTreeMap<String, Kv>,
    pub lock_holder: Option<String>,
}

/// One key as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    pub value: String,
    pub create_revision: i64,
    /// The revision of its last write (an agent's member key changes every
    /// tick while the agent reaches etcd).
    pub mod_revision: i64,
    pub lease: i64,
}

pub struct Meeting {
    /// One client per etcd endpoint: a member cut off (no answer, no
    /// reset) holds up only the calls sent to it, and the next call goes
    /// to the member that answered last.
    clients: Vec<Client>,
    /// The endpoint that answered the last call first.
    best: std::sync::atomic::AtomicUsize,
    base: String,
    attempt: Duration,
    keeper: tokio::sync::Mutex<Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)>>,
    /// A call was refused because its lease is unknown to etcd (expired):
    /// the caller takes a new one ([`Meeting::take_lease_gone`]).
    lease_gone: std::sync::atomic::AtomicBool,
}

fn err(e: etcd_client::Error) -> StoreError {
    StoreError::Unavailable { store: "etcd".into(), detail: health::short(&e.to_string()) }
}

impl Meeting {
    /// `attempt`: the deadline of each call (a dead member costs a retry
    /// within it, on another endpoint).
    pub async fn connect(spec: &EtcdSpec, cluster: &str, attempt: Duration) -> Result<Meeting, StoreError> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(attempt)
            .with_timeout(attempt)
            .with_keep_alive(Duration::from_millis(500), attempt)
            .with_require_leader(true);
        let mut clients = Vec::new();
        let mut last = "no endpoint".to_string();
        for url in spec.urls() {
            match tokio::time::timeout(attempt * 4, Client::connect([url.clone()], Some(opts.clone()))).await {
                Ok(Ok(c)) => clients.push(c),
                Ok(Err(e)) => last = format!("{url}: {}", health::short(&e.to_string())),
                Err(_) => last = format!("{url}: no answer"),
            }
        }
        if clients.is_empty() {
            return Err(StoreError::Unavailable { store: "etcd".into(), detail: last });
        }
        Ok(Meeting {
            clients,
            best: Default::default(),
            base: format!("{}/clusters/{cluster}/ha/", spec.prefix),
            attempt,
            keeper: Default::default(),
            lease_gone: Default::default(),
        })
    }

    fn key(&self, leaf: &str) -> String {
        format!("{}{leaf}", self.base)
    }

    /// The client of the endpoint that answered last.
    fn client(&self) -> Client {
        let i = self.best.load(std::sync::atomic::Ordering::Relaxed) % self.clients.len();
        self.clients[i].clone()
    }

    /// One call within the attempt deadline: to the endpoint that answered
    /// last, within half the deadline when others remain; then to the next
    /// ones (a cut-off member costs half an attempt, not the call). Calls
    /// are safe to send twice: puts, and transactions that compare.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        use std::sync::atomic::Ordering::Relaxed;
        let until = tokio::time::Instant::now() + self.attempt;
        let n = self.clients.len();
        let first = self.best.load(Relaxed) % n;
        let mut last = format!("no answer within {:?}", self.attempt);
        for k in 0.. {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left <= Duration::from_millis(5) {
                break;
            }
            let i = (first + k) % n;
            let budget = if n > 1 && k % n == 0 { left / 2 } else { left };
            match tokio::time::timeout(budget, f(self.clients[i].clone())).await {
                Ok(Ok(v)) => {
                    self.best.store(i, Relaxed);
                    return Ok(v);
                }
                Ok(Err(e)) if health::retryable(&e.to_string()) => {
                    last = health::short(&e.to_string());
                    if k + 1 >= n {
                        tokio::time::sleep(Duration::from_millis(10).min(left)).await;
                    }
                }
                Ok(Err(e)) => {
                    if e.to_string().contains("requested lease not found") {
                        self.lease_gone.store(true, Relaxed);
                    }
                    return Err(err(e));
                }
                Err(_) => last = format!("no answer within {budget:?}"),
            }
        }
        Err(StoreError::Unavailable { store: "etcd".into(), detail: last })
    }

    /// Whether a call since the last look was refused for an unknown
    /// lease. A keep-alive stuck on an unreachable member never hears that
    /// its lease expired; a write through a live member does.
    pub fn take_lease_gone(&self) -> bool {
        self.lease_gone.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn grant(&self, ttl_s: i64) -> Result<i64, StoreError> {
        Ok(self.call(|mut c| async move { c.lease_grant(ttl_s, None).await }).await?.id())
    }

    /// One keep-alive of `lease`: its remaining TTL (0: it is gone).
    pub async fn keep_alive(&self, lease: i64) -> Result<i64, StoreError> {
        let mut k = self.keeper.lock().await;
        let r = tokio::time::timeout(self.attempt, async {
            if k.is_none() {
                *k = Some(self.client().lease_keep_alive(lease).await?);
            }
            let (keeper, stream) = k.as_mut().expect("set above");
            keeper.keep_alive().await?;
            stream.message().await
        })
        .await;
        match r {
            Ok(Ok(Some(m))) => Ok(m.ttl()),
            Ok(Ok(None)) => {
                *k = None;
                Err(StoreError::Unavailable { store: "etcd".into(), detail: "keep-alive stream ended".into() })
            }
            Ok(Err(e)) => {
                *k = None;
                Err(err(e))
            }
            Err(_) => {
                *k = None;
                Err(StoreError::Unavailable { store: "etcd".into(), detail: "keep-alive unanswered".into() })
            }
        }
    }

    /// The `ha/` keys and the cluster lock's holder (a pgscale command
    /// changing the cluster), in one transaction: one round trip per tick.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let base = self.base.clone();
        let lock = format!("{}lock", self.base.trim_end_matches("ha/"));
        // Read from every endpoint at once, the first answer wins (reads
        // are linearizable: any member's answer is current); later calls
        // go to the member that gave it.
        let txn = Txn::new().and_then(vec![
            TxnOp::get(base.clone(), Some(GetOptions::new().with_prefix())),
            TxnOp::get(lock.clone(), None),
        ]);
        let reads = self.clients.iter().cloned().enumerate().map(|(i, mut c)| {
            let t = txn.clone();
            Box::pin(async move {
                match tokio::time::timeout(self.attempt, c.txn(t)).await {
                    Ok(Ok(r)) => Ok((i, r)),
                    Ok(Err(e)) => Err(health::short(&e.to_string())),
                    Err(_) => Err(format!("no answer within {:?}", self.attempt)),
                }
            })
        });
        let (i, r) = futures::future::select_ok(reads)
            .await
            .map_err(|detail| StoreError::Unavailable { store: "etcd".into(), detail })?
            .0;
        self.best.store(i, std::sync::atomic::Ordering::Relaxed);
        let mut snap = Snapshot::default();
        for (i, op) in r.op_responses().into_iter().enumerate() {
            let etcd_client::TxnOpResponse::Get(g) = op else { continue };
            for kv in g.kvs() {
                if i == 1 {
                    snap.lock_holder = Some(String::from_utf8_lossy(kv.value()).into_owned());
                    continue;
                }
                let Some(k) = kv.key_str().ok().and_then(|k| k.strip_prefix(&self.base)) else { continue };
                snap.keys.insert(
                    k.to_string(),
                    Kv {
                        value: String::from_utf8_lossy(kv.value()).into_owned(),
                        create_revision: kv.create_revision(),
                        mod_revision: kv.mod_revision(),
                        lease: kv.lease(),
                    },
                );
            }
        }
        Ok(snap)
    }

    /// Put `leaf` (on `lease` when not 0).
    pub async fn put(&self, leaf: &str, value: &str, lease: i64) -> Result<(), StoreError> {
        let k = self.key(leaf);
        let opts = (lease != 0).then(|| PutOptions::new().with_lease(lease));
        self.call(|mut c| {
            let (k, v, o) = (k.clone(), value.to_string(), opts.clone());
            async move { c.put(k, v, o).await }
        })
        .await?;
        Ok(())
    }

    /// Take the free leader key for `me` on `lease`; Some(term) when taken.
    pub async fn take_leader(&self, me: &str, lease: i64) -> Result<Option<i64>, StoreError> {
        let k = self.key("leader");
        let txn = Txn::new()
            .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(k.clone(), me, Some(PutOptions::new().with_lease(lease)))])
            .or_else([TxnOp::get(k.clone(), None)]);
        let r = self
            .call(|mut c| {
                let t = txn.clone();
                async move { c.txn(t).await }
            })
            .await?;
        if r.succeeded() {
            return Ok(r.header().map(|h| h.revision()));
        }
        // A retried txn that had committed: the key is ours already.
        let mine = r.op_responses().iter().find_map(|o| match o {
            etcd_client::TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .filter(|kv| kv.value() == me.as_bytes() && kv.lease() == lease)
                .map(|kv| kv.create_revision()),
            _ => None,
        });
        Ok(mine)
    }

    /// Write leader-only keys (`sync`, `status`, `history/...`) if `me` still
    /// holds the leader key of `term`; false when it does not.
    pub async fn put_as_leader(&self, me: &str, term: i64, puts: &[(&str, String)]) -> Result<bool, StoreError> {
        let ops: Vec<TxnOp> = puts.iter().map(|(leaf, v)| TxnOp::put(self.key(leaf), v.clone(), None)).collect();
        self.as_leader(me, term, ops).await
    }

    /// Delete the leader key if it is still `me`'s of `term`.
    pub async fn release_leader(&self, me: &str, term: i64) -> Result<bool, StoreError> {
        self.as_leader(me, term, vec![TxnOp::delete(self.key("leader"), None)]).await
    }

    /// Run `ops` only while the leader key is `me`'s of `term` (a stale
    /// leader writes nothing); whether they ran.
    async fn as_leader(&self, me: &str, term: i64, ops: Vec<TxnOp>) -> Result<bool, StoreError> {
        let k = self.key("leader");
        let txn = Txn::new()
            .when([
                Compare::create_revision(k.clone(), CompareOp::Equal, term),
                Compare::value(k, CompareOp::Equal, me),
            ])
            .and_then(ops);
        self.txn_succeeded(txn).await
    }

    /// Delete the leader key of a silent leader before its lease expires,
    /// only if nothing changed since the caller's proof was read: the key is
    /// still `leader`'s of `term`, its member key still at `member_rev`
    /// (its agent wrote nothing since) and `sync` still at `sync_rev` (it
    /// named no stand-in since; 0: absent). Whether it was deleted.
    pub async fn take_over(&self, leader: &str, term: i64, member_rev: i64, sync_rev: i64) -> Result<bool, StoreError> {
        let k = self.key("leader");
        let txn = Txn::new()
            .when([
                Compare::create_revision(k.clone(), CompareOp::Equal, term),
                Compare::value(k.clone(), CompareOp::Equal, leader),
                Compare::mod_revision(self.key(&format!("members/{leader}")), CompareOp::Equal, member_rev),
                Compare::mod_revision(self.key("sync"), CompareOp::Equal, sync_rev),
            ])
            .and_then([TxnOp::delete(k, None)]);
        self.txn_succeeded(txn).await
    }

    /// Run a compare-and-act transaction; whether its comparisons held.
    async fn txn_succeeded(&self, txn: Txn) -> Result<bool, StoreError> {
        let r = self
            .call(|mut c| {
                let t = txn.clone();
                async move { c.txn(t).await }
            })
            .await?;
        Ok(r.succeeded())
    }

    /// Revoke a lease (its keys go with it).
    pub async fn revoke(&self, lease: i64) {
        let _ = self.call(|mut c| async move { c.lease_revoke(lease).await }).await;
    }
}
