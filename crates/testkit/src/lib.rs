//! Test support: real PostgreSQL servers on 127.0.0.x with free ports in
//! temporary directories, driven through the real `pgscale` binary, and
//! stopped by PID (postmaster.pid) when the test ends, passes or fails.
//! Never a dependency of a shipped crate.

pub mod etcd;
pub mod netns;
pub mod probe;
pub mod shardload;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The OS user the servers run as: `postgres` under root, else ourselves.
pub fn os_user() -> String {
    if is_root() {
        "postgres".into()
    } else {
        nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten().map(|u| u.name).unwrap_or_default()
    }
}

/// A port nobody listens on right now on `host`.
pub fn free_port(host: &str) -> u16 {
    std::net::TcpListener::bind((host, 0)).expect("bind a free port").local_addr().expect("local addr").port()
}

/// One test's world: a temp dir with a pgscale home and room for data
/// directories. Dropping it kills every server started under it.
pub struct Kit {
    /// With `with_etcd`: every command keeps the cluster's state in it.
    /// Declared first so it stops before the directory goes.
    pub etcd: Option<etcd::Etcd>,
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
}

impl Kit {
    pub fn new(bin: &str) -> Kit {
        // PGSCALE_TEST_KEEP=1 keeps the directory (logs) for a post-mortem.
        let keep = std::env::var_os("PGSCALE_TEST_KEEP").is_some();
        let dir = tempfile::Builder::new().prefix("pgscale-test-").disable_cleanup(keep).tempdir().expect("tempdir");
        // Servers run as the OS user (`postgres` under root): let it in.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Kit { etcd: None, dir, bin: PathBuf::from(bin) }
    }

    /// A kit whose commands keep clusters' state in a fresh 3-member etcd
    /// (lock TTL 4 s; a command waits up to 10 s for a lock, so a re-run
    /// after a kill -9 proceeds once the dead holder's lease expired). A
    /// 2 s TTL gave up after 1.5 s without a renewal, which a loaded CI
    /// machine reached once while etcd re-elected.
    pub fn with_etcd(bin: &str) -> Kit {
        let mut k = Kit::new(bin);
        k.etcd = Some(etcd::Etcd::start(k.dir.path(), 3));
        k
    }

    /// A kit whose etcd has one member in each host of the namespace test
    /// bed (the commands, in the root namespace, reach it over the etcd
    /// bridge).
    pub fn with_etcd_in(bin: &str, net: &netns::Net) -> Kit {
        let mut k = Kit::new(bin);
        k.etcd = Some(etcd::Etcd::start_in(k.dir.path(), net));
        k
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn home(&self) -> PathBuf {
        self.path("home")
    }

    /// `pgscale` with this kit's home; a safety deadline so a hang fails the
    /// test instead of blocking the suite (not a performance assertion).
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::new(&self.bin);
        // TMPDIR: ssh control sockets (and their master processes) live
        // under the kit, so the kit can find and stop them.
        c.timeout(Duration::from_secs(180));
        for (k, v) in self.env() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }

    /// The environment of every `pgscale` the kit runs: its home, TMPDIR,
    /// no failpoint, and the kit's etcd (if any) with short lock timings.
    fn env(&self) -> Vec<(&'static str, Option<String>)> {
        let mut v = vec![
            ("PGSCALE_HOME", Some(self.home().display().to_string())),
            ("TMPDIR", Some(self.dir.path().display().to_string())),
            ("PGSCALE_FAILPOINT", None),
            ("PGSCALE_ETCD_KEY_FILE", None),
        ];
        match &self.etcd {
            Some(e) => v.extend([
                ("PGSCALE_ETCD", Some(e.endpoints())),
                ("PGSCALE_ETCD_PREFIX", Some("/test".to_string())),
                ("PGSCALE_LOCK_TTL", Some("4s".to_string())),
                ("PGSCALE_LOCK_WAIT", Some("10s".to_string())),
            ]),
            None => v.extend(
                ["PGSCALE_ETCD", "PGSCALE_ETCD_PREFIX", "PGSCALE_LOCK_TTL", "PGSCALE_LOCK_WAIT"].map(|k| (k, None)),
            ),
        }
        v
    }

    /// `pgscale` as a plain process (for daemons such as the agent), with
    /// the same environment as [`Kit::cmd`]; wrap it in [`Child`].
    pub fn spawn(&self, args: &[&str], log: &str) -> Child {
        let mut c = Command::new(&self.bin);
        c.args(args);
        self.daemon(c, log)
    }

    /// [`Kit::spawn`] inside host `i` of the namespace test bed, with a
    /// TMPDIR of that host's own (SSH control sockets are files: a master
    /// opened in one namespace must not carry another's connections).
    pub fn spawn_in(&self, net: &netns::Net, i: usize, args: &[&str], log: &str) -> Child {
        let mut c = net.command(i, self.bin.to_str().expect("a UTF-8 path"));
        c.args(args);
        let tmp = self.path(&format!("tmp-{}", net.ns[i]));
        std::fs::create_dir_all(&tmp).expect("tmp dir");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        c.env("TMPDIR", &tmp);
        self.daemon(c, log)
    }

    fn daemon(&self, mut c: Command, log: &str) -> Child {
        for (k, v) in self.env() {
            match (k, v) {
                // a TMPDIR set by the caller (spawn_in) stays
                ("TMPDIR", _) if c.get_envs().any(|(e, _)| e == "TMPDIR") => continue,
                (k, Some(v)) => c.env(k, v),
                (k, None) => c.env_remove(k),
            };
        }
        let f = std::fs::File::create(self.path(log)).expect("log file");
        c.stdout(std::process::Stdio::null()).stderr(f);
        Child(c.spawn().expect("spawn pgscale"))
    }

    /// The cluster's record as its store holds it (the home's YAML, or the
    /// JSON in etcd), for tests that look at what pgscale wrote.
    pub fn recorded_inventory(&self, cluster: &str) -> String {
        match &self.etcd {
            Some(e) => e.dump(&format!("/test/clusters/{cluster}/inventory")),
            None => std::fs::read_to_string(self.home().join(cluster).join("inventory.yaml")).unwrap_or_default(),
        }
    }

    /// The operation log (`pgscale log --output json`), whatever the store.
    pub fn operation_log(&self, cluster: &str) -> String {
        let o = self
            .cmd()
            .args(["log", "-n", cluster, "--limit", "100000", "--output", "json"])
            .output()
            .expect("pgscale log");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Write a file into the kit's dir and return its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::write(&p, text).expect("write file");
        p
    }

    /// An inventory YAML with one node per (name, host, port).
    pub fn inventory(&self, cluster: &str, extra_pg: &str, nodes: &[(&str, &str, u16)]) -> String {
        let mut y = format!("name: {cluster}\n");
        if !extra_pg.is_empty() {
            y += "postgres:\n";
            y += extra_pg;
        }
        y += "nodes:\n";
        for (n, h, p) in nodes {
            y += &format!("  - name: {n}\n    host: {h}\n    port: {p}\n    data_dir: {}\n", self.path(n).display());
        }
        y
    }

    /// PIDs of the postmasters of data directories under this kit.
    pub fn postmaster_pids(&self) -> Vec<(PathBuf, i32)> {
        let mut v = Vec::new();
        // data directories sit at most two levels below the kit's dir
        let mut dirs = vec![self.dir.path().to_path_buf()];
        for depth in 0..2 {
            let mut next = Vec::new();
            for d in &dirs {
                let Ok(rd) = std::fs::read_dir(d) else { continue };
                for e in rd.flatten().filter(|e| e.path().is_dir()) {
                    if let Some(pid) = postmaster_pid(&e.path()) {
                        v.push((e.path(), pid));
                    } else if depth == 0 {
                        next.push(e.path());
                    }
                }
            }
            dirs = next;
        }
        v
    }
}

/// The postmaster PID of a data directory, if its postmaster.pid names a live process.
pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// Alive and not a zombie (an exited server whose parent has not reaped it
/// yet is gone for our purposes).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the field after the parenthesised command name
        Ok(s) => s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

pub fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// Wait (bounded) until the process is reaped, so tools that test a PID with
/// kill(pid, 0), like pg_ctl, see it gone too. Returns whether it is gone.
pub fn wait_gone(pid: i32, within: Duration) -> bool {
    let until = std::time::Instant::now() + within;
    while Path::new(&format!("/proc/{pid}")).exists() {
        if std::time::Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// kill -9 a postmaster and its children (pg_ctl makes it a session and
/// process-group leader, so the group is exactly its processes).
pub fn kill_server(pid: i32) {
    use nix::sys::signal::Signal;
    signal(pid, Signal::SIGCONT);
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    signal(pid, Signal::SIGKILL);
    wait_gone(pid, Duration::from_secs(10));
}

impl Kit {
    /// Processes whose command line names this kit's directory (ssh
    /// control masters left by a killed pgscale, a stray copy), found in
    /// /proc: only what this kit started.
    pub fn processes_under(&self) -> Vec<i32> {
        let me = std::process::id() as i32;
        let dir = self.dir.path().display().to_string();
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
            if pid != me && String::from_utf8_lossy(&cmd).contains(&dir) && alive(pid) {
                v.push(pid);
            }
        }
        v
    }
}

impl Drop for Kit {
    fn drop(&mut self) {
        for (_, pid) in self.postmaster_pids() {
            kill_server(pid);
        }
        for pid in self.processes_under() {
            signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A SIGSTOPped process, resumed (SIGCONT) when dropped, even if the test fails.
pub struct Frozen(pub i32);

impl Frozen {
    pub fn freeze(pid: i32) -> Frozen {
        signal(pid, nix::sys::signal::Signal::SIGSTOP);
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

/// A process started by a test, killed (by PID) when dropped.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A finished command's output, or a panic showing its exit code and output.
pub fn ok(o: std::process::Output) -> std::process::Output {
    assert!(
        o.status.success(),
        "exit {:?}: {}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Run a command to completion; panic with its output if it fails.
pub fn sh(argv: &[&str]) -> String {
    let o = Command::new(argv[0]).args(&argv[1..]).output().unwrap_or_else(|e| panic!("run {argv:?}: {e}"));
    assert!(
        o.status.success(),
        "{argv:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An sshd of the test's own on a loopback address (free port, own host
/// key, own authorized_keys), so the SSH path is real. Killed by PID on drop.
pub struct Sshd {
    pub addr: String,
    pub port: u16,
    pub login: String,
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
    pub log: PathBuf,
    _child: Child,
}

impl Sshd {
    pub fn start(dir: &Path) -> Sshd {
        Sshd::start_on(dir, "127.0.0.1")
    }

    /// The sshd's PID (to freeze it).
    pub fn pid(&self) -> i32 {
        self._child.0.id() as i32
    }

    /// An sshd listening on `addr` (a loopback address such as 127.0.0.2).
    pub fn start_on(dir: &Path, addr: &str) -> Sshd {
        Sshd::launch(dir, addr, free_port(addr), None)
    }

    /// An sshd inside host `i` of the namespace test bed, on its PostgreSQL
    /// network address.
    pub fn start_in(dir: &Path, net: &netns::Net, i: usize) -> Sshd {
        Sshd::launch(dir, &net.pg_addr(i), 2222, Some((net, i)))
    }

    fn launch(dir: &Path, addr: &str, port: u16, ns: Option<(&netns::Net, usize)>) -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "the SSH test needs openssh-server (apt-get install openssh-server); .ci/run installs it"
        );
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = |f: &str| dir.join(f).display().to_string();
        sh(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", &p("host_key")]);
        sh(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", &p("id")]);
        std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).unwrap();
        std::fs::set_permissions(dir.join("authorized_keys"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
        let mut kh = String::new();
        for part in host_pub.split_whitespace().take(2) {
            kh += " ";
            kh += part;
        }
        std::fs::write(dir.join("known_hosts"), format!("[{addr}]:{port}{kh}\n")).unwrap();
        // Under root, log in as root (the system `postgres` account is locked
        // for SSH) and let pgscale switch with runuser; else as ourselves.
        let login = if is_root() { "root".to_string() } else { os_user() };
        if is_root() {
            // privilege separation directory
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let conf = format!(
            "Port {port}\nListenAddress {addr}\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\nStrictModes no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n\
             AllowUsers {login}\nLogLevel INFO\nMaxStartups 50\nMaxSessions 50\n",
            p("host_key"),
            p("sshd.pid"),
            p("authorized_keys")
        );
        std::fs::write(dir.join("sshd_config"), conf).unwrap();
        let log = dir.join("sshd.log");
        let mut c = match ns {
            Some((net, i)) => net.command(i, "/usr/sbin/sshd"),
            None => Command::new(sshd),
        };
        let child =
            c.args(["-D", "-f", &p("sshd_config"), "-E", &log.display().to_string()]).spawn().expect("start sshd");
        let child = Child(child);
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((addr, port)).is_err() {
            assert!(
                std::time::Instant::now() < until,
                "sshd did not listen: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd {
            addr: addr.to_string(),
            port,
            login,
            identity: dir.join("id"),
            known_hosts: dir.join("known_hosts"),
            log,
            _child: child,
        }
    }

    /// The `ssh:` block of a node in an inventory.
    pub fn yaml(&self) -> String {
        format!(
            "    transport: ssh\n    ssh:\n      user: {}\n      port: {}\n      identity_file: {}\n      known_hosts_file: {}\n",
            self.login,
            self.port,
            self.identity.display(),
            self.known_hosts.display()
        )
    }
}

/// Run a server binary (pg_ctl, psql…) as the cluster's OS user, from `/`.
pub fn as_os_user(argv: &[&str]) -> std::process::Output {
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).args(argv);
        c
    } else {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]);
        c
    };
    c.current_dir("/").output().unwrap_or_else(|e| panic!("run {argv:?}: {e}"))
}

/// The server binaries' directory (newest installed version).
pub fn bin_dir() -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).filter(|p| p.join("pg_ctl").exists()).collect())
        .unwrap_or_default();
    v.sort_by_key(|p| {
        p.parent().and_then(|x| x.file_name()).and_then(|x| x.to_str()).and_then(|x| x.parse::<u32>().ok())
    });
    v.pop().expect("PostgreSQL server binaries under /usr/lib/postgresql")
}

/// The admin password pgscale generated for a cluster (from its 0600 file).
pub fn admin_password(home: &Path, cluster: &str) -> String {
    let text = std::fs::read_to_string(home.join(cluster).join("pgpass")).expect("secret file");
    text.lines().find(|l| l.contains(":postgres:")).and_then(|l| l.rsplit(':').next()).expect("admin line").to_string()
}

/// PIDs of running pg_basebackup processes whose command line names `data_dir`
/// (read from /proc; nothing is signalled).
pub fn basebackups_into(data_dir: &Path) -> Vec<i32> {
    let want = data_dir.display().to_string();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let is_copy = args.first().is_some_and(|a| a.ends_with("pg_basebackup"));
        if is_copy && args.contains(&want) && alive(pid) {
            v.push(pid);
        }
    }
    v
}

/// Give a directory to the OS user (the remote side of the SSH tests
/// creates data directories as that user).
pub fn chown_to_os_user(path: &Path) {
    let u = nix::unistd::User::from_name(&os_user()).unwrap().unwrap();
    std::os::unix::fs::chown(path, Some(u.uid.as_raw()), Some(u.gid.as_raw())).unwrap();
}

/// A mount made by a test, unmounted (lazily) when dropped, even if the test fails.
pub struct Unmount(pub PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A uniform phase within the default 2 s lease (from the clock's
/// nanoseconds): faults injected at a random moment of the lease.
pub fn random_phase() -> std::time::Duration {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    std::time::Duration::from_millis(u64::from(n % 2000))
}
