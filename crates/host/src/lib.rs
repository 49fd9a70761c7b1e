//! Where commands run: this machine (as the cluster's OS user when pgscale
//! runs as root, since PostgreSQL refuses root) or another one over SSH
//! (system OpenSSH, BatchMode, one multiplexed connection per host). Every
//! call takes a deadline; nothing here decides anything or runs SQL.

mod local;
mod ssh;

pub use local::{LocalHost, OsUser};
pub use ssh::{SshHost, SshTarget};

use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{what}: no answer within {}s (deadline); the host or process may be frozen or gone", .deadline.as_secs_f64())]
    Timeout { what: String, deadline: Duration },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: exit status {status}{}", if .stderr.is_empty() { String::new() } else { format!(": {}", .stderr.trim()) })]
    Failed { what: String, status: i32, stderr: String },
    #[error("ssh to {dest}: {message}")]
    Ssh { dest: String, message: String },
    #[error("{0}")]
    Config(String),
}

impl HostError {
    /// Worth retrying later (deadline, network) as opposed to a permanent error.
    pub fn is_retryable(&self) -> bool {
        matches!(self, HostError::Timeout { .. } | HostError::Ssh { .. })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Exit code; -1 when killed by a signal.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.status == 0
    }
}

impl From<std::process::Output> for Output {
    fn from(o: std::process::Output) -> Output {
        Output {
            status: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Run `fut` within the command's deadline; past it, the future is dropped
/// (its child killed) and the call reports a timeout.
pub(crate) async fn within_deadline(
    what: String,
    deadline: Duration,
    fut: impl std::future::Future<Output = Result<Output, HostError>>,
) -> Result<Output, HostError> {
    match tokio::time::timeout(deadline, fut).await {
        Ok(res) => res,
        Err(_) => Err(HostError::Timeout { what, deadline }),
    }
}

/// How to run one command.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    pub argv: &'a [String],
    pub deadline: Duration,
    pub stdin: Option<&'a [u8]>,
    pub env: &'a [(String, String)],
    /// On this machine: the command gets the kernel's parent-death signal
    /// and dies with pgscale (a base copy must not outlive the run that
    /// started it). Not for commands that must finish once started
    /// (initdb, pg_rewind).
    pub die_with_pgscale: bool,
}

impl<'a> Run<'a> {
    pub fn new(argv: &'a [String], deadline: Duration) -> Self {
        Run { argv, deadline, stdin: None, env: &[], die_with_pgscale: false }
    }

    pub fn what(&self) -> String {
        let prog = self
            .argv
            .first()
            .map(|a| Path::new(a).file_name().map_or(a.as_str(), |f| f.to_str().unwrap_or(a)))
            .unwrap_or("");
        format!("run {prog}")
    }
}

pub use model::DirState;

/// A host where a node lives.
#[derive(Debug, Clone)]
pub enum Host {
    Local(LocalHost),
    Ssh(SshHost),
}

impl Host {
    pub fn describe(&self) -> String {
        match self {
            Host::Local(_) => "local".into(),
            Host::Ssh(s) => format!("ssh {}", s.dest()),
        }
    }

    /// Run a command as the cluster's OS user.
    pub async fn run(&self, r: &Run<'_>) -> Result<Output, HostError> {
        match self {
            Host::Local(h) => h.run(r).await,
            Host::Ssh(h) => h.run(r).await,
        }
    }

    /// Run a command as the login (this machine's invoking user, or the SSH
    /// login), not the OS user: for the pre-check and `--install`, which
    /// must work before the OS user exists.
    pub async fn run_login(&self, r: &Run<'_>) -> Result<Output, HostError> {
        match self {
            Host::Local(h) => h.as_login().run(r).await,
            Host::Ssh(h) => h.run_login(r).await,
        }
    }

    /// Run and require exit status 0.
    pub async fn run_ok(&self, r: &Run<'_>) -> Result<Output, HostError> {
        let o = self.run(r).await?;
        if o.ok() {
            Ok(o)
        } else {
            Err(HostError::Failed { what: r.what(), status: o.status, stderr: last_lines(&o.stderr, &o.stdout) })
        }
    }

    pub async fn dir_state(&self, path: &Path, deadline: Duration) -> Result<DirState, HostError> {
        match self {
            Host::Local(h) => h.dir_state(path),
            Host::Ssh(h) => h.dir_state(path, deadline).await,
        }
    }

    pub async fn file_exists(&self, path: &Path, deadline: Duration) -> Result<bool, HostError> {
        match self {
            Host::Local(_) => Ok(path.exists()),
            Host::Ssh(h) => h.file_exists(path, deadline).await,
        }
    }

    /// Create `path` (and missing parents), mode 0700, owned by the OS user.
    /// Returns true if it created the directory itself.
    pub async fn make_dir(&self, path: &Path, deadline: Duration) -> Result<bool, HostError> {
        match self {
            Host::Local(h) => h.make_dir(path),
            Host::Ssh(h) => h.make_dir(path, deadline).await,
        }
    }

    /// Write a whole file atomically (temp + rename), owned by the OS user.
    pub async fn write_file(&self, path: &Path, data: &[u8], mode: u32, deadline: Duration) -> Result<(), HostError> {
        match self {
            Host::Local(h) => h.write_file(path, data, mode),
            Host::Ssh(h) => h.write_file(path, data, mode, deadline).await,
        }
    }

    pub async fn remove_dir(&self, path: &Path, deadline: Duration) -> Result<bool, HostError> {
        match self {
            Host::Local(h) => h.remove_dir(path),
            Host::Ssh(h) => h.remove_dir(path, deadline).await,
        }
    }

    pub async fn empty_dir(&self, path: &Path, deadline: Duration) -> Result<(), HostError> {
        match self {
            Host::Local(h) => h.empty_dir(path),
            Host::Ssh(h) => h.empty_dir(path, deadline).await,
        }
    }

    /// Wait (up to `within`) until no pg_basebackup writes into `data_dir`
    /// on this host: a copy whose upstream connection was ended exits at
    /// once, and its directory must not be emptied while it still writes.
    /// Err when one is still there at the end.
    pub async fn wait_no_copy_into(&self, data_dir: &Path, within: Duration) -> Result<(), HostError> {
        // Reads /proc only: lists, signals nothing. Paths travel as "$1".
        let script = r#"d=$1; n=$2
while :; do
  busy=
  for c in /proc/[0-9]*/cmdline; do
    tr '\0' '\n' < "$c" 2>/dev/null | { read -r a0 && case "$a0" in */pg_basebackup|pg_basebackup) grep -qxF -- "$d";; *) false;; esac; } && busy=1 && break
  done
  [ -z "$busy" ] && exit 0
  n=$((n - 1)); [ "$n" -le 0 ] && { echo "a pg_basebackup still writes into $d" >&2; exit 1; }
  sleep 0.1
done"#;
        let tries = (within.as_millis() / 100).max(1).to_string();
        let argv = ["sh".to_string(), "-c".into(), script.into(), "sh".into(), data_dir.display().to_string(), tries];
        self.run_ok(&Run::new(&argv, within + Duration::from_secs(5))).await.map(|_| ())
    }

    /// The OS user can write into and enter `path`.
    pub async fn user_can_use_dir(&self, path: &Path, deadline: Duration) -> Result<bool, HostError> {
        let argv = [
            "test".to_string(),
            "-w".into(),
            path.display().to_string(),
            "-a".into(),
            "-x".into(),
            path.display().to_string(),
        ];
        Ok(self.run(&Run::new(&argv, deadline)).await?.ok())
    }
}

/// The end of a command's error output, for messages.
pub fn last_lines(stderr: &str, stdout: &str) -> String {
    let src = if stderr.trim().is_empty() { stdout } else { stderr };
    let lines: Vec<&str> = src.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}
