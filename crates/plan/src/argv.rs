//! The exact command lines pgscale runs, built from plain values. Every
//! argument is its own element: nothing is ever pasted into a shell string.

use std::path::Path;

fn bin(bin_dir: &Path, prog: &str) -> String {
    bin_dir.join(prog).display().to_string()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// The admin password reaches initdb through `pwfile` (mode 0600, removed
/// after), never through argv.
pub fn initdb(bin_dir: &Path, data_dir: &Path, admin_user: &str, pwfile: &Path) -> Vec<String> {
    vec![
        bin(bin_dir, "initdb"),
        "--pgdata".into(),
        p(data_dir),
        "--username".into(),
        admin_user.into(),
        format!("--pwfile={}", p(pwfile)),
        // Only used until pgscale writes pg_hba.conf whole, before the first
        // start; never `trust`.
        "--auth=scram-sha-256".into(),
        "--data-checksums".into(),
        "--encoding=UTF8".into(),
        "--no-locale".into(),
        "--no-instructions".into(),
    ]
}

/// The startup log goes next to the socket, outside the data directory, so a
/// base copy of the data directory does not carry it.
pub fn startup_log(socket_dir: &Path) -> String {
    p(&socket_dir.join("postmaster.log"))
}

pub fn pg_ctl_start(bin_dir: &Path, data_dir: &Path, socket_dir: &Path, wait_secs: u64) -> Vec<String> {
    vec![
        bin(bin_dir, "pg_ctl"),
        "start".into(),
        "--pgdata".into(),
        p(data_dir),
        "--wait".into(),
        "--timeout".into(),
        wait_secs.to_string(),
        "--log".into(),
        startup_log(socket_dir),
    ]
}

pub fn pg_ctl_stop(bin_dir: &Path, data_dir: &Path, mode: &str, wait_secs: u64) -> Vec<String> {
    vec![
        bin(bin_dir, "pg_ctl"),
        "stop".into(),
        "--pgdata".into(),
        p(data_dir),
        "--mode".into(),
        mode.into(),
        "--wait".into(),
        "--timeout".into(),
        wait_secs.to_string(),
    ]
}

pub fn pg_ctl_restart(bin_dir: &Path, data_dir: &Path, socket_dir: &Path, wait_secs: u64) -> Vec<String> {
    vec![
        bin(bin_dir, "pg_ctl"),
        "restart".into(),
        "--pgdata".into(),
        p(data_dir),
        "--mode".into(),
        "fast".into(),
        "--wait".into(),
        "--timeout".into(),
        wait_secs.to_string(),
        "--log".into(),
        startup_log(socket_dir),
    ]
}

/// Base copy from the upstream through the new node's slot, WAL streamed
/// alongside (`-X stream`), checkpoint requested at once (`-c fast`). The
/// password comes from PGPASSFILE; `--no-password` forbids a prompt.
/// `max_rate` (`--max-rate`, e.g. `50M`) spares the upstream's disks.
pub fn pg_basebackup(
    bin_dir: &Path,
    data_dir: &Path,
    host: &str,
    port: u16,
    user: &str,
    slot: &str,
    max_rate: Option<&str>,
) -> Vec<String> {
    let mut v = vec![
        bin(bin_dir, "pg_basebackup"),
        "--pgdata".into(),
        p(data_dir),
        "--host".into(),
        host.into(),
        "--port".into(),
        port.to_string(),
        "--username".into(),
        user.into(),
        "--no-password".into(),
        "--wal-method=stream".into(),
        "--checkpoint=fast".into(),
        "--slot".into(),
        slot.into(),
        "--progress".into(),
        // pgscale empties a partial copy itself; a copy that fails must not
        // clean up after itself while a re-run already copies again.
        "--no-clean".into(),
    ];
    v.extend(max_rate.map(|r| format!("--max-rate={r}")));
    v
}

/// A base copy's rate limit as pg_basebackup takes it: kB/s, or with a `k`
/// or `M` suffix, between 32 kB/s and 1024 MB/s.
pub fn parse_max_rate(s: &str) -> Result<String, String> {
    let (num, mul) = match s.strip_suffix('M') {
        Some(n) => (n, 1024),
        None => (s.strip_suffix('k').unwrap_or(s), 1),
    };
    match num.parse::<u64>() {
        Ok(n) if (32..=1024 * 1024).contains(&(n * mul)) => Ok(s.to_string()),
        _ => Err(format!("`{s}` is not a copy rate: use kB/s like 32k..1024M (e.g. 50M)")),
    }
}

pub fn pg_controldata(bin_dir: &Path, data_dir: &Path) -> Vec<String> {
    vec![bin(bin_dir, "pg_controldata"), "--pgdata".into(), p(data_dir)]
}

/// Rewind a diverged data directory from the current primary. The source
/// conninfo names a passfile (the password never is in argv).
pub fn pg_rewind(bin_dir: &Path, data_dir: &Path, source_conninfo: &str) -> Vec<String> {
    vec![
        bin(bin_dir, "pg_rewind"),
        "--target-pgdata".into(),
        p(data_dir),
        "--source-server".into(),
        source_conninfo.into(),
    ]
}

pub fn pg_ctl_status(bin_dir: &Path, data_dir: &Path) -> Vec<String> {
    vec![bin(bin_dir, "pg_ctl"), "status".into(), "--pgdata".into(), p(data_dir)]
}

/// psql as the admin user against a node, over TCP; the password comes from
/// PGPASSFILE, never from argv.
pub fn psql(bin_dir: &Path, host: &str, port: u16, user: &str, extra: &[String]) -> Vec<String> {
    let mut v = vec![
        bin(bin_dir, "psql"),
        "--host".into(),
        host.into(),
        "--port".into(),
        port.to_string(),
        "--username".into(),
        user.into(),
        "--dbname".into(),
        "postgres".into(),
    ];
    v.extend(extra.iter().cloned());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initdb_argv_has_checksums_scram_and_no_secret() {
        let v = initdb(Path::new("/b"), Path::new("/d/pg1"), "postgres", Path::new("/d/pg1.sock/.pw"));
        assert_eq!(v[0], "/b/initdb");
        assert!(v.contains(&"--data-checksums".to_string()));
        assert!(v.contains(&"--auth=scram-sha-256".to_string()));
        assert!(v.contains(&"--pwfile=/d/pg1.sock/.pw".to_string()));
        assert!(!v.iter().any(|a| a.contains("trust")));
    }

    #[test]
    fn start_waits_with_a_deadline() {
        let v = pg_ctl_start(Path::new("/b"), Path::new("/d"), Path::new("/d.sock"), 30);
        assert_eq!(
            v,
            ["/b/pg_ctl", "start", "--pgdata", "/d", "--wait", "--timeout", "30", "--log", "/d.sock/postmaster.log"]
        );
    }
}
