//! Write probe for bench/ha.sh: inserts an increasing id every ~20 ms
//! through a multi-host connection string (target_session_attrs=read-write,
//! from $PROBE_CONNINFO: the password never goes through argv), reconnecting
//! on error. Bounded: stops when STOP_FILE exists or after MAX_SECONDS.
//! Writes one line per attempt to OUT: `id start_ns end_ns ok(0|1)`.
//!   write_probe OUT STOP_FILE MAX_SECONDS

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (out, stop, max) = (&args[1], std::path::Path::new(&args[2]), args[3].parse::<u64>().unwrap_or(120));
    let conninfo = std::env::var("PROBE_CONNINFO").expect("PROBE_CONNINFO");
    let mut f = std::io::BufWriter::new(std::fs::File::create(out).expect("output file"));
    let t0 = Instant::now();
    let mut client: Option<tokio_postgres::Client> = None;
    let mut id: i64 = 0;
    let mut fresh = true;
    while !stop.exists() && t0.elapsed() < Duration::from_secs(max) {
        if client.is_none() {
            if let Ok(Ok((c, conn))) =
                tokio::time::timeout(Duration::from_secs(1), tokio_postgres::connect(&conninfo, tokio_postgres::NoTls))
                    .await
            {
                tokio::spawn(conn);
                // A new table for each run (ids start at 0 again); a
                // reconnect mid-run must not drop it.
                let ddl = if fresh {
                    "DROP TABLE IF EXISTS probe; CREATE TABLE probe (id bigint PRIMARY KEY)"
                } else {
                    "SELECT 1"
                };
                if c.batch_execute(ddl).await.is_ok() {
                    fresh = false;
                    client = Some(c);
                }
            }
        }
        let start = now_ns();
        let ok = match &client {
            Some(c) => matches!(
                tokio::time::timeout(Duration::from_secs(2), c.execute("INSERT INTO probe VALUES ($1)", &[&id])).await,
                Ok(Ok(_))
            ),
            None => false,
        };
        if !ok {
            client = None;
        }
        let _ = writeln!(f, "{id} {start} {} {}", now_ns(), ok as u8);
        id += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = f.flush();
}
