use crate::{DirState, HostError, Output, Run};
use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Where and how to reach a remote host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    /// The cluster's OS user: commands run as it (through `runuser` when the
    /// SSH login is root, `sudo -n -u` when it is another user).
    pub os_user: String,
}

/// One multiplexed OpenSSH connection (BatchMode: keys or agent only).
#[derive(Debug, Clone)]
pub struct SshHost {
    target: SshTarget,
    session: Arc<Session>,
}

fn sh(script: &str, path: &Path) -> Vec<String> {
    // The script is a constant; the path travels as "$1", never pasted in.
    // From `/`: the login's home (the working directory) may not be
    // readable by the OS user, and find(1) insists on returning to it.
    vec!["sh".into(), "-c".into(), format!("cd / && {{ {script}; }}"), "sh".into(), path.display().to_string()]
}

impl SshHost {
    pub async fn connect(target: SshTarget, deadline: Duration) -> Result<SshHost, HostError> {
        let mut b = SessionBuilder::default();
        if let Some(u) = &target.user {
            b.user(u.clone());
        }
        if let Some(p) = target.port {
            b.port(p);
        }
        if let Some(k) = &target.identity_file {
            b.keyfile(k);
        }
        if let Some(k) = &target.known_hosts_file {
            b.user_known_hosts_file(k);
        }
        if let Some(c) = &target.config_file {
            b.config_file(c);
        }
        b.known_hosts_check(KnownHosts::Strict)
            .connect_timeout(deadline)
            .server_alive_interval(Duration::from_secs(5))
            // A short path: unix socket paths are limited to 107 bytes.
            .control_directory(std::env::temp_dir());
        let dest = target.host.clone();
        let session = match tokio::time::timeout(deadline + Duration::from_secs(1), b.connect(&dest)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(HostError::Ssh {
                    dest,
                    message: format!("{e} (check that `ssh -o BatchMode=yes` works for this host and user)"),
                })
            }
            Err(_) => return Err(HostError::Timeout { what: format!("ssh connect to {dest}"), deadline }),
        };
        Ok(SshHost { target, session: Arc::new(session) })
    }

    pub fn dest(&self) -> String {
        match &self.target.user {
            Some(u) => format!("{u}@{}", self.target.host),
            None => self.target.host.clone(),
        }
    }

    pub async fn run(&self, r: &Run<'_>) -> Result<Output, HostError> {
        self.run_as(r, true).await
    }

    /// Run as the SSH login itself (the pre-check, `--install`).
    pub async fn run_login(&self, r: &Run<'_>) -> Result<Output, HostError> {
        self.run_as(r, false).await
    }

    async fn run_as(&self, r: &Run<'_>, as_os_user: bool) -> Result<Output, HostError> {
        let mut argv: Vec<String> = Vec::new();
        let login = self.target.user.clone().unwrap_or_default();
        // Commands run as the OS user: directly when that is the login,
        // through runuser when logged in as root, else through sudo -n (no
        // password prompt: BatchMode must never wait for input).
        if as_os_user && login == "root" && self.target.os_user != "root" {
            argv.extend(["runuser".into(), "-u".into(), self.target.os_user.clone(), "--".into()]);
        } else if as_os_user && !login.is_empty() && login != self.target.os_user {
            argv.extend(["sudo".into(), "-n".into(), "-u".into(), self.target.os_user.clone(), "--".into()]);
        }
        if !r.env.is_empty() {
            argv.push("env".into());
            argv.extend(r.env.iter().map(|(k, v)| format!("{k}={v}")));
        }
        argv.extend(r.argv.iter().cloned());
        let Some((prog, args)) = argv.split_first() else {
            return Err(HostError::Config("empty command".into()));
        };
        let what = format!("{} on {}", r.what(), self.dest());
        let fut = async {
            let mut c = self.session.command(prog);
            // `arg` shell-quotes each argument for the remote shell.
            c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
            c.stdin(if r.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
            let mut child =
                c.spawn().await.map_err(|e| HostError::Ssh { dest: self.dest(), message: e.to_string() })?;
            if let (Some(data), Some(mut sin)) = (r.stdin, child.stdin().take()) {
                sin.write_all(data)
                    .await
                    .map_err(|e| HostError::Io { what: format!("{what}: write stdin"), source: e })?;
                drop(sin);
            }
            let o = child
                .wait_with_output()
                .await
                .map_err(|e| HostError::Ssh { dest: self.dest(), message: e.to_string() })?;
            Ok::<_, HostError>(Output::from(o))
        };
        crate::within_deadline(what.clone(), r.deadline, fut).await
    }

    async fn script(
        &self,
        script: &str,
        path: &Path,
        stdin: Option<&[u8]>,
        deadline: Duration,
    ) -> Result<Output, HostError> {
        let argv = sh(script, path);
        let mut r = Run::new(&argv, deadline);
        r.stdin = stdin;
        let o = self.run(&r).await?;
        if !o.ok() {
            return Err(HostError::Failed {
                what: format!("{} on {}", path.display(), self.dest()),
                status: o.status,
                stderr: o.stderr,
            });
        }
        Ok(o)
    }

    pub async fn dir_state(&self, path: &Path, deadline: Duration) -> Result<DirState, HostError> {
        let o = self
            .script(
                r#"if [ ! -e "$1" ]; then echo missing; elif [ ! -d "$1" ] || [ -L "$1" ]; then echo notdir; elif [ -z "$(ls -A "$1")" ]; then echo empty; else echo notempty; fi"#,
                path,
                None,
                deadline,
            )
            .await?;
        Ok(match o.stdout.trim() {
            "missing" => DirState::Missing,
            "empty" => DirState::Empty,
            "notdir" => DirState::NotADirectory,
            _ => DirState::NotEmpty,
        })
    }

    pub async fn file_exists(&self, path: &Path, deadline: Duration) -> Result<bool, HostError> {
        let o = self.script(r#"if [ -e "$1" ]; then echo yes; else echo no; fi"#, path, None, deadline).await?;
        Ok(o.stdout.trim() == "yes")
    }

    pub async fn make_dir(&self, path: &Path, deadline: Duration) -> Result<bool, HostError> {
        let o = self
            .script(
                r#"if [ -d "$1" ]; then echo exists; else mkdir -p "$1" && echo created; fi && chmod 0700 "$1""#,
                path,
                None,
                deadline,
            )
            .await?;
        Ok(o.stdout.trim() == "created")
    }

    pub async fn write_file(&self, path: &Path, data: &[u8], mode: u32, deadline: Duration) -> Result<(), HostError> {
        let script = format!(
            r#"umask 077 && cat > "$1.pgscale-tmp" && chmod {mode:o} "$1.pgscale-tmp" && mv -f "$1.pgscale-tmp" "$1""#
        );
        self.script(&script, path, Some(data), deadline).await.map(|_| ())
    }

    pub async fn remove_dir(&self, path: &Path, deadline: Duration) -> Result<bool, HostError> {
        let o = self.script(r#"if [ -e "$1" ]; then rm -rf -- "$1" && echo removed; fi"#, path, None, deadline).await?;
        Ok(o.stdout.trim() == "removed")
    }

    pub async fn empty_dir(&self, path: &Path, deadline: Duration) -> Result<(), HostError> {
        self.script(r#"if [ -d "$1" ]; then find "$1" -mindepth 1 -delete; fi"#, path, None, deadline).await.map(|_| ())
    }
}
