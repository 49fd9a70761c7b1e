//! What the agent sees: its own PostgreSQL (through a fresh connection each
//! tick: a SIGSTOPped postmaster still lets old connections answer) and the
//! agents' keys in etcd, turned into the doctor's [`View`].

use doctor::state::{Leader, Local, Member, PgRun, SyncSet, View};
use model::{Inventory, NodeObservation, ObservedRole, RunState};
use std::collections::BTreeMap;
use std::path::Path;
use store::etcd::Kv;

/// The postmaster's PID from its pid file, if that process lives.
pub fn postmaster(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// A process exists and is not a zombie (a killed postmaster stays a
/// zombie until its parent reaps it: it serves nothing).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

/// Whether a probe error is the deadline passing (a hung server), not a
/// failure the server or the network reported at once.
pub fn timed_out(error: &str) -> bool {
    let e = error.to_lowercase();
    e.contains("deadline") || e.contains("timed out") || e.contains("timeout")
}

/// Whether `host:port` accepts a TCP connection within `deadline` (a
/// refused or unanswered connection: no).
pub async fn reachable(host: &str, port: u16, deadline: std::time::Duration) -> bool {
    matches!(tokio::time::timeout(deadline, tokio::net::TcpStream::connect((host, port))).await, Ok(Ok(_)))
}

/// The local server, from a probe over a fresh connection.
pub fn local(inv: &Inventory, me: &str, o: &NodeObservation) -> Local {
    let n = inv.node(me).expect("the agent's node is in the inventory");
    let alive = postmaster(&n.data_dir).is_some();
    let run = match o.state {
        // Answered (with an error, too: the loop decides nothing then).
        RunState::Running => PgRun::Running,
        // No answer within the deadline, or refused, while a postmaster lives: hung.
        _ if alive => PgRun::Hung,
        _ => PgRun::Stopped,
    };
    let in_recovery = o.role == ObservedRole::Standby;
    let upstream = match (&o.upstream_host, o.upstream_port) {
        (Some(h), Some(p)) => {
            inv.nodes.iter().find(|x| plan::adopt::same_host(&x.host, h) && x.port == p).map(|x| x.name.clone())
        }
        _ => None,
    };
    let was_primary = match run {
        PgRun::Stopped => !n.data_dir.join("standby.signal").exists() && n.data_dir.join("PG_VERSION").exists(),
        _ => o.role == ObservedRole::Primary,
    };
    Local {
        run,
        in_recovery,
        timeline: o.timeline.unwrap_or(0),
        flush_lsn: if in_recovery { o.receive_lsn.or(o.lsn) } else { o.lsn }.map(u64::from).unwrap_or(0),
        receiving: o.upstream_host.is_some() && o.upstream_streaming,
        upstream,
        was_primary,
    }
}

/// The status key: who led, in which term, how far it wrote.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Status {
    pub leader: String,
    pub term: i64,
    pub lsn: u64,
}

/// What an agent publishes under `members/<node>`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Published {
    pub primary: bool,
    pub running: String,
    pub timeline: u32,
    pub flush_lsn: u64,
    pub healthy: bool,
    pub decision: serde_json::Value,
    pub agent_version: String,
    pub at: String,
    /// Where this agent's health checks answer (`host:port`).
    #[serde(default)]
    pub api_url: String,
    /// Bytes behind the last primary position the leader recorded (0 on a
    /// running primary; None: no position recorded yet).
    #[serde(default)]
    pub lag_bytes: Option<u64>,
}

/// How far this node is behind the last primary position the leader
/// recorded (0 on a running primary).
pub fn lag_bytes(v: &View) -> Option<u64> {
    let l = &v.local;
    if l.run == PgRun::Running && !l.in_recovery {
        return Some(0);
    }
    v.last_leader_lsn.map(|p| p.saturating_sub(l.flush_lsn))
}

/// What the agent remembers from earlier ticks (for a tick when etcd does
/// not answer, and to keep the highest term it saw).
#[derive(Default)]
pub struct Memory {
    pub last_term: i64,
    pub last_leader: Option<String>,
    pub last_leader_lsn: Option<u64>,
    /// The mode last read: etcd's silence does not turn automatic failover off.
    pub mode: model::HaMode,
    /// The synchronous sets last read (failsafe needs them while etcd is silent).
    pub sync: SyncSet,
    /// Since when the leader key is seen gone (or its leader lost), for
    /// which term.
    pub race_since: Option<(i64, std::time::Instant)>,
    /// The other leader's member key as last read: its name, the key's
    /// mod revision and since when this agent reads that revision.
    pub leader_member: Option<(String, i64, std::time::Instant)>,
}

#[allow(clippy::too_many_arguments)]
pub fn view(
    me: &str,
    keys: Option<&BTreeMap<String, Kv>>,
    locked_by_other: bool,
    local: Local,
    mem: &mut Memory,
    lease_margin_ms: i64,
    max_lag: u64,
    failsafe: bool,
    inventory_primary: Option<String>,
) -> View {
    let mut v = View {
        me: me.into(),
        inventory_primary,
        local,
        lease_margin_ms,
        max_lag_on_failover: max_lag,
        failsafe,
        store_ok: keys.is_some(),
        ..Default::default()
    };
    let Some(keys) = keys else {
        v.mode = mem.mode;
        v.sync = mem.sync.clone();
        v.last_term = mem.last_term;
        v.last_leader = mem.last_leader.clone();
        return v;
    };
    v.mode = keys
        .get("mode")
        .and_then(|k| serde_json::from_str::<model::HaSetting>(&k.value).ok())
        .map(|s| s.mode)
        .unwrap_or_default();
    mem.mode = v.mode;
    if locked_by_other && v.mode == model::HaMode::Enabled {
        // A pgscale command changes the cluster: agents wait for it.
        v.mode = model::HaMode::Paused;
    }
    if let Some(st) = keys.get("status").and_then(|k| serde_json::from_str::<Status>(&k.value).ok()) {
        if st.term >= mem.last_term {
            mem.last_term = st.term;
            mem.last_leader = Some(st.leader.clone());
            mem.last_leader_lsn = Some(st.lsn);
        }
    }
    if let Some(l) = keys.get("leader") {
        v.leader = Some(Leader { name: l.value.clone(), term: l.create_revision });
        if l.create_revision >= mem.last_term {
            mem.last_term = l.create_revision;
            mem.last_leader = Some(l.value.clone());
        }
    }
    v.last_term = mem.last_term;
    v.last_leader = mem.last_leader.clone();
    v.last_leader_lsn = mem.last_leader_lsn;
    for (k, kv) in keys {
        if let Some(n) = k.strip_prefix("members/") {
            if let Ok(p) = serde_json::from_str::<Published>(&kv.value) {
                v.members.insert(
                    n.to_string(),
                    Member { primary: p.primary, timeline: p.timeline, flush_lsn: p.flush_lsn, healthy: p.healthy },
                );
            }
        }
        if let Some(rest) = k.strip_prefix(&format!("race/{}/", mem.last_term)) {
            if let Ok(l) = kv.value.parse::<u64>() {
                v.races.insert(rest.to_string(), l);
            }
        }
    }
    v.sync = keys.get("sync").and_then(|k| serde_json::from_str::<SyncSet>(&k.value).ok()).unwrap_or_default();
    mem.sync = v.sync.clone();
    v.leader_silent_ms = silence(&v, keys, mem);
    if let Some(old) = &v.last_leader {
        if *old != v.me && v.leader.is_none() {
            v.old_primary_alive = v.members.get(old).map(|m| m.primary && m.healthy);
        }
    }
    v
}

/// How long the other leader's agent has written nothing to etcd: since this
/// agent first read its member key's revision, or since the time its agent
/// stamped on it, whichever is longer.
fn silence(v: &View, keys: &BTreeMap<String, Kv>, mem: &mut Memory) -> u64 {
    let Some(l) = v.leader.as_ref().filter(|l| l.name != v.me) else {
        mem.leader_member = None;
        return 0;
    };
    let entry = keys.get(&format!("members/{}", l.name));
    let rev = entry.map_or(0, |k| k.mod_revision);
    // What the leader's agent stamped on its last write: a write this agent
    // reads late (its own reads were slow) is not taken as fresh. Clock
    // skew between hosts only moves when its server is looked at.
    let stamped = entry
        .and_then(|k| serde_json::from_str::<Published>(&k.value).ok())
        .and_then(|p| humantime::parse_rfc3339(&p.at).ok())
        .and_then(|at| std::time::SystemTime::now().duration_since(at).ok())
        .map_or(0, |d| d.as_millis() as u64);
    match &mem.leader_member {
        Some((name, r, since)) if *name == l.name && *r == rev => (since.elapsed().as_millis() as u64).max(stamped),
        other => {
            if let Some((name, r, since)) = other.as_ref().filter(|o| o.2.elapsed().as_millis() > 600) {
                tracing::info!(
                    "{}'s member key moved from revision {r} to {rev} after {} ms ({name} before)",
                    l.name,
                    since.elapsed().as_millis()
                );
            }
            mem.leader_member = Some((l.name.clone(), rev, std::time::Instant::now()));
            stamped
        }
    }
}

/// Start or read the race's clock: how long the leader key has been gone,
/// or its leader lost ([`View::leader_lost`]), for the last term.
pub fn race_clock(v: &mut View, mem: &mut Memory) {
    if !v.store_ok {
        return;
    }
    if v.leader.is_some() && !v.leader_lost {
        mem.race_since = None;
        return;
    }
    let term = v.last_term;
    let since = match mem.race_since {
        Some((t, at)) if t == term => at,
        _ => mem.race_since.insert((term, std::time::Instant::now())).1,
    };
    v.race_age_ms = since.elapsed().as_millis() as u64;
}

/// The synchronous sets as the leader sees them: `ackers` may acknowledge
/// under the live synchronous_standby_names (its names, and any WAL sender
/// reported sync, potential or quorum); `eligible` acknowledge now (sync_state
/// `sync`) and flushed past the primary's position when they were named
/// (`named_at`: a name the leader added, with that position).
pub fn sync_set(o: &NodeObservation, live: &doctor::sync::Conf, named_at: &BTreeMap<String, u64>) -> SyncSet {
    let mut ackers = live.names.clone();
    for d in &o.downstreams {
        if matches!(d.sync_state.as_str(), "sync" | "potential" | "quorum") && !ackers.contains(&d.application_name) {
            ackers.push(d.application_name.clone());
        }
    }
    let eligible = o
        .downstreams
        .iter()
        .filter(|d| d.sync_state == "sync")
        .filter(|d| {
            let flushed = d.flush_lsn.map(u64::from).unwrap_or(0);
            named_at.get(&d.application_name).is_none_or(|at| flushed >= *at)
        })
        .map(|d| d.application_name.clone())
        .collect();
    SyncSet { k: live.k, ackers, eligible, streaming: streaming(o) }
}

/// What the spec asks of `me`'s direct standbys (for [`doctor::sync::next`]).
pub fn sync_want(inv: &Inventory, me: &str) -> doctor::sync::Want {
    let direct: Vec<_> = inv
        .staying()
        .filter(|n| n.name != me && !n.state.needs_rejoin && inv.upstream_of(&n.name).is_some_and(|u| u.name == me))
        .collect();
    let of = |m: model::SyncMode| direct.iter().filter(move |n| n.sync_mode() == m).map(|n| n.name.clone());
    doctor::sync::Want {
        k: of(model::SyncMode::Sync).count(),
        preferred: of(model::SyncMode::Sync).chain(of(model::SyncMode::Potential)).collect(),
        others: of(model::SyncMode::Async).collect(),
    }
}

/// The names whose WAL sender streams now and whose standby answers.
pub fn streaming(o: &NodeObservation) -> Vec<String> {
    o.downstreams.iter().filter(|d| d.state == "streaming" && !d.silent).map(|d| d.application_name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(value: &str, rev: i64) -> Kv {
        Kv { value: value.into(), create_revision: 7, mod_revision: rev, lease: 1 }
    }

    #[test]
    fn a_leaders_silence_counts_from_its_member_keys_last_change_and_its_race_from_its_loss() {
        let mut mem = Memory::default();
        let mut keys = BTreeMap::new();
        keys.insert("leader".to_string(), kv("pg1", 7));
        keys.insert("members/pg1".to_string(), kv("{}", 10));
        let local = Local { in_recovery: true, ..Default::default() };
        let see = |keys: &BTreeMap<String, Kv>, mem: &mut Memory| {
            view("pg2", Some(keys), false, local.clone(), mem, 0, 0, false, None)
        };
        assert_eq!(see(&keys, &mut mem).leader_silent_ms, 0);
        std::thread::sleep(std::time::Duration::from_millis(30));
        let v = see(&keys, &mut mem);
        assert!(v.leader_silent_ms >= 30, "{}", v.leader_silent_ms);
        // A tick without etcd keeps the clock; a new write restarts it.
        let _ = view("pg2", None, false, local.clone(), &mut mem, 0, 0, false, None);
        assert!(see(&keys, &mut mem).leader_silent_ms >= 30);
        keys.insert("members/pg1".to_string(), kv("{}", 11));
        assert_eq!(see(&keys, &mut mem).leader_silent_ms, 0);
        // The race's clock runs once the leader is lost, not before.
        let mut v = see(&keys, &mut mem);
        race_clock(&mut v, &mut mem);
        assert!(mem.race_since.is_none());
        v.leader_lost = true;
        race_clock(&mut v, &mut mem);
        assert_eq!(mem.race_since.map(|r| r.0), Some(7));
        // A write stamped long ago counts from its stamp, even read late.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(5);
        let p = Published { at: humantime::format_rfc3339_millis(old).to_string(), ..Default::default() };
        keys.insert("members/pg1".to_string(), kv(&serde_json::to_string(&p).unwrap(), 12));
        assert!(see(&keys, &mut mem).leader_silent_ms >= 5000);
        // The leader itself has no silence.
        let me = view("pg1", Some(&keys), false, local.clone(), &mut mem, 0, 0, false, None);
        assert_eq!(me.leader_silent_ms, 0);
    }

    #[test]
    fn only_a_deadline_is_a_hang() {
        assert!(super::timed_out("connect on 127.0.0.1:5432: no answer within 1s (deadline)"));
        assert!(super::timed_out("error connecting to server: timed out"));
        assert!(!super::timed_out("connect on 127.0.0.1:5432: connection refused"));
        assert!(!super::timed_out("db error: FATAL: sorry, too many clients already"));
    }
}
