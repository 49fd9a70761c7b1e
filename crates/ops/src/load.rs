//! A write probe: increasing ids inserted into a ledger table, one
//! transaction each, bounded in count and time, loopback or the cluster's
//! own addresses only. Every id whose commit was acknowledged is kept, so
//! the caller can check that none was lost. Used by the demo.

use crate::error::{failed, OpError};
use pg::Target;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TABLE: &str = "pgscale_ledger";

#[derive(Debug, Default, Clone)]
pub struct LoadStats {
    /// Ids whose commit was acknowledged.
    pub committed: Vec<i64>,
    pub failures: u64,
    /// Acknowledged commits with the time since the load started.
    pub acked_at: Vec<Duration>,
}

impl LoadStats {
    /// The longest time without an acknowledged commit between `from` and
    /// `to` (offsets since the load started).
    pub fn longest_gap(&self, from: Duration, to: Duration) -> Duration {
        let mut prev = from;
        let mut gap = Duration::ZERO;
        for &t in self.acked_at.iter().filter(|t| **t >= from && **t <= to) {
            gap = gap.max(t - prev);
            prev = t;
        }
        gap.max(to.saturating_sub(prev))
    }
}

/// A running write load; `stop` ends it and returns what it saw.
pub struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    stats: Arc<Mutex<LoadStats>>,
    started: Instant,
}

impl Load {
    /// Create the ledger on `first` and start writing. `targets` are tried
    /// in turn after a failure: the load finds the new primary itself.
    pub async fn start(targets: Vec<Target>, max_rows: i64, max_time: Duration) -> Result<Load, OpError> {
        let first = targets.first().ok_or_else(|| failed("no node to write to"))?.clone();
        pg::execute(
            &first,
            &format!(
                "CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())"
            ),
            Duration::from_secs(10),
        )
        .await?;
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let stats = Arc::new(Mutex::new(LoadStats::default()));
        let task = tokio::spawn(run(targets, stop.clone(), stats.clone(), started, max_rows, max_time));
        Ok(Load { stop, task, stats, started })
    }

    /// Time since the load started.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// What the load has seen so far.
    pub fn snapshot(&self) -> LoadStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub async fn stop(self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        let Load { task, stats, .. } = self;
        let _ = task.await;
        let st = stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        st
    }
}

async fn run(
    targets: Vec<Target>,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<LoadStats>>,
    t0: Instant,
    max_rows: i64,
    max_time: Duration,
) {
    let mut client: Option<pg::Session> = None;
    let mut next_target = 0usize;
    let mut id: i64 = 0;
    let sql = format!("INSERT INTO {TABLE} (id) VALUES ($1)");
    while !stop.load(Ordering::Relaxed) && id < max_rows && t0.elapsed() < max_time {
        if client.is_none() && !targets.is_empty() {
            let t = &targets[next_target % targets.len()];
            next_target += 1;
            if let Ok(c) = pg::connect(t, Duration::from_secs(2)).await {
                // A standby refuses writes: try the next node.
                if pg::is_primary(&c, &t.addr(), Duration::from_secs(2)).await.unwrap_or(false) {
                    client = Some(c);
                }
            }
        }
        if let Some(c) = &client {
            match tokio::time::timeout(Duration::from_secs(10), c.execute(sql.as_str(), &[&id])).await {
                Ok(Ok(_)) => {
                    let mut st = stats.lock().unwrap_or_else(|p| p.into_inner());
                    st.committed.push(id);
                    st.acked_at.push(t0.elapsed());
                }
                _ => {
                    stats.lock().unwrap_or_else(|p| p.into_inner()).failures += 1;
                    client = None;
                }
            }
            id += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How many of `ids` are in the ledger on `t`, polling (bounded) until all
/// are there: a standby may still be replaying.
pub async fn count_on(t: &Target, ids: &[i64], within: Duration) -> Result<i64, OpError> {
    let until = Instant::now() + within;
    loop {
        let n = pg::count_ids(t, TABLE, ids, Duration::from_secs(5)).await?;
        if n == ids.len() as i64 || Instant::now() >= until {
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
