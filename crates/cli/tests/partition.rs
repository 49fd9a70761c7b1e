//! Automatic failover across real network faults: three "hosts" as network
//! namespaces (testkit::netns), each with PostgreSQL, an sshd (pgscale
//! reaches every node over SSH, as on real hosts), an agent and an etcd
//! member; a write probe per node runs beside that node (in its namespace),
//! so a partitioned primary keeps its local client. Root only: elsewhere
//! each test says SKIPPED and returns.

use serde_json::Value;
use std::time::{Duration, Instant};
use testkit::netns::{Link, Net};
use testkit::probe::{Probe, Target};
use testkit::{ok, Kit, Sshd};

const BIN: &str = env!("CARGO_BIN_EXE_pgscale");
const PORT: u16 = 5432;

/// The bed: hosts h0..h2 run pg1..pg3 (pg1 primary, pg2 sync, pg3 async).
struct Bed {
    // Dropped in this order: agents, sshds, the kit (servers, etcd), the net.
    agents: Vec<Option<testkit::Child>>,
    _sshd: Vec<Sshd>,
    k: Kit,
    net: Net,
    failsafe: bool,
}

/// Polls `f` until it holds; on timeout panics with `context()`.
fn wait_with(what: &str, secs: u64, mut f: impl FnMut() -> bool, context: impl FnOnce() -> String) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {secs}s waiting until {what}\n{}", context());
}

impl Bed {
    /// Waits until `f` holds; a timeout shows the agents' logs, so a
    /// failure on CI says what the agents were doing.
    fn wait(&self, what: &str, secs: u64, f: impl FnMut() -> bool) {
        wait_with(what, secs, f, || self.logs())
    }

    fn start(failsafe: bool) -> Option<Bed> {
        let net = Net::create(3)?;
        let k = Kit::with_etcd_in(BIN, &net);
        let sshd: Vec<Sshd> = (0..3).map(|i| Sshd::start_in(&k.path(&format!("ssh-h{i}")), &net, i)).collect();
        // The remote side creates data directories as the OS user.
        let data = k.path("data");
        std::fs::create_dir(&data).unwrap();
        testkit::chown_to_os_user(&data);
        let mut y = String::from("name: np\nnodes:\n");
        for (i, s) in sshd.iter().enumerate() {
            let n = format!("pg{}", i + 1);
            y += &format!(
                "  - name: {n}\n    host: {}\n    port: {PORT}\n    data_dir: {}\n",
                net.pg_addr(i),
                data.join(&n).display()
            );
            if i == 1 {
                y += "    sync: sync\n";
            }
            y += &s.yaml();
        }
        ok(k.cmd().args(["init", "-c", k.write("np.yaml", &y).to_str().unwrap()]).output().unwrap());
        ok(k.cmd().args(["ha", "-n", "np", "enable"]).output().unwrap());
        let mut b = Bed { agents: Vec::new(), _sshd: sshd, k, net, failsafe };
        assert!(b.sql(1, "CREATE TABLE probe (id bigint PRIMARY KEY)").is_some());
        b.agents = (1..=3).map(|n| Some(b.agent(n, ""))).collect();
        b.wait("pg1's agent holds the leader key and all three publish", 60, || {
            let s = b.status();
            s["leader"] == "pg1" && s["members"].as_object().is_some_and(|m| m.len() == 3)
        });
        Some(b)
    }

    /// The agent of node `n` (1-based), in its host.
    fn agent(&self, n: usize, again: &str) -> testkit::Child {
        let node = format!("pg{n}");
        let http = format!("{}:8008", self.net.pg_addr(n - 1));
        let mut args = vec!["agent", "-n", "np", "--node", &node, "--http", &http, "--log-format", "json"];
        if self.failsafe {
            args.push("--failsafe");
        }
        // The benchmark's lease profile (bench/doctor.sh PROFILE=fast); the
        // bed's etcd has the 500 ms election timeout the fast profile needs.
        let profile = std::env::var("PGSCALE_BENCH_PROFILE").unwrap_or_default();
        if !profile.is_empty() {
            args.extend(["--profile", profile.as_str()]);
        }
        self.k.spawn_in(&self.net, n - 1, &args, &format!("agent-pg{n}{again}.log"))
    }

    fn kill_agent(&mut self, n: usize) {
        if let Some(mut a) = self.agents[n - 1].take() {
            let _ = a.0.kill();
            let _ = a.0.wait();
        }
    }

    fn sql(&self, n: usize, q: &str) -> Option<String> {
        let o = self.k.cmd().args(["psql", "-n", "np", "--node", &format!("pg{n}"), "--", "-Atc", q]).output().ok()?;
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    fn status(&self) -> Value {
        let o = self.k.cmd().args(["ha", "-n", "np", "status", "--output", "json"]).output().unwrap();
        serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
    }

    fn history(&self) -> String {
        self.k.etcd.as_ref().unwrap().dump("/test/clusters/np/ha/history/")
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(self.k.dir.path()).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("agent-pg") && name.ends_with(".log") {
                let t = std::fs::read_to_string(e.path()).unwrap_or_default();
                // the last lines of each log are enough to see what happened
                let tail: Vec<&str> = t.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
                s += &format!("--- {name}\n{}\n", tail.join("\n"));
            }
        }
        s
    }

    /// A writer beside node `n` (in its host's namespace).
    fn target(&self, n: usize) -> Target {
        Target { host: self.net.pg_addr(n - 1), port: PORT, netns: Some(self.net.ns_path(n - 1)) }
    }

    fn password(&self) -> String {
        testkit::admin_password(&self.k.home(), "np")
    }

    fn postmaster(&self, n: usize) -> Option<i32> {
        testkit::postmaster_pid(&self.k.path(&format!("data/pg{n}")))
    }

    fn primary_is(&self, n: usize) -> bool {
        self.sql(n, "SELECT pg_is_in_recovery()").as_deref() == Some("f")
    }

    /// Every id acknowledged by any writer is on node `n`; the last
    /// acknowledgement of `old` precedes the first of `new` (no two
    /// primaries acknowledged at once). Returns the fault-to-first-commit time.
    fn check_acks(&self, acked: &[Vec<(i64, Instant)>], old: usize, new: usize, fault_at: Instant) -> f64 {
        let on_new = &acked[new - 1];
        let first = on_new
            .iter()
            .find(|(_, t)| *t > fault_at)
            .unwrap_or_else(|| panic!("the new primary acknowledged nothing\n{}", self.logs()));
        if let Some(last_old) = acked[old - 1].last() {
            assert!(
                last_old.1 < first.1,
                "dual acknowledgement: pg{old} acknowledged after pg{new}'s first\n{}",
                self.logs()
            );
        }
        let all: Vec<String> = acked.iter().flatten().map(|(i, _)| i.to_string()).collect();
        assert!(!acked[old - 1].is_empty(), "the probe wrote to pg{old} before the fault");
        let found = self.sql(new, &format!("SELECT count(*) FROM probe WHERE id IN ({})", all.join(","))).unwrap();
        assert_eq!(found, all.len().to_string(), "every acknowledged id is on pg{new}\n{}", self.logs());
        first.1.duration_since(fault_at).as_secs_f64()
    }

    /// The leader (1-based) once both others stream from it, one of them
    /// synchronously.
    fn healthy_leader(&self) -> usize {
        let mut leader = 0;
        self.wait("a leader with both others streaming from it", 180, || {
            let Some(l) = self.status()["leader"].as_str().and_then(|l| l.strip_prefix("pg")?.parse::<usize>().ok())
            else {
                return false;
            };
            leader = l;
            let q = "SELECT count(*) FILTER (WHERE state = 'streaming') || ':' || count(*) FILTER (WHERE sync_state = 'sync') FROM pg_stat_replication";
            self.sql(l, q).as_deref() == Some("2:1")
        });
        leader
    }

    /// pg1 comes back as a standby of `new` (the promoted one), the other
    /// follows `new` too, check is clean.
    fn rejoined(&self, new: usize) {
        let others: Vec<String> = (1..=3).filter(|n| *n != new).map(|n| format!("pg{n}")).collect();
        self.wait(&format!("pg1 rejoins as a standby streaming from pg{new}"), 120, || {
            self.sql(new, "SELECT string_agg(application_name, ',' ORDER BY application_name) FROM pg_stat_replication WHERE state = 'streaming'").as_deref()
                == Some(others.join(",").as_str())
        });
        assert_eq!(self.sql(1, "SELECT pg_is_in_recovery()").as_deref(), Some("t"));
        // pg1's own rejoin (another may have been rewound too, before it): it
        // streams before the operation's last step records it.
        self.wait("the history records pg1's rejoin", 60, || {
            self.history().lines().any(|l| l.contains("\"node\":\"pg1\"") && l.contains("\"did\":\"rejoined\""))
        });
        self.wait("check is clean", 30, || self.k.cmd().args(["check", "-n", "np"]).output().unwrap().status.success());
    }
}

use testkit::random_phase;

/// Fault pg1 (the primary) at a random phase under a writer beside each
/// node; a standby is promoted (pg2, the synchronous one, or pg3 when it
/// received more), pg1 stops (fenced, or killed by the fault), and every
/// acknowledged id is on the new primary with no dual acknowledgement.
/// Returns the new primary.
fn fail_pg1_over(b: &mut Bed, what: &str, fault: impl FnOnce(&mut Bed)) -> usize {
    let pid = b.postmaster(1).expect("pg1 runs");
    let probe = Probe::start((1..=3).map(|n| b.target(n)).collect(), &b.password());
    std::thread::sleep(Duration::from_secs(2) + random_phase());
    let fault_at = Instant::now();
    fault(b);
    b.wait("pg2 or pg3 is promoted", 60, || b.primary_is(2) || b.primary_is(3));
    let new = if b.primary_is(2) { 2 } else { 3 };
    b.wait("pg1's PostgreSQL is stopped (fenced on its side)", 30, || !testkit::alive(pid));
    // Strict naming: the new primary's first commits wait for a standby
    // streaming from it; wait for them, then a second.
    let before = probe.count(new - 1);
    b.wait("the new primary acknowledges writes", 120, || probe.count(new - 1) > before);
    std::thread::sleep(Duration::from_secs(1));
    let acked = probe.finish();
    let rto = b.check_acks(&acked, 1, new, fault_at);
    let other = if new == 2 { 3 } else { 2 };
    assert!(acked[other - 1].iter().all(|(_, t)| *t < fault_at), "pg{other} never acknowledged\n{}", b.logs());
    eprintln!("{what}: first commit on pg{new} {rto:.2}s after the fault");
    new
}

#[test]
fn a_partitioned_primary_is_fenced_a_standby_promoted_and_it_rejoins_when_the_link_is_back() {
    let Some(mut b) = Bed::start(false) else { return };
    let new = fail_pg1_over(&mut b, "partition", |b| {
        b.net.set_link(0, Link::Pg, false);
        b.net.set_link(0, Link::Etcd, false);
    });
    b.net.set_link(0, Link::Pg, true);
    b.net.set_link(0, Link::Etcd, true);
    b.rejoined(new);
    assert_eq!(b.status()["leader"], format!("pg{new}"));
}

#[test]
fn a_primary_cut_from_etcd_only_is_fenced_and_a_standby_promoted() {
    let Some(mut b) = Bed::start(false) else { return };
    // Replication and clients still reach pg1; etcd does not.
    let new = fail_pg1_over(&mut b, "cut from etcd", |b| b.net.set_link(0, Link::Etcd, false));
    // Fence A: its agent or, when the agent's tick was still waiting on
    // etcd at the deadline, its fence guard (the same deadline).
    let log = std::fs::read_to_string(b.k.path("agent-pg1.log")).unwrap();
    let guard = std::fs::read_to_string(b.k.home().join("np/agent-pg1.guard.log")).unwrap_or_default();
    assert!(
        log.contains("the leader lease could not be renewed in time") || guard.contains("did not extend the deadline"),
        "pg1 was fenced at Fence A's deadline\n{}",
        b.logs()
    );
    b.net.set_link(0, Link::Etcd, true);
    b.rejoined(new);
}

#[test]
fn the_primary_host_dying_with_its_etcd_member_fails_over() {
    let Some(mut b) = Bed::start(false) else { return };
    // The whole host: its agent, its PostgreSQL and its etcd member.
    let new = fail_pg1_over(&mut b, "host death with its etcd member", |b| {
        b.kill_agent(1);
        testkit::kill_server(b.postmaster(1).expect("pg1 runs"));
        b.k.etcd.as_mut().unwrap().kill(0);
    });
    // The host comes back: etcd member, then the agent (systemd's order).
    b.k.etcd.as_mut().unwrap().restart(0);
    b.agents[0] = Some(b.agent(1, "-again"));
    b.rejoined(new);
}

/// etcd loses its quorum (2 of 3 members killed). Nobody is promoted;
/// without failsafe the primary is fenced at its lease's end, with
/// failsafe it goes on while its synchronous standby streams. When etcd is
/// back, the cluster has a primary again and nothing acknowledged is lost.
fn etcd_quorum_lost(failsafe: bool) {
    let Some(mut b) = Bed::start(failsafe) else { return };
    let pid = b.postmaster(1).expect("pg1 runs");
    let probe = Probe::start(vec![b.target(1), b.target(2)], &b.password());
    std::thread::sleep(Duration::from_secs(2) + random_phase());
    b.k.etcd.as_mut().unwrap().kill(1);
    b.k.etcd.as_mut().unwrap().kill(2);
    // Three lease lengths: long enough for anything that would happen.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(b.sql(2, "SELECT pg_is_in_recovery()").as_deref(), Some("t"), "no promotion without etcd\n{}", b.logs());
    assert_eq!(b.sql(3, "SELECT pg_is_in_recovery()").as_deref(), Some("t"), "no promotion without etcd\n{}", b.logs());
    let during = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    if failsafe {
        assert!(testkit::alive(pid), "failsafe keeps the primary while its sync standby streams\n{}", b.logs());
        assert!(b.primary_is(1));
    } else {
        assert!(!testkit::alive(pid), "without failsafe the primary is fenced at its lease's end\n{}", b.logs());
    }
    b.k.etcd.as_mut().unwrap().restart(1);
    b.k.etcd.as_mut().unwrap().restart(2);
    b.wait("a primary once etcd is back", 90, || b.primary_is(1) || b.primary_is(2) || b.primary_is(3));
    let primary = (1..=3).find(|n| b.primary_is(*n)).unwrap();
    if failsafe {
        assert_eq!(primary, 1, "the kept primary stays\n{}", b.logs());
    }
    std::thread::sleep(Duration::from_secs(2));
    let acked = probe.finish();
    let acks_during = acked[0].iter().filter(|(_, t)| *t > during).count();
    if failsafe {
        assert!(acks_during > 0, "failsafe: pg1 acknowledged commits while etcd was down");
        assert!(acked[1].is_empty(), "pg2 never acknowledged");
    } else {
        assert_eq!(acks_during, 0, "a fenced primary acknowledges nothing");
    }
    let all: Vec<String> = acked.iter().flatten().map(|(i, _)| i.to_string()).collect();
    let found = b.sql(primary, &format!("SELECT count(*) FROM probe WHERE id IN ({})", all.join(","))).unwrap();
    assert_eq!(found, all.len().to_string(), "every acknowledged id is on pg{primary}\n{}", b.logs());
    let hist = b.history();
    assert!(!hist.contains("\"promoting\"") || !failsafe, "failsafe: nobody was promoted\n{hist}");
    // The others stream from the primary again (a fenced one rejoined).
    b.wait("check is clean", 120, || b.k.cmd().args(["check", "-n", "np"]).output().unwrap().status.success());
}

#[test]
fn losing_etcd_quorum_fences_the_primary_and_promotes_nobody() {
    etcd_quorum_lost(false);
}

#[test]
fn losing_etcd_quorum_with_failsafe_keeps_the_primary_and_promotes_nobody() {
    etcd_quorum_lost(true);
}

#[test]
fn a_stale_old_primary_started_first_never_becomes_primary() {
    let Some(mut b) = Bed::start(false) else { return };
    let pw = b.password();
    let probe = Probe::start(vec![b.target(1), b.target(2), b.target(3)], &pw);
    std::thread::sleep(Duration::from_secs(2));
    // pg1's host dies (agent and PostgreSQL): a standby is promoted.
    let pid1 = b.postmaster(1).expect("pg1 runs");
    b.kill_agent(1);
    testkit::kill_server(pid1);
    b.wait("pg2 or pg3 is promoted", 60, || b.primary_is(2) || b.primary_is(3));
    // The new primary settles: the old one, named before the promotion
    // (strict), is dropped from the synchronous standbys once the other
    // standby streams. (Should every host die before that, the proof waits
    // for pg1's report and nobody is promoted automatically: safe, but
    // the operator decides.)
    let new = if b.primary_is(2) { 2 } else { 3 };
    b.wait("the new primary names only the other standby", 60, || {
        b.sql(new, "SHOW synchronous_standby_names").is_some_and(|s| !s.is_empty() && !s.contains("pg1"))
    });
    std::thread::sleep(Duration::from_secs(1));
    // Then every host goes down, at once: both agents first (one left
    // running while the other host dies would take the lost leader over
    // within a second, and then both were primaries once).
    let pids: Vec<i32> = [2, 3].iter().map(|n| b.postmaster(*n).expect("running")).collect();
    for n in [2, 3] {
        b.kill_agent(n);
    }
    for pid in pids {
        testkit::kill_server(pid);
    }
    let acked = probe.finish();
    // The stale pg1 comes back first, alone: it must not serve as a primary.
    b.agents[0] = Some(b.agent(1, "-stale"));
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(8) {
        assert_ne!(b.sql(1, "SELECT pg_is_in_recovery()").as_deref(), Some("f"), "pg1 runs as a primary\n{}", b.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    // The others come back: a primary emerges that holds every acknowledged id.
    b.agents[1] = Some(b.agent(2, "-again"));
    b.agents[2] = Some(b.agent(3, "-again"));
    b.wait("pg2 or pg3 runs as the primary", 90, || b.primary_is(2) || b.primary_is(3));
    let primary = if b.primary_is(2) { 2 } else { 3 };
    let all: Vec<String> = acked.iter().flatten().map(|(i, _)| i.to_string()).collect();
    let found = b.sql(primary, &format!("SELECT count(*) FROM probe WHERE id IN ({})", all.join(","))).unwrap();
    assert_eq!(found, all.len().to_string(), "every acknowledged id is on pg{primary}\n{}", b.logs());
    let others: Vec<String> = (1..=3).filter(|n| *n != primary).map(|n| format!("pg{n}")).collect();
    b.wait("both others stream from the new primary", 120, || {
        b.sql(primary, "SELECT string_agg(application_name, ',' ORDER BY application_name) FROM pg_stat_replication WHERE state = 'streaming'").as_deref()
            == Some(others.join(",").as_str())
    });
    assert_ne!(b.sql(1, "SELECT pg_is_in_recovery()").as_deref(), Some("f"));
    b.wait("check is clean", 60, || b.k.cmd().args(["check", "-n", "np"]).output().unwrap().status.success());
}

/// The synchronous standby is lost (its host dies, or is cut off): commits
/// on the primary wait only until the leader names the asynchronous standby
/// in its place (published in `ackers` first); nobody is promoted; when the
/// standby is back it gets its place again.
fn sync_standby_lost(partition: bool) {
    let Some(mut b) = Bed::start(false) else { return };
    let probe = Probe::start(vec![b.target(1)], &b.password());
    std::thread::sleep(Duration::from_secs(2) + random_phase());
    let fault_at = Instant::now();
    if partition {
        b.net.set_link(1, Link::Pg, false);
        b.net.set_link(1, Link::Etcd, false);
    } else {
        b.kill_agent(2);
        testkit::kill_server(b.postmaster(2).expect("pg2 runs"));
    }
    let names = |b: &Bed| b.sql(1, "SHOW synchronous_standby_names").unwrap_or_default();
    b.wait("pg3 stands in for pg2", 60, || names(&b) == "FIRST 1 (\"pg3\")");
    std::thread::sleep(Duration::from_secs(3));
    let acked = probe.finish();
    let on1 = &acked[0];
    let after: Vec<Instant> = on1.iter().map(|(_, t)| *t).filter(|t| *t > fault_at).collect();
    assert!(after.len() > 10, "pg1 acknowledges commits again\n{}", b.logs());
    // The longest wait between two acknowledgements around the fault.
    let mut prev = on1.iter().map(|(_, t)| *t).rfind(|t| *t <= fault_at).unwrap_or(fault_at);
    let mut stall = Duration::ZERO;
    for t in &after {
        stall = stall.max(t.duration_since(prev));
        prev = *t;
    }
    eprintln!(
        "sync standby {}: commits stalled {:.2}s",
        if partition { "partitioned" } else { "killed" },
        stall.as_secs_f64()
    );
    let hist = b.history();
    assert!(hist.contains("set the synchronous standbys"), "{hist}");
    assert!(!hist.contains("promot"), "nobody was promoted: {hist}");
    assert!(b.primary_is(1));
    // Every acknowledged id is on pg3, the standby that stood in, once it replayed.
    let all: Vec<String> = on1.iter().map(|(i, _)| i.to_string()).collect();
    b.wait("pg3 replayed every acknowledged id", 30, || {
        b.sql(3, &format!("SELECT count(*) FROM probe WHERE id IN ({})", all.join(","))).as_deref()
            == Some(all.len().to_string().as_str())
    });
    // pg2 comes back and takes its place again.
    if partition {
        b.net.set_link(1, Link::Pg, true);
        b.net.set_link(1, Link::Etcd, true);
    } else {
        b.agents[1] = Some(b.agent(2, "-again"));
    }
    // After a cut, pg2 streams again once PostgreSQL's own timeouts drop
    // the dead connection (wal_sender_timeout / wal_receiver_timeout, 60 s
    // by default) when TCP does not resume it first.
    b.wait("pg2 is the synchronous standby again", 180, || names(&b) == "FIRST 1 (\"pg2\")");
    b.wait("check is clean", 30, || b.k.cmd().args(["check", "-n", "np"]).output().unwrap().status.success());
}

#[test]
fn a_killed_sync_standby_is_replaced_and_commits_go_on() {
    sync_standby_lost(false);
}

#[test]
fn a_partitioned_sync_standby_is_replaced_and_commits_go_on() {
    sync_standby_lost(true);
}

/// The partition benchmark, run by `bench/doctor.sh` (FAULTS=partition or
/// etcdcut), ignored in the suite: N rounds (`PGSCALE_BENCH_N`, default 20)
/// on one bed, each faulting whoever leads at a random phase of its lease,
/// with a writer beside every node. One JSON line per round goes to
/// `PGSCALE_BENCH_OUT`: the time from the fault to the first commit on the
/// new primary, the longest write gap, the dual-acknowledgement overlap and
/// the acknowledged ids missing on the new primary. Each round also asserts
/// what the tests assert (no loss, no overlap), then heals the fault and
/// waits until the old primary streams from the new one.
#[test]
#[ignore]
fn partition_figures() {
    let fault = std::env::var("PGSCALE_BENCH_FAULT").unwrap_or_else(|_| "partition".into());
    assert!(fault == "partition" || fault == "etcdcut", "PGSCALE_BENCH_FAULT: partition or etcdcut, not {fault}");
    let rounds: usize = std::env::var("PGSCALE_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let out = std::env::var("PGSCALE_BENCH_OUT").expect("PGSCALE_BENCH_OUT: where the JSON lines go");
    let Some(b) = Bed::start(false) else { panic!("the namespace bed needs root") };
    let pw = b.password();
    let mut lines = String::new();
    for round in 1..=rounds {
        let old = b.healthy_leader();
        let probe = Probe::start_from((1..=3).map(|n| b.target(n)).collect(), &pw, round as i64 * 1_000_000);
        std::thread::sleep(Duration::from_secs(2) + random_phase());
        let fault_at = Instant::now();
        // Wall-clock, to find the fault in the agents' logs (KEEP_LOGS).
        let fault_unix_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
        if fault == "partition" {
            b.net.set_link(old - 1, Link::Pg, false);
        }
        b.net.set_link(old - 1, Link::Etcd, false);
        let others: Vec<usize> = (1..=3).filter(|n| *n != old).collect();
        b.wait("another node is promoted", 60, || others.iter().any(|n| b.primary_is(*n)));
        let new = *others.iter().find(|n| b.primary_is(**n)).unwrap();
        // Strict naming: the new primary's commits wait for a standby that
        // streams from it (perhaps one being rewound): wait until its writer
        // has acknowledgements again, then a second more.
        let before_new = probe.count(new - 1);
        b.wait("the new primary acknowledges writes", 120, || probe.count(new - 1) > before_new);
        std::thread::sleep(Duration::from_secs(1));
        let acked = probe.finish();
        let r = figures(&acked, old - 1, new - 1, fault_at);
        let all: Vec<String> = acked.iter().flatten().map(|(i, _)| i.to_string()).collect();
        let found: usize = b
            .sql(new, &format!("SELECT count(*) FROM probe WHERE id IN ({})", all.join(",")))
            .unwrap()
            .parse()
            .unwrap();
        let before = acked[old - 1].iter().filter(|a| a.1 < fault_at).count();
        let line = serde_json::json!({
            "round": round, "fault_unix_ms": fault_unix_ms, "old": format!("pg{old}"), "new": format!("pg{new}"), "acked_before": before,
            "rto_s": r.0, "gap_s": r.1, "dual_ack_s": r.2, "lost": all.len() - found, "acked": all.len(),
        });
        eprintln!("{fault} {round}/{rounds}: {line}");
        lines += &format!("{line}\n");
        std::fs::write(&out, &lines).unwrap();
        assert_eq!(found, all.len(), "every acknowledged id is on pg{new}\n{}", b.logs());
        assert_eq!(r.2, 0.0, "no dual acknowledgement\n{}", b.logs());
        assert!(before > 50, "pg{old} acknowledged writes before the fault ({before})\n{}", b.logs());
        b.net.set_link(old - 1, Link::Pg, true);
        b.net.set_link(old - 1, Link::Etcd, true);
    }
    b.healthy_leader();
}

/// (time to the first commit on `new` after the fault, the longest time
/// without any acknowledgement from the fault on, how long `old` went on
/// acknowledging after `new`'s first), in seconds.
fn figures(acked: &[Vec<(i64, Instant)>], old: usize, new: usize, fault_at: Instant) -> (f64, f64, f64) {
    let first_new = acked[new].iter().map(|a| a.1).find(|t| *t > fault_at).expect("the new primary acknowledged");
    let last_old = acked[old].iter().map(|a| a.1).max().unwrap_or(fault_at);
    let dual = last_old.saturating_duration_since(first_new).as_secs_f64();
    let mut times: Vec<Instant> = acked.iter().flatten().map(|a| a.1).filter(|t| *t >= fault_at).collect();
    times.insert(0, fault_at);
    times.sort();
    let gap = times.windows(2).map(|w| w[1].duration_since(w[0]).as_secs_f64()).fold(0.0, f64::max);
    (first_new.duration_since(fault_at).as_secs_f64(), gap, dual)
}
