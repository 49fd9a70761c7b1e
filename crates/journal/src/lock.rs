//! One mutating operation per cluster at a time: an OS file lock (released
//! by the kernel if the holder dies, so no stale lock after kill -9), with
//! the holder's command, pid and start time written inside for the message
//! the next comer sees.

use crate::home::{io, HomeError};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The machine the holder runs on.
    #[serde(default)]
    pub host: String,
    pub command: String,
    pub pid: u32,
    pub started: String,
}

impl Holder {
    /// This process, running `command`, from now.
    pub fn me(command: &str) -> Holder {
        Holder {
            host: nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default(),
            command: command.into(),
            pid: std::process::id(),
            started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` (pid {}", self.command, self.pid)?;
        if !self.host.is_empty() {
            write!(f, " on {}", self.host)?;
        }
        write!(f, ", started {})", self.started)
    }
}

#[derive(Debug)]
pub struct LockGuard {
    file: File,
}

impl LockGuard {
    pub(crate) fn acquire(cluster: &str, path: &Path, command: &str) -> Result<LockGuard, HomeError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io("open lock", path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut s = String::new();
                let _ = file.read_to_string(&mut s);
                let holder = serde_json::from_str(&s).unwrap_or(Holder {
                    host: String::new(),
                    command: "another pgscale command".into(),
                    pid: 0,
                    started: "unknown".into(),
                });
                return Err(HomeError::Held { cluster: cluster.into(), holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock", path)(e)),
        }
        let holder = Holder::me(command);
        file.set_len(0).map_err(io("truncate", path))?;
        file.rewind().map_err(io("rewind", path))?;
        file.write_all(serde_json::to_string(&holder).unwrap_or_default().as_bytes()).map_err(io("write", path))?;
        let _ = file.sync_all();
        Ok(LockGuard { file })
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use crate::{Home, HomeError};

    #[test]
    fn second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let t = tempfile::tempdir().unwrap();
        let h = Home::new(t.path());
        let g = h.lock("demo", "pgscale init").unwrap();
        match h.lock("demo", "pgscale destroy") {
            Err(HomeError::Held { holder, .. }) => {
                assert_eq!(holder.command, "pgscale init");
                assert_eq!(holder.pid, std::process::id());
                let msg = h.lock("demo", "x").unwrap_err().to_string();
                assert!(msg.contains("pgscale init") && msg.contains("holds its lock"), "{msg}");
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(g);
        h.lock("demo", "pgscale destroy").unwrap();
    }
}
