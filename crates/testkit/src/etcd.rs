//! A real 3-member etcd (Debian's etcd-server) on loopback, free ports,
//! data under a temp dir, short election timeouts; members stopped by PID
//! when dropped, also when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    dir: PathBuf,
    initial: String,
    /// The network namespace it runs in (the netns test bed), if any.
    netns: Option<String>,
    pub child: Option<std::process::Child>,
}

pub struct Etcd {
    pub members: Vec<Member>,
}

fn etcd_bin() -> PathBuf {
    for p in ["/usr/bin/etcd", "/usr/local/bin/etcd"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("etcd is not installed: apt-get install etcd-server (bash .ci/test installs it)");
}

impl Etcd {
    /// Start `n` members under `dir` and wait until the cluster has a leader.
    pub fn start(dir: &Path, n: usize) -> Etcd {
        let members: Vec<Member> = (0..n)
            .map(|i| {
                let c = crate::free_port("127.0.0.1");
                let p = crate::free_port("127.0.0.1");
                Member {
                    name: format!("e{i}"),
                    client_url: format!("http://127.0.0.1:{c}"),
                    peer_url: format!("http://127.0.0.1:{p}"),
                    dir: dir.join(format!("etcd-e{i}")),
                    initial: String::new(),
                    netns: None,
                    child: None,
                }
            })
            .collect();
        Etcd::launch(members)
    }

    /// One member per host of the namespace test bed, on the host's etcd
    /// address (ports 2379/2380: each namespace has its own ports).
    pub fn start_in(dir: &Path, net: &crate::netns::Net) -> Etcd {
        let members = (0..net.ns.len())
            .map(|i| {
                let a = net.etcd_addr(i);
                Member {
                    name: format!("e{i}"),
                    client_url: format!("http://{a}:2379"),
                    peer_url: format!("http://{a}:2380"),
                    dir: dir.join(format!("etcd-e{i}")),
                    initial: String::new(),
                    netns: Some(net.ns[i].clone()),
                    child: None,
                }
            })
            .collect();
        Etcd::launch(members)
    }

    fn launch(mut members: Vec<Member>) -> Etcd {
        let initial: Vec<String> = members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect();
        for m in &mut members {
            m.initial = initial.join(",");
            m.start();
        }
        let e = Etcd { members };
        e.wait_healthy(Duration::from_secs(30));
        e
    }

    /// `host:port,host:port,…` of every member.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client_url.trim_start_matches("http://").to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `dcs:` section of a spec.
    pub fn dcs_yaml(&self, prefix: &str) -> String {
        let eps: Vec<String> = self.members.iter().map(|m| format!("\"{}\"", m.client_url)).collect();
        format!("dcs:\n  etcd:\n    endpoints: [{}]\n    prefix: {prefix}\n", eps.join(", "))
    }

    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    pub fn restart(&mut self, i: usize) {
        self.members[i].start();
    }

    /// etcdctl's view: every live member answers and a leader exists.
    pub fn wait_healthy(&self, within: Duration) {
        let t0 = Instant::now();
        let live: Vec<&Member> = self.members.iter().filter(|m| m.child.is_some()).collect();
        let eps: Vec<&str> = live.iter().map(|m| m.client_url.as_str()).collect();
        loop {
            let ok = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &eps.join(","), "--command-timeout=1s", "endpoint", "health"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(t0.elapsed() < within, "etcd did not become healthy within {within:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `etcdctl get --prefix` values (tests look for what must not be there).
    /// Move the etcd leadership to another member (`etcdctl move-leader`);
    /// true when it moved.
    pub fn move_leader(&self) -> bool {
        let eps = self.endpoints();
        let o = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &eps, "--command-timeout=3s", "endpoint", "status", "-w", "json"])
            .output()
            .expect("etcdctl");
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout) else { return false };
        let Some(all) = v.as_array() else { return false };
        let leader = all.iter().find_map(|s| s["Status"]["leader"].as_u64());
        let Some(leader) = leader else { return false };
        // The current leader's endpoint, and another member's id.
        let Some(from) = all.iter().find(|s| s["Status"]["header"]["member_id"].as_u64() == Some(leader)) else {
            return false;
        };
        let Some(to) = all.iter().filter_map(|s| s["Status"]["header"]["member_id"].as_u64()).find(|id| *id != leader)
        else {
            return false;
        };
        let ep = from["Endpoint"].as_str().unwrap_or_default().to_string();
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &ep, "--command-timeout=3s", "move-leader", &format!("{to:x}")])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    pub fn dump(&self, prefix: &str) -> String {
        let eps: Vec<&str> = self.members.iter().filter(|m| m.child.is_some()).map(|m| m.client_url.as_str()).collect();
        let o = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &eps.join(","), "--command-timeout=3s", "get", "--prefix", prefix])
            .output()
            .expect("etcdctl");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Member {
    fn start(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        let log = std::fs::File::create(self.dir.with_extension("log")).expect("etcd log");
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(etcd_bin());
                c
            }
            None => Command::new(etcd_bin()),
        };
        let child = c
            .args(["--name", &self.name, "--data-dir"])
            .arg(&self.dir)
            .args(["--listen-client-urls", &self.client_url, "--advertise-client-urls", &self.client_url])
            .args(["--listen-peer-urls", &self.peer_url, "--initial-advertise-peer-urls", &self.peer_url])
            .args(["--initial-cluster", &self.initial, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "pgscale-test"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            // A member back from a partition must not depose a healthy
            // leader (etcd 3.4's default lacks pre-vote; 3.5 has it on).
            .arg("--pre-vote")
            .env("ETCD_UNSUPPORTED_ARCH", "")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// kill -9 and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}
