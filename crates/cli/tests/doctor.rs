//! Automatic failover's controls: `pgscale ha` against a real 3-member etcd.

use serde_json::Value;
use std::process::Output;
use testkit::{free_port, Kit};

const BIN: &str = env!("CARGO_BIN_EXE_pgscale");

use testkit::ok;
use testkit::probe::{Probe, Target};

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ha(k: &Kit, args: &[&str]) -> Output {
    k.cmd().args(["ha", "-n", "hm"]).args(args).output().unwrap()
}

fn status(k: &Kit) -> Value {
    let o = ok(k.cmd().args(["ha", "-n", "hm", "status", "--output", "json"]).output().unwrap());
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn ha_modes_live_in_etcd_and_a_home_cluster_is_refused() {
    let k = Kit::with_etcd(BIN);
    let y = k.inventory("hm", "", &[("pg1", "127.0.0.1", free_port("127.0.0.1"))]);
    ok(k.cmd().args(["init", "-c", k.write("c.yaml", &y).to_str().unwrap()]).output().unwrap());

    let s = status(&k);
    assert_eq!(s["mode"], "disabled", "{s}");
    assert!(s["set_by"].is_null());
    assert_eq!(s["without_agent"], serde_json::json!(["pg1"]));
    assert!(s["leader"].is_null());

    ok(ha(&k, &["enable"]));
    let e = k.etcd.as_ref().unwrap();
    assert!(e.dump("/test/clusters/hm/ha/mode").contains("\"enabled\""));
    let s = status(&k);
    assert_eq!(s["mode"], "enabled");
    assert!(s["set_by"].as_str().unwrap().contains("pgscale ha enabled"), "{s}");
    assert!(text(&ok(ha(&k, &["enable"]))).contains("already enabled"));

    let o = ha(&k, &["resume"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not paused"), "{}", text(&o));

    ok(ha(&k, &["pause"]));
    let o = ok(ha(&k, &["status"]));
    assert!(text(&o).contains("PAUSED (maintenance)"), "{}", text(&o));
    // The cluster's status says so too.
    let o = ok(k.cmd().args(["status", "-n", "hm"]).output().unwrap());
    assert!(text(&o).contains("automatic failover: PAUSED"), "{}", text(&o));
    let o = ok(k.cmd().args(["status", "-n", "hm", "--output", "json"]).output().unwrap());
    assert_eq!(serde_json::from_slice::<Value>(&o.stdout).unwrap()["automatic_failover"], "paused");
    ok(ha(&k, &["resume"]));
    assert_eq!(status(&k)["mode"], "enabled");
    ok(ha(&k, &["disable"]));
    assert_eq!(status(&k)["mode"], "disabled");

    // The systemd unit of an agent.
    let o = ok(k.cmd().args(["agent", "unit", "-n", "hm", "--node", "pg1"]).output().unwrap());
    let u = String::from_utf8_lossy(&o.stdout).to_string();
    for want in
        ["Type=notify", "Restart=always", "KillMode=process", "agent -n hm --node pg1", "Environment=PGSCALE_ETCD="]
    {
        assert!(u.contains(want), "{want} in\n{u}");
    }
    let o = k.cmd().args(["agent", "unit", "-n", "hm", "--node", "pg9"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // The same command on a cluster kept in the home: refused, saying how to move it.
    let h = Kit::new(BIN);
    let y = h.inventory("hm", "", &[("pg1", "127.0.0.2", free_port("127.0.0.2"))]);
    ok(h.cmd().args(["init", "-c", h.write("c.yaml", &y).to_str().unwrap()]).output().unwrap());
    let o = h.cmd().args(["ha", "-n", "hm", "enable"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("pgscale store migrate -n hm --to etcd"), "{}", text(&o));
    assert_eq!(h.cmd().args(["ha", "-n", "hm", "status", "--output", "json"]).output().unwrap().status.code(), Some(0));
    // No agent without etcd: refused at start, saying how to move the cluster.
    let o = h.cmd().args(["agent", "-n", "hm", "--node", "pg1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("store migrate"), "{}", text(&o));
}

/// One query as the admin through host:port (HAProxy's ports); None when it fails.
fn query_at(port: u16, password: &str, q: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    rt.block_on(async {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1").port(port).user("postgres").password(password).dbname("postgres");
        c.connect_timeout(std::time::Duration::from_secs(2));
        let (cl, conn) = tokio::time::timeout(std::time::Duration::from_secs(3), c.connect(tokio_postgres::NoTls))
            .await
            .ok()?
            .ok()?;
        tokio::spawn(conn);
        let r = tokio::time::timeout(std::time::Duration::from_secs(3), cl.query_one(q, &[])).await.ok()?.ok()?;
        Some(r.get::<_, Option<String>>(0).unwrap_or_default())
    })
}

/// HAProxy (Debian's package) in front, configured by `pgscale haproxy-config`.
fn start_haproxy(k: &Kit) -> (u16, u16, testkit::Child) {
    let (rw, ro) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let o = ok(k
        .cmd()
        .args([
            "haproxy-config",
            "-n",
            "af",
            "--bind",
            "127.0.0.1",
            "--rw-port",
            &rw.to_string(),
            "--ro-port",
            &ro.to_string(),
        ])
        .output()
        .unwrap());
    let cfg = k.write("haproxy.cfg", &String::from_utf8(o.stdout).unwrap());
    let check = std::process::Command::new("haproxy")
        .args(["-c", "-f", cfg.to_str().unwrap()])
        .output()
        .expect("haproxy installed");
    assert!(check.status.success(), "haproxy -c: {}", String::from_utf8_lossy(&check.stderr));
    let log = std::fs::File::create(k.path("haproxy.log")).unwrap();
    let child = std::process::Command::new("haproxy")
        .args(["-db", "-f", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start haproxy");
    (rw, ro, testkit::Child(child))
}

/// Polls `f` until it holds; a timeout shows the agents' logs, so a
/// failure on CI says what the agents were doing.
fn wait_for(k: &Kit, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(secs) {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("timed out after {secs}s waiting until {what}\n{}", agent_logs(k));
}

fn sql(k: &Kit, node: &str, q: &str) -> Option<String> {
    let o = k.cmd().args(["psql", "-n", "af", "--node", node, "--", "-Atc", q]).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// A plain HTTP GET: the status code and the body.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return (0, String::new()) };
    s.set_read_timeout(Some(std::time::Duration::from_secs(3))).unwrap();
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

/// The agents' HTTP addresses, by node number (1-based).
fn http_addr(k: &Kit, i: usize) -> String {
    std::fs::read_to_string(k.path(&format!("http-pg{i}"))).unwrap()
}

/// pg1 (primary), pg2 (sync), pg3 (async) in etcd, HA enabled, a probe
/// table, an agent per node; returns the ports and the agents.
fn three_nodes_with_agents(k: &Kit) -> (Vec<u16>, Vec<testkit::Child>) {
    let ports: Vec<u16> = (1..=3).map(|i| free_port(&format!("127.0.0.{i}"))).collect();
    let mut y = String::from("name: af\nnodes:\n");
    for (i, p) in ports.iter().enumerate() {
        let n = format!("pg{}", i + 1);
        y += &format!(
            "  - name: {n}\n    host: 127.0.0.{}\n    port: {p}\n    data_dir: {}\n",
            i + 1,
            k.path(&n).display()
        );
        if n == "pg2" {
            y += "    sync: sync\n";
        }
    }
    ok(k.cmd().args(["init", "-c", k.write("af.yaml", &y).to_str().unwrap()]).output().unwrap());
    ok(k.cmd().args(["ha", "-n", "af", "enable"]).output().unwrap());
    assert!(sql(k, "pg1", "CREATE TABLE probe (id bigint PRIMARY KEY)").is_some());
    let agents: Vec<testkit::Child> = (1..=3)
        .map(|i| {
            let host = format!("127.0.0.{i}");
            let addr = format!("{host}:{}", free_port(&host));
            std::fs::write(k.path(&format!("http-pg{i}")), &addr).unwrap();
            k.spawn(&["agent", "-n", "af", "--node", &format!("pg{i}"), "--http", &addr], &format!("agent-pg{i}.log"))
        })
        .collect();
    wait_for(k, "pg1's agent holds the leader key and all three publish", 30, || {
        let s = status_of(k, "af");
        s["leader"] == "pg1" && s["members"].as_object().is_some_and(|m| m.len() == 3)
    });
    (ports, agents)
}

fn agent_logs(k: &Kit) -> String {
    (1..=3)
        .map(|i| std::fs::read_to_string(k.path(&format!("agent-pg{i}.log"))).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[test]
fn a_switchover_by_command_with_agents_running_settles_without_fencing() {
    let k = Kit::with_etcd(BIN);
    let (_ports, _agents) = three_nodes_with_agents(&k);
    ok(k.cmd().args(["switchover", "-n", "af", "--to", "pg2", "--yes"]).output().unwrap());
    wait_for(&k, "pg2's agent holds the leader key", 30, || status_of(&k, "af")["leader"] == "pg2");
    // Some ticks later nothing was fenced or demoted, and both old and new roles hold.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let hist = k.etcd.as_ref().unwrap().dump("/test/clusters/af/ha/history/");
    assert!(!hist.contains("\"fenced\"") && !hist.contains("\"demoted\""), "{hist}\n{}", agent_logs(&k));
    // While pg1 hands the key over no standby starts a race: none stopped
    // receiving from pg2 or was taken for diverged and rewound.
    for event in ["\"withdrew\"", "\"diverged\"", "\"rejoined\""] {
        assert!(!hist.contains(event), "{event} in {hist}\n{}", agent_logs(&k));
    }
    assert_eq!(sql(&k, "pg2", "SELECT pg_is_in_recovery()").as_deref(), Some("f"));
    assert_eq!(sql(&k, "pg1", "SELECT pg_is_in_recovery()").as_deref(), Some("t"));
    assert_eq!(status_of(&k, "af")["leader"], "pg2");
}

/// scale-out, scale-in, a forced failover and a rejoin by command while the
/// agents run: the agents pause while each command holds the cluster's
/// lock, nothing is fenced or promoted behind the command's back, and
/// afterwards the agents settle on the command's result (the key follows
/// the new primary; the old one is rewound by its agent). Every commit the
/// writers saw acknowledged is on the final primary, and the old primary's
/// last acknowledgement precedes the new one's first.
#[test]
fn commands_with_agents_running_pause_them_and_the_agents_follow() {
    let k = Kit::with_etcd(BIN);
    let (ports, _agents) = three_nodes_with_agents(&k);
    let hist = || k.etcd.as_ref().unwrap().dump("/test/clusters/af/ha/history/");
    let pw = testkit::admin_password(&k.home(), "af");
    let probe = Probe::start((0..3).map(|i| Target::new(&format!("127.0.0.{}", i + 1), ports[i])).collect(), &pw);
    // scale-out of pg4 (asynchronous, no agent of its own), then scale-in.
    let p4 = free_port("127.0.0.4");
    let add = format!(
        "nodes:\n  - name: pg4\n    host: 127.0.0.4\n    port: {p4}\n    data_dir: {}\n",
        k.path("pg4").display()
    );
    ok(k.cmd().args(["scale-out", "-n", "af", "-c"]).arg(k.write("add.yaml", &add)).output().unwrap());
    assert_eq!(sql(&k, "pg4", "SELECT pg_is_in_recovery()").as_deref(), Some("t"));
    ok(k.cmd().args(["scale-in", "-n", "af", "--node", "pg4", "--yes"]).output().unwrap());
    std::thread::sleep(std::time::Duration::from_secs(2));
    let h = hist();
    assert!(!h.contains("\"fenced\"") && !h.contains("promot"), "{h}\n{}", agent_logs(&k));
    assert_eq!(status_of(&k, "af")["leader"], "pg1");
    // A forced failover while pg1 still runs: the command stops pg1 and
    // promotes pg2 under the lock; then pg1's agent releases the key, pg2's
    // takes it and pg1 is rewound by its agent.
    let pid = testkit::postmaster_pid(&k.path("pg1")).expect("pg1 runs");
    ok(k.cmd().args(["failover", "-n", "af", "--to", "pg2", "--force", "--yes"]).output().unwrap());
    assert!(!testkit::alive(pid), "the command stopped pg1");
    wait_for(&k, "pg2's agent holds the leader key", 30, || status_of(&k, "af")["leader"] == "pg2");
    wait_for(&k, "pg1 rejoins as a standby streaming from pg2", 120, || {
        sql(&k, "pg2", "SELECT string_agg(application_name, ',' ORDER BY application_name) FROM pg_stat_replication WHERE state = 'streaming'").as_deref()
            == Some("pg1,pg3")
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let acked = probe.finish();
    let first_pg2 = acked[1].first().map(|a| a.1).expect("pg2 acknowledged after the failover");
    assert!(acked[0].last().is_some_and(|l| l.1 < first_pg2), "no dual acknowledgement");
    let all: Vec<String> = acked.iter().flatten().map(|(i, _)| i.to_string()).collect();
    let found = sql(&k, "pg2", &format!("SELECT count(*) FROM probe WHERE id IN ({})", all.join(","))).unwrap();
    assert_eq!(found, all.len().to_string(), "every acknowledged id is on pg2");
    // A rejoin by command of a node already streaming: the agents wait for
    // it and nothing else moves.
    ok(k.cmd().args(["rejoin", "-n", "af", "--node", "pg3", "--yes"]).output().unwrap());
    std::thread::sleep(std::time::Duration::from_secs(2));
    let h = hist();
    assert!(!h.contains("\"promoted\""), "no agent promoted anything: {h}");
    assert_eq!(status_of(&k, "af")["leader"], "pg2");
    ok(k.cmd().args(["check", "-n", "af"]).output().unwrap());
}

#[test]
fn twenty_etcd_leader_moves_cause_no_failover() {
    let k = Kit::with_etcd(BIN);
    let (_ports, _agents) = three_nodes_with_agents(&k);
    let pid = testkit::postmaster_pid(&k.path("pg1")).expect("pg1 runs");
    let mut moved = 0;
    for _ in 0..20 {
        if k.etcd.as_ref().unwrap().move_leader() {
            moved += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(700));
    }
    assert!(moved >= 18, "etcd's leader moved {moved} times of 20");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let hist = k.etcd.as_ref().unwrap().dump("/test/clusters/af/ha/history/");
    assert!(!hist.contains("\"fenced\"") && !hist.contains("promot"), "{hist}\n{}", agent_logs(&k));
    assert_eq!(testkit::postmaster_pid(&k.path("pg1")), Some(pid), "pg1 untouched");
    assert!(testkit::alive(pid));
    let s = status_of(&k, "af");
    assert_eq!(s["leader"], "pg1");
    // What each agent publishes: role, timeline, position, lag, health, version.
    let m = &s["members"];
    assert_eq!(m["pg1"]["lag_bytes"], 0, "{m}");
    for n in ["pg1", "pg2", "pg3"] {
        let x = &m[n];
        assert!(
            x["lag_bytes"].is_u64()
                && x["timeline"].as_u64() >= Some(1)
                && x["flush_lsn"].as_u64() > Some(0)
                && x["healthy"] == true
                && x["agent_version"].is_string(),
            "{n}: {x}"
        );
        assert_eq!(x["primary"], n == "pg1", "{n}: {x}");
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// kill -9 of the primary's postmaster and every process of its group.
    KillPostgres,
    /// SIGSTOP of the primary's postmaster only: its existing backends and
    /// WAL sender still answer; fresh connections hang.
    StopPostmaster,
    /// kill -9 of the primary's agent and of its PostgreSQL: nobody releases
    /// the leader key; its lease expires.
    KillAgentAndPostgres,
    /// SIGSTOP of the primary's agent only: PostgreSQL keeps acknowledging
    /// until the fence guard kills it at Fence A's deadline.
    StopAgent,
}

/// Fail the primary with `fault` under a write probe on pg1 and pg2; the
/// agents promote pg2: every acknowledged id is on pg2, pg1's last
/// acknowledgement precedes pg2's first, pg1 rejoins as a standby.
fn fail_over(fault: Fault) {
    let k = Kit::with_etcd(BIN);
    let (ports, mut agents) = three_nodes_with_agents(&k);
    let logs = || agent_logs(&k);
    // Patroni's health checks before the fault.
    wait_for(&k, "pg2's agent reports it as a synchronous standby", 20, || {
        http_get(&http_addr(&k, 2), "/sync").0 == 200
    });
    assert_eq!(http_get(&http_addr(&k, 1), "/primary").0, 200);
    assert_eq!(http_get(&http_addr(&k, 1), "/replica").0, 503);
    assert_eq!(http_get(&http_addr(&k, 2), "/primary").0, 503);
    assert_eq!(http_get(&http_addr(&k, 2), "/replica?lag=16MB").0, 200);
    assert_eq!(http_get(&http_addr(&k, 3), "/async").0, 200);
    let (code, metrics) = http_get(&http_addr(&k, 1), "/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("patroni_primary{scope=\"af\",name=\"pg1\"} 1"), "{metrics}");
    let pw = testkit::admin_password(&k.home(), "af");
    let haproxy = (fault == Fault::KillPostgres).then(|| start_haproxy(&k));
    if let Some((rw, ro, _)) = &haproxy {
        let port = |p: u16| query_at(p, &pw, "SELECT inet_server_port()::text");
        wait_for(&k, "HAProxy's read-write port reaches pg1", 20, || port(*rw) == Some(ports[0].to_string()));
        wait_for(&k, "HAProxy's read-only port reaches a standby", 20, || {
            port(*ro).is_some_and(|p| p == ports[1].to_string() || p == ports[2].to_string())
        });
    }
    if fault == Fault::StopAgent {
        // A guard that is gone (killed here) is started again by the
        // agent's next tick: the fence below is the new guard's.
        let pidfile = k.home().join("af").join("agent-pg1.guard.pid");
        let guard = || std::fs::read_to_string(&pidfile).ok().and_then(|t| t.trim().parse::<i32>().ok());
        let first = guard().expect("pg1's fence guard runs");
        testkit::signal(first, nix::sys::signal::Signal::SIGKILL);
        wait_for(&k, "pg1's agent starts its fence guard again", 20, || {
            guard().is_some_and(|p| p != first && testkit::alive(p))
        });
    }
    let probe = Probe::start((0..3).map(|i| Target::new(&format!("127.0.0.{}", i + 1), ports[i])).collect(), &pw);
    // The fault lands at a random moment of the lease.
    std::thread::sleep(std::time::Duration::from_secs(2) + testkit::random_phase());
    let pid = testkit::postmaster_pid(&k.path("pg1")).expect("pg1 runs");
    let fault_at = std::time::Instant::now();
    let mut restart_agent = false;
    let mut frozen = None;
    match fault {
        Fault::StopAgent => frozen = Some(testkit::Frozen::freeze(agents[0].0.id() as i32)),
        Fault::KillPostgres => testkit::kill_server(pid),
        Fault::StopPostmaster => testkit::signal(pid, nix::sys::signal::Signal::SIGSTOP),
        Fault::KillAgentAndPostgres => {
            let _ = agents[0].0.kill();
            let _ = agents[0].0.wait();
            testkit::kill_server(pid);
            restart_agent = true;
        }
    }
    // pg2 (the synchronous standby), or pg3 when it had received more.
    let is_primary = |n: &str| sql(&k, n, "SELECT pg_is_in_recovery()").as_deref() == Some("f");
    wait_for(&k, "pg2 or pg3 is promoted", 60, || is_primary("pg2") || is_primary("pg3"));
    let new = if is_primary("pg2") { 2 } else { 3 };
    let nn = format!("pg{new}");
    let other = if new == 2 { "pg3" } else { "pg2" };
    // Strict: the new primary names its standbys before it is promoted, so
    // no commit is ever acknowledged by it alone.
    let names = sql(&k, &nn, "SHOW synchronous_standby_names").unwrap_or_default();
    assert!(names.starts_with("FIRST 1 ("), "{nn} names a synchronous standby from its first commit: '{names}'");
    let before = probe.count(new - 1);
    wait_for(&k, "the new primary acknowledges writes", 120, || probe.count(new - 1) > before);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let acked = probe.finish();
    let (on1, on_new) = (&acked[0], &acked[new - 1]);
    assert!(!on1.is_empty(), "the probe wrote to pg1 before the fault\n{}", logs());
    assert!(acked[if new == 2 { 2 } else { 1 }].is_empty(), "{other} never acknowledged\n{}", logs());
    let first = on_new.first().unwrap_or_else(|| panic!("{nn} acknowledged nothing after its promotion\n{}", logs()));
    eprintln!("{fault:?}: first commit on {nn} {:.2}s after the fault", first.1.duration_since(fault_at).as_secs_f64());
    // Never two primaries acknowledging at once: pg1's last ack precedes the new one's first.
    assert!(on1.last().unwrap().1 < first.1, "dual acknowledgement\n{}", logs());
    let all: Vec<String> = on1.iter().chain(on_new).map(|(i, _)| i.to_string()).collect();
    let found = sql(&k, &nn, &format!("SELECT count(*) FROM probe WHERE id IN ({})", all.join(","))).unwrap();
    assert_eq!(found, all.len().to_string(), "every acknowledged id is on the new primary\n{}", logs());
    if fault == Fault::StopPostmaster {
        assert!(!testkit::alive(pid), "the hung postmaster was fenced (killed)");
    }
    if fault == Fault::StopAgent {
        assert!(!testkit::alive(pid), "the guard fenced pg1 while its agent was frozen");
        let g = std::fs::read_to_string(k.home().join("af").join("agent-pg1.guard.log")).unwrap_or_default();
        assert!(g.contains("fence guard: the agent did not extend the deadline"), "{g}");
        drop(frozen.take());
    }
    if restart_agent {
        // The node's agent comes back (systemd would restart it).
        let addr = http_addr(&k, 1);
        agents[0] = k.spawn(&["agent", "-n", "af", "--node", "pg1", "--http", &addr], "agent-pg1-again.log");
    }

    // The old primary comes back as a standby of the new one (pg_rewind), the other follows it.
    let want = if new == 2 { "pg1,pg3" } else { "pg1,pg2" };
    wait_for(&k, "pg1 rejoins as a standby streaming from the new primary", 120, || {
        sql(&k, &nn, "SELECT string_agg(application_name, ',' ORDER BY application_name) FROM pg_stat_replication WHERE state = 'streaming'").as_deref()
            == Some(want)
    });
    // (A one-off `psql` right after may meet a busy machine: asked again.)
    wait_for(&k, "pg1 answers as a standby", 20, || {
        sql(&k, "pg1", "SELECT pg_is_in_recovery()").as_deref() == Some("t")
    });
    assert_eq!(status_of(&k, "af")["leader"], nn.as_str());
    wait_for(&k, "the new primary answers /primary", 20, || http_get(&http_addr(&k, new), "/primary").0 == 200);
    if let Some((rw, _, _)) = &haproxy {
        // Clients reconnecting through HAProxy reach the new primary.
        wait_for(&k, "HAProxy's read-write port reaches the new primary", 20, || {
            query_at(*rw, &pw, "SELECT inet_server_port()::text") == Some(ports[new - 1].to_string())
        });
    }
    assert_eq!(http_get(&http_addr(&k, 1), "/primary").0, 503);
    let hist = || k.etcd.as_ref().unwrap().dump("/test/clusters/af/ha/history/");
    wait_for(&k, "the history records the promotion and the rejoin", 60, || {
        let h = hist();
        h.contains("\"promoted\"") && h.contains("\"rejoined\"")
    });
    ok(k.cmd().args(["check", "-n", "af"]).output().unwrap());
    let o = ok(k.cmd().args(["history", "-n", "af", "--output", "json"]).output().unwrap());
    let events: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let did = |n: &str, what: &str| events.iter().any(|e| e["node"] == n && e["did"] == what);
    assert!(did(&nn, "promoted") && did("pg1", "rejoined"), "{events:?}");
    // The new primary promoted itself, then the failover operation recorded it.
    assert!(did(&nn, "recorded the failover"), "{events:?}");
    let o = ok(k.cmd().args(["history", "-n", "af"]).output().unwrap());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("{nn}    promoted: at or past every reported position")),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn agents_fail_over_a_killed_primary_and_rejoin_it_losing_no_acknowledged_commit() {
    fail_over(Fault::KillPostgres);
}

#[test]
fn agents_fence_a_hung_postmaster_and_fail_over() {
    fail_over(Fault::StopPostmaster);
}

#[test]
fn the_fence_guard_fences_a_primary_whose_agent_is_frozen() {
    fail_over(Fault::StopAgent);
}

#[test]
fn an_agent_restarted_on_a_healthy_primary_leaves_postgres_alone() {
    let k = Kit::with_etcd(BIN);
    let (_ports, mut agents) = three_nodes_with_agents(&k);
    let pid = testkit::postmaster_pid(&k.path("pg1")).expect("pg1 runs");
    let _ = agents[0].0.kill();
    let _ = agents[0].0.wait();
    let addr = http_addr(&k, 1);
    agents[0] = k.spawn(&["agent", "-n", "af", "--node", "pg1", "--http", &addr], "agent-pg1-again.log");
    // Longer than the lease and the guard's deadline.
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert!(testkit::alive(pid), "pg1's postmaster untouched\n{}", agent_logs(&k));
    assert_eq!(testkit::postmaster_pid(&k.path("pg1")), Some(pid));
    assert_eq!(status_of(&k, "af")["leader"], "pg1");
    let hist = k.etcd.as_ref().unwrap().dump("/test/clusters/af/ha/history/");
    assert!(!hist.contains("\"fenced\"") && !hist.contains("promot"), "{hist}");
    let again = std::fs::read_to_string(k.path("agent-pg1-again.log")).unwrap_or_default();
    assert!(again.contains("kept the lease of the previous run"), "{again}");
}

#[test]
fn agents_fail_over_when_the_primary_agent_dies_with_its_postgres() {
    fail_over(Fault::KillAgentAndPostgres);
}

/// A former primary that pg_rewind cannot bring back (its WAL gone): its
/// agent says so once and leaves it down; once the spec allows it
/// (`ha.auto_reclone`, set by apply-config while the agent runs; the flag
/// `--auto-reclone` does the same) it empties the data directory, copies
/// it afresh from the new primary and streams.
#[test]
fn a_former_primary_pg_rewind_cannot_rewind_is_recloned_only_once_the_spec_allows_it() {
    let k = Kit::with_etcd(BIN);
    let (_ports, mut agents) = three_nodes_with_agents(&k);
    assert!(sql(&k, "pg1", "INSERT INTO probe SELECT generate_series(1, 1000)").is_some());
    // The leader has published its synchronous set and position.
    wait_for(&k, "pg2's agent reports it as a synchronous standby", 20, || {
        http_get(&http_addr(&k, 2), "/sync").0 == 200
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    let pid = testkit::postmaster_pid(&k.path("pg1")).expect("pg1 runs");
    let _ = agents[0].0.kill();
    let _ = agents[0].0.wait();
    testkit::kill_server(pid);
    let is_primary = |n: &str| sql(&k, n, "SELECT pg_is_in_recovery()").as_deref() == Some("f");
    wait_for(&k, "pg2 or pg3 is promoted", 60, || is_primary("pg2") || is_primary("pg3"));
    let nn = if is_primary("pg2") { "pg2" } else { "pg3" };
    // pg_rewind (and the crash recovery it runs first) needs pg1's WAL.
    let wal = k.path("pg1").join("pg_wal");
    let mut removed = 0;
    for e in std::fs::read_dir(&wal).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.len() == 24 && name.chars().all(|c| c.is_ascii_hexdigit()) {
            std::fs::remove_file(e.path()).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0, "pg1 had WAL segments to remove");
    let addr = http_addr(&k, 1);
    let hist = || k.etcd.as_ref().unwrap().dump("/test/clusters/af/ha/history/");
    agents[0] = k.spawn(&["agent", "-n", "af", "--node", "pg1", "--http", &addr], "agent-pg1-plain.log");
    wait_for(&k, "pg1's agent says pg_rewind failed and leaves it down", 60, || hist().contains("the node stays down"));
    std::thread::sleep(std::time::Duration::from_secs(2));
    let h = hist();
    assert_eq!(h.matches("the node stays down").count(), 1, "said once: {h}");
    assert!(!h.contains("recloned"), "{h}");
    assert!(testkit::postmaster_pid(&k.path("pg1")).is_none_or(|p| !testkit::alive(p)), "pg1 stays down");
    // The spec allows it now (`ha.auto_reclone`, through apply-config):
    // the running agent reads it on its next tick. The file is the stored
    // spec (a failover moved the synchronous mark) plus the `ha:` section.
    let dump = k.etcd.as_ref().unwrap().dump("/test/clusters/af/inventory");
    let stored: Value = serde_json::from_str(dump.lines().nth(1).expect("the inventory is stored")).unwrap();
    let mut y = String::from("name: af\nnodes:\n");
    for n in stored["nodes"].as_array().unwrap() {
        y += &format!(
            "  - name: {}\n    host: {}\n    port: {}\n    data_dir: {}\n",
            n["name"], n["host"], n["port"], n["data_dir"]
        );
        for f in ["sync", "upstream"] {
            if let Some(v) = n[f].as_str() {
                y += &format!("    {f}: {v}\n");
            }
        }
    }
    y += "ha:\n  auto_reclone: true\n";
    let file = k.write("af-ha.yaml", &y);
    // pg1 is down: skipped and said (exit 1); the spec is recorded all the same.
    let o = k.cmd().args(["apply-config", "-n", "af", "-c", file.to_str().unwrap(), "--yes"]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("auto_reclone true (was") && text.contains("pg1 is not running: skipped"), "{text}");
    let dump = k.etcd.as_ref().unwrap().dump("/test/clusters/af/inventory");
    assert!(dump.contains("\"auto_reclone\":true"), "the spec records it: {dump}");
    wait_for(&k, "pg1 is recloned and streams from the new primary", 120, || {
        hist().contains("\"recloned\"")
            && sql(
                &k,
                nn,
                "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg1' AND state = 'streaming'",
            )
            .as_deref()
                == Some("1")
    });
    let h = hist();
    assert!(h.contains("pg_rewind failed: recloning") && h.contains("\"recloned\""), "{h}");
    assert_eq!(sql(&k, "pg1", "SELECT pg_is_in_recovery()").as_deref(), Some("t"));
    wait_for(&k, "pg1 holds the probe rows", 30, || {
        sql(&k, "pg1", "SELECT count(*) FROM probe").as_deref() == Some("1000")
    });
    ok(k.cmd().args(["check", "-n", "af"]).output().unwrap());
}

fn status_of(k: &Kit, c: &str) -> Value {
    let o = k.cmd().args(["ha", "-n", c, "status", "--output", "json"]).output().unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}
