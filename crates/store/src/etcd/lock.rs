//! The cluster lock in etcd: a key put only if absent, on a lease of a few
//! seconds that a background task renews every third of its TTL. A holder
//! killed with -9 stops renewing, so its lock vanishes within the TTL. The
//! holder notices a lease it could not renew in time and stops before its
//! next step (`lock_lost`), and its inventory writes compare that the lock
//! key is still on its lease, so a holder that lost its lock writes nothing.

use super::EtcdStore;
use crate::{Lock, Store, StoreError};
use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use journal::Holder;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

#[derive(Clone)]
struct Held {
    lease: i64,
    lost: Arc<Mutex<Option<String>>>,
}

#[derive(Clone, Default)]
pub(super) struct HeldMap(Arc<Mutex<HashMap<String, Held>>>);

impl HeldMap {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn lease(&self, name: &str) -> Option<i64> {
        self.map().get(name).map(|h| h.lease)
    }

    pub(super) fn lost(&self, name: &str) -> Option<String> {
        self.map().get(name).and_then(|h| h.lost.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

struct Guard {
    name: String,
    lease: i64,
    held: HeldMap,
    client: Client,
    keeper: JoinHandle<()>,
    pending: Arc<Mutex<Vec<JoinHandle<()>>>>,
    deadline: Duration,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.keeper.abort();
        self.held.map().remove(&self.name);
        // Release at once rather than after the TTL; `close` waits for it.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let mut c = self.client.clone();
            let (lease, d) = (self.lease, self.deadline);
            let h = rt.spawn(async move {
                let _ = tokio::time::timeout(d, c.lease_revoke(lease)).await;
            });
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(h);
        }
    }
}

pub(super) async fn acquire(s: &EtcdStore, name: &str, command: &str, wait: Duration) -> Result<Lock, StoreError> {
    let key = s.key(name, "lock");
    let me = Holder::me(command);
    let value = serde_json::to_string(&me).unwrap_or_default();
    let ttl = s.lock_ttl.as_secs().max(1) as i64;
    let t0 = Instant::now();
    let lease = loop {
        // A fresh lease per attempt: waiting for a busy lock must not let ours expire.
        let lease = s.call(|mut c| async move { c.lease_grant(ttl, None).await }).await?.id();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), value.clone(), Some(PutOptions::new().with_lease(lease)))])
            .or_else([TxnOp::get(key.clone(), None)]);
        let r = s
            .call(|mut c| {
                let t = txn.clone();
                async move { c.txn(t).await }
            })
            .await;
        let r = match r {
            Ok(r) if r.succeeded() => break lease,
            Ok(r) => r,
            Err(e) => {
                revoke(s, lease).await;
                return Err(e);
            }
        };
        revoke(s, lease).await;
        if t0.elapsed() >= wait {
            let holder = r
                .op_responses()
                .iter()
                .find_map(|o| match o {
                    TxnOpResponse::Get(g) => g.kvs().first().and_then(|kv| serde_json::from_slice(kv.value()).ok()),
                    _ => None,
                })
                .unwrap_or(Holder {
                    host: String::new(),
                    command: "another pgscale command".into(),
                    pid: 0,
                    started: "unknown".into(),
                });
            return Err(StoreError::Held {
                cluster: name.into(),
                holder: Box::new(holder),
                store: s.describe(),
                ttl_s: ttl as u64,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lost = Arc::new(Mutex::new(None));
    s.held.map().insert(name.into(), Held { lease, lost: lost.clone() });
    let keeper = tokio::spawn(keep_alive(s.client.clone(), lease, s.lock_ttl, lost));
    Ok(Lock::new(Guard {
        name: name.into(),
        lease,
        held: s.held.clone(),
        client: s.client.clone(),
        keeper,
        pending: s.pending.clone(),
        deadline: s.deadline,
    }))
}

async fn revoke(s: &EtcdStore, lease: i64) {
    let _ = tokio::time::timeout(s.deadline, s.client.clone().lease_revoke(lease)).await;
}

/// Renew every third of the TTL. A renewal that fails (the balanced
/// channel picked a dead member, an election) is tried again at once, on a
/// fresh stream, until one succeeds. Past three quarters of the TTL without
/// a renewal, the lease may be gone: say so (the holder stops at its next step).
async fn keep_alive(client: Client, lease: i64, ttl: Duration, lost: Arc<Mutex<Option<String>>>) {
    let every = (ttl / 3).max(Duration::from_millis(300));
    let give_up = ttl * 3 / 4;
    let mut last_ok = Instant::now();
    let mut keeper = None;
    let mut next = every;
    loop {
        tokio::time::sleep(next).await;
        let step = async {
            if keeper.is_none() {
                keeper = Some(client.clone().lease_keep_alive(lease).await?);
            }
            let Some((k, stream)) = keeper.as_mut() else { return Ok(None) };
            k.keep_alive().await?;
            stream.message().await
        };
        let left = give_up.saturating_sub(last_ok.elapsed()).max(Duration::from_millis(50));
        match tokio::time::timeout(every.min(left), step).await {
            Ok(Ok(Some(r))) if r.ttl() > 0 => {
                last_ok = Instant::now();
                next = every;
            }
            Ok(Ok(Some(_))) => {
                *lost.lock().unwrap_or_else(|e| e.into_inner()) = Some("its lease expired".into());
                return;
            }
            _ => {
                keeper = None;
                if last_ok.elapsed() >= give_up {
                    *lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!(
                        "etcd did not renew its {} s lease for {:.1} s",
                        ttl.as_secs(),
                        last_ok.elapsed().as_secs_f64()
                    ));
                    return;
                }
                next = Duration::from_millis(50);
            }
        }
    }
}
