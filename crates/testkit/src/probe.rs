//! The write probe of the failover tests: one writer per node, straight to
//! that node (no multi-host connection string), optionally from inside a
//! host's network namespace (a client beside that node, which a partition
//! leaves on the node's side). Every 10 ms an insert; each acknowledged id is
//! kept with the monotonic instant it was acknowledged. Bounded: at most 3
//! minutes, whatever happens.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where one writer writes: host, port, and the namespace to write from.
pub struct Target {
    pub host: String,
    pub port: u16,
    pub netns: Option<String>,
}

impl Target {
    pub fn new(host: &str, port: u16) -> Target {
        Target { host: host.to_string(), port, netns: None }
    }
}

pub struct Probe {
    stop: Arc<AtomicBool>,
    /// Acknowledgements so far, per target (read while the writers run).
    counts: Vec<Arc<std::sync::atomic::AtomicUsize>>,
    threads: Vec<std::thread::JoinHandle<Vec<(i64, Instant)>>>,
}

impl Probe {
    pub fn start(targets: Vec<Target>, password: &str) -> Probe {
        Probe::start_from(targets, password, 1)
    }

    /// Ids from `first` on: a probe run again on the same table must not
    /// reuse the ids of the one before (they would fail as duplicates).
    pub fn start_from(targets: Vec<Target>, password: &str, first: i64) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicI64::new(first));
        let counts: Vec<Arc<std::sync::atomic::AtomicUsize>> = targets.iter().map(|_| Default::default()).collect();
        let threads = targets
            .into_iter()
            .zip(counts.clone())
            .map(|(t, count)| {
                let (pw, stop, next) = (password.to_string(), stop.clone(), next.clone());
                std::thread::spawn(move || {
                    if let Some(ns) = &t.netns {
                        crate::netns::enter(ns);
                    }
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(write_loop(t.host, t.port, pw, stop, next, count))
                })
            })
            .collect();
        Probe { stop, counts, threads }
    }

    /// How many writes target `i` acknowledged so far.
    pub fn count(&self, i: usize) -> usize {
        self.counts[i].load(Ordering::Relaxed)
    }

    /// Stop the writers; per target, the acknowledged ids with their instants.
    pub fn finish(self) -> Vec<Vec<(i64, Instant)>> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.into_iter().map(|t| t.join().unwrap()).collect()
    }
}

async fn write_loop(
    host: String,
    port: u16,
    pw: String,
    stop: Arc<AtomicBool>,
    next: Arc<AtomicI64>,
    count: Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<(i64, Instant)> {
    let mut acked = Vec::new();
    let mut client: Option<tokio_postgres::Client> = None;
    let t0 = Instant::now();
    while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(180) {
        if client.is_none() {
            let mut c = tokio_postgres::Config::new();
            c.host(&host).port(port).user("postgres").password(&pw).dbname("postgres");
            c.connect_timeout(Duration::from_millis(500));
            if let Ok(Ok((cl, conn))) =
                tokio::time::timeout(Duration::from_secs(1), c.connect(tokio_postgres::NoTls)).await
            {
                tokio::spawn(conn);
                client = Some(cl);
            }
        }
        if let Some(c) = &client {
            let id = next.fetch_add(1, Ordering::Relaxed);
            let r =
                tokio::time::timeout(Duration::from_secs(2), c.execute("INSERT INTO probe (id) VALUES ($1)", &[&id]))
                    .await;
            match r {
                Ok(Ok(_)) => {
                    acked.push((id, Instant::now()));
                    count.fetch_add(1, Ordering::Relaxed);
                }
                _ => client = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    acked
}
