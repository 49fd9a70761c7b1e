//! A test bed of "hosts" as network namespaces (iproute2): each host is a
//! namespace with two veth links, one on a PostgreSQL bridge and one on an
//! etcd bridge, both bridges in the root namespace (which has an address on
//! each, so the test's own `pgscale` commands reach every host). Cutting a
//! host's links is a real partition: its processes run on, unreachable.
//! Two networks let a test cut a host from etcd only.
//!
//! Root only (creating namespaces needs CAP_SYS_ADMIN): [`Net::create`]
//! returns None otherwise and the tests that need it say they were skipped.
//! Everything created is deleted when the value is dropped, also when the
//! test fails.

use std::process::Command;

/// Which of a host's two links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// PostgreSQL, SSH, the agent's HTTP: replication and clients.
    Pg,
    /// The etcd members' client and peer traffic.
    Etcd,
}

pub struct Net {
    /// Namespace names, one per host.
    pub ns: Vec<String>,
    tag: String,
    /// `10.A.B` of the PostgreSQL network and of the etcd network.
    pg_net: String,
    etcd_net: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()))
    }
}

impl Net {
    /// `hosts` namespaces on two fresh bridges; None when not root.
    pub fn create(hosts: usize) -> Option<Net> {
        if !crate::is_root() {
            eprintln!("SKIPPED: network namespaces need root (CI runs as root)");
            return None;
        }
        // A tag and two /24 networks from the PID; the bridge's name is the
        // lock: when another test holds it, take the next.
        let pid = std::process::id() as usize;
        for attempt in 0..200 {
            let idx = (pid + attempt * 7919) % 12_000;
            let tag = format!("{idx:05}");
            let net = Net {
                ns: (0..hosts).map(|i| format!("pgs{tag}h{i}")).collect(),
                pg_net: format!("10.{}.{}", 100 + idx / 250, idx % 250),
                etcd_net: format!("10.{}.{}", 160 + idx / 250, idx % 250),
                tag,
            };
            if ip(&["link", "add", &net.bridge(Link::Pg), "type", "bridge"]).is_err() {
                continue;
            }
            // Leftovers of an earlier bed with this tag (a namespace is
            // destroyed asynchronously, later still while a process lives
            // in it) make setup fail: clean what this tag has and take
            // the next one.
            match net.setup() {
                Ok(()) => return Some(net),
                Err(e) => eprintln!("network namespaces: tag {} taken ({e}); trying the next", net.tag),
            }
        }
        panic!("no free network tag for the namespace test bed");
    }

    fn bridge(&self, l: Link) -> String {
        match l {
            Link::Pg => format!("pgs{}bp", self.tag),
            Link::Etcd => format!("pgs{}be", self.tag),
        }
    }

    /// The host side's interface name (inside the namespace) and its peer
    /// on the bridge.
    fn veth(&self, i: usize, l: Link) -> (String, String) {
        let k = if l == Link::Pg { 'p' } else { 'e' };
        (format!("v{}{k}{i}", self.tag), format!("b{}{k}{i}", self.tag))
    }

    fn setup(&self) -> Result<(), String> {
        // The PostgreSQL bridge exists (it was the lock).
        ip(&["link", "add", &self.bridge(Link::Etcd), "type", "bridge"])?;
        for l in [Link::Pg, Link::Etcd] {
            let net = if l == Link::Pg { &self.pg_net } else { &self.etcd_net };
            ip(&["addr", "add", &format!("{net}.254/24"), "dev", &self.bridge(l)])?;
            ip(&["link", "set", &self.bridge(l), "up"])?;
        }
        for (i, ns) in self.ns.iter().enumerate() {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            for l in [Link::Pg, Link::Etcd] {
                let (inner, outer) = self.veth(i, l);
                ip(&["link", "add", &inner, "type", "veth", "peer", "name", &outer])?;
                ip(&["link", "set", &outer, "master", &self.bridge(l), "up"])?;
                ip(&["link", "set", &inner, "netns", ns])?;
                let addr = if l == Link::Pg { self.pg_addr(i) } else { self.etcd_addr(i) };
                ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", &inner])?;
                ip(&["-n", ns, "link", "set", &inner, "up"])?;
            }
        }
        Ok(())
    }

    /// Host `i`'s address on the PostgreSQL network.
    pub fn pg_addr(&self, i: usize) -> String {
        format!("{}.{}", self.pg_net, i + 1)
    }

    /// Host `i`'s address on the etcd network.
    pub fn etcd_addr(&self, i: usize) -> String {
        format!("{}.{}", self.etcd_net, i + 1)
    }

    /// The namespace's file, for setns(2).
    pub fn ns_path(&self, i: usize) -> String {
        format!("/run/netns/{}", self.ns[i])
    }

    /// Bring host `i`'s link up or down (down: nothing crosses it; the
    /// host still reaches its own addresses).
    pub fn set_link(&self, i: usize, l: Link, up: bool) {
        let (inner, _) = self.veth(i, l);
        ip(&["-n", &self.ns[i], "link", "set", &inner, if up { "up" } else { "down" }])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// A command that runs `program` inside host `i` (`ip netns exec`
    /// execs it: the child's PID is the program's).
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns[i], program]);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The veth pairs go first, by their bridge side: deleting a
        // namespace frees its links only once no process lives in it.
        for i in 0..self.ns.len() {
            for l in [Link::Pg, Link::Etcd] {
                let _ = ip(&["link", "del", &self.veth(i, l).1]);
            }
        }
        for ns in &self.ns {
            let _ = ip(&["netns", "del", ns]);
        }
        for l in [Link::Pg, Link::Etcd] {
            let _ = ip(&["link", "del", &self.bridge(l)]);
        }
    }
}

/// Run the calling thread's network traffic in the namespace at `path`
/// (setns applies to this thread only).
pub fn enter(path: &str) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
}
