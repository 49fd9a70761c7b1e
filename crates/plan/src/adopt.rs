//! `adopt`: take over a running primary/standby cluster pgscale did not
//! create. Three pure parts: the differences between a spec and what runs
//! (any one refuses the adoption, all are listed), the plan that brings the
//! running servers to what pgscale manages, and the spec `--gen-spec`
//! writes from what it discovered.

use crate::steps::{Action, Ctx, Plan};
use crate::{apply_config, conf, hba, sql};
use model::{ConfigObs, Inventory, NodeSpec, Observed, ServerFacts, SyncMode};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

/// What adopt read from every node named in the spec: the probe, and the
/// server's facts (or why they could not be read).
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub obs: Observed,
    pub facts: BTreeMap<String, Result<ServerFacts, String>>,
}

/// How the adoption may go.
#[derive(Clone, Copy, Debug, Default)]
pub struct AdoptOpts {
    /// Restarts are allowed (`--yes`): standbys first, then the primary.
    pub restart: bool,
    /// pgscale knows the replication role's password (a file was given, or
    /// an interrupted adopt stored it).
    pub replication_password_known: bool,
}

/// Settings pgscale needs as it sets them: a generated spec never carries
/// the running value of these into `postgres.parameters`.
const REQUIRED: &[&str] = &["hot_standby", "wal_log_hints", "password_encryption"];

/// Managed settings a generated spec keeps at their running value when
/// someone configured them (a larger max_wal_senders, wal_level logical…).
pub const KEEP_CONFIGURED: &[&str] =
    &["wal_level", "max_wal_senders", "max_replication_slots", "wal_keep_size", "log_directory"];

fn trim_dir(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        "/"
    } else {
        t
    }
}

fn same_dir(a: &Path, b: &str) -> bool {
    trim_dir(&a.display().to_string()) == trim_dir(b)
}

/// Two host names or addresses for the same place (`localhost` is 127.0.0.1).
pub fn same_host(a: &str, b: &str) -> bool {
    let norm = |h: &str| if h == "localhost" { "127.0.0.1".to_string() } else { h.to_string() };
    match (norm(a).parse::<IpAddr>(), norm(b).parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The node of `inv` listening on host:port, if any.
fn node_at<'a>(inv: &'a Inventory, host: &str, port: u16) -> Option<&'a NodeSpec> {
    inv.nodes.iter().find(|n| same_host(&n.host, host) && n.port == port)
}

fn major(version_num: i32) -> i32 {
    version_num / 10000
}

fn first_socket_dir(list: &str) -> &str {
    list.split(',').map(str::trim).find(|s| !s.is_empty()).unwrap_or("")
}

/// Every way the spec differs from the running cluster. Empty: adoptable.
pub fn differences(spec: &Inventory, seen: &Seen, o: AdoptOpts) -> Vec<String> {
    let mut d = Vec::new();
    let Some(primary) = spec.primary() else {
        return vec!["the spec names no nodes".into()];
    };
    let pf = seen.facts.get(&primary.name).and_then(|r| r.as_ref().ok());
    for n in &spec.nodes {
        let name = &n.name;
        let f = match seen.facts.get(name) {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                d.push(format!("{name}: cannot read the server at {}: {e}", n.addr()));
                continue;
            }
            None => {
                d.push(format!("{name}: not observed"));
                continue;
            }
        };
        if f.port != n.port {
            d.push(format!("{name}: the spec says port {}, the server's port setting is {}", n.port, f.port));
        }
        if !same_dir(&n.data_dir, &f.data_directory) {
            d.push(format!(
                "{name}: the spec says data_dir {}, the server runs in {}",
                n.data_dir.display(),
                f.data_directory
            ));
        }
        let conf_dir = Path::new(&f.data_directory);
        if !same_dir(&conf_dir.join("postgresql.conf"), &f.config_file) {
            d.push(format!(
                "{name}: its postgresql.conf is {}, outside the data directory (a Debian pg_createcluster layout?); pgscale runs servers with `pg_ctl -D DATA_DIR` and keeps their configuration there: move postgresql.conf and pg_hba.conf into {} first",
                f.config_file, f.data_directory
            ));
        } else if !same_dir(&conf_dir.join("pg_hba.conf"), &f.hba_file) {
            d.push(format!(
                "{name}: hba_file is {}, not the data directory's pg_hba.conf; pgscale writes pg_hba.conf in the data directory: remove the hba_file setting (restart) first",
                f.hba_file
            ));
        }
        if !f.unix_socket_directories.split(',').any(|s| same_dir(&n.socket_dir(), s.trim())) {
            d.push(format!(
                "{name}: the spec's socket_dir {} is not a socket directory of the server ({}): set `socket_dir: {}` for it",
                n.socket_dir().display(),
                f.unix_socket_directories,
                first_socket_dir(&f.unix_socket_directories)
            ));
        }
        if let Some(b) = &spec.postgres.bin_dir {
            if let Some(fb) = &f.bin_dir {
                if !same_dir(b, fb) {
                    d.push(format!("{name}: the spec's bin_dir is {}, the server runs from {fb}", b.display()));
                }
            }
        }
        if let Some(p) = pf.filter(|_| name != &primary.name) {
            if f.system_identifier != p.system_identifier {
                d.push(format!(
                    "{name}: it belongs to another cluster (system identifier {}, the primary {}'s is {})",
                    f.system_identifier, primary.name, p.system_identifier
                ));
            }
            if major(f.server_version_num) != major(p.server_version_num) {
                d.push(format!(
                    "{name}: PostgreSQL {} while the primary {} runs {}",
                    f.server_version, primary.name, p.server_version
                ));
            }
        }
        if f.wal_level == "minimal" {
            d.push(format!("{name}: wal_level is minimal: no standby can stream from it; set wal_level = replica in its postgresql.conf and restart it"));
        }
        if name == &primary.name {
            if f.in_recovery {
                d.push(format!("{name}: the spec says it is the primary; it is a standby (in recovery)"));
            }
        } else {
            let up = spec.upstream_of(name);
            let up_desc = up.map(|u| format!("{} ({})", u.name, u.addr())).unwrap_or_else(|| "nowhere".into());
            if !f.in_recovery {
                d.push(format!(
                    "{name}: the spec says it is a standby streaming from {up_desc}; it is a primary (not in recovery)"
                ));
            } else {
                match (&f.sender_host, f.sender_port, up) {
                    (Some(h), Some(p), Some(u)) if same_host(h, &u.host) && p == u.port => {}
                    (Some(h), Some(p), _) => {
                        let who = node_at(spec, h, p).map(|x| format!(" (that is {})", x.name)).unwrap_or_default();
                        d.push(format!("{name}: the spec says it streams from {up_desc}; it streams from {h}:{p}{who}"));
                    }
                    _ => d.push(format!(
                        "{name}: it is not streaming (no WAL receiver); the spec says it streams from {up_desc}: make it stream, then adopt"
                    )),
                }
            }
            if f.hot_standby != "on" {
                d.push(format!("{name}: hot_standby is off: pgscale must read its standbys; set hot_standby = on in its postgresql.conf and restart it"));
            }
        }
        if f.wal_log_hints != "on" && f.data_checksums != "on" && !o.restart {
            d.push(format!(
                "{name}: neither wal_log_hints nor data checksums is on: pg_rewind could not bring it back after a failover; adopt sets wal_log_hints = on, which takes a restart: run again with --yes (standbys restart first, then the primary)"
            ));
        }
    }
    if let Some(p) = pf {
        if p.replication_role.is_some() && !o.replication_password_known {
            d.push(format!(
                "the replication role `{r}` exists already and pgscale does not know its password: give it with --replication-password-file FILE (mode 0600), or name another `postgres.replication_user` in the spec (adopt creates it)",
                r = spec.postgres.replication_user
            ));
        }
    }
    d
}

/// Slots on each node that no standby of the spec will use: reported, never dropped.
pub fn orphan_slots(spec: &Inventory, obs: &Observed) -> Vec<String> {
    let mut v = Vec::new();
    for n in &spec.nodes {
        let Some(o) = obs.get(&n.name) else { continue };
        let wanted: BTreeSet<String> = spec.downstreams_of(&n.name).iter().map(|d| model::slot_name(&d.name)).collect();
        for s in o.slots.iter().filter(|s| !wanted.contains(&s.name)) {
            let held = s.retained_bytes.map(|b| format!(", holding {} MB of WAL", b / (1 << 20))).unwrap_or_default();
            let now = if s.active {
                "in use now (a standby's old slot? it stops being used after adopt)"
            } else {
                "inactive"
            };
            v.push(format!(
                "orphan slot `{}` on {} ({now}{held}): pgscale leaves it; when nothing uses it, drop it (on {}: SELECT pg_drop_replication_slot('{}'))",
                s.name, n.name, n.name, s.name
            ));
        }
    }
    v
}

/// A unified diff of a node's pg_hba.conf, as printed before it is replaced.
pub fn hba_diff(node: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header(&format!("{node}: pg_hba.conf (running)"), &format!("{node}: pg_hba.conf (pgscale)"))
        .to_string()
}

/// The value of synchronous_standby_names while standbys are renamed: the
/// application names that count now and the spec's, so commits keep being
/// acknowledged by a standby throughout. None: no transition is needed.
pub fn sync_transition(spec: &Inventory, obs: &Observed) -> Option<String> {
    let p = spec.primary()?;
    let po = obs.get(&p.name)?;
    let current = po.synchronous_standby_names.clone().unwrap_or_default();
    let want = crate::sync::standby_names(spec);
    if current.trim().is_empty() || current == want {
        return None;
    }
    let k = spec.staying().filter(|n| !spec.is_primary(&n.name) && n.sync_mode() == SyncMode::Sync).count();
    if k == 0 {
        return Some(String::new());
    }
    let mut names: Vec<String> = spec
        .staying()
        .filter(|n| !spec.is_primary(&n.name) && n.sync_mode() != SyncMode::Async)
        .map(|n| n.name.clone())
        .collect();
    for d in po.downstreams.iter().filter(|d| matches!(d.sync_state.as_str(), "sync" | "potential" | "quorum")) {
        if !names.contains(&d.application_name) {
            names.push(d.application_name.clone());
        }
    }
    Some(crate::sync::render(k, &names))
}

/// The plan: the roles, pg_hba.conf everywhere, passfiles and slots for the
/// standbys, the managed settings (standbys first; restarts only with
/// `restart`), wait until every standby streams through pgscale's slot,
/// record. `cfg`: each node's configuration as observed.
pub fn plan_adopt(
    desired: &Inventory,
    ctx: &Ctx,
    seen: &Seen,
    cfg: &BTreeMap<String, ConfigObs>,
    o: AdoptOpts,
    catchup_secs: u64,
) -> Result<Plan, Vec<String>> {
    let mut p = Plan::new(&desired.name, "adopt");
    let primary = desired.primary().ok_or_else(|| vec!["the spec names no nodes".to_string()])?;
    let pf = seen.facts.get(&primary.name).and_then(|r| r.as_ref().ok());
    let pg = &desired.postgres;
    if pf.is_some_and(|f| !f.admin_scram) {
        p.push(
            &primary.name,
            "admin-role",
            Action::EnsureRole { role: pg.admin_user.clone(), replication: false },
            "store the admin role's password (the same one) as a SCRAM verifier: pgscale's pg_hba.conf allows scram-sha-256 only",
        );
    }
    p.push(
        &primary.name,
        "replication-role",
        Action::EnsureRole { role: pg.replication_user.clone(), replication: true },
        if pf.is_some_and(|f| f.replication_role.is_some()) {
            "the standbys stream as this role (it exists: its attributes and the given password are set again)"
        } else {
            "the standbys stream as this role (created)"
        },
    );
    // pg_hba.conf on every node first, so the replication role may connect
    // from every peer before any standby is re-pointed.
    let want_hba = hba::render(desired, &ctx.os_user, &ctx.peers);
    for n in crate::destroy::node_order(desired) {
        let old = cfg.get(&n.name).and_then(|c| c.hba.clone()).unwrap_or_default();
        if old != want_hba {
            p.push(
                &n.name,
                "hba",
                Action::WriteFile { path: n.data_dir.join("pg_hba.conf"), mode: 0o600, contents: want_hba.clone() },
                "replace pg_hba.conf with pgscale's (your lines are in postgres.hba)",
            );
            p.push(&n.name, "check-hba", Action::CheckHba, "refuse to reload a pg_hba.conf the server cannot read");
            p.push(&n.name, "reload-hba", Action::Reload, "the new pg_hba.conf takes effect");
        }
    }
    for n in desired.nodes.iter().filter(|n| !desired.is_primary(&n.name)) {
        p.push(
            &n.name,
            "passfile",
            Action::WritePassfile { path: conf::passfile(n), user: pg.replication_user.clone() },
            "the replication role's password, for primary_conninfo and pg_rewind (0600)",
        );
    }
    for n in desired.nodes.iter().filter(|n| !desired.is_primary(&n.name)) {
        let Some(u) = desired.upstream_of(&n.name) else { continue };
        let has = seen.obs.get(&u.name).is_some_and(|uo| uo.slots.iter().any(|s| s.name == model::slot_name(&n.name)));
        if !has {
            p.push(
                &u.name,
                &format!("slot-{}", n.name),
                Action::Sql { sql: sql::create_slot(&model::slot_name(&n.name)) },
                format!("{}'s slot on its upstream {}, before it streams through it", n.name, u.name),
            );
        }
    }
    if let Some(t) = sync_transition(desired, &seen.obs) {
        p.push(
            &primary.name,
            "sync-transition",
            Action::Sql { sql: sql::alter_system_set("synchronous_standby_names", &t) },
            "while the standbys take their pgscale names, the names that count now and the new ones both acknowledge commits",
        );
        p.push(&primary.name, "reload-sync", Action::Reload, "the transitional list takes effect");
    }
    // The managed settings, as apply-config plans them, against a pg_hba.conf
    // already replaced above.
    let mut cfg2 = cfg.clone();
    for c in cfg2.values_mut() {
        c.hba = Some(want_hba.clone());
    }
    let mut settings = apply_config::plan_apply_config(desired, ctx, &cfg2)?;
    settings.steps.retain(|s| !matches!(s.action, Action::SaveInventory { .. }));
    let mut pending: Vec<String> = Vec::new();
    if !o.restart {
        settings.steps.retain(|s| {
            let r = matches!(s.action, Action::Restart { .. });
            if r {
                pending.push(s.node.clone());
            }
            !r
        });
    }
    for s in settings.steps {
        p.push(&s.node, s.id.rsplit(':').next().unwrap_or(&s.id), s.action, s.reason);
    }
    p.notes.extend(settings.notes);
    if !pending.is_empty() {
        p.notes.push(format!(
            "settings that take effect only at a restart wait on {}: run `pgscale apply-config -n {} -c SPEC --yes` (or adopt again with --yes) to restart them, standbys first",
            pending.join(", "),
            desired.name
        ));
    }
    for n in desired.nodes.iter().filter(|n| !desired.is_primary(&n.name)) {
        let Some(u) = desired.upstream_of(&n.name) else { continue };
        p.push(
            &u.name,
            &format!("wait-{}", n.name),
            Action::WaitStreaming { standby: n.name.clone(), timeout_secs: catchup_secs },
            format!("{} streams from {} as `{}` through its slot", n.name, u.name, n.name),
        );
    }
    p.notes.extend(orphan_slots(desired, &seen.obs));
    p.push(
        "",
        "record",
        Action::SaveInventory { phase: model::Phase::Ready },
        "pgscale manages the cluster from now on",
    );
    Ok(p)
}

/// One node `--gen-spec` found.
#[derive(Clone, Debug)]
pub struct Found {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub facts: ServerFacts,
    /// The node it streams from (None: the primary).
    pub upstream: Option<String>,
    /// How its upstream counts it: sync, potential, quorum, async.
    pub sync_state: String,
    /// What its upstream calls it (application_name).
    pub application_name: String,
}

/// A node name from what a standby calls itself, when it is a valid,
/// unique pgscale name; else `pgN`.
pub fn name_for(application_name: &str, taken: &[String], n: usize) -> String {
    let ok = model::valid_name(application_name) && application_name != "walreceiver";
    if ok && !taken.iter().any(|t| t == application_name) {
        return application_name.to_string();
    }
    let mut i = n;
    loop {
        let c = format!("pg{i}");
        if !taken.contains(&c) {
            return c;
        }
        i += 1;
    }
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The spec `adopt --gen-spec` writes: every node found, the running
/// pg_hba.conf's lines as `postgres.hba`, the primary's ALTER SYSTEM
/// settings and the managed settings someone configured as parameters.
/// `notes` go into the file as comments.
pub fn gen_spec(cluster: &str, admin_user: &str, nodes: &[Found], notes: &[String]) -> String {
    let Some(p) = nodes.first() else { return String::new() };
    let mut y = format!(
        "# Generated by `pgscale adopt --gen-spec` from the running cluster. Read it,\n\
         # then: pgscale adopt -c THIS_FILE --admin-password-file FILE --dry-run\n\
         name: {}\n",
        q(cluster)
    );
    for n in notes {
        y += &format!("# note: {n}\n");
    }
    y += "postgres:\n";
    if admin_user != model::DEFAULT_ADMIN_USER {
        y += &format!("  admin_user: {}\n", q(admin_user));
    }
    if let Some(b) = &p.facts.bin_dir {
        y += &format!("  bin_dir: {}   # PostgreSQL {}\n", q(b), p.facts.server_version);
    }
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &p.facts.configured {
        if KEEP_CONFIGURED.contains(&k.as_str()) && !REQUIRED.contains(&k.as_str()) {
            params.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &p.facts.auto_conf {
        if conf::reserved_reason(k).is_none() && !REQUIRED.contains(&k.as_str()) {
            params.insert(k.clone(), v.clone());
        }
    }
    if !params.is_empty() {
        y += "  parameters:   # kept as they run (ALTER SYSTEM settings and configured replication settings)\n";
        for (k, v) in &params {
            y += &format!("    {k}: {}\n", q(v));
        }
    }
    let lines: Vec<String> = p
        .facts
        .hba
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if !lines.is_empty() {
        y += "  # The running pg_hba.conf's lines. pgscale writes its own lines first\n\
              \x20 # (scram-sha-256 per peer address); `trust` on host lines is refused\n\
              \x20 # unless `allow_trust: true`. Keep only what your clients need.\n\
              \x20 hba:\n";
        for l in &lines {
            y += &format!("    - {}\n", q(l));
        }
    }
    y += "nodes:\n";
    for n in nodes {
        y += &format!(
            "  - name: {}\n    host: {}\n    port: {}\n    data_dir: {}\n",
            n.name,
            q(&n.host),
            n.port,
            q(&n.facts.data_directory)
        );
        let sock = first_socket_dir(&n.facts.unix_socket_directories);
        if !sock.is_empty() {
            y += &format!("    socket_dir: {}\n", q(sock));
        }
        match &n.upstream {
            None => y += "    role: primary\n",
            Some(u) => {
                y += &format!("    upstream: {u}\n");
                let s = match n.sync_state.as_str() {
                    "sync" | "quorum" => "sync",
                    "potential" => "potential",
                    _ => "async",
                };
                y += &format!("    sync: {s}   # {} calls it `{}` ({})\n", u, n.application_name, n.sync_state);
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_inventory;
    use model::{Downstream, NodeObservation, ObservedRole, RunState, Slot};

    fn spec() -> Inventory {
        let y = "name: c\npostgres:\n  bin_dir: /b\nnodes:\n  - {name: pg1, host: 127.0.0.1, port: 5501, data_dir: /d/pg1, socket_dir: /s}\n  - {name: pg2, host: 127.0.0.2, port: 5502, data_dir: /d/pg2, socket_dir: /s, sync: sync}\n  - {name: pg3, host: 127.0.0.3, port: 5503, data_dir: /d/pg3, socket_dir: /s, upstream: pg2}\n";
        parse_inventory("s.yaml", y).unwrap().0
    }

    fn facts(n: &NodeSpec, up: Option<(&str, u16)>) -> ServerFacts {
        ServerFacts {
            system_identifier: "7".into(),
            in_recovery: up.is_some(),
            server_version: "15.8".into(),
            server_version_num: 150008,
            data_directory: n.data_dir.display().to_string(),
            config_file: n.data_dir.join("postgresql.conf").display().to_string(),
            hba_file: n.data_dir.join("pg_hba.conf").display().to_string(),
            port: n.port,
            unix_socket_directories: "/s".into(),
            wal_level: "replica".into(),
            hot_standby: "on".into(),
            wal_log_hints: "off".into(),
            data_checksums: "off".into(),
            bin_dir: Some("/b".into()),
            sender_host: up.map(|u| u.0.to_string()),
            sender_port: up.map(|u| u.1),
            admin_scram: true,
            replication_role: None,
            auto_conf: Default::default(),
            hba: "local all all trust\nhost all all 127.0.0.1/32 trust\n".into(),
            configured: Default::default(),
        }
    }

    fn seen(inv: &Inventory) -> Seen {
        let mut s = Seen::default();
        s.facts.insert("pg1".into(), Ok(facts(&inv.nodes[0], None)));
        s.facts.insert("pg2".into(), Ok(facts(&inv.nodes[1], Some(("127.0.0.1", 5501)))));
        s.facts.insert("pg3".into(), Ok(facts(&inv.nodes[2], Some(("127.0.0.2", 5502)))));
        for n in &inv.nodes {
            let mut o = NodeObservation::unanswered(&n.name, RunState::Running, "");
            o.error = None;
            o.role = if n.name == "pg1" { ObservedRole::Primary } else { ObservedRole::Standby };
            s.obs.nodes.insert(n.name.clone(), o);
        }
        s
    }

    const YES: AdoptOpts = AdoptOpts { restart: true, replication_password_known: false };

    #[test]
    fn a_matching_cluster_has_no_differences_with_restarts_allowed() {
        let inv = spec();
        assert_eq!(differences(&inv, &seen(&inv), YES), Vec::<String>::new());
    }

    #[test]
    fn without_restarts_missing_rewind_support_is_a_difference_per_node() {
        let inv = spec();
        let d = differences(&inv, &seen(&inv), AdoptOpts::default());
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].contains("wal_log_hints") && d[0].contains("--yes"));
        let mut s = seen(&inv);
        for f in s.facts.values_mut() {
            f.as_mut().unwrap().data_checksums = "on".into();
        }
        assert!(differences(&inv, &s, AdoptOpts::default()).is_empty());
    }

    #[test]
    fn a_lying_upstream_a_wrong_role_a_data_dir_and_a_foreign_node_are_all_listed() {
        let inv = spec();
        let mut s = seen(&inv);
        {
            let f3 = s.facts.get_mut("pg3").unwrap().as_mut().unwrap();
            f3.sender_host = Some("127.0.0.1".into());
            f3.sender_port = Some(5501);
        }
        {
            let f2 = s.facts.get_mut("pg2").unwrap().as_mut().unwrap();
            f2.data_directory = "/elsewhere".into();
            f2.config_file = "/elsewhere/postgresql.conf".into();
            f2.hba_file = "/elsewhere/pg_hba.conf".into();
            f2.system_identifier = "8".into();
        }
        s.facts.get_mut("pg1").unwrap().as_mut().unwrap().in_recovery = true;
        let d = differences(&inv, &s, YES);
        let all = d.join("\n");
        assert!(
            all.contains(
                "pg3: the spec says it streams from pg2 (127.0.0.2:5502); it streams from 127.0.0.1:5501 (that is pg1)"
            ),
            "{all}"
        );
        assert!(all.contains("pg2: the spec says data_dir /d/pg2, the server runs in /elsewhere"), "{all}");
        assert!(all.contains("pg2: it belongs to another cluster"), "{all}");
        assert!(all.contains("pg1: the spec says it is the primary; it is a standby"), "{all}");
        assert_eq!(d.len(), 4, "{all}");
    }

    #[test]
    fn unreadable_nodes_layout_and_an_unknown_replication_password_are_refused() {
        let inv = spec();
        let mut s = seen(&inv);
        s.facts.insert("pg3".into(), Err("connection refused".into()));
        {
            let f1 = s.facts.get_mut("pg1").unwrap().as_mut().unwrap();
            f1.config_file = "/etc/postgresql/15/main/postgresql.conf".into();
            f1.replication_role = Some((true, true));
        }
        s.facts.get_mut("pg2").unwrap().as_mut().unwrap().hot_standby = "off".into();
        let d = differences(&inv, &s, YES).join("\n");
        assert!(d.contains("pg3: cannot read the server at 127.0.0.3:5503: connection refused"), "{d}");
        assert!(d.contains("outside the data directory"), "{d}");
        assert!(d.contains("pg2: hot_standby is off"), "{d}");
        assert!(d.contains("--replication-password-file"), "{d}");
        let known = AdoptOpts { restart: true, replication_password_known: true };
        assert!(!differences(&inv, &s, known).join("\n").contains("--replication-password-file"));
    }

    fn ctx() -> Ctx {
        Ctx {
            bin_dir: "/b".into(),
            os_user: "postgres".into(),
            peers: vec!["127.0.0.1".parse().unwrap()],
            wait_secs: 10,
            unreachable: vec![],
        }
    }

    fn cfg(inv: &Inventory) -> BTreeMap<String, ConfigObs> {
        inv.nodes
            .iter()
            .map(|n| {
                let contexts = conf::managed_settings(inv, n)
                    .into_iter()
                    .map(|(k, _)| {
                        let c = if ["wal_log_hints", "listen_addresses", "port"].contains(&k.as_str()) {
                            "postmaster"
                        } else {
                            "sighup"
                        };
                        (k, c.to_string())
                    })
                    .collect();
                (
                    n.name.clone(),
                    ConfigObs {
                        running: true,
                        hba: Some("local all all trust\n".into()),
                        contexts,
                        ..Default::default()
                    },
                )
            })
            .collect()
    }

    fn ids(p: &Plan) -> Vec<String> {
        p.steps.iter().map(|s| s.id.clone()).collect()
    }

    #[test]
    fn the_plan_replaces_hba_first_then_slots_settings_and_waits_and_restarts_only_when_allowed() {
        let inv = spec();
        let mut s = seen(&inv);
        s.obs.nodes.get_mut("pg1").unwrap().slots.push(Slot {
            name: "old_slot".into(),
            active: true,
            restart_lsn: None,
            retained_bytes: Some(3 << 20),
        });
        let p = plan_adopt(&inv, &ctx(), &s, &cfg(&inv), AdoptOpts::default(), 30).unwrap();
        let ids = ids(&p);
        let pos = |id: &str| ids.iter().position(|x| x == id).unwrap_or_else(|| panic!("{id} in {ids:?}"));
        assert!(pos("pg1:replication-role") < pos("pg2:hba"));
        assert!(pos("pg1:hba") < pos("pg2:passfile"), "hba everywhere before standbys change");
        assert!(pos("pg1:slot-pg2") < pos("pg2:set-primary_conninfo"));
        assert!(pos("pg2:slot-pg3") < pos("pg3:set-primary_conninfo"), "a cascaded standby's slot is on its upstream");
        assert!(pos("pg3:set-primary_conninfo") < pos("pg1:set-synchronous_standby_names"), "standbys first");
        assert!(pos("pg1:wait-pg2") > pos("pg1:reload"));
        assert_eq!(ids.last().unwrap(), "record");
        assert!(!p.steps.iter().any(|s| matches!(s.action, Action::Restart { .. })), "no restart without --yes");
        assert!(p.notes.iter().any(|n| n.contains("take effect only at a restart")), "{:?}", p.notes);
        assert!(p.notes.iter().any(|n| n.contains("orphan slot `old_slot` on pg1 (in use now")), "{:?}", p.notes);
        let y = plan_adopt(&inv, &ctx(), &s, &cfg(&inv), YES, 30).unwrap();
        let ids = crate::adopt::tests::ids(&y);
        let r = |n: &str| ids.iter().position(|x| x == &format!("{n}:restart")).unwrap();
        assert!(r("pg2") < r("pg1") && r("pg3") < r("pg1"), "standbys restart before the primary: {ids:?}");
    }

    #[test]
    fn renaming_sync_standbys_keeps_the_old_names_counting_meanwhile() {
        let inv = spec();
        let mut s = seen(&inv);
        let o = s.obs.nodes.get_mut("pg1").unwrap();
        o.synchronous_standby_names = Some("walreceiver".into());
        o.downstreams.push(Downstream {
            application_name: "walreceiver".into(),
            client_addr: None,
            state: "streaming".into(),
            sync_state: "sync".into(),
            replay_lsn: None,
            flush_lsn: None,
            silent: false,
        });
        assert_eq!(sync_transition(&inv, &s.obs).as_deref(), Some("FIRST 1 (\"pg2\", \"walreceiver\")"));
        s.obs.nodes.get_mut("pg1").unwrap().synchronous_standby_names = Some(crate::sync::standby_names(&inv));
        assert_eq!(sync_transition(&inv, &s.obs), None);
    }

    #[test]
    fn the_generated_spec_parses_and_carries_hba_lines_params_sync_and_cascade() {
        let inv = spec();
        let mut f1 = facts(&inv.nodes[0], None);
        f1.auto_conf.insert("shared_buffers".into(), "256MB".into());
        f1.auto_conf.insert("primary_conninfo".into(), "x".into());
        f1.configured.insert("max_wal_senders".into(), "20".into());
        f1.configured.insert("wal_log_hints".into(), "off".into());
        let found = vec![
            Found {
                name: "pg1".into(),
                host: "127.0.0.1".into(),
                port: 5501,
                facts: f1,
                upstream: None,
                sync_state: String::new(),
                application_name: String::new(),
            },
            Found {
                name: "pg2".into(),
                host: "127.0.0.2".into(),
                port: 5502,
                facts: facts(&inv.nodes[1], Some(("127.0.0.1", 5501))),
                upstream: Some("pg1".into()),
                sync_state: "sync".into(),
                application_name: "walreceiver".into(),
            },
            Found {
                name: "pg3".into(),
                host: "127.0.0.3".into(),
                port: 5503,
                facts: facts(&inv.nodes[2], Some(("127.0.0.2", 5502))),
                upstream: Some("pg2".into()),
                sync_state: "async".into(),
                application_name: "walreceiver".into(),
            },
        ];
        let y = gen_spec("c", "postgres", &found, &["one".into()]);
        let (g, _) = parse_inventory("g.yaml", &y).unwrap_or_else(|e| panic!("{e:?}\n{y}"));
        assert_eq!(g.nodes.len(), 3);
        assert_eq!(g.nodes[1].sync, Some(SyncMode::Sync));
        assert_eq!(g.nodes[2].upstream.as_deref(), Some("pg2"));
        assert_eq!(g.postgres.hba, vec!["local all all trust".to_string(), "host all all 127.0.0.1/32 trust".into()]);
        assert_eq!(g.postgres.parameters.len(), 2, "{y}");
        assert!(y.contains("shared_buffers") && y.contains("max_wal_senders") && !y.contains("wal_log_hints"), "{y}");
        assert_eq!(g.nodes[0].socket_dir.as_deref(), Some(Path::new("/s")));
        // the trust line is refused by the static checks until allow_trust
        let locs = crate::load::parse_inventory("g.yaml", &y).unwrap().1;
        let ps = crate::validate::validate_static(&g, &locs);
        assert!(ps.iter().any(|p| p.to_string().contains("trust")), "{ps:?}");
        assert_eq!(differences(&g, &seen(&inv), YES), Vec::<String>::new());
    }

    #[test]
    fn names_come_from_application_names_when_usable() {
        assert_eq!(name_for("walreceiver", &[], 2), "pg2");
        assert_eq!(name_for("replica_a", &[], 2), "replica_a");
        assert_eq!(name_for("replica_a", &["replica_a".into()], 2), "pg2");
        assert_eq!(name_for("15/main", &["pg2".into()], 2), "pg3");
    }

    #[test]
    fn hba_diff_shows_removed_and_added_lines() {
        let d = hba_diff("pg1", "host all all 0.0.0.0/0 trust\n", "host all all 127.0.0.1/32 scram-sha-256\n");
        assert!(
            d.contains("-host all all 0.0.0.0/0 trust") && d.contains("+host all all 127.0.0.1/32 scram-sha-256"),
            "{d}"
        );
    }
}
