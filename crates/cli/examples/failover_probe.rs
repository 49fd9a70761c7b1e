//! The write probe of bench/doctor.sh: one writer per node, straight to
//! that node (no multi-host connection string: libpq's costs seconds per dead
//! host), an insert every 10 ms, each acknowledgement stamped on
//! CLOCK_MONOTONIC; the fault is injected by this program at a uniformly
//! random phase, stamped on the same clock.
//!
//!   failover_probe --nodes 127.0.0.1:5432,127.0.0.2:5432 --password-file F \
//!     --old 127.0.0.1:5432 --phase-ms 2000 -- kill -9 1234
//!
//! Prints one JSON line: rto_s (fault → first commit on another node),
//! gap_s (longest time without any commit around the fault), dual_ack_s
//! (time the old node still acknowledged after the new one's first commit:
//! must be 0), lost (acknowledged ids missing on the new primary: must be 0),
//! acked, new (the node that took over).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn now_ms() -> f64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    t.tv_sec() as f64 * 1000.0 + t.tv_nsec() as f64 / 1e6
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

async fn connect(addr: &str, pw: &str) -> Option<tokio_postgres::Client> {
    let (h, p) = addr.rsplit_once(':')?;
    let mut c = tokio_postgres::Config::new();
    c.host(h).port(p.parse().ok()?).user("postgres").password(pw).dbname("postgres");
    c.connect_timeout(Duration::from_millis(300));
    let (cl, conn) =
        tokio::time::timeout(Duration::from_millis(500), c.connect(tokio_postgres::NoTls)).await.ok()?.ok()?;
    tokio::spawn(conn);
    Some(cl)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let all: Vec<String> = std::env::args().collect();
    let split = all.iter().position(|a| a == "--").expect("-- FAULT COMMAND");
    let (args, fault) = (&all[..split], &all[split + 1..]);
    let nodes: Vec<String> = arg(args, "--nodes").expect("--nodes").split(',').map(String::from).collect();
    let pw = std::fs::read_to_string(arg(args, "--password-file").expect("--password-file")).expect("password file");
    let pw = pw.trim().to_string();
    let old = arg(args, "--old").expect("--old");
    let phase: f64 = arg(args, "--phase-ms").and_then(|p| p.parse().ok()).unwrap_or(0.0);
    let warmup = 1500.0;
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicI64::new(
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
            % 1_000_000_000)
            * 1000,
    ));
    let acks: Arc<Mutex<Vec<(String, i64, f64)>>> = Arc::default();
    let mut tasks = Vec::new();
    for n in &nodes {
        let (n, pw, stop, next, acks) = (n.clone(), pw.clone(), stop.clone(), next.clone(), acks.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = None;
            let t0 = now_ms();
            // Bounded: 2 minutes at most.
            while !stop.load(Ordering::Relaxed) && now_ms() - t0 < 120_000.0 {
                if c.is_none() {
                    c = connect(&n, &pw).await;
                }
                if let Some(cl) = &c {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    match tokio::time::timeout(
                        Duration::from_secs(1),
                        cl.execute("INSERT INTO probe (id) VALUES ($1)", &[&id]),
                    )
                    .await
                    {
                        Ok(Ok(_)) => acks.lock().unwrap().push((n.clone(), id, now_ms())),
                        _ => c = None,
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis((warmup + phase) as u64)).await;
    let fault_at = now_ms();
    let st = std::process::Command::new(&fault[0]).args(&fault[1..]).status().expect("fault command");
    if !st.success() {
        eprintln!("fault command {fault:?} failed: {st}");
    }
    // Until another node acknowledged for 1 s, at most 60 s.
    let mut new: Option<(String, f64)> = None;
    while now_ms() - fault_at < 60_000.0 {
        if let Some((n, _, t)) = acks.lock().unwrap().iter().find(|(n, _, t)| *n != old && *t > fault_at) {
            new = Some((n.clone(), *t));
        }
        if new.as_ref().is_some_and(|(_, t)| now_ms() - t > 1000.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let acks = acks.lock().unwrap().clone();
    let Some((new, first_new)) = new else {
        println!("{}", serde_json::json!({ "error": "no other node acknowledged within 60 s", "acked": acks.len() }));
        std::process::exit(1);
    };
    let mut times: Vec<f64> = acks.iter().map(|a| a.2).collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    let last_old = acks.iter().filter(|a| a.0 == old).map(|a| a.2).fold(0.0, f64::max);
    let dual = (last_old - first_new).max(0.0);
    // Every acknowledged id on the new primary.
    let c = connect(&new, &pw).await.expect("connect to the new primary");
    let ids: Vec<i64> = acks.iter().map(|a| a.1).collect();
    let found: i64 = c.query_one("SELECT count(*) FROM probe WHERE id = ANY($1)", &[&ids]).await.expect("count").get(0);
    println!(
        "{}",
        serde_json::json!({
            "rto_s": (first_new - fault_at) / 1000.0,
            "gap_s": gap / 1000.0,
            "dual_ack_s": dual / 1000.0,
            "lost": ids.len() as i64 - found,
            "acked": ids.len(),
            "new": new,
            "phase_ms": phase,
        })
    );
}
