use crate::{DirState, HostError, Output, Run};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// The account the servers run as, and whether we must switch to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl OsUser {
    /// Look the user up on this machine.
    pub fn lookup(name: &str) -> Result<OsUser, HostError> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Ok(OsUser { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw(), home: u.dir }),
            Ok(None) => Err(HostError::Config(format!(
                "OS user `{name}` does not exist on this machine; create it (e.g. `useradd --system --create-home {name}`) or set `postgres.os_user`"
            ))),
            Err(e) => Err(HostError::Config(format!("look up OS user `{name}`: {e}"))),
        }
    }

    /// The default: the invoking user, `postgres` when invoked as root.
    pub fn default_name() -> String {
        if nix::unistd::geteuid().is_root() {
            "postgres".into()
        } else {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "postgres".into()))
        }
    }
}

/// This machine. When pgscale runs as root, commands run as the OS user and
/// files/directories are handed to it.
#[derive(Debug, Clone)]
pub struct LocalHost {
    user: OsUser,
    /// We are root and switch to `user` for commands.
    switch: bool,
}

fn ioe(what: String) -> impl FnOnce(std::io::Error) -> HostError {
    move |source| HostError::Io { what, source }
}

impl LocalHost {
    pub fn new(user: OsUser) -> Result<LocalHost, HostError> {
        let me = nix::unistd::geteuid();
        let switch = me.is_root();
        if switch && user.uid == 0 {
            return Err(HostError::Config(
                "PostgreSQL refuses to run as root: set `postgres.os_user` to an unprivileged user".into(),
            ));
        }
        if !switch && me.as_raw() != user.uid {
            return Err(HostError::Config(format!(
                "pgscale runs as uid {} but the cluster's OS user is `{}` (uid {}): run pgscale as `{}` or as root",
                me.as_raw(),
                user.name,
                user.uid,
                user.name
            )));
        }
        Ok(LocalHost { user, switch })
    }

    /// This machine as the invoking user, switching to nobody: for the
    /// pre-check and `--install`, which must work before the OS user exists.
    pub fn invoking() -> Result<LocalHost, HostError> {
        let me = nix::unistd::geteuid();
        let u = nix::unistd::User::from_uid(me)
            .map_err(|e| HostError::Config(format!("look up uid {me}: {e}")))?
            .ok_or_else(|| HostError::Config(format!("uid {me} has no user name")))?;
        let user = OsUser { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw(), home: u.dir };
        Ok(LocalHost { user, switch: false })
    }

    /// The same host, running commands as the invoking user.
    pub fn as_login(&self) -> LocalHost {
        LocalHost::invoking().unwrap_or_else(|_| LocalHost { user: self.user.clone(), switch: false })
    }

    pub fn user(&self) -> &OsUser {
        &self.user
    }

    fn chown(&self, path: &Path) -> Result<(), HostError> {
        if self.switch {
            std::os::unix::fs::chown(path, Some(self.user.uid), Some(self.user.gid)).map_err(ioe(format!(
                "chown {} to {}",
                path.display(),
                self.user.name
            )))?;
        }
        Ok(())
    }

    pub async fn run(&self, r: &Run<'_>) -> Result<Output, HostError> {
        let Some((prog, args)) = r.argv.split_first() else {
            return Err(HostError::Config("empty command".into()));
        };
        let mut c = tokio::process::Command::new(prog);
        c.args(args)
            .stdin(if r.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // On a deadline the child is killed when the future is dropped.
            .kill_on_drop(true);
        if self.switch {
            // std drops supplementary groups (setgroups(0)) before setuid.
            c.uid(self.user.uid).gid(self.user.gid);
            c.env("HOME", &self.user.home).env("USER", &self.user.name).env("LOGNAME", &self.user.name);
            // root's cwd is not readable by the OS user: tools would complain.
            c.current_dir("/");
        }
        for (k, v) in r.env {
            c.env(k, v);
        }
        // A copy dies with pgscale: it must not outlive the run that
        // started it (a re-run would empty the directory under it). Set
        // after the switch to the OS user (a credential change clears it).
        // The signal fires when the spawning *thread* ends: the runtime's
        // worker threads live as long as pgscale; never spawn such a child
        // from a blocking-pool thread.
        if r.die_with_pgscale {
            let parent = std::process::id() as i32;
            // SAFETY: prctl and getppid are async-signal-safe; nothing is
            // allocated between fork and exec (raw errno values).
            unsafe {
                c.pre_exec(move || {
                    if nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).is_err() {
                        return Err(std::io::Error::from_raw_os_error(nix::libc::EPERM));
                    }
                    // The parent may already have died between fork and here.
                    if nix::unistd::getppid().as_raw() != parent {
                        return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
                    }
                    Ok(())
                });
            }
        }
        let what = r.what();
        let fut = async {
            let mut child = c.spawn().map_err(ioe(format!("{what}: start {prog}")))?;
            if let (Some(data), Some(mut sin)) = (r.stdin, child.stdin.take()) {
                sin.write_all(data).await.map_err(ioe(format!("{what}: write stdin")))?;
                drop(sin);
            }
            let o = child.wait_with_output().await.map_err(ioe(format!("{what}: wait")))?;
            Ok::<_, HostError>(Output::from(o))
        };
        crate::within_deadline(what.clone(), r.deadline, fut).await
    }

    pub fn dir_state(&self, path: &Path) -> Result<DirState, HostError> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DirState::Missing),
            Err(e) => Err(ioe(format!("stat {}", path.display()))(e)),
            Ok(m) if !m.is_dir() => Ok(DirState::NotADirectory),
            Ok(_) => {
                let mut rd = fs::read_dir(path).map_err(ioe(format!("read directory {}", path.display())))?;
                Ok(if rd.next().is_none() { DirState::Empty } else { DirState::NotEmpty })
            }
        }
    }

    pub fn make_dir(&self, path: &Path) -> Result<bool, HostError> {
        let created = !path.exists();
        if created {
            // Parents are made traversable (0755) so the OS user can reach
            // the directory when we create them as root.
            if let Some(parent) = path.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(ioe(format!("create directory {}", parent.display())))?;
            }
            fs::DirBuilder::new()
                .mode(0o700)
                .create(path)
                .map_err(ioe(format!("create directory {}", path.display())))?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(ioe(format!("chmod 0700 {}", path.display())))?;
        self.chown(path)?;
        Ok(created)
    }

    pub fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> Result<(), HostError> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        let what = format!("write {}", path.display());
        let mut tmp = tempfile_in(dir).map_err(ioe(what.clone()))?;
        let res = (|| {
            tmp.1.write_all(data)?;
            tmp.1.set_permissions(fs::Permissions::from_mode(mode))?;
            tmp.1.sync_all()?;
            Ok::<_, std::io::Error>(())
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp.0);
            return Err(ioe(what)(e));
        }
        self.chown(&tmp.0)?;
        fs::rename(&tmp.0, path).map_err(ioe(what))?;
        Ok(())
    }

    pub fn remove_dir(&self, path: &Path) -> Result<bool, HostError> {
        match fs::remove_dir_all(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ioe(format!("remove {}", path.display()))(e)),
        }
    }

    pub fn empty_dir(&self, path: &Path) -> Result<(), HostError> {
        let rd = match fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ioe(format!("read directory {}", path.display()))(e)),
        };
        for e in rd {
            let e = e.map_err(ioe(format!("read directory {}", path.display())))?;
            let p = e.path();
            let r = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            r.map_err(ioe(format!("remove {}", p.display())))?;
        }
        Ok(())
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    for i in 0..100u32 {
        let p = dir.join(format!(".pgscale-tmp-{}-{i}", std::process::id()));
        match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&p) {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary file name"))
}
