//! The intent log: JSON lines, each fsynced before the step it announces
//! runs. It records what was asked and what happened; the truth about roles
//! and replication is the databases themselves.

use crate::home::{io, HomeError};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event<'a> {
    Request { operation: &'a str, args: &'a [String], steps: usize },
    Started { step: &'a str, node: &'a str },
    Succeeded { step: &'a str, node: &'a str, ms: u128, output: &'a str },
    Skipped { step: &'a str, node: &'a str, why: &'a str },
    Failed { step: &'a str, node: &'a str, ms: u128, error: &'a str },
    Finished { operation: &'a str, ok: bool, ms: u128 },
}

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    pid: u32,
    #[serde(flatten)]
    event: &'a Event<'a>,
}

impl Journal {
    pub(crate) fn open(path: &Path) -> Result<Journal, HomeError> {
        let file =
            OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(io("open journal", path))?;
        Ok(Journal { path: path.to_path_buf(), file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn record(&mut self, event: &Event) -> Result<(), HomeError> {
        let line = Line {
            ts: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            pid: std::process::id(),
            event,
        };
        let mut s = serde_json::to_string(&line).unwrap_or_default();
        s.push('\n');
        self.file.write_all(s.as_bytes()).map_err(io("append to", &self.path))?;
        self.file.sync_data().map_err(io("fsync", &self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_with_event_tags() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("j.jsonl");
        let mut j = Journal::open(&p).unwrap();
        j.record(&Event::Started { step: "pg1:initdb", node: "pg1" }).unwrap();
        j.record(&Event::Failed { step: "pg1:initdb", node: "pg1", ms: 5, error: "boom" }).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "started");
        assert_eq!(lines[1]["error"], "boom");
    }
}
