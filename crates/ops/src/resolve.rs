//! From an inventory to what the executor needs: a host per node (local or
//! SSH), the OS user, the server binaries, the addresses pg_hba must allow,
//! the admin connections. Every lookup has a deadline, and lookups of
//! different nodes run at the same time: N dead hosts cost one deadline.

use crate::error::{failed, invalid, OpError};
use futures::future::join_all;
use host::{Host, LocalHost, OsUser, SshHost, SshTarget};
use model::{Inventory, NodeSpec, Transport};
use pg::Target;
use std::collections::BTreeMap;
use std::net::{IpAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

pub fn os_user_name(inv: &Inventory) -> String {
    inv.postgres.os_user.clone().unwrap_or_else(OsUser::default_name)
}

pub(crate) async fn addrs_of(host: &str, deadline: Duration) -> Vec<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    match tokio::time::timeout(deadline, tokio::net::lookup_host((host, 0))).await {
        Ok(Ok(it)) => {
            let mut v: Vec<IpAddr> = it.map(|a| a.ip()).collect();
            v.sort();
            v.dedup();
            v
        }
        _ => vec![],
    }
}

/// An address is this machine's if we can bind to it.
fn is_own_address(ip: &IpAddr) -> bool {
    ip.is_loopback() || UdpSocket::bind((*ip, 0)).is_ok()
}

/// The source address this machine uses to reach `ip` (no packet is sent:
/// connecting a UDP socket only picks a route).
fn source_address(ip: &IpAddr) -> Option<IpAddr> {
    let bind: IpAddr = if ip.is_ipv4() { "0.0.0.0".parse().ok()? } else { "::".parse().ok()? };
    let s = UdpSocket::bind((bind, 0)).ok()?;
    s.connect((*ip, 9)).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

pub async fn is_local(n: &NodeSpec, deadline: Duration) -> bool {
    match n.transport {
        Some(Transport::Local) => true,
        Some(Transport::Ssh) => false,
        None => {
            let a = addrs_of(&n.host, deadline).await;
            !a.is_empty() && a.iter().all(is_own_address)
        }
    }
}

/// The addresses pg_hba.conf lets in: every staying node's, those this
/// machine connects to them from, and those recorded of earlier runs on
/// other machines (`state.admin_addrs`: an agent rewriting pg_hba.conf on
/// its node must not lock out the administrator's machine). Also returns
/// this machine's own source addresses that are not node addresses (to
/// record).
pub async fn peers(inv: &Inventory, deadline: Duration) -> (Vec<IpAddr>, Vec<IpAddr>) {
    // A leaving node's address is no longer a peer.
    let found: Vec<IpAddr> =
        join_all(inv.staying().map(|n| addrs_of(&n.host, deadline))).await.into_iter().flatten().collect();
    let mut v = found.clone();
    let mut mine = Vec::new();
    for ip in &found {
        if let Some(src) = source_address(ip) {
            v.push(src);
            if !found.contains(&src) && !src.is_loopback() {
                mine.push(src);
            }
        }
    }
    v.extend(inv.state.admin_addrs.iter().copied());
    // A sharded cluster's other groups (postgres_fdw, the moves' subscriptions).
    v.extend(inv.sharding.iter().flat_map(|s| s.peers.iter().copied()));
    v.sort();
    v.dedup();
    mine.sort();
    mine.dedup();
    (v, mine)
}

pub fn ssh_target(n: &NodeSpec, os_user: &str) -> SshTarget {
    let spec = n.ssh.clone().unwrap_or_default();
    SshTarget {
        host: n.host.clone(),
        user: Some(spec.user.clone().unwrap_or_else(|| os_user.to_string())),
        port: spec.port,
        identity_file: spec.identity_file.clone(),
        known_hosts_file: spec.known_hosts_file.clone(),
        config_file: spec.config_file.clone(),
        os_user: os_user.to_string(),
    }
}

/// A host per node; a node whose host cannot be reached gets the error.
/// Name lookups and SSH connections run in parallel, one per distinct host.
pub async fn hosts(inv: &Inventory, deadline: Duration) -> Result<BTreeMap<String, Result<Host, String>>, OpError> {
    let user = os_user_name(inv);
    let local_flags = join_all(inv.nodes.iter().map(|n| is_local(n, deadline))).await;
    let local = if local_flags.iter().any(|l| *l) {
        let u = OsUser::lookup(&user).map_err(|e| invalid(e.to_string()))?;
        Some(Host::Local(LocalHost::new(u).map_err(|e| invalid(e.to_string()))?))
    } else {
        None
    };
    let mut keys: BTreeMap<String, SshTarget> = BTreeMap::new();
    for (n, l) in inv.nodes.iter().zip(&local_flags) {
        if !l {
            let t = ssh_target(n, &user);
            keys.entry(format!("{t:?}")).or_insert(t);
        }
    }
    let connected = join_all(keys.into_iter().map(|(k, t)| async move {
        (k, SshHost::connect(t, deadline).await.map(Host::Ssh).map_err(|e| e.to_string()))
    }))
    .await;
    let ssh: BTreeMap<String, Result<Host, String>> = connected.into_iter().collect();
    let mut out = BTreeMap::new();
    for (n, l) in inv.nodes.iter().zip(local_flags) {
        let h = if l {
            Ok(local.clone().expect("made above"))
        } else {
            ssh[&format!("{:?}", ssh_target(n, &user))].clone()
        };
        out.insert(n.name.clone(), h);
    }
    Ok(out)
}

/// The server binaries: the inventory's, else found on the primary's host.
pub async fn bin_dir(inv: &Inventory, primary_host: &Host, deadline: Duration) -> Result<PathBuf, OpError> {
    if let Some(b) = &inv.postgres.bin_dir {
        let argv = vec!["test".to_string(), "-x".into(), b.join("initdb").display().to_string()];
        if !primary_host.run(&host::Run::new(&argv, deadline)).await?.ok() {
            return Err(invalid(format!(
                "postgres.bin_dir {} has no initdb on {}; install the PostgreSQL server package (or run with --install) or fix the path",
                b.display(),
                primary_host.describe()
            )));
        }
        return Ok(b.clone());
    }
    pg::find_bin_dir(primary_host, deadline).await.map_err(|e| failed(e.to_string()))?.ok_or_else(|| {
        invalid(format!(
            "no PostgreSQL server binaries (initdb, pg_ctl) found on {}: install them (Debian: apt-get install postgresql; or run `pgscale host check --install`) or set `postgres.bin_dir`",
            primary_host.describe()
        ))
    })
}

/// Admin connections to every node.
pub fn targets(inv: &Inventory, secrets: &journal::Secrets) -> Vec<(String, Target)> {
    let admin = &inv.postgres.admin_user;
    let pw = secrets.password(admin).unwrap_or_default().to_string();
    inv.nodes
        .iter()
        .map(|n| {
            (
                n.name.clone(),
                Target {
                    host: n.host.clone(),
                    port: n.port,
                    user: admin.clone(),
                    password: pw.clone(),
                    dbname: "postgres".into(),
                },
            )
        })
        .collect()
}

pub fn secret_users(inv: &Inventory) -> Vec<&str> {
    vec![inv.postgres.admin_user.as_str(), inv.postgres.replication_user.as_str()]
}
