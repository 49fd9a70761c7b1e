//! `pgscale adopt` against a cluster built by hand, without pgscale: plain
//! initdb + pg_basebackup + pg_ctl, a synchronous standby, a cascaded one,
//! an orphan slot and trust lines in pg_hba.conf.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use testkit::{as_os_user, bin_dir, chown_to_os_user, free_port, Kit};

const BIN: &str = env!("CARGO_BIN_EXE_pgscale");

use testkit::ok;

fn out(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn server(argv: &[&str]) -> String {
    let o = as_os_user(argv);
    assert!(o.status.success(), "{argv:?}: {}", out(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

struct Node {
    host: &'static str,
    port: u16,
    dir: PathBuf,
    sock: PathBuf,
    /// The admin password for psql once pgscale's pg_hba asks for it.
    passfile: PathBuf,
}

impl Node {
    fn sql(&self, sql: &str) -> String {
        let psql = bin_dir().join("psql");
        let sock = self.sock.display().to_string();
        let port = self.port.to_string();
        let pf = format!("PGPASSFILE={}", self.passfile.display());
        server(&[
            "env",
            &pf,
            psql.to_str().unwrap(),
            "-h",
            &sock,
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atc",
            sql,
        ])
    }

    fn start(&self) {
        let pg_ctl = bin_dir().join("pg_ctl");
        let log = self.dir.join("server.log").display().to_string();
        server(&[pg_ctl.to_str().unwrap(), "-D", self.dir.to_str().unwrap(), "-l", &log, "-w", "-t", "60", "start"]);
    }

    fn conf(&self, extra: &str) {
        let c = format!(
            "listen_addresses = '{}'\nport = {}\nunix_socket_directories = '{}'\n{extra}",
            self.host,
            self.port,
            self.sock.display()
        );
        let p = self.dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&p).unwrap();
        text += &c;
        std::fs::write(&p, text).unwrap();
    }

    fn hba(&self) -> String {
        std::fs::read_to_string(self.dir.join("pg_hba.conf")).unwrap()
    }
}

/// pg1 (primary) ← pg2 (synchronous, named `walreceiver` by default) ← pg3
/// (cascaded), an inactive slot nobody uses, initdb's trust lines.
fn hand_built(k: &Kit) -> (Vec<Node>, PathBuf) {
    let root = k.path("hand");
    std::fs::create_dir(&root).unwrap();
    chown_to_os_user(&root);
    let pw = "s3cret-admin";
    let passfile = root.join("test.pgpass");
    std::fs::write(&passfile, format!("*:*:*:postgres:{pw}\n")).unwrap();
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    chown_to_os_user(&passfile);
    let mk = |i: usize, host: &'static str| {
        let sock = root.join(format!("s{i}"));
        std::fs::create_dir(&sock).unwrap();
        chown_to_os_user(&sock);
        Node { host, port: free_port(host), dir: root.join(format!("pg{i}")), sock, passfile: passfile.clone() }
    };
    let nodes = vec![mk(1, "127.0.0.1"), mk(2, "127.0.0.2"), mk(3, "127.0.0.3")];
    let pwfile = root.join("initpw");
    std::fs::write(&pwfile, pw).unwrap();
    chown_to_os_user(&pwfile);
    let b = bin_dir();
    server(&[
        b.join("initdb").to_str().unwrap(),
        "-D",
        nodes[0].dir.to_str().unwrap(),
        "-U",
        "postgres",
        "--pwfile",
        pwfile.to_str().unwrap(),
        "-A",
        "trust",
    ]);
    std::fs::remove_file(&pwfile).unwrap();
    nodes[0].conf("");
    nodes[0].start();
    nodes[0].sql("SELECT pg_create_physical_replication_slot('old_backup_slot')");
    for (i, up) in [(1usize, 0usize), (2, 1)] {
        let (n, u) = (&nodes[i], &nodes[up]);
        server(&[
            b.join("pg_basebackup").to_str().unwrap(),
            "-h",
            u.host,
            "-p",
            &u.port.to_string(),
            "-U",
            "postgres",
            "-D",
            n.dir.to_str().unwrap(),
            "-R",
            "-X",
            "stream",
        ]);
        n.conf("");
        n.start();
    }
    nodes[0].conf("synchronous_standby_names = 'walreceiver'\n");
    nodes[0].sql("SELECT pg_reload_conf()");
    nodes[0].sql("CREATE TABLE probe (id int PRIMARY KEY)");
    nodes[0].sql("INSERT INTO probe SELECT generate_series(1, 100)");
    let f = k.path("admin.pw");
    std::fs::write(&f, format!("{pw}\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    (nodes, f)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("timed out waiting until {what}");
}

fn adopt(k: &Kit, spec: &Path, pw: &Path, more: &[&str]) -> Output {
    k.cmd()
        .args(["adopt", "-c", spec.to_str().unwrap(), "--admin-password-file", pw.to_str().unwrap()])
        .args(more)
        .output()
        .unwrap()
}

#[test]
fn a_hand_built_cluster_is_discovered_checked_adopted_and_then_managed() {
    let k = Kit::new(BIN);
    let (nodes, pw) = hand_built(&k);
    wait_until("pg3 streams from pg2", || nodes[1].sql("SELECT count(*) FROM pg_stat_replication") == "1");

    // --gen-spec: the loopback standbys all connect from 127.0.0.1, so the
    // primary cannot tell their ports: they are named with --standby.
    let p1 = format!("127.0.0.1:{}", nodes[0].port);
    let (s2, s3) = (format!("127.0.0.2:{}", nodes[1].port), format!("127.0.0.3:{}", nodes[2].port));
    let g = ok(k
        .cmd()
        .args(["adopt", "--gen-spec", "-n", "hand", "--primary", &p1, "--standby", &s3, "--standby", &s2])
        .args(["--admin-password-file", pw.to_str().unwrap()])
        .output()
        .unwrap());
    let spec = String::from_utf8(g.stdout).unwrap();
    for want in [
        "name: pg1",
        "name: pg2",
        "upstream: pg1",
        "sync: sync",
        "name: pg3",
        "upstream: pg2",
        "\"host all all 127.0.0.1/32 trust\"",
        &format!("data_dir: \"{}\"", nodes[2].dir.display()),
        &format!("socket_dir: \"{}\"", nodes[1].sock.display()),
    ] {
        assert!(spec.contains(want), "{want} not in:\n{spec}");
    }
    let gen = k.write("gen.yaml", &spec);

    // The running pg_hba has trust on host lines: refused unless allow_trust.
    let hba_before = nodes[0].hba();
    let o = adopt(&k, &gen, &pw, &["--yes"]);
    assert!(!o.status.success() && out(&o).contains("trust"), "{}", out(&o));
    let trusting = spec.replace("postgres:\n", "postgres:\n  allow_trust: true\n");
    let o = adopt(&k, &k.write("trust.yaml", &trusting), &pw, &["--yes", "--dry-run"]);
    assert!(o.status.success(), "allow_trust lets it plan: {}", out(&o));

    // Without trust lines on host entries; pg_hba allows the test's own
    // psql over the socket as before.
    let good: String =
        spec.lines().filter(|l| !(l.contains("\"host") && l.contains("trust"))).map(|l| format!("{l}\n")).collect();
    let good = k.write("good.yaml", &good);

    // A spec that lies about pg3's upstream: every difference is listed,
    // including that neither wal_log_hints nor checksums is on (no --yes).
    let lying = std::fs::read_to_string(&good).unwrap().replace("upstream: pg2", "upstream: pg1");
    let o = adopt(&k, &k.write("lying.yaml", &lying), &pw, &[]);
    let e = out(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("pg3: the spec says it streams from pg1"), "{e}");
    assert!(e.contains("(that is pg2)"), "{e}");
    assert_eq!(e.matches("neither wal_log_hints nor data checksums").count(), 3, "{e}");
    assert_eq!(nodes[0].hba(), hba_before, "a refused adopt changes nothing");
    assert!(!k.home().join("hand").join("inventory.yaml").exists());

    // A dry run shows the diff and the orphan slot, and changes nothing.
    let o = ok(adopt(&k, &good, &pw, &["--yes", "--dry-run"]));
    let d = out(&o);
    assert!(d.contains("-host    all             all             127.0.0.1/32            trust"), "{d}");
    assert!(d.contains("+host    replication  pgscale_repl"), "{d}");
    assert!(d.contains("orphan slot `old_backup_slot` on pg1"), "{d}");
    assert_eq!(nodes[0].hba(), hba_before);

    let o = ok(adopt(&k, &good, &pw, &["--yes"]));
    let d = out(&o);
    assert!(d.contains("adopt of cluster hand: done"), "{d}");
    for n in &nodes {
        let h = n.hba();
        assert!(!h.lines().any(|l| l.starts_with("host") && l.contains("trust")), "{h}");
        assert!(h.contains("scram-sha-256"), "{h}");
        assert_eq!(n.sql("SHOW wal_log_hints"), "on", "restarted with --yes");
    }
    // pgscale's names, slots and role now carry the replication.
    assert_eq!(
        nodes[0].sql("SELECT application_name || ':' || sync_state || ':' || usename FROM pg_stat_replication"),
        "pg2:sync:pgscale_repl"
    );
    assert_eq!(nodes[1].sql("SELECT application_name || ':' || usename FROM pg_stat_replication"), "pg3:pgscale_repl");
    assert_eq!(nodes[0].sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'old_backup_slot'"), "1");
    assert_eq!(nodes[0].sql("SELECT active FROM pg_replication_slots WHERE slot_name = 'pg2'"), "t");
    nodes[0].sql("INSERT INTO probe SELECT generate_series(101, 200)");
    wait_until("pg3 replays the new rows", || nodes[2].sql("SELECT count(*) FROM probe") == "200");
    let c = k.cmd().args(["check", "-n", "hand"]).output().unwrap();
    let cs = out(&c);
    assert!(cs.contains("old_backup_slot"), "check reports the orphan slot: {cs}");

    // Adopted once: a second adopt is refused.
    let o = adopt(&k, &good, &pw, &["--yes"]);
    assert!(out(&o).contains("already managed by pgscale"), "{}", out(&o));

    // Managed from now on: a switchover through pgscale, nothing lost.
    ok(k.cmd().args(["switchover", "-n", "hand", "--to", "pg2", "--yes"]).output().unwrap());
    assert_eq!(nodes[1].sql("SELECT pg_is_in_recovery()"), "f");
    assert_eq!(nodes[1].sql("SELECT count(*) FROM probe"), "200");
    nodes[1].sql("INSERT INTO probe VALUES (201)");
    wait_until("the old primary follows", || nodes[0].sql("SELECT count(*) FROM probe") == "201");
}
