//! The write load of the sharding tests and benchmark: writers that
//! INSERT, UPDATE and DELETE rows of a sharded table through the
//! coordinator, each change in one transaction with a row of a local audit
//! table on the coordinator. Every acknowledged change is kept on the
//! client side too. Bounded: every writer stops at `stop`, at its op budget
//! or after 15 minutes, whatever comes first.
//!
//! The oracle ([`Ledger::verify`]): the data equals the audit replayed in
//! order; every acknowledged change is in the audit exactly once; every
//! row the client knows for sure is as the client last wrote it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The table and audit the load uses (run once on the coordinator; the
/// sharded table through `pgscale table create`).
pub const TABLE: &str =
    "CREATE TABLE orders (cid bigint NOT NULL, id bigint NOT NULL, v int NOT NULL, pad text, PRIMARY KEY (cid, id))";
pub const AUDIT: &str = "CREATE TABLE audit (seq bigserial PRIMARY KEY, op_id bigint NOT NULL UNIQUE, op text NOT NULL, cid bigint NOT NULL, id bigint NOT NULL, v int)";

/// A row's key.
pub type Key = (i64, i64);

/// What the writers know, carried from one phase of a test to the next.
#[derive(Default)]
pub struct Ledger {
    /// Rows as acknowledged: Some(v) live, None deleted.
    pub rows: BTreeMap<Key, Option<i32>>,
    /// Keys whose last change got no answer (committed or not: unknown).
    pub uncertain: BTreeSet<Key>,
    /// Op ids acknowledged.
    pub acked: BTreeSet<i64>,
    /// Op ids sent without an answer.
    pub unknown_ops: BTreeSet<i64>,
    /// (acknowledged at, latency) of every op: the pauses show as latency.
    pub latencies: Vec<(Instant, Duration)>,
    /// UPDATE/DELETE of a row the client knew live that touched no row:
    /// a lost row as the writer saw it.
    pub anomalies: Vec<String>,
    next_op: i64,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Where the coordinator is, and how hard to write.
#[derive(Clone)]
pub struct LoadSpec {
    pub host: String,
    pub port: u16,
    pub password: String,
    pub writers: usize,
    /// Pause between one writer's ops.
    pub every: Duration,
    /// Op budget per writer.
    pub max_ops: usize,
    /// Bytes of padding per inserted row (to make shards bigger).
    pub pad: usize,
}

impl Load {
    pub fn start(spec: LoadSpec, ledger: Ledger) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ledger = Arc::new(Mutex::new(ledger));
        let threads = (0..spec.writers)
            .map(|w| {
                let (spec, stop, ledger) = (spec.clone(), stop.clone(), ledger.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(writer(w, spec, stop, ledger))
                })
            })
            .collect();
        Load { stop, ledger, threads }
    }

    /// Acknowledged ops so far.
    pub fn acked(&self) -> usize {
        self.ledger.lock().unwrap().acked.len()
    }

    pub fn finish(self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        Arc::try_unwrap(self.ledger).ok().expect("writers ended").into_inner().unwrap()
    }
}

async fn connect(spec: &LoadSpec) -> Option<tokio_postgres::Client> {
    let mut c = tokio_postgres::Config::new();
    c.host(&spec.host).port(spec.port).user("postgres").password(&spec.password).dbname("postgres");
    c.connect_timeout(Duration::from_secs(2));
    match tokio::time::timeout(Duration::from_secs(3), c.connect(tokio_postgres::NoTls)).await {
        Ok(Ok((cl, conn))) => {
            tokio::spawn(conn);
            Some(cl)
        }
        _ => None,
    }
}

enum Op {
    Insert(Key, i32),
    Update(Key, i32),
    Delete(Key),
}

async fn writer(w: usize, spec: LoadSpec, stop: Arc<AtomicBool>, ledger: Arc<Mutex<Ledger>>) {
    let t0 = Instant::now();
    let mut client: Option<tokio_postgres::Client> = None;
    let mut rng = (w as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n.max(1)
    };
    let pad = "x".repeat(spec.pad);
    // This writer's keys: cid ≡ w (mod writers), ids counting up.
    let mut ops = 0;
    while !stop.load(Ordering::Relaxed) && ops < spec.max_ops && t0.elapsed() < Duration::from_secs(900) {
        if client.is_none() {
            client = connect(&spec).await;
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        ops += 1;
        let (op, op_id) = {
            let mut l = ledger.lock().unwrap();
            l.next_op += 1;
            let op_id = l.next_op;
            let live: Vec<Key> = l
                .rows
                .iter()
                .filter(|(k, v)| v.is_some() && k.0 as usize % spec.writers == w && !l.uncertain.contains(k))
                .map(|(k, _)| *k)
                .collect();
            let roll = next(100);
            let op = if live.len() < 20 || roll < 50 {
                let cid = (next(1000) as i64) * spec.writers as i64 + w as i64;
                Op::Insert((cid, op_id), (next(1000)) as i32)
            } else if roll < 80 {
                let k = live[next(live.len() as u64) as usize];
                Op::Update(k, l.rows[&k].unwrap_or(0) + 1)
            } else {
                Op::Delete(live[next(live.len() as u64) as usize])
            };
            (op, op_id)
        };
        let c = client.as_mut().expect("connected");
        let started = Instant::now();
        let res = tokio::time::timeout(Duration::from_secs(10), run_op(c, &op, op_id, &pad)).await;
        let mut drop_client = false;
        {
            let mut l = ledger.lock().unwrap();
            let key = match &op {
                Op::Insert(k, _) | Op::Update(k, _) | Op::Delete(k) => *k,
            };
            match res {
                Ok(Ok(touched)) => {
                    l.latencies.push((Instant::now(), started.elapsed()));
                    if touched != 1 {
                        l.anomalies.push(format!("op {op_id} on {key:?} touched {touched} rows"));
                    }
                    l.acked.insert(op_id);
                    match op {
                        Op::Insert(k, v) | Op::Update(k, v) => {
                            l.rows.insert(k, Some(v));
                        }
                        Op::Delete(k) => {
                            l.rows.insert(k, None);
                        }
                    }
                }
                other => {
                    // No answer, or an error that may have come after the data
                    // group committed: the outcome is unknown.
                    l.unknown_ops.insert(op_id);
                    l.uncertain.insert(key);
                    if !matches!(other, Ok(Err(_))) || c.is_closed() {
                        drop_client = true;
                    }
                }
            }
        }
        if drop_client {
            client = None;
        }
        tokio::time::sleep(spec.every).await;
    }
}

async fn run_op(c: &mut tokio_postgres::Client, op: &Op, op_id: i64, pad: &str) -> Result<u64, tokio_postgres::Error> {
    let tx = c.transaction().await?;
    let (n, kind, k, v) = match op {
        Op::Insert(k, v) => (
            tx.execute("INSERT INTO orders (cid, id, v, pad) VALUES ($1, $2, $3, $4)", &[&k.0, &k.1, v, &pad]).await?,
            "insert",
            k,
            Some(*v),
        ),
        Op::Update(k, v) => (
            tx.execute("UPDATE orders SET v = $3 WHERE cid = $1 AND id = $2", &[&k.0, &k.1, v]).await?,
            "update",
            k,
            Some(*v),
        ),
        Op::Delete(k) => {
            (tx.execute("DELETE FROM orders WHERE cid = $1 AND id = $2", &[&k.0, &k.1]).await?, "delete", k, None)
        }
    };
    tx.execute(
        "INSERT INTO audit (op_id, op, cid, id, v) VALUES ($1, $2, $3, $4, $5)",
        &[&op_id, &kind, &k.0, &k.1, &v],
    )
    .await?;
    tx.commit().await?;
    Ok(n)
}

/// What [`Ledger::verify`] found.
#[derive(Debug)]
pub struct Verdict {
    pub rows: usize,
    pub acked: usize,
    pub uncertain: usize,
}

impl Ledger {
    /// Compare with the coordinator's data and audit (read through `c`).
    pub async fn verify(&self, c: &tokio_postgres::Client) -> Result<Verdict, String> {
        if !self.anomalies.is_empty() {
            return Err(format!("writers saw lost rows: {:?}", &self.anomalies[..self.anomalies.len().min(5)]));
        }
        let data: BTreeMap<Key, i32> = c
            .query("SELECT cid, id, v FROM orders WHERE id > 0", &[])
            .await
            .map_err(|e| format!("read orders: {e}"))?
            .iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect();
        let audit = c
            .query("SELECT op_id, op, cid, id, v FROM audit ORDER BY seq", &[])
            .await
            .map_err(|e| format!("read audit: {e}"))?;
        let mut replay: BTreeMap<Key, Option<i32>> = BTreeMap::new();
        let mut seen_ops: BTreeSet<i64> = BTreeSet::new();
        for r in &audit {
            let (op_id, op, k, v): (i64, String, Key, Option<i32>) =
                (r.get(0), r.get(1), (r.get(2), r.get(3)), r.get(4));
            if !seen_ops.insert(op_id) {
                return Err(format!("op {op_id} is in the audit twice"));
            }
            replay.insert(k, if op == "delete" { None } else { v });
        }
        for op in &self.acked {
            if !seen_ops.contains(op) {
                return Err(format!("acknowledged op {op} is not in the audit"));
            }
        }
        // A change whose writer got no answer (a data group dying while it
        // committed) may have committed on the group while the coordinator
        // rolled its audit row back: its key may differ either way.
        let replayed: BTreeMap<Key, i32> = replay.into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
        let certain = |k: &Key| !self.uncertain.contains(k);
        let missing: Vec<_> = replayed
            .iter()
            .filter(|(k, v)| certain(k) && data.get(*k) != Some(*v))
            .take(5)
            .map(|(k, v)| (k, v, data.get(k)))
            .collect();
        let extra: Vec<_> = data.iter().filter(|(k, v)| certain(k) && replayed.get(*k) != Some(*v)).take(5).collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(format!(
                "the data differs from the audit: {} rows vs {} replayed; audit not in data (key, audit v, data v): {missing:?}; data not in audit: {extra:?}",
                data.len(),
                replayed.len()
            ));
        }
        for (k, v) in &self.rows {
            if self.uncertain.contains(k) {
                continue;
            }
            if data.get(k) != v.as_ref() {
                return Err(format!("row {k:?}: acknowledged {v:?}, found {:?}", data.get(k)));
            }
        }
        Ok(Verdict { rows: data.len(), acked: self.acked.len(), uncertain: self.uncertain.len() })
    }
}
