//! The fence guard: a small process of its own beside the agent that fences
//! the primary at Fence A's deadline when the agent cannot (frozen by
//! SIGSTOP, stuck, dead). The agent feeds it over a FIFO every tick: `arm
//! <deadline>` (CLOCK_MONOTONIC milliseconds, the same clock in both
//! processes) while its node is the acknowledging primary, `disarm`
//! otherwise. A restarted agent finds the guard alive and feeds it again,
//! so a quick agent restart leaves PostgreSQL untouched. Disarmed and not
//! fed for 30 s, the guard exits.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// CLOCK_MONOTONIC in milliseconds: the same in the agent and the guard.
pub fn now_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

/// The agent's end of the FIFO.
pub struct Link {
    fifo: std::fs::File,
    last: String,
    sent: Instant,
    /// To start the guard again when it is gone (`ensure`'s arguments).
    dir: PathBuf,
    node: String,
    data_dir: PathBuf,
}

/// A repeated `disarm` is sent again after this long, so the guard (which
/// exits when disarmed and not fed for 30 s) lives as long as the agent.
const REFEED: Duration = Duration::from_secs(5);

fn paths(dir: &Path, node: &str) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join(format!("agent-{node}.guard")),
        dir.join(format!("agent-{node}.guard.pid")),
        dir.join(format!("agent-{node}.guard.log")),
    )
}

/// Start the guard unless one is alive, and open its FIFO for writing.
pub fn ensure(dir: &Path, node: &str, data_dir: &Path) -> Result<Link, String> {
    let (fifo, pidfile, log) = paths(dir, node);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !fifo.exists() {
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| format!("mkfifo {}: {e}", fifo.display()))?;
    }
    let running = std::fs::read_to_string(&pidfile).ok().and_then(|t| t.trim().parse::<i32>().ok()).filter(|p| {
        crate::observe::alive(*p)
            && std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&*fifo.to_string_lossy()))
    });
    if running.is_none() {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log).map_err(|e| e.to_string())?;
        let child = std::process::Command::new(exe)
            .args(["agent", "guard", "--fifo"])
            .arg(&fifo)
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            // Its own process group: signals to the agent's group spare it.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("start the fence guard: {e}"))?;
        std::fs::write(&pidfile, child.id().to_string()).map_err(|e| e.to_string())?;
        // Reaped by nobody until the agent exits: it outlives the agent on purpose.
        std::mem::forget(child);
    }
    // The guard opens its end read-write; until it has, opening fails (ENXIO).
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        match std::fs::OpenOptions::new().write(true).custom_flags(nix::libc::O_NONBLOCK).open(&fifo) {
            Ok(f) => {
                return Ok(Link {
                    fifo: f,
                    last: String::new(),
                    sent: Instant::now(),
                    dir: dir.to_path_buf(),
                    node: node.to_string(),
                    data_dir: data_dir.to_path_buf(),
                })
            }
            Err(e) if Instant::now() < until => {
                tracing::debug!("fence guard FIFO: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("open {}: {e}", fifo.display())),
        }
    }
}

impl Link {
    fn send(&mut self, line: String) {
        if line == self.last && !line.starts_with("arm") && self.sent.elapsed() < REFEED {
            return;
        }
        if let Err(e) = self.fifo.write_all(line.as_bytes()) {
            // The guard is gone (killed, or it exited): start it again and
            // say it once more, so a primary is never left unguarded.
            tracing::warn!("fence guard: {e}: starting it again");
            match ensure(&self.dir, &self.node, &self.data_dir) {
                Ok(l) => {
                    self.fifo = l.fifo;
                    if let Err(e) = self.fifo.write_all(line.as_bytes()) {
                        tracing::warn!("fence guard: {e}");
                    }
                }
                Err(e) => tracing::warn!("fence guard: {e}"),
            }
        }
        self.last = line;
        self.sent = Instant::now();
    }

    /// Fence at `deadline` (CLOCK_MONOTONIC ms) unless told later.
    pub fn arm(&mut self, deadline: u64) {
        self.send(format!("arm {deadline}\n"));
    }

    pub fn disarm(&mut self) {
        self.send("disarm\n".into());
    }
}

/// The guard process: `pgscale agent guard --fifo F --data-dir D`.
pub fn run(fifo: &Path, data_dir: &Path) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(fifo)
        .map_err(|e| format!("open {}: {e}", fifo.display()))?;
    let mut armed: Option<u64> = None;
    let mut fed = Instant::now();
    let mut buf = String::new();
    let mut chunk = [0u8; 4096];
    loop {
        match f.read(&mut chunk) {
            Ok(n) if n > 0 => {
                buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
                while let Some(i) = buf.find('\n') {
                    let line: String = buf.drain(..=i).collect();
                    let line = line.trim();
                    if let Some(d) = line.strip_prefix("arm ").and_then(|d| d.parse::<u64>().ok()) {
                        armed = Some(d);
                    } else if line == "disarm" {
                        armed = None;
                    }
                    fed = Instant::now();
                }
            }
            _ => {}
        }
        if let Some(d) = armed {
            if now_ms() >= d {
                let what = crate::act::fence(data_dir);
                eprintln!(
                    "{} fence guard: the agent did not extend the deadline: {what}",
                    humantime::format_rfc3339_millis(std::time::SystemTime::now())
                );
                armed = None;
            }
        }
        if armed.is_none() && fed.elapsed() > Duration::from_secs(30) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
