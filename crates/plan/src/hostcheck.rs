//! `pgscale host check`: the pure half of the host pre-check that runs before
//! init, scale-out and rejoin change anything, and of `--install`, which makes
//! a host ready.
//!
//! The caller runs [`probe_argv`] on every host (as the SSH login user, root
//! or a sudo-capable user: not through the switch to the OS user), parses its
//! output with [`parse_probe`], measures what only it can (is the port free,
//! how big are the primary's databases, what time is it here) and hands it
//! all to [`findings`], which reports every problem at once. `--install` turns
//! a probe into the commands of [`install_steps`]. Nothing here does I/O.
//!
//! Every command is an argv vector. Where a shell is needed the script is a
//! constant and user values travel as positional arguments ("$1"...), never
//! pasted into the script text.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The binaries pgscale runs, all from one bin dir.
pub const BINARIES: [&str; 7] =
    ["postgres", "initdb", "pg_ctl", "pg_controldata", "pg_basebackup", "pg_rewind", "psql"];

/// The oldest major pgscale supports: init sets `wal_keep_size` (new in 13),
/// which an older server refuses at start.
pub const MIN_MAJOR: u32 = 13;

/// Clock differences from this machine at or above this are warned about.
pub const CLOCK_WARN_MS: i64 = 1000;

/// The families `--install` knows, for messages.
pub const SUPPORTED_FAMILIES: &str =
    "Debian/Ubuntu (apt-get) and the RHEL family: rhel, centos, rocky, almalinux, fedora, ol (dnf)";

/// Facts about one host as `key=value` lines, one per fact; always exits 0
/// (negative facts are facts). Arguments: `$1` the OS user, `$2` the
/// configured bin dir or empty (then it is searched as `pg::find_bin_dir`
/// does), then the data directories of the nodes on this host.
///
/// Printed keys, in order: `probe=1`; `clock_res_ms` (1, or 1000 where `date`
/// lacks `%3N`) and `epoch_ms` (empty if unknown); `os.id`, `os.id_like`,
/// `os.version_id` (from os-release); `uid`, `login`; `sudo` (yes/no: `sudo
/// -n true` works, tested only when not root); `user` (yes/no: the OS user
/// exists); `as_user` (how the login can act as the OS user: self, runuser,
/// sudo or no); `pkg` (the package managers found among apt-get, dnf, yum,
/// space-separated); `bin_dir.given` (yes/no) and `bin_dir` (empty when none
/// found); `bin.<name>=yes|no` for each of [`BINARIES`]; `version` (the first
/// line of `postgres --version`); per data directory N: `dir.N.path`,
/// `dir.N.ancestor` (the directory itself or its nearest existing ancestor),
/// `dir.N.writable` (yes/no/unknown: the OS user can write into and enter the
/// ancestor; no when the user does not exist), `dir.N.avail_kib` and
/// `dir.N.mount` (from `df -Pk`, absent if df failed); finally `done=1`.
pub const PROBE_SCRIPT: &str = r##"u=${1-}; b=${2-}
if [ $# -ge 2 ]; then shift 2; else set --; fi
kv() { printf '%s=%s\n' "$1" "$2"; }
has() { command -v "$1" >/dev/null 2>&1; }
kv probe 1
t=$(date +%s%3N 2>/dev/null)
case $t in
  ''|*[!0-9]*) r=1000; t=$(date +%s 2>/dev/null)
    case $t in ''|*[!0-9]*) t= ;; *) t=${t}000 ;; esac ;;
  *) r=1 ;;
esac
kv clock_res_ms "$r"
kv epoch_ms "$t"
f=/etc/os-release; [ -r "$f" ] || f=/usr/lib/os-release
osr() { sed -n "s/^$1=//p" "$f" 2>/dev/null | head -n 1 | tr -d "\"'"; }
kv os.id "$(osr ID)"
kv os.id_like "$(osr ID_LIKE)"
kv os.version_id "$(osr VERSION_ID)"
uid=$(id -u 2>/dev/null); me=$(id -un 2>/dev/null)
kv uid "$uid"
kv login "$me"
s=no
if [ "$uid" != 0 ] && has sudo && sudo -n true >/dev/null 2>&1; then s=yes; fi
kv sudo "$s"
if [ -n "$u" ] && id -u "$u" >/dev/null 2>&1; then user=yes; else user=no; fi
kv user "$user"
as=no
if [ "$user" = yes ]; then
  if [ "$me" = "$u" ]; then as=self
  elif [ "$uid" = 0 ]; then if has runuser; then as=runuser; fi
  elif has sudo && sudo -n -u "$u" true >/dev/null 2>&1; then as=sudo
  fi
fi
kv as_user "$as"
asu() {
  case $as in
    self) "$@" ;;
    runuser) runuser -u "$u" -- "$@" ;;
    sudo) sudo -n -u "$u" -- "$@" ;;
    *) return 1 ;;
  esac
}
p=
for m in apt-get dnf yum; do if has "$m"; then p="$p $m"; fi; done
kv pkg "${p# }"
if [ -n "$b" ]; then kv bin_dir.given yes; else
  kv bin_dir.given no
  for d in "$(pg_config --bindir 2>/dev/null)" \
      $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r) \
      $(ls -d /usr/pgsql-*/bin 2>/dev/null | sort -t- -k2 -n -r) \
      /usr/local/pgsql/bin "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")"; do
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then b=$d; break; fi
  done
fi
kv bin_dir "$b"
for x in postgres initdb pg_ctl pg_controldata pg_basebackup pg_rewind psql; do
  if [ -n "$b" ] && [ -f "$b/$x" ] && [ -x "$b/$x" ]; then kv "bin.$x" yes; else kv "bin.$x" no; fi
done
v=
if [ -n "$b" ] && [ -f "$b/postgres" ] && [ -x "$b/postgres" ]; then
  if [ "$as" != no ]; then v=$(asu "$b/postgres" --version 2>/dev/null | head -n 1)
  else v=$("$b/postgres" --version 2>/dev/null | head -n 1); fi
fi
kv version "$v"
i=0
for d in "$@"; do
  a=$d
  while [ ! -d "$a" ] && [ "$a" != / ] && [ "$a" != . ]; do a=$(dirname "$a"); done
  kv "dir.$i.path" "$d"
  kv "dir.$i.ancestor" "$a"
  if [ "$user" = no ]; then w=no
  elif [ "$as" = no ]; then w=unknown
  elif asu test -w "$a" -a -x "$a" >/dev/null 2>&1; then w=yes
  else w=no; fi
  kv "dir.$i.writable" "$w"
  df -Pk "$a" 2>/dev/null | awk -v i="$i" 'NR == 2 { print "dir." i ".avail_kib=" $4; print "dir." i ".mount=" $6 }'
  i=$((i + 1))
done
kv done 1
exit 0
"##;

/// `sh -c PROBE_SCRIPT sh OS_USER BIN_DIR_OR_EMPTY DATA_DIR...`
pub fn probe_argv(os_user: &str, bin_dir: Option<&Path>, data_dirs: &[PathBuf]) -> Vec<String> {
    let mut v = vec![
        "sh".to_string(),
        "-c".into(),
        PROBE_SCRIPT.into(),
        "sh".into(),
        os_user.into(),
        bin_dir.map(|b| b.display().to_string()).unwrap_or_default(),
    ];
    v.extend(data_dirs.iter().map(|d| d.display().to_string()));
    v
}

/// How the login user can run commands as the OS user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActAs {
    /// The login is the OS user.
    Login,
    /// Logged in as root: `runuser -u USER --`.
    Runuser,
    /// `sudo -n -u USER --` works.
    Sudo,
    /// No way (or the user does not exist).
    #[default]
    Cannot,
}

/// One data directory as the probe saw it.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize)]
pub struct DirProbe {
    /// The data directory asked about.
    pub path: PathBuf,
    /// `path` itself if it is a directory, else its nearest existing ancestor.
    pub ancestor: PathBuf,
    /// The OS user can write into and enter `ancestor`; None: could not tell.
    pub writable: Option<bool>,
    /// Free space for unprivileged users on `ancestor`'s filesystem.
    pub avail_bytes: Option<u64>,
    /// That filesystem's mount point (directories sharing one share its room).
    pub mount: Option<PathBuf>,
}

/// What [`PROBE_SCRIPT`] found on one host.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize)]
pub struct HostProbe {
    /// os-release `ID` (e.g. `debian`, `rocky`).
    pub os_id: String,
    /// os-release `ID_LIKE`, split on spaces.
    pub os_like: Vec<String>,
    pub os_version: String,
    /// The login user's name.
    pub login: String,
    pub is_root: bool,
    /// `sudo -n true` works (only tested when not root).
    pub sudo_ok: bool,
    pub os_user_exists: bool,
    pub act_as: ActAs,
    /// Package managers present, among apt-get, dnf, yum.
    pub package_managers: Vec<String>,
    /// The bin dir was given (postgres.bin_dir), not searched for.
    pub bin_dir_given: bool,
    /// The bin dir given, or the one found; None when none was found.
    pub bin_dir: Option<PathBuf>,
    /// Each of [`BINARIES`]: present and executable in `bin_dir`.
    pub binaries: BTreeMap<String, bool>,
    /// First line of `postgres --version`.
    pub version: Option<String>,
    /// The major version parsed from `version`.
    pub major: Option<u32>,
    /// One per data directory, in the order asked.
    pub dirs: Vec<DirProbe>,
    /// The host's clock when the probe started, ms since the epoch.
    pub epoch_ms: Option<i64>,
    /// Resolution of `epoch_ms`: 1, or 1000 where `date` lacks `%3N`.
    pub clock_res_ms: i64,
}

impl HostProbe {
    pub fn has_binary(&self, name: &str) -> bool {
        self.binaries.get(name).copied().unwrap_or(false)
    }

    pub fn missing_binaries(&self) -> Vec<&'static str> {
        BINARIES.iter().copied().filter(|b| !self.has_binary(b)).collect()
    }

    /// Root directly or through `sudo -n`.
    pub fn can_be_root(&self) -> bool {
        self.is_root || self.sudo_ok
    }

    pub fn family(&self) -> OsFamily {
        os_family(&self.os_id, &self.os_like)
    }

    pub fn dir(&self, data_dir: &Path) -> Option<&DirProbe> {
        self.dirs.iter().find(|d| d.path == data_dir)
    }
}

/// The major version in a `postgres --version` line: "postgres (PostgreSQL)
/// 15.18 (Debian ...)" → 15, "10.23" → 10, "16beta1" → 16, "9.6.24" → 9.
pub fn parse_major(version: &str) -> Option<u32> {
    let tok = version.split_whitespace().find(|t| t.starts_with(|c: char| c.is_ascii_digit()))?;
    let digits: String = tok.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn yes(v: &str) -> bool {
    v == "yes"
}

fn nonempty(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_string())
}

/// Read [`PROBE_SCRIPT`]'s output. `data_dirs` are the directories passed to
/// [`probe_argv`], in the same order. Err when the output is not a whole
/// probe (the script did not run, or was cut short).
pub fn parse_probe(stdout: &str, data_dirs: &[PathBuf]) -> Result<HostProbe, String> {
    let kv: BTreeMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
    if kv.get("probe") != Some(&"1") {
        return Err(format!("the host probe did not run (its output: {:?})", first_chars(stdout, 200)));
    }
    if kv.get("done") != Some(&"1") {
        return Err("the host probe's output was cut short".into());
    }
    let get = |k: &str| kv.get(k).copied().unwrap_or("");
    let version = nonempty(get("version"));
    let mut p = HostProbe {
        os_id: get("os.id").to_string(),
        os_like: get("os.id_like").split_whitespace().map(String::from).collect(),
        os_version: get("os.version_id").to_string(),
        login: get("login").to_string(),
        is_root: get("uid") == "0",
        sudo_ok: yes(get("sudo")),
        os_user_exists: yes(get("user")),
        act_as: match get("as_user") {
            "self" => ActAs::Login,
            "runuser" => ActAs::Runuser,
            "sudo" => ActAs::Sudo,
            _ => ActAs::Cannot,
        },
        package_managers: get("pkg").split_whitespace().map(String::from).collect(),
        bin_dir_given: yes(get("bin_dir.given")),
        bin_dir: nonempty(get("bin_dir")).map(PathBuf::from),
        binaries: BINARIES.iter().map(|b| (b.to_string(), yes(get(&format!("bin.{b}"))))).collect(),
        major: version.as_deref().and_then(parse_major),
        version,
        dirs: Vec::new(),
        epoch_ms: get("epoch_ms").parse().ok(),
        clock_res_ms: get("clock_res_ms").parse().unwrap_or(1000),
    };
    for (i, path) in data_dirs.iter().enumerate() {
        let d = |k: &str| get(&format!("dir.{i}.{k}")).to_string();
        if d("path") != path.display().to_string() {
            return Err(format!("the host probe did not report on {}", path.display()));
        }
        p.dirs.push(DirProbe {
            path: path.clone(),
            ancestor: PathBuf::from(d("ancestor")),
            writable: match d("writable").as_str() {
                "yes" => Some(true),
                "no" => Some(false),
                _ => None,
            },
            avail_bytes: d("avail_kib").parse::<u64>().ok().and_then(|k| k.checked_mul(1024)),
            mount: nonempty(&d("mount")).map(PathBuf::from),
        });
    }
    Ok(p)
}

fn first_chars(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// `date +%s%3N`: this host's clock, for a [`ClockSample`] of its own (more
/// precise than the probe's, which runs longer).
pub fn clock_argv() -> Vec<String> {
    vec!["date".into(), "+%s%3N".into()]
}

/// A host's clock read between two readings of this machine's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockSample {
    /// The host's clock, ms since the epoch.
    pub remote_ms: i64,
    /// Resolution of `remote_ms` (1, or 1000 when it only has seconds).
    pub remote_res_ms: i64,
    /// This machine's clock just before asking, and just after the answer.
    pub sent_ms: i64,
    pub received_ms: i64,
}

impl ClockSample {
    /// From the probe's own clock reading and the times around the probe call.
    pub fn from_probe(p: &HostProbe, sent_ms: i64, received_ms: i64) -> Option<ClockSample> {
        Some(ClockSample { remote_ms: p.epoch_ms?, remote_res_ms: p.clock_res_ms.max(1), sent_ms, received_ms })
    }

    /// How far the host's clock is ahead of this machine's (negative: behind).
    pub fn skew_ms(&self) -> i64 {
        let remote_mid = self.remote_ms + self.remote_res_ms / 2;
        remote_mid - (self.sent_ms + self.received_ms) / 2
    }

    /// How wrong [`Self::skew_ms`] can be: half the round trip and half the
    /// resolution.
    pub fn uncertainty_ms(&self) -> i64 {
        (self.received_ms - self.sent_ms).max(0) / 2 + self.remote_res_ms / 2
    }
}

/// What a standby's base copy needs on its filesystem: the primary's
/// databases plus 10 %.
pub fn copy_need_bytes(db_bytes: u64) -> u64 {
    db_bytes.saturating_add(db_bytes.div_ceil(10))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Error,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub host: String,
    /// The node(s) concerned, comma-separated; for host-wide checks all the
    /// nodes on the host.
    pub node: String,
    /// reachable, login, os_user, binaries, version, dir, space, port, clock.
    pub check: &'static str,
    pub severity: Severity,
    /// What is wrong and what to do next.
    pub message: String,
}

/// One node on a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInput {
    pub node: String,
    pub data_dir: PathBuf,
    pub port: u16,
    /// Something accepts TCP connections on host:port (the caller measured
    /// it; false for a node whose own server is what listens).
    pub port_in_use: bool,
    /// The primary's database size when this node gets a base copy; None
    /// when it gets none (the primary itself, a rejoin).
    pub copy_bytes: Option<u64>,
}

/// One host and its nodes, as the caller found them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInput {
    /// The address in the inventory.
    pub host: String,
    /// The parsed probe, or why there is none (SSH failed or timed out, the
    /// probe failed): then the host counts as unreachable.
    pub probe: Result<HostProbe, String>,
    pub clock: Option<ClockSample>,
    pub nodes: Vec<NodeInput>,
}

struct Out<'a> {
    host: &'a str,
    v: Vec<Finding>,
}

impl Out<'_> {
    fn add(&mut self, severity: Severity, node: &str, check: &'static str, message: String) {
        self.v.push(Finding { host: self.host.into(), node: node.into(), check, severity, message });
    }
}

/// " (or run with --install)" where --install could work, else a note on why not.
fn install_hint(p: &HostProbe) -> &'static str {
    if p.can_be_root() {
        " (or run with --install)"
    } else {
        " (--install would need root or passwordless sudo there)"
    }
}

/// Every finding for every host, problems and passes (Severity::Ok), host by
/// host in the order given. `primary_major`: the major version the primary
/// runs (or will run); every host must have the same.
pub fn findings(hosts: &[HostInput], os_user: &str, primary_major: Option<u32>) -> Vec<Finding> {
    let mut all = Vec::new();
    for h in hosts {
        let mut out = Out { host: &h.host, v: Vec::new() };
        let names = h.nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>().join(", ");
        match &h.probe {
            Err(e) => out.add(
                Severity::Error,
                &names,
                "reachable",
                format!("cannot probe {}: {e}; nothing else was checked there", h.host),
            ),
            Ok(p) => {
                out.add(Severity::Ok, &names, "reachable", format!("{} answered", h.host));
                host_findings(&mut out, h, p, &names, os_user, primary_major);
            }
        }
        for n in &h.nodes {
            if n.port_in_use {
                out.add(
                    Severity::Error,
                    &n.node,
                    "port",
                    format!("something already listens on {}:{}; choose a free port", h.host, n.port),
                );
            } else {
                out.add(Severity::Ok, &n.node, "port", format!("{}:{} is free", h.host, n.port));
            }
        }
        all.extend(out.v);
    }
    all
}

fn host_findings(out: &mut Out<'_>, h: &HostInput, p: &HostProbe, names: &str, user: &str, primary_major: Option<u32>) {
    let host = h.host.as_str();
    // The OS user, and whether the login can act as it.
    if !p.os_user_exists {
        out.add(
            Severity::Error,
            names,
            "os_user",
            format!(
                "OS user `{user}` does not exist on {host}: install the PostgreSQL server package (it creates \
                 `postgres`) or create it (`useradd --system --create-home --shell /bin/bash {user}`){}",
                install_hint(p)
            ),
        );
    } else {
        let (sev, msg) = match p.act_as {
            ActAs::Login => (Severity::Ok, format!("logs in as {user}")),
            ActAs::Runuser => (Severity::Ok, format!("logs in as root, runs commands as {user} through runuser")),
            ActAs::Sudo => (Severity::Ok, format!("logs in as {}, runs commands as {user} through sudo", p.login)),
            ActAs::Cannot if p.is_root => (
                Severity::Error,
                format!("runuser is missing on {host}: pgscale runs commands as {user} through it; install util-linux"),
            ),
            ActAs::Cannot => (
                Severity::Error,
                format!(
                    "{} on {host} is neither root nor {user} and cannot `sudo -n -u {user}`: log in as root or \
                     {user} (ssh.user), or allow {} passwordless sudo",
                    p.login, p.login
                ),
            ),
        };
        out.add(Severity::Ok, names, "os_user", format!("OS user `{user}` exists on {host}"));
        out.add(sev, names, "login", msg);
    }

    // The binaries.
    let missing = p.missing_binaries();
    match &p.bin_dir {
        None => out.add(
            Severity::Error,
            names,
            "binaries",
            format!(
                "no PostgreSQL server binaries on {host} (looked at pg_config, /usr/lib/postgresql/*/bin, \
                 /usr/pgsql-*/bin, /usr/local/pgsql/bin and PATH): install the PostgreSQL server package{} or set \
                 postgres.bin_dir",
                install_hint(p)
            ),
        ),
        Some(dir) if missing.len() == BINARIES.len() && p.bin_dir_given => out.add(
            Severity::Error,
            names,
            "binaries",
            format!(
                "postgres.bin_dir {} holds no PostgreSQL binaries on {host}: install the PostgreSQL server \
                 package{} or fix postgres.bin_dir",
                dir.display(),
                install_hint(p)
            ),
        ),
        Some(dir) if !missing.is_empty() => out.add(
            Severity::Error,
            names,
            "binaries",
            format!(
                "{} missing in {} on {host}: install the PostgreSQL server package{}",
                missing.join(", "),
                dir.display(),
                install_hint(p)
            ),
        ),
        Some(dir) => {
            out.add(Severity::Ok, names, "binaries", format!("{} present in {}", BINARIES.join(", "), dir.display()))
        }
    }

    // The major version.
    if p.has_binary("postgres") {
        let dir = p.bin_dir.as_deref().map(|d| d.display().to_string()).unwrap_or_default();
        match p.major {
            None => out.add(
                Severity::Error,
                names,
                "version",
                format!(
                    "cannot tell the PostgreSQL version on {host}: `{dir}/postgres --version` said {:?}; check that \
                     binary",
                    p.version.clone().unwrap_or_default()
                ),
            ),
            Some(m) if m < MIN_MAJOR => out.add(
                Severity::Error,
                names,
                "version",
                format!(
                    "{host} has PostgreSQL {m} in {dir}; pgscale needs {MIN_MAJOR} or later: install a newer \
                     version or set postgres.bin_dir"
                ),
            ),
            Some(m) => match primary_major {
                Some(want) if want != m => {
                    let who = if h.nodes.len() == 1 { "node" } else { "nodes" };
                    out.add(
                        Severity::Error,
                        names,
                        "version",
                        format!(
                            "{who} {names} would run PostgreSQL {m} but the primary runs {want}: pg_basebackup and \
                             pg_rewind refuse a major-version mismatch; install version {want} on {host} or set \
                             postgres.bin_dir"
                        ),
                    )
                }
                _ => out.add(Severity::Ok, names, "version", format!("PostgreSQL {m} in {dir}")),
            },
        }
    }

    // Directories: writable, and room for the copies.
    let mut rooms: BTreeMap<PathBuf, (u64, u64, Vec<&NodeInput>, PathBuf)> = BTreeMap::new();
    for n in &h.nodes {
        let Some(d) = p.dir(&n.data_dir) else {
            out.add(
                Severity::Warning,
                &n.node,
                "dir",
                format!("{} on {host} was not probed: not checked", n.data_dir.display()),
            );
            continue;
        };
        dir_finding(out, host, user, p, n, d);
        let Some(db) = n.copy_bytes else { continue };
        match d.avail_bytes {
            None => out.add(
                Severity::Warning,
                &n.node,
                "space",
                format!(
                    "cannot read the free space of {} on {host} (`df -Pk` failed): make sure it has {} for the copy",
                    d.ancestor.display(),
                    pretty_bytes(copy_need_bytes(db))
                ),
            ),
            Some(avail) => {
                let key = d.mount.clone().unwrap_or_else(|| d.ancestor.clone());
                let e = rooms.entry(key).or_insert((avail, 0, Vec::new(), d.ancestor.clone()));
                e.1 = e.1.saturating_add(db);
                e.2.push(n);
            }
        }
    }
    for (avail, db, nodes, shown) in rooms.into_values() {
        let need = copy_need_bytes(db);
        let who = nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>().join(", ");
        let copies =
            if nodes.len() == 1 { "the copy needs".to_string() } else { format!("{} copies need", nodes.len()) };
        if avail < need {
            out.add(
                Severity::Error,
                &who,
                "space",
                format!(
                    "{} on {host} has {} free, {copies} {} (primary's databases {} + 10 %): free some space or \
                     choose a data_dir on a larger filesystem",
                    shown.display(),
                    pretty_bytes(avail),
                    pretty_bytes(need),
                    pretty_bytes(db)
                ),
            );
        } else {
            out.add(
                Severity::Ok,
                &who,
                "space",
                format!(
                    "{} on {host} has {} free, {copies} {}",
                    shown.display(),
                    pretty_bytes(avail),
                    pretty_bytes(need)
                ),
            );
        }
    }

    // The clock.
    if let Some(c) = h.clock {
        let skew = c.skew_ms();
        let unc = c.uncertainty_ms();
        let dir = if skew >= 0 { "ahead of" } else { "behind" };
        let text = format!("{:.1} s {dir} this machine's (±{:.1} s)", skew.abs() as f64 / 1000.0, unc as f64 / 1000.0);
        if skew.abs().saturating_sub(unc) >= CLOCK_WARN_MS {
            out.add(
                Severity::Warning,
                names,
                "clock",
                format!("clock is {text} (warning: keep clocks in sync with NTP/chrony)"),
            );
        } else {
            out.add(Severity::Ok, names, "clock", format!("clock is within {text}"));
        }
    }
}

fn dir_finding(out: &mut Out<'_>, host: &str, user: &str, p: &HostProbe, n: &NodeInput, d: &DirProbe) {
    let data = n.data_dir.display();
    let parent = n.data_dir.parent().unwrap_or(Path::new("/"));
    let anc = d.ancestor.display();
    match d.writable {
        // The missing user is reported once for the host.
        _ if !p.os_user_exists => {}
        Some(true) => out.add(Severity::Ok, &n.node, "dir", format!("{user} can write in {anc}")),
        None => out.add(
            Severity::Warning,
            &n.node,
            "dir",
            format!("cannot tell whether {user} can write in {anc} on {host}: pgscale cannot act as {user} there"),
        ),
        Some(false) if d.ancestor == n.data_dir => out.add(
            Severity::Error,
            &n.node,
            "dir",
            format!(
                "{data} exists on {host} but {user} cannot write into it: `chown {user}: {data}` or choose another \
                 data_dir"
            ),
        ),
        Some(false) if d.ancestor == parent => out.add(
            Severity::Error,
            &n.node,
            "dir",
            format!(
                "{} on {host} is not writable by {user}, so pgscale cannot create {data} there: make it writable by \
                 {user} or choose another data_dir",
                parent.display()
            ),
        ),
        Some(false) => out.add(
            Severity::Error,
            &n.node,
            "dir",
            format!(
                "{} does not exist on {host} and {user} cannot create it in {anc}: create it as root (`mkdir -p {} \
                 && chown {user}: {}`){}",
                parent.display(),
                parent.display(),
                parent.display(),
                install_hint(p)
            ),
        ),
    }
}

/// Sizes as PostgreSQL's pg_size_pretty writes them (1024-based, "MB").
pub fn pretty_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if b < 1024 {
        return format!("{b} bytes");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn has_errors(f: &[Finding]) -> bool {
    f.iter().any(|x| x.severity == Severity::Error)
}

/// One line per finding: `ERROR   10.0.0.2 (pg2) binaries: ...`. Passes only
/// with `show_ok`.
pub fn render(f: &[Finding], show_ok: bool) -> String {
    let mut s = String::new();
    for x in f.iter().filter(|x| show_ok || x.severity != Severity::Ok) {
        let node = if x.node.is_empty() { String::new() } else { format!(" ({})", x.node) };
        s.push_str(&format!("{:<7} {}{node} {}: {}\n", x.severity.label(), x.host, x.check, x.message));
    }
    s
}

/// The OS families `--install` knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OsFamily {
    Debian,
    Rhel,
    /// os-release `ID` (and `ID_LIKE`) as found.
    Unknown(String),
}

/// From os-release `ID` then each of `ID_LIKE`.
pub fn os_family(id: &str, id_like: &[String]) -> OsFamily {
    let of = |x: &str| match x {
        "debian" | "ubuntu" => Some(OsFamily::Debian),
        "rhel" | "centos" | "rocky" | "almalinux" | "fedora" | "ol" => Some(OsFamily::Rhel),
        _ => None,
    };
    std::iter::once(id).chain(id_like.iter().map(String::as_str)).find_map(of).unwrap_or_else(|| {
        let like = if id_like.is_empty() { String::new() } else { format!(" (like {})", id_like.join(" ")) };
        OsFamily::Unknown(format!("{}{like}", if id.is_empty() { "unknown" } else { id }))
    })
}

/// Where the family's packages put the server binaries of `major`.
pub fn package_bin_dir(family: &OsFamily, major: u32) -> Option<PathBuf> {
    match family {
        OsFamily::Debian => Some(PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"))),
        OsFamily::Rhel => Some(PathBuf::from(format!("/usr/pgsql-{major}/bin"))),
        OsFamily::Unknown(_) => None,
    }
}

/// One command `--install` runs on a host, as root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstallStep {
    pub host: String,
    /// Complete, `sudo -n` included when the login is not root; environment
    /// settings are in it (`env K=V`), since sudo resets the environment and
    /// SSH does not forward it.
    pub argv: Vec<String>,
    pub why: String,
}

/// Sets `create_main_cluster = false` in postgresql-common's
/// createcluster.conf (replacing the line, commented or not, else appending),
/// so installing a server package neither creates nor starts a cluster.
pub const CREATECLUSTER_SCRIPT: &str = r#"f=/etc/postgresql-common/createcluster.conf
if grep -Eq '^[[:space:]]*#?[[:space:]]*create_main_cluster[[:space:]]*=' "$f"; then
  sed -Ei 's/^[[:space:]]*#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' "$f"
else
  printf '%s\n' 'create_main_cluster = false' >> "$f"
fi
"#;

/// Creates user "$1" unless it exists (a package may just have created it).
pub const USERADD_SCRIPT: &str =
    r#"id -u "$1" >/dev/null 2>&1 || exec useradd --system --create-home --shell /bin/bash "$1""#;

/// `mkdir -p "$1"` with umask 022, so that the parents it creates can be
/// entered by the OS user even where root's umask is 027 or 077.
pub const MKDIR_SCRIPT: &str = r#"umask 022 && exec mkdir -p "$1""#;

const DPKG_KEEP_CONF: [&str; 4] = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"];

/// The commands that make a host ready for `major`, in order, given its
/// probe (which must have been asked about the nodes' data directories):
/// the server package when the binaries or the major are not there (Debian:
/// postgresql-common first, then `create_main_cluster = false`, then
/// `postgresql-MAJOR`; RHEL family: PGDG's `postgresqlMAJOR-server`), the OS
/// user when it was missing, and each data directory's parent when it is
/// missing and the OS user cannot create it (mkdir -p, then chown to the user;
/// an existing directory is never chowned). Empty when nothing is needed.
///
/// The packages come from the host's configured repositories: a major the
/// distribution does not ship needs the PGDG repository set up first.
///
/// Err (a message saying what to do) when a package is needed and the OS
/// family is unknown or its package manager is missing, when the configured
/// bin dir is not where the package installs, or when there is anything to
/// do and the login is neither root nor allowed passwordless sudo.
pub fn install_steps(host: &str, probe: &HostProbe, major: u32, os_user: &str) -> Result<Vec<InstallStep>, String> {
    let mut steps = Vec::new();
    let mut add = |argv: Vec<String>, why: String| {
        let argv =
            if probe.is_root { argv } else { ["sudo".to_string(), "-n".into()].into_iter().chain(argv).collect() };
        steps.push(InstallStep { host: host.into(), argv, why });
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    let need_package = probe.major != Some(major) || !probe.missing_binaries().is_empty();
    if need_package {
        let family = probe.family();
        let Some(bin) = package_bin_dir(&family, major) else {
            return Err(format!(
                "{host} runs {}: --install supports {SUPPORTED_FAMILIES}; install PostgreSQL {major} there yourself",
                match &family {
                    OsFamily::Unknown(x) => x.as_str(),
                    _ => "",
                }
            ));
        };
        if probe.bin_dir_given && probe.bin_dir.as_deref() != Some(bin.as_path()) {
            return Err(format!(
                "postgres.bin_dir is {} but the package installs PostgreSQL {major} into {} on {host}: set \
                 postgres.bin_dir to that or remove it",
                probe.bin_dir.as_deref().unwrap_or(Path::new("")).display(),
                bin.display()
            ));
        }
        let shadow = match probe.major {
            Some(m) if m > major && !probe.bin_dir_given => format!(
                "; {host} also has PostgreSQL {m}, which pgscale finds first: set postgres.bin_dir to {}",
                bin.display()
            ),
            _ => String::new(),
        };
        let has = |m: &str| probe.package_managers.iter().any(|x| x == m);
        match family {
            OsFamily::Debian => {
                if !has("apt-get") {
                    return Err(format!(
                        "{host} is Debian-like but has no apt-get: install PostgreSQL {major} there yourself"
                    ));
                }
                let apt = |args: &[&str]| {
                    let mut v = s(&["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
                    v.extend(s(args));
                    v
                };
                let install = |pkg: &str| {
                    let mut v = apt(&["install", "-y", "--no-install-recommends"]);
                    v.extend(s(&DPKG_KEEP_CONF));
                    v.push(pkg.into());
                    v
                };
                add(apt(&["update"]), "refresh the package lists".into());
                add(install("postgresql-common"), "postgresql-common first, to configure it".into());
                add(
                    s(&["sh", "-c", CREATECLUSTER_SCRIPT]),
                    "create_main_cluster = false: the server package must not create and start a default cluster"
                        .into(),
                );
                add(
                    install(&format!("postgresql-{major}")),
                    format!("PostgreSQL {major} server into {}{shadow}", bin.display()),
                );
            }
            OsFamily::Rhel => {
                let Some(pm) = ["dnf", "yum"].into_iter().find(|m| has(m)) else {
                    return Err(format!(
                        "{host} is RHEL-like but has neither dnf nor yum: install PostgreSQL {major} there yourself"
                    ));
                };
                add(
                    s(&[pm, "install", "-y", &format!("postgresql{major}-server")]),
                    format!(
                        "PostgreSQL {major} server (PGDG packages; the PGDG repository must be set up) into {}{shadow}",
                        bin.display()
                    ),
                );
            }
            OsFamily::Unknown(_) => unreachable!("no bin dir for an unknown family"),
        }
    }
    if !probe.os_user_exists {
        add(
            s(&["sh", "-c", USERADD_SCRIPT, "sh", os_user]),
            format!("OS user {os_user}, unless the package created it"),
        );
    }
    let mut parents: Vec<&Path> = Vec::new();
    for d in &probe.dirs {
        let Some(parent) = d.path.parent() else { continue };
        let missing = d.ancestor != d.path && d.ancestor != parent;
        if missing && d.writable != Some(true) && !parents.contains(&parent) {
            parents.push(parent);
        }
    }
    for parent in parents {
        let p = parent.display().to_string();
        add(s(&["sh", "-c", MKDIR_SCRIPT, "sh", &p]), format!("create {p}, the parent of a data directory"));
        add(s(&["chown", &format!("{os_user}:"), &p]), format!("hand {p} to {os_user}"));
    }
    if !steps.is_empty() && !probe.can_be_root() {
        return Err(format!(
            "--install needs root on {host}: {} is not root and `sudo -n true` fails there; log in as root or allow \
             passwordless sudo",
            probe.login
        ));
    }
    Ok(steps)
}

/// For display only (`--dry-run`): an argument quoted for a POSIX shell.
pub fn shell_quote(a: &str) -> String {
    let plain = !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=+,@%".contains(&b));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r#"'\''"#))
    }
}

/// One line per step: `HOST: ARGV  # WHY`.
pub fn render_steps(steps: &[InstallStep]) -> String {
    let mut s = String::new();
    for x in steps {
        let cmd = x.argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
        s.push_str(&format!("{}: {cmd}  # {}\n", x.host, x.why));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good_probe() -> HostProbe {
        HostProbe {
            os_id: "debian".into(),
            os_like: vec![],
            os_version: "12".into(),
            login: "root".into(),
            is_root: true,
            sudo_ok: false,
            os_user_exists: true,
            act_as: ActAs::Runuser,
            package_managers: vec!["apt-get".into()],
            bin_dir_given: false,
            bin_dir: Some("/usr/lib/postgresql/15/bin".into()),
            binaries: BINARIES.iter().map(|b| (b.to_string(), true)).collect(),
            version: Some("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)".into()),
            major: Some(15),
            dirs: vec![DirProbe {
                path: "/data/pg2".into(),
                ancestor: "/data".into(),
                writable: Some(true),
                avail_bytes: Some(10 << 30),
                mount: Some("/data".into()),
            }],
            epoch_ms: Some(1_000_000),
            clock_res_ms: 1,
        }
    }

    fn node(name: &str, dir: &str) -> NodeInput {
        NodeInput {
            node: name.into(),
            data_dir: dir.into(),
            port: 5432,
            port_in_use: false,
            copy_bytes: Some(800 << 20),
        }
    }

    fn host(p: HostProbe) -> HostInput {
        HostInput {
            host: "10.0.0.2".into(),
            probe: Ok(p),
            clock: Some(ClockSample {
                remote_ms: 1_000_000,
                remote_res_ms: 1,
                sent_ms: 999_990,
                received_ms: 1_000_010,
            }),
            nodes: vec![node("pg2", "/data/pg2")],
        }
    }

    fn problems(f: &[Finding]) -> Vec<&Finding> {
        f.iter().filter(|x| x.severity != Severity::Ok).collect()
    }

    fn one(h: HostInput) -> Finding {
        let f = findings(&[h], "postgres", Some(15));
        let p = problems(&f);
        assert_eq!(p.len(), 1, "{}", render(&f, true));
        p[0].clone()
    }

    #[test]
    fn a_ready_host_has_only_passes() {
        let f = findings(&[host(good_probe())], "postgres", Some(15));
        assert!(problems(&f).is_empty(), "{}", render(&f, true));
        let checks: Vec<_> = f.iter().map(|x| x.check).collect();
        assert_eq!(checks, ["reachable", "os_user", "login", "binaries", "version", "dir", "space", "clock", "port"]);
        assert!(!has_errors(&f));
        assert_eq!(render(&f, false), "");
        assert!(
            render(&f, true).contains("ok      10.0.0.2 (pg2) version: PostgreSQL 15 in /usr/lib/postgresql/15/bin\n")
        );
    }

    #[test]
    fn binary_missing() {
        let mut p = good_probe();
        p.binaries.insert("pg_rewind".into(), false);
        let f = one(host(p));
        assert_eq!(f.check, "binaries");
        assert_eq!(
            f.message,
            "pg_rewind missing in /usr/lib/postgresql/15/bin on 10.0.0.2: install the PostgreSQL server package \
             (or run with --install)"
        );
        let mut p = good_probe();
        p.bin_dir = None;
        p.binaries.values_mut().for_each(|v| *v = false);
        p.major = None;
        p.is_root = false;
        let f = one(host(p));
        assert!(f.message.starts_with("no PostgreSQL server binaries on 10.0.0.2"), "{}", f.message);
        assert!(f.message.contains("--install would need root"), "{}", f.message);
    }

    #[test]
    fn user_missing() {
        let mut p = good_probe();
        p.os_user_exists = false;
        p.act_as = ActAs::Cannot;
        p.dirs[0].writable = Some(false);
        let f = one(host(p));
        assert_eq!((f.check, f.severity), ("os_user", Severity::Error));
        assert!(f.message.contains("`postgres` does not exist on 10.0.0.2"), "{}", f.message);
        assert!(f.message.contains("useradd --system --create-home --shell /bin/bash postgres"));
    }

    #[test]
    fn login_cannot_act_as_the_user() {
        let mut p = good_probe();
        p.is_root = false;
        p.login = "alice".into();
        p.act_as = ActAs::Cannot;
        p.dirs[0].writable = None;
        let f = findings(&[host(p)], "postgres", Some(15));
        let p = problems(&f);
        assert_eq!(p.len(), 2, "{}", render(&f, true));
        assert!(p[0].message.contains("alice on 10.0.0.2 is neither root nor postgres"), "{}", p[0].message);
        assert_eq!(p[1].severity, Severity::Warning);
        assert!(p[1].message.contains("cannot tell whether postgres can write in /data"));
    }

    #[test]
    fn major_mismatch() {
        let mut p = good_probe();
        p.major = Some(14);
        p.bin_dir = Some("/usr/lib/postgresql/14/bin".into());
        let f = one(host(p));
        assert_eq!(f.check, "version");
        assert_eq!(
            f.message,
            "node pg2 would run PostgreSQL 14 but the primary runs 15: pg_basebackup and pg_rewind refuse a \
             major-version mismatch; install version 15 on 10.0.0.2 or set postgres.bin_dir"
        );
        let mut p = good_probe();
        p.major = Some(12);
        let f = findings(&[host(p)], "postgres", None);
        assert!(problems(&f)[0].message.contains("pgscale needs 13 or later"));
    }

    #[test]
    fn dir_not_writable() {
        let mut p = good_probe();
        p.dirs[0].writable = Some(false);
        let f = one(host(p.clone()));
        assert_eq!(f.check, "dir");
        assert!(f
            .message
            .starts_with("/data on 10.0.0.2 is not writable by postgres, so pgscale cannot create /data/pg2"));
        // parent missing, nearest ancestor not writable
        p.dirs[0].ancestor = "/".into();
        let f = one(host(p.clone()));
        assert!(f.message.starts_with("/data does not exist on 10.0.0.2 and postgres cannot create it in /"));
        assert!(f.message.contains("(or run with --install)"));
        // the data directory exists
        p.dirs[0].ancestor = "/data/pg2".into();
        let f = one(host(p));
        assert!(f.message.contains("`chown postgres: /data/pg2`"), "{}", f.message);
    }

    #[test]
    fn not_enough_room_counts_every_copy_on_the_filesystem() {
        let mut p = good_probe();
        p.dirs[0].avail_bytes = Some(120 << 20);
        let f = one(host(p.clone()));
        assert_eq!(f.check, "space");
        assert_eq!(
            f.message,
            "/data on 10.0.0.2 has 120 MB free, the copy needs 880 MB (primary's databases 800 MB + 10 %): free some \
             space or choose a data_dir on a larger filesystem"
        );
        // two standbys on one filesystem: 1.5 GB is enough for one, not two
        p.dirs[0].avail_bytes = Some(1536 << 20);
        p.dirs.push(DirProbe { path: "/data/pg3".into(), ..p.dirs[0].clone() });
        let mut h = host(p);
        h.nodes.push(node("pg3", "/data/pg3"));
        let f = one(h);
        assert_eq!(f.node, "pg2, pg3");
        assert!(f.message.contains("has 1.5 GB free, 2 copies need 1.7 GB"), "{}", f.message);
        assert_eq!(copy_need_bytes(800 << 20), 880 << 20);
        assert_eq!(copy_need_bytes(1), 2);
    }

    #[test]
    fn port_busy() {
        let mut h = host(good_probe());
        h.host = "127.0.0.1".into();
        h.nodes[0].port_in_use = true;
        let f = one(h);
        assert_eq!(f.message, "something already listens on 127.0.0.1:5432; choose a free port");
    }

    #[test]
    fn clock_skew_is_a_warning() {
        let mut h = host(good_probe());
        h.clock =
            Some(ClockSample { remote_ms: 1_002_300, remote_res_ms: 1, sent_ms: 999_900, received_ms: 1_000_100 });
        let f = one(h.clone());
        assert_eq!((f.check, f.severity), ("clock", Severity::Warning));
        assert_eq!(
            f.message,
            "clock is 2.3 s ahead of this machine's (±0.1 s) (warning: keep clocks in sync with NTP/chrony)"
        );
        assert!(!has_errors(std::slice::from_ref(&f)));
        // 1.05 s behind, but the round trip makes it uncertain by 0.1 s: no warning
        h.clock = Some(ClockSample { remote_ms: 998_950, remote_res_ms: 1, sent_ms: 999_900, received_ms: 1_000_100 });
        let f = findings(&[h], "postgres", Some(15));
        assert!(problems(&f).is_empty(), "{}", render(&f, true));
        let s = ClockSample::from_probe(&good_probe(), 999_000, 1_001_000).unwrap();
        assert_eq!((s.skew_ms(), s.uncertainty_ms()), (0, 1000));
    }

    #[test]
    fn unreachable_host() {
        let mut h = host(good_probe());
        h.probe = Err("ssh to 10.0.0.2: no answer within 10s".into());
        h.nodes[0].port_in_use = true;
        let f = findings(&[h], "postgres", Some(15));
        let p = problems(&f);
        assert_eq!(p.len(), 2, "{}", render(&f, true));
        assert_eq!(p[0].check, "reachable");
        assert_eq!(
            p[0].message,
            "cannot probe 10.0.0.2: ssh to 10.0.0.2: no answer within 10s; nothing else was checked there"
        );
        assert_eq!(p[1].check, "port");
        assert!(has_errors(&f));
    }

    #[test]
    fn all_findings_at_once() {
        let mut p = good_probe();
        p.binaries.insert("psql".into(), false);
        p.binaries.insert("initdb".into(), false);
        p.major = Some(16);
        p.dirs[0].writable = Some(false);
        p.dirs[0].avail_bytes = Some(1 << 20);
        let mut h = host(p);
        h.nodes[0].port_in_use = true;
        h.clock = Some(ClockSample { remote_ms: 900_000, remote_res_ms: 1, sent_ms: 999_990, received_ms: 1_000_010 });
        let mut down = host(good_probe());
        down.host = "10.0.0.3".into();
        down.probe = Err("ssh to 10.0.0.3: connection refused".into());
        let f = findings(&[h, down], "postgres", Some(15));
        let got: Vec<_> = problems(&f).iter().map(|x| (x.host.as_str(), x.check, x.severity)).collect();
        assert_eq!(
            got,
            [
                ("10.0.0.2", "binaries", Severity::Error),
                ("10.0.0.2", "version", Severity::Error),
                ("10.0.0.2", "dir", Severity::Error),
                ("10.0.0.2", "space", Severity::Error),
                ("10.0.0.2", "clock", Severity::Warning),
                ("10.0.0.2", "port", Severity::Error),
                ("10.0.0.3", "reachable", Severity::Error),
            ],
            "{}",
            render(&f, false)
        );
        assert!(problems(&f)[0].message.starts_with("initdb, psql missing in"));
        assert!(problems(&f)[4].message.starts_with("clock is 100.0 s behind"));
        let text = render(&f, false);
        assert_eq!(text.lines().count(), 7);
        assert!(text.starts_with("ERROR   10.0.0.2 (pg2) binaries: initdb, psql missing"), "{text}");
    }

    #[test]
    fn majors() {
        assert_eq!(parse_major("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"), Some(15));
        assert_eq!(parse_major("postgres (PostgreSQL) 10.23"), Some(10));
        assert_eq!(parse_major("postgres (PostgreSQL) 16beta1"), Some(16));
        assert_eq!(parse_major("postgres (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(parse_major("garbage"), None);
        assert_eq!(parse_major(""), None);
    }

    #[test]
    fn families() {
        let v = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(os_family("ubuntu", &v("debian")), OsFamily::Debian);
        assert_eq!(os_family("linuxmint", &v("ubuntu debian")), OsFamily::Debian);
        assert_eq!(os_family("rocky", &v("rhel centos fedora")), OsFamily::Rhel);
        assert_eq!(os_family("ol", &[]), OsFamily::Rhel);
        assert_eq!(os_family("fedora", &[]), OsFamily::Rhel);
        assert_eq!(os_family("arch", &[]), OsFamily::Unknown("arch".into()));
        assert_eq!(
            os_family("opensuse-leap", &v("suse opensuse")),
            OsFamily::Unknown("opensuse-leap (like suse opensuse)".into())
        );
    }

    const CANNED: &str =
        "probe=1\nclock_res_ms=1\nepoch_ms=1795314737841\nos.id=rocky\nos.id_like=rhel centos fedora\n\
        os.version_id=9.4\nuid=1000\nlogin=alice\nsudo=yes\nuser=yes\nas_user=sudo\npkg=dnf yum\nbin_dir.given=no\n\
        bin_dir=/usr/pgsql-16/bin\nbin.postgres=yes\nbin.initdb=yes\nbin.pg_ctl=yes\nbin.pg_controldata=yes\n\
        bin.pg_basebackup=yes\nbin.pg_rewind=no\nbin.psql=yes\nversion=postgres (PostgreSQL) 16.4\n\
        dir.0.path=/var/lib/pgsql/16/pg1\ndir.0.ancestor=/var/lib/pgsql\ndir.0.writable=yes\ndir.0.avail_kib=1048576\n\
        dir.0.mount=/\ndir.1.path=/srv/a=b\ndir.1.ancestor=/\ndir.1.writable=unknown\ndone=1\n";

    #[test]
    fn parse_canned_probe() {
        let dirs = [PathBuf::from("/var/lib/pgsql/16/pg1"), PathBuf::from("/srv/a=b")];
        let p = parse_probe(CANNED, &dirs).unwrap();
        assert_eq!(p.os_id, "rocky");
        assert_eq!(p.os_like, ["rhel", "centos", "fedora"]);
        assert_eq!(p.family(), OsFamily::Rhel);
        assert!(!p.is_root && p.sudo_ok && p.os_user_exists);
        assert_eq!(p.act_as, ActAs::Sudo);
        assert_eq!(p.package_managers, ["dnf", "yum"]);
        assert_eq!(p.bin_dir.as_deref(), Some(Path::new("/usr/pgsql-16/bin")));
        assert_eq!(p.missing_binaries(), ["pg_rewind"]);
        assert_eq!(p.major, Some(16));
        assert_eq!(p.epoch_ms, Some(1_795_314_737_841));
        assert_eq!(p.clock_res_ms, 1);
        assert_eq!(
            p.dirs[0],
            DirProbe {
                path: dirs[0].clone(),
                ancestor: "/var/lib/pgsql".into(),
                writable: Some(true),
                avail_bytes: Some(1 << 30),
                mount: Some("/".into()),
            }
        );
        assert_eq!((p.dirs[1].writable, p.dirs[1].avail_bytes), (None, None));
        assert!(parse_probe(&CANNED.replace("done=1\n", ""), &dirs).unwrap_err().contains("cut short"));
        assert!(parse_probe("sh: 1: Syntax error", &dirs).unwrap_err().contains("did not run"));
        let three = [dirs[0].clone(), dirs[1].clone(), "/x".into()];
        assert!(parse_probe(CANNED, &three).unwrap_err().contains("did not report on /x"));
    }

    #[test]
    fn probe_argv_passes_values_as_arguments() {
        let v = probe_argv("postgres", None, &["/data/pg1".into(), "/d/it's".into()]);
        assert_eq!(v[..2], ["sh", "-c"]);
        assert_eq!(v[2], PROBE_SCRIPT);
        assert_eq!(v[3..], ["sh", "postgres", "", "/data/pg1", "/d/it's"]);
        let v = probe_argv("pg", Some(Path::new("/opt/pg/bin")), &[]);
        assert_eq!(v[3..], ["sh", "pg", "/opt/pg/bin"]);
    }

    /// Runs the real script with `sh` on this machine: a temporary directory
    /// (existing and not), a user that does not exist, then the login user.
    #[test]
    fn the_probe_script_runs_here() {
        let base = std::env::temp_dir().join(format!("pgscale-hostcheck-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let dirs = [base.join("a/b/pg1"), base.clone()];
        let run = |user: &str, bin: Option<&Path>| {
            let argv = probe_argv(user, bin, &dirs);
            let o = std::process::Command::new(&argv[0]).args(&argv[1..]).output().expect("run sh");
            assert!(o.status.success(), "{o:?}");
            let out = String::from_utf8(o.stdout).unwrap();
            parse_probe(&out, &dirs).unwrap_or_else(|e| panic!("{e}\n{out}"))
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;

        let p = run("pgscale_no_such_user", None);
        assert!(!p.os_user_exists);
        assert_eq!(p.act_as, ActAs::Cannot);
        assert!(!p.login.is_empty());
        assert_eq!(p.is_root, p.login == "root");
        assert!((p.epoch_ms.unwrap() - now).abs() < 60_000, "{:?} vs {now}", p.epoch_ms);
        assert_eq!(p.dirs[0].ancestor, base);
        assert_eq!(p.dirs[1].ancestor, base);
        assert_eq!(p.dirs[0].writable, Some(false));
        assert!(p.dirs[0].avail_bytes.unwrap() > 0);
        assert!(p.dirs[0].mount.is_some());
        if Path::new("/etc/os-release").exists() {
            assert!(!p.os_id.is_empty());
        }
        match &p.bin_dir {
            Some(b) => {
                assert!(b.join("initdb").exists() && b.join("pg_ctl").exists());
                assert!(p.has_binary("initdb") && p.has_binary("pg_ctl"));
                if b.join("postgres").exists() {
                    let m = p.major.unwrap_or_else(|| panic!("no major from {:?}", p.version));
                    if b.starts_with("/usr/lib/postgresql") {
                        assert!(b.ends_with(format!("{m}/bin")), "{b:?} vs {m}");
                    }
                }
            }
            None => assert!(p.missing_binaries().len() == BINARIES.len()),
        }
        if Path::new("/usr/lib/postgresql/15/bin/postgres").exists() && !p.bin_dir_given {
            assert!(p.major.is_some_and(|m| m >= 15));
        }

        // As the login user itself, with a given bin dir that holds nothing.
        let p = run(&p.login.clone(), Some(&base));
        assert!(p.os_user_exists);
        assert_eq!(p.act_as, ActAs::Login);
        assert_eq!(p.dirs[0].writable, Some(true));
        assert!(p.bin_dir_given);
        assert_eq!(p.bin_dir.as_deref(), Some(base.as_path()));
        assert_eq!(p.missing_binaries().len(), BINARIES.len());
        assert_eq!((p.version.as_deref(), p.major), (None, None));
        std::fs::remove_dir_all(&base).unwrap();
    }

    fn bare_debian() -> HostProbe {
        let mut p = good_probe();
        p.bin_dir = None;
        p.binaries.values_mut().for_each(|v| *v = false);
        p.version = None;
        p.major = None;
        p.os_user_exists = false;
        p.act_as = ActAs::Cannot;
        p.dirs = vec![DirProbe {
            path: "/data/pg/pg2".into(),
            ancestor: "/".into(),
            writable: Some(false),
            avail_bytes: Some(1 << 30),
            mount: Some("/".into()),
        }];
        p
    }

    fn argvs(steps: &[InstallStep]) -> Vec<Vec<&str>> {
        steps.iter().map(|s| s.argv.iter().map(String::as_str).collect()).collect()
    }

    const APT: [&str; 3] = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"];
    const KEEP: [&str; 4] = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"];

    fn cat(parts: &[&[&'static str]]) -> Vec<&'static str> {
        parts.concat()
    }

    #[test]
    fn install_debian_as_root() {
        let steps = install_steps("10.0.0.2", &bare_debian(), 15, "postgres").unwrap();
        let install = ["install", "-y", "--no-install-recommends"];
        assert_eq!(
            argvs(&steps),
            vec![
                cat(&[&APT, &["update"]]),
                cat(&[&APT, &install, &KEEP, &["postgresql-common"]]),
                vec!["sh", "-c", CREATECLUSTER_SCRIPT],
                cat(&[&APT, &install, &KEEP, &["postgresql-15"]]),
                vec!["sh", "-c", USERADD_SCRIPT, "sh", "postgres"],
                vec!["sh", "-c", MKDIR_SCRIPT, "sh", "/data/pg"],
                vec!["chown", "postgres:", "/data/pg"],
            ]
        );
        assert!(steps.iter().all(|s| s.host == "10.0.0.2"));
        assert!(steps[3].why.contains("/usr/lib/postgresql/15/bin"));
        let text = render_steps(&steps);
        assert!(text.contains("10.0.0.2: chown postgres: /data/pg  # hand /data/pg to postgres\n"), "{text}");
        assert!(text.contains("sh -c 'umask 022 && exec mkdir -p \"$1\"' sh /data/pg"), "{text}");
    }

    #[test]
    fn install_debian_through_sudo_only_what_is_missing() {
        let mut p = bare_debian();
        p.is_root = false;
        p.sudo_ok = true;
        p.login = "alice".into();
        p.os_user_exists = true;
        // an existing parent is never chowned; a writable ancestor needs nothing
        p.dirs[0].ancestor = "/data/pg".into();
        p.dirs.push(DirProbe {
            path: "/srv/x/pg3".into(),
            ancestor: "/srv".into(),
            writable: Some(true),
            ..p.dirs[0].clone()
        });
        let steps = install_steps("db2", &p, 16, "postgres").unwrap();
        let install = ["install", "-y", "--no-install-recommends"];
        assert_eq!(
            argvs(&steps),
            vec![
                cat(&[&["sudo", "-n"], &APT, &["update"]]),
                cat(&[&["sudo", "-n"], &APT, &install, &KEEP, &["postgresql-common"]]),
                vec!["sudo", "-n", "sh", "-c", CREATECLUSTER_SCRIPT],
                cat(&[&["sudo", "-n"], &APT, &install, &KEEP, &["postgresql-16"]]),
            ]
        );
        // nothing to do: no step, and no root needed
        let mut ready = good_probe();
        ready.is_root = false;
        assert_eq!(install_steps("db2", &ready, 15, "postgres").unwrap(), vec![]);
        // no root, no sudo
        p.sudo_ok = false;
        let e = install_steps("db2", &p, 16, "postgres").unwrap_err();
        assert!(e.contains("--install needs root on db2: alice is not root and `sudo -n true` fails"), "{e}");
        // no apt-get
        p.sudo_ok = true;
        p.package_managers.clear();
        let e = install_steps("db2", &p, 16, "postgres").unwrap_err();
        assert!(e.contains("has no apt-get"), "{e}");
    }

    #[test]
    fn install_rhel() {
        let mut p = bare_debian();
        p.os_id = "rocky".into();
        p.os_like = vec!["rhel".into(), "centos".into(), "fedora".into()];
        p.package_managers = vec!["dnf".into(), "yum".into()];
        p.os_user_exists = true;
        p.dirs[0].writable = Some(true);
        let steps = install_steps("db3", &p, 16, "postgres").unwrap();
        assert_eq!(argvs(&steps), vec![vec!["dnf", "install", "-y", "postgresql16-server"]]);
        assert!(steps[0].why.contains("/usr/pgsql-16/bin"));
        // a newer major already there shadows the one installed
        p.major = Some(17);
        let steps = install_steps("db3", &p, 16, "postgres").unwrap();
        assert!(steps[0].why.contains("also has PostgreSQL 17"), "{}", steps[0].why);
        // a configured bin dir elsewhere cannot be fixed by the package
        p.bin_dir_given = true;
        p.bin_dir = Some("/opt/pg/bin".into());
        let e = install_steps("db3", &p, 16, "postgres").unwrap_err();
        assert!(
            e.contains("postgres.bin_dir is /opt/pg/bin but the package installs PostgreSQL 16 into /usr/pgsql-16/bin"),
            "{e}"
        );
        p.bin_dir_given = false;
        p.package_managers = vec!["yum".into()];
        let steps = install_steps("db3", &p, 16, "postgres").unwrap();
        assert_eq!(argvs(&steps)[0], ["yum", "install", "-y", "postgresql16-server"]);
    }

    #[test]
    fn install_unknown_family() {
        let mut p = bare_debian();
        p.os_id = "arch".into();
        let e = install_steps("db4", &p, 16, "postgres").unwrap_err();
        assert!(e.starts_with("db4 runs arch: --install supports Debian/Ubuntu (apt-get) and the RHEL family"), "{e}");
        // the family does not matter when no package is needed
        let mut p = good_probe();
        p.os_id = "arch".into();
        p.os_user_exists = false;
        let steps = install_steps("db4", &p, 15, "pg").unwrap();
        assert_eq!(argvs(&steps), vec![vec!["sh", "-c", USERADD_SCRIPT, "sh", "pg"]]);
    }

    #[test]
    fn quoting_for_display() {
        assert_eq!(shell_quote("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), r#"'it'\''s'"#);
        assert_eq!(pretty_bytes(100), "100 bytes");
        assert_eq!(pretty_bytes(1536), "1.5 kB");
        assert_eq!(pretty_bytes(880 << 20), "880 MB");
    }
}
