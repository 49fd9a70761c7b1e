//! The agent beside each PostgreSQL node: every tick it reads the agents'
//! keys in etcd and its own server, asks the doctor what to do
//! ([`doctor::decide`]) and does it. Promotions and rejoins go through the
//! very operations the CLI runs (`ops::ha::failover`, `ops::ha::rejoin`),
//! under the cluster's lock, so agents and commands never interleave. Its
//! lease is renewed by its own task, so a long operation never lets it lapse.

pub mod act;
pub mod guard;
pub mod http;
pub mod observe;

use doctor::fence::Profile;
use ops::error::{invalid, OpError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::etcd::Meeting;

pub struct Config {
    pub name: String,
    pub node: String,
    pub profile: Profile,
    /// Asynchronous mode: the most a standby may lag and still be promoted
    /// (None: the spec's `ha.maximum_lag_on_failover`).
    pub max_lag_on_failover: Option<u64>,
    /// Keep a synchronous primary when etcd is unreachable (also when the
    /// spec's `ha.failsafe` says so).
    pub failsafe: bool,
    /// A former primary that pg_rewind cannot bring back is recloned (its
    /// data directory emptied and copied afresh from the new primary; also
    /// when the spec's `ha.auto_reclone` says so).
    pub auto_reclone: bool,
    /// Stop after this long (None: until killed).
    pub run_for: Option<Duration>,
    /// Where the health checks and /metrics listen (default: the node's
    /// address, port 8008 as Patroni's).
    pub http: Option<std::net::SocketAddr>,
}

/// The lease the agent's keys live on, renewed by its own task.
struct Lease {
    id: i64,
    /// When the last answered keep-alive was sent.
    last_ok_send: Instant,
    lost: bool,
}

pub async fn run(stores: &store::Stores, cfg: Config) -> Result<(), OpError> {
    if let Some(p) = cfg.profile.problem() {
        return Err(invalid(p));
    }
    let store = stores.for_cluster(&cfg.name).await?;
    let Some(spec) = store.dcs().and_then(|d| d.etcd) else {
        return Err(invalid(format!(
            "cluster {n} is kept in {}: the agents meet in etcd; move it there first with `pgscale store migrate -n {n} --to etcd --etcd URL,...`",
            store.describe(),
            n = cfg.name
        )));
    };
    let mut inv = store.load(&cfg.name).await?;
    if inv.node(&cfg.node).is_none() {
        return Err(invalid(format!("`{}` is not a node of cluster {}", cfg.node, cfg.name)));
    }
    let me_host = inv.node(&cfg.node).map(|n| n.host.clone()).unwrap_or_default();
    let addr = match cfg.http {
        Some(a) => a.to_string(),
        None => format!("{me_host}:8008"),
    };
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| invalid(format!("the agent's HTTP address {addr}: {e} (choose another with --http ADDR:PORT)")))?;
    let shared = http::Shared {
        seen: Arc::new(Mutex::new(http::Seen::default())),
        metrics: Arc::new(http::Metrics::new(&cfg.name, &cfg.node)),
    };
    let server = http::serve(listener, shared.clone());
    let attempt = Duration::from_millis(cfg.profile.attempt_ms);
    let meet = Arc::new(Meeting::connect(&spec, &cfg.name, attempt).await?);
    let ttl_s = (cfg.profile.ttl_ms / 1000) as i64;
    let t0 = Instant::now();
    // A restarted agent keeps its lease (and with it the leader key) when
    // the lease still lives: a quick restart changes nothing for PostgreSQL.
    let dir = stores.local_home().cluster_dir(&cfg.name);
    let state = dir.join(format!("agent-{}.json", cfg.node));
    let kept = std::fs::read_to_string(&state)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["lease"].as_i64());
    let id = match kept {
        Some(id) if meet.keep_alive(id).await.is_ok_and(|ttl| ttl > 0) => {
            tracing::info!(lease = id, "kept the lease of the previous run");
            id
        }
        _ => meet.grant(ttl_s).await?,
    };
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(&state, serde_json::json!({ "lease": id }).to_string());
    let lease = Arc::new(Mutex::new(Lease { id, last_ok_send: t0, lost: false }));
    let data_dir = inv.node(&cfg.node).map(|n| n.data_dir.clone()).unwrap_or_default();
    let mut guard =
        guard::ensure(&dir, &cfg.node, &data_dir).map_err(|e| ops::error::failed(format!("the fence guard: {e}")))?;
    let keeper = tokio::spawn(keep_alive(meet.clone(), lease.clone(), cfg.profile));
    let cl = ops::Cluster::open(store.clone(), inv.clone(), Duration::from_secs(5), false).await?;
    let mut act = act::Actor::new(stores, &cfg, meet.clone(), cl);
    act.api_url = addr.clone();
    let mut mem = observe::Memory::default();
    let tick = Duration::from_millis(cfg.profile.period_ms);
    tracing::info!(cluster = %cfg.name, node = %cfg.node, ttl_s, http = %addr, "agent started");
    let mut ready = false;
    let mut again = false;
    // When the leader key last changed (gone, or taken by another node).
    let mut leader_seen: (Option<(String, i64)>, Instant) = (None, Instant::now());
    // The other leader found lost (unreachable), at its member key's revision.
    let mut lost_at: Option<(String, i64)> = None;
    let mut said_reachable: Option<(String, i64)> = None;
    loop {
        let started = Instant::now();
        if cfg.run_for.is_some_and(|d| t0.elapsed() >= d) {
            break;
        }
        let (lost, current) = {
            let mut l = lease.lock().unwrap_or_else(|e| e.into_inner());
            (std::mem::take(&mut l.lost) || meet.take_lease_gone(), l.id)
        };
        let lease_id = if lost {
            // The lease expired (etcd unreachable too long): its keys are
            // gone, the leader key with them. A new lease, no term.
            act.term = None;
            match meet.grant(ttl_s).await {
                Ok(id) => {
                    let mut l = lease.lock().unwrap_or_else(|e| e.into_inner());
                    l.id = id;
                    l.last_ok_send = Instant::now();
                    let _ = std::fs::write(&state, serde_json::json!({ "lease": id }).to_string());
                    id
                }
                Err(e) => {
                    tracing::warn!("etcd: a new lease: {e}");
                    lease.lock().unwrap_or_else(|e| e.into_inner()).lost = true;
                    tokio::time::sleep(tick).await;
                    continue;
                }
            }
        } else {
            current
        };
        // The inventory and the meeting's keys at once: an unreachable etcd
        // costs one attempt per tick.
        // The inventory changes seldom and the last one read is kept: its
        // read gets a fraction of the attempt, so a call stuck on a dead
        // member does not hold up the tick's view.
        let (loaded, snap) = tokio::join!(tokio::time::timeout(attempt / 2, store.load(&cfg.name)), meet.snapshot());
        act.inv_fresh = matches!(loaded, Ok(Ok(_)));
        if let Ok(Ok(i)) = loaded {
            inv = i;
        }
        let (keys, holder) = match snap {
            Ok(s) => (Some(s.keys), s.lock_holder),
            Err(_) => (None, None),
        };
        let margin = {
            let l = lease.lock().unwrap_or_else(|e| e.into_inner());
            let sent = l.last_ok_send.saturating_duration_since(t0).as_millis() as u64;
            doctor::fence::margin_ms(t0.elapsed().as_millis() as u64, sent, &cfg.profile)
        };
        // The spec's `ha:` section, read every tick (`apply-config` changes it).
        act.auto_reclone = cfg.auto_reclone || inv.ha.auto_reclone;
        let read_ms = started.elapsed().as_millis();
        let o = act.probe_local(&inv).await;
        let probe_ms = started.elapsed().as_millis() - read_ms;
        let local = observe::local(&inv, &cfg.node, &o);
        let mut v = observe::view(
            &cfg.node,
            keys.as_ref(),
            holder.as_deref().is_some_and(pauses),
            local,
            &mut mem,
            margin,
            cfg.max_lag_on_failover.unwrap_or(inv.ha.maximum_lag_on_failover),
            cfg.failsafe || inv.ha.failsafe,
            inv.primary().map(|p| p.name.clone()),
        );
        match &v.leader {
            Some(l) if l.name == cfg.node => act.term = Some(l.term),
            // Read from etcd: the key is not this node's (taken over, or
            // gone), whatever term it held before.
            _ if v.store_ok => act.term = None,
            _ => {}
        }
        // The leader's agent silent longer than a slow tick: can this node
        // reach its PostgreSQL? (Synchronous mode: a lost leader is taken
        // over with Fence B's proof, without waiting for its lease.)
        if let Some(l) = v.leader.clone().filter(|l| l.name != cfg.node) {
            let rev = |k: &str| keys.as_ref().and_then(|m| m.get(k)).map_or(0, |x| x.mod_revision);
            act.seen_revs = (rev(&format!("members/{}", l.name)), rev("sync"));
            if v.mode == model::HaMode::Enabled
                && v.is_sync()
                && v.local.in_recovery
                && v.leader_silent_ms >= doctor::state::silence_ms(&cfg.profile)
            {
                // Looked at once per silent revision: the race's steps then
                // do not each wait out a connection that is never answered.
                let silent = (l.name.clone(), act.seen_revs.0);
                if lost_at.as_ref() == Some(&silent) {
                    v.leader_lost = true;
                } else if let Some(n) = inv.node(&l.name) {
                    let within = Duration::from_millis(cfg.profile.attempt_ms / 2);
                    v.leader_lost = !observe::reachable(&n.host, n.port, within).await;
                    if v.leader_lost {
                        tracing::warn!(
                            leader = %l.name,
                            silent_ms = v.leader_silent_ms,
                            "the leader's agent is silent and its PostgreSQL unreachable from here: the leader is lost"
                        );
                        lost_at = Some(silent);
                    } else if said_reachable.as_ref() != Some(&silent) {
                        tracing::info!(
                            leader = %l.name,
                            silent_ms = v.leader_silent_ms,
                            "the leader's agent is silent but its PostgreSQL answers here: its lease decides"
                        );
                        said_reachable = Some(silent);
                    }
                }
            }
        }
        observe::race_clock(&mut v, &mut mem);
        // A server that answered with an error (starting up, refusing our
        // login) is neither hung nor known: nothing is decided on it.
        let d = match (&o.state, &o.error) {
            (model::RunState::Running, Some(e)) => {
                doctor::Decision::Idle { why: format!("PostgreSQL answered with an error: {e}") }
            }
            // Hung means no answer within the deadline. A fresh connection
            // that failed at once while the postmaster lives is not a hang:
            // a single such failure once fenced a primary just promoted.
            (_, Some(e)) if v.local.run == doctor::PgRun::Hung && !observe::timed_out(e) => doctor::Decision::Idle {
                why: format!("a fresh connection failed at once (not hung; looked at again next tick): {e}"),
            },
            _ => doctor::decide(&v),
        };
        report(&shared, &v, &d, &o, keys.is_some(), margin);
        // The guard fences at the same deadline if this loop stops running.
        let acking = v.mode == model::HaMode::Enabled
            && v.local.run != doctor::PgRun::Stopped
            && !v.local.in_recovery
            && v.leader.as_ref().is_some_and(|l| l.name == cfg.node);
        // Failsafe keeps a primary past its lease (etcd silent, or back
        // but the lease not yet renewed): the guard waits a lease more.
        let failsafe_keep = v.mode == model::HaMode::Enabled
            && !v.local.in_recovery
            && v.failsafe
            && v.is_sync()
            && v.local.run == doctor::PgRun::Running
            && v.lease_margin_ms <= 0
            && matches!(d, doctor::Decision::Renew | doctor::Decision::Idle { .. });
        if failsafe_keep {
            guard.arm(guard::now_ms() + cfg.profile.ttl_ms);
        } else if acking && matches!(d, doctor::Decision::Renew | doctor::Decision::Idle { .. }) {
            guard.arm((guard::now_ms() as i64 + margin).max(0) as u64);
        } else if !matches!(d, doctor::Decision::Fence { .. } | doctor::Decision::Demote { .. }) {
            guard.disarm();
        }
        // Both writes at once: with etcd silent they cost one attempt, not two.
        act.publish_and_lead(&v, &d, lease_id, &inv, &o).await;
        act.carry_out(&inv, &v, &d, lease_id).await;
        let spent = started.elapsed();
        if spent > tick * 4 && !d.acts() {
            // A tick that does nothing should take a few milliseconds: say
            // where the time went (etcd, the local probe, the writes).
            tracing::warn!(read_ms, probe_ms, total_ms = spent.as_millis() as u64, "slow tick");
        }
        // systemd (Type=notify): ready after the first full tick; the
        // watchdog is fed by every tick, so a frozen loop gets restarted.
        if !ready {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            ready = true;
        }
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        // After a step of a race (withdrawn, key taken or given up) look
        // again at once: the next step need not wait for the tick.
        // Once in a row at most: a step that keeps failing waits for the tick.
        let step = matches!(
            d,
            doctor::Decision::Withdraw { .. }
                | doctor::Decision::Release { .. }
                | doctor::Decision::Fence { release: true, .. }
        );
        if step && !again {
            again = true;
            continue;
        }
        again = false;
        let now_leader = v.leader.as_ref().map(|l| (l.name.clone(), l.term));
        if v.store_ok && now_leader != leader_seen.0 {
            leader_seen = (now_leader, Instant::now());
        }
        // In the first seconds after the leader key changed (a race, or a
        // new leader to follow) waiting on the others' next step costs a
        // short tick, not a full one.
        let pause = if hurry(&v, &d, leader_seen.1.elapsed()) { tick.min(HURRY) } else { tick };
        if spent < pause {
            tokio::time::sleep(pause - spent).await;
        }
    }
    keeper.abort();
    server.abort();
    let id = lease.lock().unwrap_or_else(|e| e.into_inner()).id;
    meet.revoke(id).await;
    Ok(())
}

/// The tick while a failover is in flight ([`hurry`]).
const HURRY: Duration = Duration::from_millis(50);

/// Whether this agent waits on another agent's next step of a failover
/// that began less than 3 s ago (or races for a lost leader): a report, a candidate's promotion, a new
/// leader that is not a primary yet. Then it looks again after [`HURRY`].
fn hurry(v: &doctor::View, d: &doctor::Decision, since_leader_change: Duration) -> bool {
    use doctor::Decision as D;
    v.mode == model::HaMode::Enabled
        && v.store_ok
        && v.local.in_recovery
        && (since_leader_change < Duration::from_secs(3) || v.leader_lost)
        && matches!(d, D::Idle { .. } | D::Defer { .. } | D::Blocked(_) | D::Follow { .. })
}

/// Whether the cluster lock's holder (its JSON record) pauses the agents: a
/// command does; an agent recording the promotion it did does not (the
/// others re-point their standbys meanwhile).
fn pauses(holder: &str) -> bool {
    let command = serde_json::from_str::<serde_json::Value>(holder)
        .ok()
        .and_then(|h| h.get("command").and_then(|c| c.as_str()).map(String::from));
    command.as_deref() != Some(ops::ha::AGENT_RECORDS_FAILOVER)
}

/// Renew the lease every period; remember when the last answered renewal
/// was sent (Fence A's clock).
async fn keep_alive(meet: Arc<Meeting>, lease: Arc<Mutex<Lease>>, p: Profile) {
    loop {
        let id = lease.lock().unwrap_or_else(|e| e.into_inner()).id;
        let sent = Instant::now();
        match meet.keep_alive(id).await {
            Ok(ttl) if ttl > 0 => {
                let mut l = lease.lock().unwrap_or_else(|e| e.into_inner());
                if l.id == id && sent > l.last_ok_send {
                    l.last_ok_send = sent;
                }
            }
            Ok(_) => {
                let mut l = lease.lock().unwrap_or_else(|e| e.into_inner());
                if l.id == id {
                    l.lost = true;
                }
            }
            Err(e) => tracing::debug!("keep-alive: {e}"),
        }
        let spent = sent.elapsed();
        let period = Duration::from_millis(p.period_ms);
        if spent < period {
            tokio::time::sleep(period - spent).await;
        }
    }
}

/// What the health paths and /metrics show after this tick.
fn report(
    s: &http::Shared,
    v: &doctor::View,
    d: &doctor::Decision,
    o: &model::NodeObservation,
    store_ok: bool,
    margin_ms: i64,
) {
    use doctor::PgRun;
    let l = &v.local;
    let running = l.run == PgRun::Running;
    let primary = running && !l.in_recovery;
    let leader = v.leader.as_ref().is_some_and(|x| x.name == v.me) && !matches!(d, doctor::Decision::Fence { .. });
    let health = doctor::health::NodeHealth {
        running,
        primary,
        leader,
        streaming: l.receiving,
        lag_bytes: observe::lag_bytes(v),
        sync: v.sync.eligible.contains(&v.me),
        loop_alive: true,
    };
    {
        let mut seen = s.seen.lock().unwrap_or_else(|e| e.into_inner());
        *seen = http::Seen {
            health,
            role: if !running && l.run == PgRun::Stopped {
                "stopped".into()
            } else if primary {
                "primary".into()
            } else {
                "replica".into()
            },
            timeline: l.timeline,
            lsn: l.flush_lsn,
            decision: serde_json::to_value(d).unwrap_or_default(),
            mode: v.mode.as_str().into(),
            last_tick: Instant::now(),
        };
    }
    let m = &s.metrics;
    m.postgres_running.set(running as i64);
    m.primary.set((primary && leader) as i64);
    m.replica.set((running && l.in_recovery) as i64);
    m.sync_standby.set(v.sync.eligible.contains(&v.me) as i64);
    m.xlog_location.set(if primary { o.lsn.map(u64::from).unwrap_or(0) as i64 } else { 0 });
    m.xlog_received_location.set(if primary { 0 } else { l.flush_lsn as i64 });
    m.timeline.set(l.timeline as i64);
    m.cluster_unlocked.set(v.leader.is_none() as i64);
    m.is_paused.set((v.mode != model::HaMode::Enabled) as i64);
    if store_ok {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        m.dcs_last_seen.set(now as i64);
    }
    m.lease_margin.set(if leader { margin_ms as f64 / 1000.0 } else { 0.0 });
    m.sync_ackers.set(v.sync.ackers.len() as i64);
    m.blocked.clear();
    if let doctor::Decision::Blocked(b) = d {
        m.blocked.get_or_create(&vec![("reason".to_string(), b.label().to_string())]).set(1);
    }
    if matches!(d, doctor::Decision::Fence { .. } | doctor::Decision::Demote { .. }) {
        m.fences.inc();
    }
}

/// A systemd unit running the agent of `node` as the cluster's OS user.
/// `KillMode=process`: stopping or restarting the agent never touches the
/// PostgreSQL it started (the server's processes share its cgroup).
pub fn unit(cluster: &str, node: &str, exe: &str, os_user: &str, env: &[(String, String)], extra: &[String]) -> String {
    let mut args = vec![exe.to_string(), "agent".into(), "-n".into(), cluster.into(), "--node".into(), node.into()];
    args.extend(extra.iter().cloned());
    let mut s = format!(
        "# The pgscale agent of {node} (cluster {cluster}). Install:\n\
         #   pgscale agent unit -n {cluster} --node {node} > /etc/systemd/system/pgscale-agent-{cluster}-{node}.service\n\
         #   systemctl daemon-reload && systemctl enable --now pgscale-agent-{cluster}-{node}\n\
         [Unit]\nDescription=pgscale agent for {node} of cluster {cluster}\n\
         After=network-online.target\nWants=network-online.target\n\n\
         [Service]\nType=notify\nNotifyAccess=main\nUser={os_user}\n"
    );
    for (k, v) in env {
        s += &format!("Environment={k}={v}\n");
    }
    s += &format!(
        "ExecStart={}\nRestart=always\nRestartSec=1\nWatchdogSec=5\nKillMode=process\nTimeoutStopSec=10\n\n[Install]\nWantedBy=multi-user.target\n",
        args.join(" ")
    );
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn commands_pause_the_agents_an_agents_record_does_not() {
        let holder = |c: &str| serde_json::json!({"host": "h", "command": c, "pid": 1, "started": "t"}).to_string();
        assert!(super::pauses(&holder("pgscale switchover")));
        assert!(super::pauses(&holder("pgscale failover")));
        assert!(super::pauses(&holder("pgscale rejoin")));
        assert!(super::pauses("not json: whoever holds it"));
        assert!(!super::pauses(&holder(ops::ha::AGENT_RECORDS_FAILOVER)));
    }

    #[test]
    fn only_a_standby_in_a_young_failover_hurries() {
        use std::time::Duration;
        let mut v = doctor::View { mode: model::HaMode::Enabled, store_ok: true, ..Default::default() };
        v.local.in_recovery = true;
        let wait = doctor::Decision::Idle { why: "waiting for pg3 to report".into() };
        assert!(super::hurry(&v, &wait, Duration::from_millis(200)));
        assert!(super::hurry(&v, &doctor::Decision::Follow { upstream: "pg2".into() }, Duration::ZERO));
        assert!(!super::hurry(&v, &wait, Duration::from_secs(4)), "an old change: the normal tick");
        v.store_ok = false;
        assert!(!super::hurry(&v, &wait, Duration::ZERO), "etcd silent: one attempt per tick");
        v.store_ok = true;
        v.mode = model::HaMode::Paused;
        assert!(!super::hurry(&v, &wait, Duration::ZERO));
        v.mode = model::HaMode::Enabled;
        v.local.in_recovery = false;
        assert!(!super::hurry(&v, &doctor::Decision::Renew, Duration::ZERO), "a primary keeps its tick");
    }

    #[test]
    fn the_unit_restarts_always_notifies_and_leaves_postgres_alone() {
        let u = super::unit(
            "sales",
            "pg2",
            "/usr/local/bin/pgscale",
            "postgres",
            &[("PGSCALE_ETCD".into(), "10.0.0.1:2379".into())],
            &["--profile".into(), "fast".into()],
        );
        for want in [
            "Type=notify",
            "Restart=always",
            "WatchdogSec=5",
            "KillMode=process",
            "User=postgres",
            "Environment=PGSCALE_ETCD=10.0.0.1:2379",
            "ExecStart=/usr/local/bin/pgscale agent -n sales --node pg2 --profile fast",
        ] {
            assert!(u.contains(want), "{want} in\n{u}");
        }
    }
}
