//! Checks on an inventory before anything changes. Static checks look only
//! at the file; fact checks use what the hosts told us (directories, ports),
//! passed in as plain values.

use crate::conf::reserved_reason;
use crate::hba::check_user_line;
use crate::load::{Locations, Problem};
use model::{Inventory, NodeState, Role};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// Node and cluster names become application_name, slot names and
/// directory names: `[a-z0-9_]{1,63}`.
pub use model::valid_name;

/// PostgreSQL role names we create: an unquoted-safe identifier.
pub fn valid_role(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c == b'_')
        && s.len() <= 63
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// POSIX-ish user names.
pub fn valid_os_user(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c == b'_')
        && s.len() <= 32
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// Hosts go into listen_addresses, pg_hba and conninfo strings: an IP
/// address or a DNS name, nothing else.
pub fn valid_host(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// Absolute, normalised, printable: paths end up in config files and argv.
pub fn path_problem(p: &Path) -> Option<String> {
    let s = p.to_string_lossy();
    if !p.is_absolute() {
        return Some(format!("`{s}` must be an absolute path"));
    }
    if s.chars().any(|c| c.is_control()) {
        return Some("a path may not contain control characters".into());
    }
    if p.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir)) {
        return Some(format!("`{s}` must not contain `.` or `..` components"));
    }
    if s.len() > 1 && s.ends_with('/') {
        return Some(format!("`{s}` must not end with `/`"));
    }
    if p.parent().is_none() {
        return Some("the root directory cannot be a data directory".into());
    }
    // The unix socket path (socket_dir + "/.s.PGSQL.NNNNN") must fit in
    // sun_path (107 bytes).
    None
}

/// `state` is pgscale's own bookkeeping: a user file must not carry it.
pub fn user_state_problems(
    cluster: Option<&model::ClusterState>,
    nodes: &[model::NodeSpec],
    locs: &Locations,
) -> Vec<Problem> {
    let mut out = Vec::new();
    if cluster.is_some_and(|c| *c != model::ClusterState::default()) {
        out.push(locs.problem("state", "`state` is written by pgscale; remove it from the file"));
    }
    for (i, n) in nodes.iter().enumerate() {
        if n.state != NodeState::default() {
            out.push(
                locs.problem(format!("nodes[{i}].state"), "`state` is written by pgscale; remove it from the file"),
            );
        }
    }
    out
}

pub fn validate_static(inv: &Inventory, locs: &Locations) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut bad = |field: String, msg: String| out.push(locs.problem(field, msg));

    if !valid_name(&inv.name) {
        bad("name".into(), format!("`{}` is not a valid name: use 1 to 63 of a-z, 0-9, _", inv.name));
    }
    if inv.nodes.is_empty() {
        bad("nodes".into(), "at least one node is needed".into());
    }
    if let Some(e) = inv.dcs.as_ref().and_then(|d| d.etcd.as_ref()) {
        for p in e.problems() {
            let (field, msg) = p.split_once(": ").unwrap_or(("dcs.etcd", &p));
            bad(field.into(), msg.into());
        }
    }
    let pg = &inv.postgres;
    if !valid_role(&pg.admin_user) {
        bad("postgres.admin_user".into(), format!("`{}` is not a valid role name (a-z, 0-9, _)", pg.admin_user));
    }
    if !valid_role(&pg.replication_user) {
        bad(
            "postgres.replication_user".into(),
            format!("`{}` is not a valid role name (a-z, 0-9, _)", pg.replication_user),
        );
    }
    if pg.admin_user == pg.replication_user {
        bad("postgres.replication_user".into(), "must differ from admin_user".into());
    }
    if let Some(u) = &pg.os_user {
        if !valid_os_user(u) {
            bad("postgres.os_user".into(), format!("`{u}` is not a valid OS user name"));
        }
        if u == "root" {
            bad(
                "postgres.os_user".into(),
                "PostgreSQL refuses to run as root; use an unprivileged user such as `postgres`".into(),
            );
        }
    }
    if let Some(b) = &pg.bin_dir {
        if let Some(m) = path_problem(b) {
            bad("postgres.bin_dir".into(), m);
        }
    }
    for (i, l) in pg.hba.iter().enumerate() {
        if let Err(m) = check_user_line(l, pg.allow_trust) {
            bad(format!("postgres.hba[{i}]"), m);
        }
    }
    for (k, v) in &pg.parameters {
        let ok_name = k.bytes().next().is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
            && k.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'.');
        if !ok_name {
            bad("postgres.parameters".into(), format!("`{k}` is not a parameter name"));
        } else if let Some(why) = reserved_reason(k) {
            bad("postgres.parameters".into(), format!("`{k}` cannot be set here: {why}"));
        }
        if v.to_string().chars().any(|c| c.is_control()) {
            bad("postgres.parameters".into(), format!("the value of `{k}` contains a control character"));
        }
    }

    let mut names = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    let mut dirs: BTreeMap<(String, PathBuf), usize> = BTreeMap::new();
    let mut primaries = Vec::new();
    for (i, n) in inv.nodes.iter().enumerate() {
        let f = |x: &str| format!("nodes[{i}].{x}");
        if !valid_name(&n.name) {
            bad(f("name"), format!("`{}` is not a valid node name: use 1 to 63 of a-z, 0-9, _ (it becomes application_name and slot name)", n.name));
        }
        if let Some(j) = names.insert(n.name.clone(), i) {
            bad(f("name"), format!("duplicate node name `{}` (also nodes[{j}])", n.name));
        }
        if !valid_host(&n.host) {
            bad(f("host"), format!("`{}` is not an IP address or host name", n.host));
        }
        if n.port == 0 {
            bad(f("port"), "port 0 is not valid: use 1-65535".into());
        }
        if let Some(j) = addrs.insert((n.host.clone(), n.port), i) {
            bad(f("port"), format!("{}:{} is already used by nodes[{j}] ({})", n.host, n.port, inv.nodes[j].name));
        }
        if let Some(m) = path_problem(&n.data_dir) {
            bad(f("data_dir"), m);
        }
        if let Some(d) = &n.socket_dir {
            if let Some(m) = path_problem(d) {
                bad(f("socket_dir"), m);
            }
        }
        let sock_len = n.socket_dir().as_os_str().len() + "/.s.PGSQL.65535".len();
        if sock_len > 107 {
            bad(
                f("socket_dir"),
                format!(
                    "the socket path would be {sock_len} bytes, over the 107-byte limit; set a shorter `socket_dir`"
                ),
            );
        }
        for d in [n.data_dir.clone(), n.socket_dir()] {
            if let Some(j) = dirs.insert((n.host.clone(), d.clone()), i) {
                if j != i {
                    bad(
                        f("data_dir"),
                        format!(
                            "`{}` on {} is already used by nodes[{j}] ({})",
                            d.display(),
                            n.host,
                            inv.nodes[j].name
                        ),
                    );
                    // the socket dir derives from the data dir: one report is enough
                    break;
                }
            }
        }
        if n.role == Some(Role::Primary) {
            primaries.push(i);
        }
        if let Some(ssh) = &n.ssh {
            for (k, v) in [
                ("ssh.identity_file", &ssh.identity_file),
                ("ssh.known_hosts_file", &ssh.known_hosts_file),
                ("ssh.config_file", &ssh.config_file),
            ] {
                if let Some(m) = v.as_deref().and_then(path_problem) {
                    bad(f(k), m);
                }
            }
            if let Some(u) = &ssh.user {
                if !valid_os_user(u) {
                    bad(f("ssh.user"), format!("`{u}` is not a valid user name"));
                }
            }
        }
    }
    if primaries.len() > 1 {
        bad(format!("nodes[{}].role", primaries[1]), "only one node can have `role: primary`".into());
    }
    let primary = inv.primary().map(|p| p.name.clone());
    for (i, n) in inv.nodes.iter().enumerate() {
        let is_primary = primary.as_deref() == Some(n.name.as_str());
        if is_primary {
            if n.upstream.is_some() {
                bad(format!("nodes[{i}].upstream"), "the primary has no upstream".into());
            }
            if n.sync.is_some() {
                bad(format!("nodes[{i}].sync"), "`sync` applies to standbys only".into());
            }
            continue;
        }
        let cascaded = n.upstream.as_deref().is_some_and(|u| Some(u) != primary.as_deref());
        if cascaded && matches!(n.sync, Some(model::SyncMode::Sync | model::SyncMode::Potential)) {
            bad(
                format!("nodes[{i}].sync"),
                "only direct standbys of the primary can be synchronous; a cascaded standby is async".into(),
            );
        }
        if let Some(u) = &n.upstream {
            if u == &n.name {
                bad(format!("nodes[{i}].upstream"), "a node cannot be its own upstream".into());
            } else if !names.contains_key(u) {
                bad(format!("nodes[{i}].upstream"), format!("upstream `{u}` is not a node of this cluster"));
            }
        }
    }
    // Cycles: follow upstreams from each node; more steps than nodes = loop.
    for (i, n) in inv.nodes.iter().enumerate() {
        let mut seen = BTreeSet::new();
        let mut cur = n.name.as_str();
        while let Some(u) = inv.node(cur).and_then(|x| x.upstream.as_deref()) {
            if !seen.insert(cur.to_string()) {
                bad(format!("nodes[{i}].upstream"), format!("upstreams form a cycle through `{}`", n.name));
                break;
            }
            cur = u;
        }
    }
    out
}

pub use model::DirState;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    pub data_dir: DirState,
    pub socket_dir: DirState,
    /// Something accepts TCP connections on host:port.
    pub port_in_use: bool,
}

/// `ours`: directories the home's record says pgscale created (a re-run of
/// an interrupted init may find them filled).
pub fn validate_facts(
    inv: &Inventory,
    locs: &Locations,
    facts: &BTreeMap<String, NodeFacts>,
    ours: &[PathBuf],
) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, n) in inv.nodes.iter().enumerate() {
        let Some(fx) = facts.get(&n.name) else { continue };
        let own = |p: &Path| ours.iter().any(|o| o == p);
        for (field, path, st) in
            [("data_dir", n.data_dir.clone(), fx.data_dir), ("socket_dir", n.socket_dir(), fx.socket_dir)]
        {
            let msg = match st {
                DirState::NotEmpty if !own(&path) => Some(format!(
                    "`{}` on {} exists and is not empty; pgscale never touches such a directory: choose another path or empty it yourself",
                    path.display(),
                    n.host
                )),
                DirState::NotADirectory => Some(format!("`{}` on {} exists and is not a directory", path.display(), n.host)),
                _ => None,
            };
            if let Some(m) = msg {
                out.push(locs.problem(format!("nodes[{i}].{field}"), m));
            }
        }
        if fx.port_in_use && !own(&n.data_dir) {
            out.push(locs.problem(
                format!("nodes[{i}].port"),
                format!("something already listens on {}:{}; choose a free port", n.host, n.port),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_inventory;

    fn check(y: &str) -> Vec<Problem> {
        let (inv, locs) = parse_inventory("c.yaml", y).expect("parses");
        let mut p = user_state_problems(Some(&inv.state), &inv.nodes, &locs);
        p.extend(validate_static(&inv, &locs));
        p
    }

    const NODE1: &str = "  - name: pg1\n    host: 127.0.0.1\n    port: 5501\n    data_dir: /d/pg1\n";

    fn with(extra: &str) -> String {
        format!("name: demo\nnodes:\n{NODE1}{extra}")
    }

    #[test]
    fn a_good_file_passes() {
        let y = with("  - name: pg2\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /d/pg2\n    upstream: pg1\n    sync: sync\n");
        assert_eq!(check(&y), vec![]);
    }

    #[test]
    fn bad_names() {
        let p =
            check("name: Demo\nnodes:\n  - name: pg-1\n    host: 127.0.0.1\n    port: 5501\n    data_dir: /d/pg1\n");
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].line, Some(1));
        assert_eq!(p[1].line, Some(3));
        assert!(p[1].message.contains("a-z, 0-9, _"));
        assert!(!valid_name(&"a".repeat(64)));
        assert!(valid_name(&"a".repeat(63)));
    }

    #[test]
    fn duplicate_name() {
        let p = check(&with("  - name: pg1\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /d/pg2\n"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].line, Some(7));
        assert!(p[0].message.contains("duplicate node name"));
    }

    #[test]
    fn same_host_and_port() {
        let p = check(&with("  - name: pg2\n    host: 127.0.0.1\n    port: 5501\n    data_dir: /d/pg2\n"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].message.contains("127.0.0.1:5501 is already used by nodes[0]"));
        assert_eq!(p[0].line, Some(9));
    }

    #[test]
    fn same_port_other_address_is_fine_but_same_dir_on_same_host_is_not() {
        let p = check(&with("  - name: pg2\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /d/pg2\n"));
        assert!(p.is_empty(), "{p:?}");
        let p = check(&with("  - name: pg2\n    host: 127.0.0.1\n    port: 5502\n    data_dir: /d/pg1\n"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].message.contains("already used by nodes[0]"));
        // the same path on another host is another directory
        let p = check(&with("  - name: pg2\n    host: 127.0.0.2\n    port: 5502\n    data_dir: /d/pg1\n"));
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn bad_port_zero() {
        let p = check("name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 0\n    data_dir: /d/pg1\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].line, Some(5));
    }

    #[test]
    fn relative_and_dotted_paths() {
        let p = check("name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 1\n    data_dir: d/pg1\n");
        assert!(p[0].message.contains("absolute"), "{p:?}");
        let p = check("name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 1\n    data_dir: /d/../pg1\n");
        assert!(p[0].message.contains(".."), "{p:?}");
    }

    #[test]
    fn unknown_upstream_self_and_cycle() {
        let p = check(&with(
            "  - name: pg2\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /d/pg2\n    upstream: pg9\n",
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].message.contains("`pg9` is not a node"));
        assert_eq!(p[0].line, Some(11));
        let p = check(&with(
            "  - name: pg2\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /d/pg2\n    upstream: pg3\n  - name: pg3\n    host: 127.0.0.3\n    port: 5501\n    data_dir: /d/pg3\n    upstream: pg2\n",
        ));
        assert!(p.iter().any(|x| x.message.contains("cycle")), "{p:?}");
        let p = check(&with(
            "  - name: pg2\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /d/pg2\n    upstream: pg2\n",
        ));
        assert!(p[0].message.contains("its own upstream"), "{p:?}");
    }

    #[test]
    fn primary_rules() {
        let p = check("name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 1\n    data_dir: /d/pg1\n    sync: sync\n");
        assert!(p[0].message.contains("standbys only"), "{p:?}");
        let y = with("  - name: pg2\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /d/pg2\n    role: primary\n  - name: pg3\n    host: 127.0.0.3\n    port: 5501\n    data_dir: /d/pg3\n    role: primary\n");
        let p = check(&y);
        assert!(p.iter().any(|x| x.message.contains("only one node")), "{p:?}");
    }

    #[test]
    fn trust_and_reserved_parameters_refused() {
        let y = format!("name: demo\npostgres:\n  hba:\n    - host all all 10.0.0.0/8 trust\n  parameters:\n    port: 5\n    work_mem: 4MB\nnodes:\n{NODE1}");
        let p = check(&y);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].line, Some(4));
        assert!(p[0].message.contains("allow_trust"));
        assert!(p[1].message.contains("`port` cannot be set here"));
        let y = format!(
            "name: demo\npostgres:\n  allow_trust: true\n  hba:\n    - host all all 10.0.0.0/8 trust\nnodes:\n{NODE1}"
        );
        assert!(check(&y).is_empty());
    }

    #[test]
    fn state_in_user_file_refused() {
        let y = with("    state:\n      needs_rejoin: true\n");
        let p = check(&y);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].message.contains("written by pgscale"));
    }

    #[test]
    fn cascaded_standby_cannot_be_sync() {
        let y = with("  - name: pg2\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /d/pg2\n  - name: pg3\n    host: 127.0.0.3\n    port: 5501\n    data_dir: /d/pg3\n    upstream: pg2\n    sync: sync\n");
        let p = check(&y);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].message.contains("cascaded"));
        assert_eq!(p[0].line, Some(16));
    }

    #[test]
    fn root_os_user_refused() {
        let y = format!("name: demo\npostgres:\n  os_user: root\nnodes:\n{NODE1}");
        let p = check(&y);
        assert!(p[0].message.contains("refuses to run as root"), "{p:?}");
    }

    #[test]
    fn facts_non_empty_dir_and_busy_port() {
        let (inv, locs) = parse_inventory("c.yaml", &with("")).unwrap();
        let mut f = BTreeMap::new();
        f.insert(
            "pg1".to_string(),
            NodeFacts { data_dir: DirState::NotEmpty, socket_dir: DirState::Missing, port_in_use: true },
        );
        let p = validate_facts(&inv, &locs, &f, &[]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].message.contains("not empty"));
        assert_eq!(p[0].line, Some(6));
        assert!(p[1].message.contains("already listens"));
        // a directory pgscale created itself (an interrupted init) is fine
        let p = validate_facts(&inv, &locs, &f, &[PathBuf::from("/d/pg1")]);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn hosts() {
        assert!(valid_host("127.0.0.1"));
        assert!(valid_host("::1"));
        assert!(valid_host("db-1.example.com"));
        assert!(!valid_host("a b"));
        assert!(!valid_host("x;rm"));
        assert!(!valid_host(""));
    }
}
