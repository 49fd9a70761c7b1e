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

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {secs}s waiting until {what}");
}

impl Bed {
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
        wait_for("pg1's agent holds the leader key and all three publish", 60, || {
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
        let on_new = &acked[1];
        let first = on_new
            .iter()
            .find(|(_, t)| *t > fault_at)
            .unwrap_or_else(|| panic!("the new primary acknowledged nothing\n{}", self.logs()));
        if let Some(last_old) = acked[0].last() {
            assert!(
                last_old.1 < first.1,
                "dual acknowledgement: pg{old} acknowledged after pg{new}'s first\n{}",
                self.logs()
            );
        }
        let all: Vec<String> = acked.iter().flatten().map(|(i, _)| i.to_string()).collect();
        assert!(!acked[0].is_empty(), "the probe wrote to pg{old} before the fault");
        let found = self.sql(new, &format!("SELECT count(*) FROM probe WHERE id IN ({})", all.join(","))).unwrap();
        assert_eq!(found, all.len().to_string(), "every acknowledged id is on pg{new}\n{}", self.logs());
        first.1.duration_since(fault_at).as_secs_f64()
    }

    /// pg1 comes back as a standby of pg2, pg3 follows pg2, check is clean.
    fn rejoined(&self) {
        wait_for("pg1 rejoins as a standby streaming from pg2", 120, || {
            self.sql(2, "SELECT string_agg(application_name, ',' ORDER BY application_name) FROM pg_stat_replication WHERE state = 'streaming'").as_deref()
                == Some("pg1,pg3")
        });
        assert_eq!(self.sql(1, "SELECT pg_is_in_recovery()").as_deref(), Some("t"));
        wait_for("the history records the rejoin", 60, || self.history().contains("\"rejoined\""));
        let o = self.k.cmd().args(["check", "-n", "np"]).output().unwrap();
        assert!(o.status.success(), "check: {}\n{}", String::from_utf8_lossy(&o.stdout), self.logs());
    }
}

fn random_phase() -> Duration {
    // a uniform phase within the lease (2 s), from the clock's nanoseconds
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    Duration::from_millis(u64::from(n % 2000))
}

#[test]
fn a_partitioned_primary_is_fenced_a_standby_promoted_and_it_rejoins_when_the_link_is_back() {
    let Some(b) = Bed::start(false) else { return };
    let pid = b.postmaster(1).expect("pg1 runs");
    let probe = Probe::start(vec![b.target(1), b.target(2)], &b.password());
    std::thread::sleep(Duration::from_secs(2) + random_phase());
    let fault_at = Instant::now();
    b.net.set_link(0, Link::Pg, false);
    b.net.set_link(0, Link::Etcd, false);
    wait_for("pg2 is promoted", 60, || b.primary_is(2));
    // The old primary, alone on its side, was fenced by its own agent.
    wait_for("pg1's agent fenced its PostgreSQL", 30, || !testkit::alive(pid));
    std::thread::sleep(Duration::from_secs(2));
    let acked = probe.finish();
    let rto = b.check_acks(&acked, 1, 2, fault_at);
    eprintln!("partition: first commit on pg2 {rto:.2}s after the link went down");
    b.net.set_link(0, Link::Pg, true);
    b.net.set_link(0, Link::Etcd, true);
    b.rejoined();
    assert_eq!(b.status()["leader"], "pg2");
}
