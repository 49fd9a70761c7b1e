//! adopt: take over a running cluster pgscale did not create. Observe every
//! node the spec names, refuse with every difference, else plan (roles,
//! pg_hba.conf after its diff, slots, passfiles, settings; restarts only
//! with `--yes`) and apply; the last step records the cluster.
//! `gen_spec` writes a spec from a running primary and what streams from it.

use crate::cluster::{read_inventory_file, Cluster, WAIT};
use crate::error::{failed, invalid, OpError};
use crate::{resolve, run_plan, Apply, Env, Outcome};
use model::{Inventory, Observed, ServerFacts};
use plan::adopt::{AdoptOpts, Found, Seen};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Request {
    /// The spec of the running cluster (YAML, as for init).
    pub config: PathBuf,
    pub dry_run: bool,
    /// Restarts allowed (standbys first, then the primary).
    pub yes: bool,
    pub timeout: Duration,
    /// How long each standby may take to stream through its new slot.
    pub catchup: Duration,
    /// The admin role's current password (a 0600 file).
    pub admin_password_file: PathBuf,
    /// The replication role's password, when that role exists already.
    pub replication_password_file: Option<PathBuf>,
}

/// A password from a file only its owner can read; the first line, without
/// its line end.
pub fn read_password_file(p: &Path, what: &str) -> Result<String, OpError> {
    let m = std::fs::metadata(p).map_err(|e| invalid(format!("{what} {}: {e}", p.display())))?;
    if m.mode() & 0o077 != 0 {
        return Err(invalid(format!(
            "{what} {} is readable by others (mode {:o}): `chmod 600 {}` first",
            p.display(),
            m.mode() & 0o777,
            p.display()
        )));
    }
    let text = std::fs::read_to_string(p).map_err(|e| invalid(format!("{what} {}: {e}", p.display())))?;
    let pw = text.lines().next().unwrap_or("").to_string();
    if pw.is_empty() {
        return Err(invalid(format!("{what} {} is empty", p.display())));
    }
    Ok(pw)
}

fn target(host: &str, port: u16, user: &str, password: &str) -> pg::Target {
    pg::Target { host: host.into(), port, user: user.into(), password: password.into(), dbname: "postgres".into() }
}

/// Probe and read the facts of every node of `spec`, in parallel.
async fn observe(spec: &Inventory, admin_pw: &str, d: Duration) -> Seen {
    let admin = &spec.postgres.admin_user;
    let repl = spec.postgres.replication_user.clone();
    let futs = spec.nodes.iter().map(|n| {
        let t = target(&n.host, n.port, admin, admin_pw);
        let repl = repl.clone();
        async move {
            let (o, f) =
                tokio::join!(pg::probe(&n.name, &t, d), pg::server_facts(&t, &repl, plan::adopt::KEEP_CONFIGURED, d));
            (n.name.clone(), o, f.map_err(|e| e.to_string()))
        }
    });
    let mut seen = Seen::default();
    for (name, o, f) in futures::future::join_all(futs).await {
        seen.obs.nodes.insert(name.clone(), o);
        seen.facts.insert(name, f);
    }
    seen
}

pub async fn run(env: Env<'_>, r: Request) -> Result<Outcome, OpError> {
    let (mut desired, _locs) = read_inventory_file(&r.config)?;
    let admin_pw = read_password_file(&r.admin_password_file, "the admin password file")?;
    let repl_pw = match &r.replication_password_file {
        Some(p) => Some(read_password_file(p, "the replication password file")?),
        None => None,
    };
    let name = desired.name.clone();
    let store = env.stores.for_spec(&name, desired.dcs.as_ref()).await?;
    let _lock = if r.dry_run { None } else { Some(store.lock(&name, "pgscale adopt", env.stores.lock_wait()).await?) };
    if store.exists(&name).await? {
        return Err(invalid(format!(
            "cluster `{name}` is already managed by pgscale ({}): change it with apply-config, scale-out or scale-in",
            store.describe()
        )));
    }
    let primary = desired.primary().map(|p| p.name.clone()).unwrap_or_default();
    desired.node_mut(&primary).expect("the spec has a primary").role = Some(model::Role::Primary);

    // Passwords: the admin's from its file; the replication role's from its
    // file, else from an interrupted adopt's record, else a new one.
    let (admin, repl) = (desired.postgres.admin_user.clone(), desired.postgres.replication_user.clone());
    let stored = store.secrets(&name, &[], false).await?;
    let known = repl_pw.is_some() || stored.password(&repl).is_some();
    let repl_pw = match repl_pw.or_else(|| stored.password(&repl).map(String::from)) {
        Some(p) => p,
        None => store
            .secrets(&name, &[repl.as_str()], false)
            .await?
            .password(&repl)
            .map(String::from)
            .ok_or_else(|| failed("no replication password could be made"))?,
    };

    let seen = observe(&desired, &admin_pw, r.timeout).await;
    let opts = AdoptOpts { restart: r.yes, replication_password_known: known };
    let mut diffs = plan::adopt::differences(&desired, &seen, opts);
    let hosts = resolve::hosts(&desired, r.timeout).await?;
    for (n, h) in &hosts {
        if let Err(e) = h {
            diffs.push(format!("{n}: its host cannot be reached to write files there: {e}"));
        }
    }
    if !diffs.is_empty() {
        return Err(invalid(format!(
            "{} does not match the running cluster; nothing changed:\n  {}",
            r.config.display(),
            diffs.join("\n  ")
        )));
    }
    let pf: &ServerFacts = seen.facts[&primary].as_ref().expect("no differences: the primary was read");
    desired.postgres.bin_dir = desired.postgres.bin_dir.clone().or(pf.bin_dir.as_ref().map(PathBuf::from));
    desired.postgres.os_user = Some(resolve::os_user_name(&desired));

    let map = BTreeMap::from([(admin.clone(), admin_pw), (repl.clone(), repl_pw)]);
    if !r.dry_run {
        store.put_secrets(&name, &map).await?;
    }
    let mut cl = Cluster::open(store.clone(), desired.clone(), r.timeout, r.dry_run).await?;
    if r.dry_run {
        let users = resolve::secret_users(&desired);
        cl.secrets = journal::Secrets::from_map(cl.secrets.path(), map, &users).0;
    }
    let ctx = cl.ctx(WAIT);
    // Every node's managed names: standbys have settings the primary has not.
    let mut names: Vec<String> = desired
        .nodes
        .iter()
        .flat_map(|n| plan::conf::managed_settings(&desired, n).into_iter().map(|(k, _)| k))
        .collect();
    names.sort();
    names.dedup();
    let futs = cl.targets().into_iter().map(|(n, t)| {
        let names = names.clone();
        async move { (n, pg::config_obs(&t, &names, r.timeout).await) }
    });
    let mut cfg = BTreeMap::new();
    for (n, res) in futures::future::join_all(futs).await {
        cfg.insert(n.clone(), res.map_err(|e| failed(format!("{n}: {e}")))?);
    }
    let plan = plan::adopt::plan_adopt(&desired, &ctx, &seen, &cfg, opts, r.catchup.as_secs().max(1))
        .map_err(|e| invalid(format!("nothing changed:\n  {}", e.join("\n  "))))?;
    show_hba_diffs(env, &desired, &plan, &cfg);
    for n in &plan.notes {
        env.ui.say(&format!("note: {n}"));
    }
    let rerun = format!("pgscale adopt -c {}", r.config.display());
    run_plan(env, &cl, desired, plan, Apply { dry_run: r.dry_run, question: None, timeout: r.timeout, rerun }).await
}

/// Print each pg_hba.conf replacement's diff once (nodes with the same diff together).
fn show_hba_diffs(env: Env<'_>, desired: &Inventory, p: &plan::Plan, cfg: &BTreeMap<String, model::ConfigObs>) {
    let mut by_diff: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &p.steps {
        if let plan::Action::WriteFile { path, contents, .. } = &s.action {
            if path.file_name().is_some_and(|f| f == "pg_hba.conf") {
                let old = cfg.get(&s.node).and_then(|c| c.hba.clone()).unwrap_or_default();
                let d = plan::adopt::hba_diff("running", &old, contents);
                by_diff.entry(d).or_default().push(s.node.clone());
            }
        }
    }
    for (d, nodes) in by_diff {
        env.ui.say(&format!(
            "pg_hba.conf of {} (cluster {}) is replaced; the difference:\n{d}",
            nodes.join(", "),
            desired.name
        ));
    }
}

pub struct GenRequest {
    /// The cluster's name in the spec.
    pub name: String,
    /// HOST:PORT of the primary.
    pub primary: String,
    /// HOST:PORT of standbys whose address the primary cannot tell (its
    /// pg_stat_replication shows where they connect from, not their port).
    pub standbys: Vec<String>,
    pub admin_user: String,
    pub admin_password_file: PathBuf,
    pub timeout: Duration,
}

pub fn parse_host_port(s: &str) -> Result<(String, u16), OpError> {
    let (h, p) =
        s.rsplit_once(':').ok_or_else(|| invalid(format!("`{s}`: expected HOST:PORT (e.g. 10.0.0.1:5432)")))?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    let port = p.parse::<u16>().map_err(|_| invalid(format!("`{s}`: `{p}` is not a port number")))?;
    if h.is_empty() || h.contains(char::is_whitespace) {
        return Err(invalid(format!("`{s}`: expected HOST:PORT")));
    }
    Ok((h.to_string(), port))
}

/// The spec of the running cluster whose primary is at `primary`, and what
/// the user should know (standbys not found, names made up).
pub async fn gen_spec(r: GenRequest) -> Result<(String, Vec<String>), OpError> {
    if !model::valid_name(&r.name) {
        return Err(invalid(format!("`{}` is not a valid cluster name ([a-z0-9_], 1-63 characters)", r.name)));
    }
    let pw = read_password_file(&r.admin_password_file, "the admin password file")?;
    let d = r.timeout;
    let (ph, pp) = parse_host_port(&r.primary)?;
    let facts_of = |h: String, p: u16| {
        let t = target(&h, p, &r.admin_user, &pw);
        async move {
            let (o, f) = tokio::join!(pg::probe("x", &t, d), pg::server_facts(&t, "", plan::adopt::KEEP_CONFIGURED, d));
            (h, p, o, f)
        }
    };
    let (_, _, po, pf) = facts_of(ph.clone(), pp).await;
    let pf = pf.map_err(|e| failed(format!("read the primary at {}: {e}", r.primary)))?;
    if pf.in_recovery {
        return Err(invalid(format!(
            "{} is a standby (it streams from {}:{}): give the primary's address with --primary",
            r.primary,
            pf.sender_host.clone().unwrap_or_default(),
            pf.sender_port.unwrap_or_default()
        )));
    }
    let mut notes = Vec::new();
    let mut found = vec![Found {
        name: "pg1".into(),
        host: ph.clone(),
        port: pp,
        facts: pf.clone(),
        upstream: None,
        sync_state: String::new(),
        application_name: String::new(),
    }];
    let mut obs = Observed::default();
    obs.nodes.insert("pg1".into(), po);
    // Candidates: the given standbys, and where each WAL sender's client
    // connects from at the primary's port.
    let mut cands: Vec<(String, u16)> = Vec::new();
    for s in &r.standbys {
        cands.push(parse_host_port(s)?);
    }
    let mut i = 0;
    let mut tried: Vec<(String, u16)> = Vec::new();
    while i < found.len() {
        let u = found[i].clone();
        let uo = obs
            .get(&u.name)
            .cloned()
            .unwrap_or_else(|| model::NodeObservation::unanswered(&u.name, model::RunState::Running, ""));
        for ds in &uo.downstreams {
            if let Some(a) = &ds.client_addr {
                let a = a.split('/').next().unwrap_or(a).to_string();
                if !cands.iter().any(|(h, p)| plan::adopt::same_host(h, &a) && *p == pp) {
                    cands.push((a, pp));
                }
            }
        }
        let fresh: Vec<(String, u16)> = cands
            .iter()
            .filter(|(h, p)| !tried.iter().any(|(th, tp)| plan::adopt::same_host(th, h) && tp == p))
            .filter(|(h, p)| !found.iter().any(|f| plan::adopt::same_host(&f.host, h) && f.port == *p))
            .cloned()
            .collect();
        tried.extend(fresh.iter().cloned());
        let results = futures::future::join_all(fresh.into_iter().map(|(h, p)| facts_of(h, p))).await;
        let mut children = Vec::new();
        for (h, p, o, f) in results {
            match f {
                Ok(f) if f.system_identifier != pf.system_identifier => {
                    if r.standbys.iter().any(|s| parse_host_port(s).ok() == Some((h.clone(), p))) {
                        notes.push(format!(
                            "{h}:{p} belongs to another cluster (system identifier {}): left out",
                            f.system_identifier
                        ));
                    }
                }
                Ok(f) if f.in_recovery => children.push((h, p, o, f)),
                Ok(_) => {}
                Err(e) => {
                    if r.standbys.iter().any(|s| parse_host_port(s).ok() == Some((h.clone(), p))) {
                        notes.push(format!("{h}:{p} could not be read: {e}"));
                    }
                }
            }
        }
        // Those not streaming from u stay candidates for other upstreams.
        let mut mine = 0usize;
        for (h, p, o, f) in children {
            let from_u = f.sender_host.as_deref().is_some_and(|sh| plan::adopt::same_host(sh, &u.host))
                && f.sender_port == Some(u.port);
            if !from_u {
                tried.retain(|(th, tp)| !(th == &h && *tp == p));
                continue;
            }
            mine += 1;
            let app = application_name_of(&uo, &f);
            let taken: Vec<String> = found.iter().map(|x| x.name.clone()).collect();
            let name = plan::adopt::name_for(&app.0, &taken, found.len() + 1);
            obs.nodes.insert(name.clone(), o);
            found.push(Found {
                name,
                host: h,
                port: p,
                facts: f,
                upstream: Some(u.name.clone()),
                sync_state: app.1,
                application_name: app.0,
            });
        }
        let senders = uo.downstreams.iter().filter(|d| d.application_name != "pg_basebackup").count();
        if senders > mine {
            let streaming_here = mine;
            let names: Vec<&str> = uo.downstreams.iter().map(|d| d.application_name.as_str()).collect();
            notes.push(format!(
                "{} ({}:{}) has {senders} WAL senders ({}) but {streaming_here} standbys of it were found: name the others with --standby HOST:PORT",
                u.name,
                u.host,
                u.port,
                names.join(", ")
            ));
        }
        i += 1;
    }
    Ok((plan::adopt::gen_spec(&r.name, &r.admin_user, &found, &notes), notes))
}

/// What `u` calls standby `f` and how it counts it: by application_name
/// when the standby's own conninfo names one that `u` lists once; else the
/// only sender of `u`, else unknown (async).
fn application_name_of(uo: &model::NodeObservation, f: &ServerFacts) -> (String, String) {
    let rows: Vec<_> = uo.downstreams.iter().filter(|d| d.application_name != "pg_basebackup").collect();
    let own = f.auto_conf.get("primary_conninfo").and_then(|c| conninfo_field(c, "application_name"));
    if let Some(a) = own {
        if let Some(d) = rows.iter().find(|d| d.application_name == a) {
            return (a, d.sync_state.clone());
        }
    }
    if rows.len() == 1 {
        return (rows[0].application_name.clone(), rows[0].sync_state.clone());
    }
    ("walreceiver".into(), "async".into())
}

/// One keyword's value from a libpq conninfo string (`k=v` or `k='v'`).
fn conninfo_field(c: &str, key: &str) -> Option<String> {
    let mut rest = c.trim();
    while !rest.is_empty() {
        let (k, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('\'') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, ch)) = chars.next() {
                match ch {
                    '\\' => {
                        if let Some((_, c2)) = chars.next() {
                            out.push(c2)
                        }
                    }
                    '\'' => {
                        end = i + 1;
                        break;
                    }
                    _ => out.push(ch),
                }
            }
            (out, &q[end.min(q.len())..])
        } else {
            let e = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..e].to_string(), &after[e..])
        };
        if k.trim() == key {
            return Some(v);
        }
        rest = next.trim_start();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_fields_plain_and_quoted() {
        let c = "user=repl passfile='/a b/p' application_name=pg2 host=10.0.0.1";
        assert_eq!(conninfo_field(c, "application_name").as_deref(), Some("pg2"));
        assert_eq!(conninfo_field(c, "passfile").as_deref(), Some("/a b/p"));
        assert_eq!(conninfo_field("application_name='it\\'s'", "application_name").as_deref(), Some("it's"));
        assert_eq!(conninfo_field(c, "port"), None);
    }

    #[test]
    fn host_port_parsing() {
        assert_eq!(parse_host_port("10.0.0.1:5432").unwrap(), ("10.0.0.1".into(), 5432));
        assert_eq!(parse_host_port("[::1]:5433").unwrap(), ("::1".into(), 5433));
        assert!(parse_host_port("10.0.0.1").is_err());
        assert!(parse_host_port("h:x").is_err());
    }

    #[test]
    fn a_password_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pw");
        std::fs::write(&p, "secret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_password_file(&p, "the admin password file").unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password_file(&p, "x").unwrap(), "secret");
    }
}
