//! Carrying out the doctor's decisions.

use crate::observe::{Published, Status};
use crate::Config;
use doctor::{Decision, View};
use model::{Inventory, NodeObservation};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::etcd::Meeting;

pub struct Actor<'a> {
    stores: &'a store::Stores,
    name: String,
    me: String,
    meet: Arc<Meeting>,
    cl: ops::Cluster,
    /// The leader key's term while this agent holds it.
    pub term: Option<i64>,
    /// Each decision logged once, when it changes.
    last: std::sync::Mutex<String>,
    /// The command line recorded in the operation log of the operations it runs.
    argv: Vec<String>,
    /// The HTTP address this agent listens on.
    pub api_url: String,
    /// Standbys this leader named in synchronous_standby_names, with its
    /// WAL position then: eligible once they flushed past it.
    named_at: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// The inventory was read from etcd this tick (not kept from an earlier one).
    pub inv_fresh: bool,
    /// `--auto-reclone` or the spec's `ha.auto_reclone`: a fresh copy when
    /// pg_rewind fails.
    pub auto_reclone: bool,
    /// A failed pg_rewind was recorded in `history` (once until a rejoin works).
    said_rewind: std::sync::Mutex<bool>,
    /// This tick's read of the other leader's member key and of `sync`
    /// (mod revisions, 0: absent): a takeover happens only if neither
    /// changed since.
    pub seen_revs: (i64, i64),
}

const PROBE: Duration = Duration::from_secs(1);
/// How long the local pg_promote may take before the failover operation
/// takes over (the end of recovery: a checkpoint-free promotion is fast).
const PROMOTE_SECS: u64 = 10;

impl<'a> Actor<'a> {
    pub fn new(stores: &'a store::Stores, cfg: &Config, meet: Arc<Meeting>, cl: ops::Cluster) -> Actor<'a> {
        Actor {
            stores,
            name: cfg.name.clone(),
            me: cfg.node.clone(),
            meet,
            cl,
            term: None,
            last: std::sync::Mutex::new(String::new()),
            argv: vec![
                "pgscale".into(),
                "agent".into(),
                "-n".into(),
                cfg.name.clone(),
                "--node".into(),
                cfg.node.clone(),
            ],
            api_url: String::new(),
            named_at: Default::default(),
            inv_fresh: false,
            auto_reclone: cfg.auto_reclone,
            said_rewind: Default::default(),
            seen_revs: (0, 0),
        }
    }

    fn target(&self, inv: &Inventory, node: &str) -> Option<pg::Target> {
        ops::resolve::targets(inv, &self.cl.secrets).into_iter().find(|(n, _)| n == node).map(|(_, t)| t)
    }

    /// The local server through a fresh connection.
    pub async fn probe_local(&self, inv: &Inventory) -> NodeObservation {
        match self.target(inv, &self.me) {
            Some(t) => pg::probe(&self.me, &t, PROBE).await,
            None => NodeObservation::unanswered(&self.me, model::RunState::Unreachable, "not in the inventory"),
        }
    }

    /// Publish this node's state and, on the leader (`Renew`), the
    /// leader's keys, concurrently.
    pub async fn publish_and_lead(&mut self, v: &View, d: &Decision, lease: i64, inv: &Inventory, o: &NodeObservation) {
        let lead = matches!(d, Decision::Renew);
        let term = self.term;
        let (_, kept) = tokio::join!(self.publish(v, d, lease), async {
            match (lead, term) {
                (true, Some(t)) => self.leader_duties(inv, o, t, v.mode == model::HaMode::Enabled).await,
                _ => true,
            }
        });
        if !kept {
            self.term = None;
        }
    }

    async fn publish(&self, v: &View, d: &Decision, lease: i64) {
        let p = Published {
            primary: v.local.run != doctor::PgRun::Stopped && !v.local.in_recovery,
            running: format!("{:?}", v.local.run).to_lowercase(),
            timeline: v.local.timeline,
            flush_lsn: v.local.flush_lsn,
            healthy: v.local.run == doctor::PgRun::Running,
            decision: serde_json::to_value(d).unwrap_or_default(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            lag_bytes: crate::observe::lag_bytes(v),
            api_url: self.api_url.clone(),
            at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        };
        let text = serde_json::to_string(&p).unwrap_or_default();
        if let Err(e) = self.meet.put(&format!("members/{}", self.me), &text, lease).await {
            tracing::debug!("publish: {e}");
        }
        let what = serde_json::to_string(d).unwrap_or_default();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if what != *last {
            tracing::info!(decision = %what, mode = ?v.mode, leader = ?v.leader, "decision");
            *last = what;
        }
    }

    /// The leader's keys: how far it wrote, which standbys may acknowledge;
    /// with `manage` (automatic failover enabled, no command running), the
    /// synchronous count kept: a stand-in is published in `ackers` first,
    /// then named in synchronous_standby_names. False when the key is no
    /// longer this node's under `term`.
    async fn leader_duties(&self, inv: &Inventory, o: &NodeObservation, term: i64, manage: bool) -> bool {
        let lsn = o.lsn.map(u64::from).unwrap_or(0);
        let status = Status { leader: self.me.clone(), term, lsn };
        let named_at = self.named_at.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let live = doctor::sync::parse(o.synchronous_standby_names.as_deref().unwrap_or(""));
        let mut sync = crate::observe::sync_set(o, &live, &named_at);
        let change = if manage {
            doctor::sync::next(&crate::observe::sync_want(inv, &self.me), &live, &crate::observe::streaming(o))
        } else {
            None
        };
        if let Some(c) = &change {
            for a in &c.ackers {
                if !sync.ackers.contains(a) {
                    sync.ackers.push(a.clone());
                }
            }
        }
        let puts = [
            ("status", serde_json::to_string(&status).unwrap_or_default()),
            ("sync", serde_json::to_string(&sync).unwrap_or_default()),
        ];
        match self.meet.put_as_leader(&self.me, term, &puts).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                // Not published: the setting does not change either.
                tracing::debug!("leader keys: {e}");
                return true;
            }
        }
        let Some(c) = change else { return true };
        let Some(t) = self.target(inv, &self.me) else { return true };
        let conf = plan::sync::render(c.to.k, &c.to.names);
        for sql in [plan::sql::alter_system_set("synchronous_standby_names", &conf), "SELECT pg_reload_conf()".into()] {
            if let Err(e) = pg::execute(&t, &sql, PROBE).await {
                tracing::warn!("synchronous_standby_names: {e}");
                return true;
            }
        }
        {
            let mut at = self.named_at.lock().unwrap_or_else(|e| e.into_inner());
            for n in c.to.names.iter().filter(|n| !live.names.contains(n)) {
                at.insert(n.clone(), lsn);
            }
        }
        self.history("set the synchronous standbys", &format!("{conf} ({})", c.why)).await;
        self.republish_sync(&t, term, &c.to).await;
        true
    }

    /// Once a fresh session shows the new setting (the postmaster reloaded
    /// it, so no WAL sender starts under the old names any more), publish
    /// the sync set it implies at once rather than next tick: a narrowed
    /// set (a name dropped) must not keep a node that can no longer
    /// acknowledge among the ackers, or a leader dying before its next tick
    /// leaves a quorum proof that waits for that node's report. WAL
    /// senders still under the old names report their old sync state, so
    /// they stay among the ackers until they reload.
    async fn republish_sync(&self, t: &pg::Target, term: i64, to: &doctor::sync::Conf) {
        for _ in 0..10 {
            let o = pg::probe(&self.me, t, PROBE).await;
            let live = doctor::sync::parse(o.synchronous_standby_names.as_deref().unwrap_or(""));
            if live == *to {
                let named_at = self.named_at.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let sync = crate::observe::sync_set(&o, &live, &named_at);
                let puts = [("sync", serde_json::to_string(&sync).unwrap_or_default())];
                if let Err(e) = self.meet.put_as_leader(&self.me, term, &puts).await {
                    tracing::debug!("sync set: {e}");
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn history(&self, what: &str, why: &str) {
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let v = serde_json::json!({ "at": now, "node": self.me, "did": what, "why": why }).to_string();
        if let Err(e) = self.meet.put(&format!("history/{now}-{}", self.me), &v, 0).await {
            tracing::warn!("history: {e}");
        }
        tracing::warn!(did = what, why, "acted");
    }

    fn env(&self) -> ops::Env<'_> {
        ops::Env { stores: self.stores, ui: &ops::Quiet, argv: &self.argv }
    }

    /// Take the free leader key (if not held yet) and promote: the quorum
    /// proof is had.
    async fn promote(&mut self, inv: &Inventory, v: &View, reported_max: u64, lease: i64) {
        let me = self.me.clone();
        // The key as read this tick must be this node's, of the term it
        // remembers: a term kept from an earlier leadership (its key
        // taken over while its lease lived on) is no key.
        let held = v.leader.as_ref().is_some_and(|l| l.name == me && Some(l.term) == self.term);
        if !held {
            self.term = None;
            match self.meet.take_leader(&me, lease).await {
                Ok(Some(t)) => self.term = Some(t),
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("take the leader key: {e}");
                    return;
                }
            }
        }
        // The quorum proof is had and the key is ours: promote the
        // local server at once (first commit sooner), then record it
        // and re-point the others through the failover operation.
        let t0 = Instant::now();
        if let Err(e) = self.name_before_promotion(inv, v, reported_max).await {
            // Not promoted without it: retried next tick.
            tracing::warn!("name the synchronous standbys before promotion: {e}");
            return;
        }
        let promoted = match self.target(inv, &me) {
            Some(t) => match pg::promote(&t, PROMOTE_SECS, PROBE).await {
                Ok(still_in_recovery) => !still_in_recovery,
                Err(e) => {
                    tracing::warn!("promote locally: {e}");
                    false
                }
            },
            None => false,
        };
        let why = format!(
            "at or past every reported position ({reported_max}); {}",
            if promoted {
                format!("pg_promote took {:.2}s", t0.elapsed().as_secs_f64())
            } else {
                "the failover operation promotes".to_string()
            }
        );
        self.history(if promoted { "promoted" } else { "promoting" }, &why).await;
        self.record_failover(v, promoted).await;
    }

    pub async fn carry_out(&mut self, inv: &Inventory, v: &View, d: &Decision, lease: i64) {
        let me = self.me.clone();
        let node = inv.node(&me).expect("in the inventory").clone();
        match d {
            Decision::Renew
                if v.mode == model::HaMode::Enabled
                    && self.inv_fresh
                    && inv.primary().is_some_and(|p| p.name != me) =>
            {
                // Leader and primary, but the inventory read this tick names
                // another node and no command holds the lock (the mode would
                // be paused): a promotion whose record failed. Record it now.
                // (Not on an inventory kept from an earlier tick: a long
                // tick here delays Fence A's guard being fed.)
                self.record_failover(v, true).await;
            }
            Decision::Idle { .. } | Decision::Renew | Decision::Blocked(_) | Decision::Defer { .. } => {}
            Decision::TakeLeader => match self.meet.take_leader(&me, lease).await {
                Ok(Some(t)) => {
                    self.term = Some(t);
                    self.history("took the leader key", &format!("term {t}")).await;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("take the leader key: {e}"),
            },
            Decision::Fence { why, release } => {
                let killed = fence(&node.data_dir);
                self.history("fenced", &format!("{why}; {killed}")).await;
                if *release {
                    if let Some(t) = self.term.take() {
                        match self.meet.release_leader(&me, t).await {
                            Ok(_) => self.history("released the leader key", why).await,
                            Err(e) => tracing::warn!("release the leader key: {e}"),
                        }
                    }
                }
            }
            Decision::Release { why } => {
                if let Some(t) = self.term.take() {
                    match self.meet.release_leader(&me, t).await {
                        Ok(_) => self.history("released the leader key", why).await,
                        Err(e) => tracing::warn!("release the leader key: {e}"),
                    }
                } else if let Some(l) = &v.leader {
                    let _ = self.meet.release_leader(&me, l.term).await;
                }
            }
            Decision::Demote { leader } => {
                let killed = fence(&node.data_dir);
                self.history("demoted", &format!("{leader} holds the leader key; {killed}")).await;
            }
            Decision::Withdraw { term } => match self.withdraw(inv).await {
                Ok(lsn) => {
                    let k = format!("race/{term}/{me}");
                    match self.meet.put(&k, &lsn.to_string(), lease).await {
                        Ok(()) => self.history("withdrew", &format!("stopped receiving; flushed up to {lsn}")).await,
                        Err(e) => tracing::warn!("report {k}: {e}"),
                    }
                }
                Err(e) => tracing::warn!("withdraw: {e}"),
            },
            Decision::TakeOver { from, term, reported_max } => {
                let (member_rev, sync_rev) = self.seen_revs;
                match self.meet.take_over(from, *term, member_rev, sync_rev).await {
                    Ok(true) => {
                        let why = format!(
                            "its agent silent {:.1}s and its PostgreSQL unreachable from here; the proof is had (term {term})",
                            v.leader_silent_ms as f64 / 1000.0
                        );
                        self.history(&format!("took the leader key over from {from}"), &why).await;
                    }
                    Ok(false) => {
                        tracing::info!("{from}'s key, its member entry or the sync set changed since the proof was read: no takeover");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("take the leader key over from {from}: {e}");
                        return;
                    }
                }
                self.promote(inv, v, *reported_max, lease).await;
            }
            Decision::Promote { term: _, reported_max } => self.promote(inv, v, *reported_max, lease).await,
            Decision::Follow { upstream } => match self.follow(inv, v, upstream).await {
                Ok(Followed::Repointed) => self.history("re-pointed", &format!("streams from {upstream}")).await,
                Ok(Followed::Waiting) => {}
                Ok(Followed::Diverged(why)) => {
                    // It cannot stream from the new primary: rewind it.
                    self.history("diverged", &why).await;
                    self.rejoin(Some(upstream)).await;
                }
                Err(e) => tracing::warn!("follow {upstream}: {e}"),
            },
            Decision::StartStandby { leader, rejoin } => {
                if *rejoin {
                    self.rejoin(leader.as_deref()).await;
                } else {
                    let argv = plan::argv::pg_ctl_start(&self.cl.bin_dir, &node.data_dir, &node.socket_dir(), 60);
                    match self.cl.host(&me) {
                        Ok(h) => match h.run(&host::Run::new(&argv, Duration::from_secs(65))).await {
                            Ok(o) if o.ok() => self.history("started", "as a standby").await,
                            Ok(o) if leader.is_some() => {
                                // A standby that does not start (its WAL went
                                // past the new timeline's fork: "requested
                                // timeline does not contain minimum recovery
                                // point") is rewound from the leader.
                                self.history("could not start", o.stderr.trim()).await;
                                self.rejoin(leader.as_deref()).await;
                            }
                            Ok(o) => tracing::warn!("start: {}", o.stderr.trim()),
                            Err(e) => tracing::warn!("start: {e}"),
                        },
                        Err(e) => tracing::warn!("start: {e}"),
                    }
                }
            }
        }
    }

    /// Strict synchronous mode across a promotion: while still a standby,
    /// name the other nodes in synchronous_standby_names (ignored until the
    /// promotion), so the new primary acknowledges nothing before a standby
    /// streaming from it has it ([`doctor::sync::at_promotion`]). They become
    /// eligible (Fence B) once they flushed past `at`.
    async fn name_before_promotion(&self, inv: &Inventory, v: &View, at: u64) -> Result<(), String> {
        let rank = |m: model::SyncMode| match m {
            model::SyncMode::Sync => 0,
            model::SyncMode::Potential => 1,
            _ => 2,
        };
        let mut others: Vec<&model::NodeSpec> = inv.staying().filter(|n| n.name != self.me).collect();
        others.sort_by_key(|n| rank(n.sync_mode()));
        let names: Vec<String> = others.iter().map(|n| n.name.clone()).collect();
        let k = inv.staying().filter(|n| n.sync_mode() == model::SyncMode::Sync).count();
        let Some(c) = doctor::sync::at_promotion(k, &names, v.last_leader.as_deref()) else { return Ok(()) };
        let t = self.target(inv, &self.me).ok_or("not in the inventory")?;
        for sql in [
            plan::sql::alter_system_set("synchronous_standby_names", &plan::sync::render(c.k, &c.names)),
            "SELECT pg_reload_conf()".to_string(),
        ] {
            pg::execute(&t, &sql, PROBE).await.map_err(|e| e.to_string())?;
        }
        let mut named = self.named_at.lock().unwrap_or_else(|e| e.into_inner());
        for n in &c.names {
            named.insert(n.clone(), at);
        }
        Ok(())
    }

    /// The failover operation for this node: with `promoted`, it records
    /// the promotion done here, stops the old primary where it answers and
    /// re-points the others; else it promotes too.
    async fn record_failover(&self, v: &View, promoted: bool) {
        let me = self.me.clone();
        let r = ops::ha::FailoverRequest {
            name: self.name.clone(),
            to: model::NodeName::new(me.clone()).ok(),
            force: !v.is_sync(),
            dry_run: false,
            yes: true,
            timeout: Duration::from_secs(2),
            // The old leader without an agent (its lease expired), or lost
            // (taken over): a dead or cut-off host is not tried again.
            known_down: v
                .last_leader
                .iter()
                .filter(|l| **l != me && (!v.members.contains_key(*l) || v.leader_lost))
                .cloned()
                .collect(),
            promoted,
        };
        let t0 = Instant::now();
        match ops::ha::failover(self.env(), r).await {
            Ok(_) if promoted => {
                self.history(
                    "recorded the failover",
                    &format!("others re-pointed in {:.2}s", t0.elapsed().as_secs_f64()),
                )
                .await
            }
            Ok(_) => self.history("promoted", &format!("in {:.2}s", t0.elapsed().as_secs_f64())).await,
            Err(e) if promoted => {
                self.history("recording the failover failed (retried next tick)", &e.to_string()).await
            }
            Err(e) => self.history("promotion failed (retried next tick)", &e.to_string()).await,
        }
    }

    /// Stop receiving WAL from the lost leader; the flushed position.
    async fn withdraw(&self, inv: &Inventory) -> Result<u64, String> {
        let t = self.target(inv, &self.me).ok_or("not in the inventory")?;
        let c = pg::connect(&t, PROBE).await.map_err(|e| e.to_string())?;
        let q = |sql: &'static str| {
            let c = &c;
            async move {
                tokio::time::timeout(PROBE, c.batch_execute(sql))
                    .await
                    .map_err(|_| "timed out".to_string())?
                    .map_err(|e| e.to_string())
            }
        };
        q("ALTER SYSTEM SET primary_conninfo = ''").await?;
        q("SELECT pg_reload_conf()").await?;
        let until = Instant::now() + Duration::from_secs(3);
        loop {
            let r = tokio::time::timeout(
                PROBE,
                c.query_one(
                    "SELECT (SELECT count(*) FROM pg_stat_wal_receiver), coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())",
                    &[],
                ),
            )
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
            let receivers: i64 = r.get(0);
            let lsn: Option<model::PgLsn> = r.get(1);
            if receivers == 0 {
                return Ok(lsn.map(u64::from).unwrap_or(0));
            }
            if Instant::now() > until {
                return Err("the WAL receiver did not stop within 3 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Rewind this node and bring it back as a standby (the rejoin
    /// operation, under the cluster's lock). When pg_rewind cannot, a fresh
    /// copy with `--auto-reclone`; else the node stays down, said once in
    /// `history`, until `pgscale rejoin --reclone`.
    async fn rejoin(&self, leader: Option<&str>) {
        let Ok(node) = model::NodeName::new(self.me.clone()) else { return };
        let r = |reclone| ops::ha::RejoinRequest {
            name: self.name.clone(),
            node: node.clone(),
            reclone,
            dry_run: false,
            yes: true,
            timeout: Duration::from_secs(5),
            max_rate: None,
        };
        let up = leader.unwrap_or("?");
        match ops::ha::rejoin(self.env(), r(false)).await {
            Ok(_) => {
                // A later failed pg_rewind is said again.
                *self.said_rewind.lock().unwrap_or_else(|e| e.into_inner()) = false;
                self.history("rejoined", &format!("as a standby of {up}")).await
            }
            Err(e) if e.rewind_failed() && self.auto_reclone => {
                self.history("pg_rewind failed: recloning (auto_reclone)", &e.to_string()).await;
                let t0 = Instant::now();
                match ops::ha::rejoin(self.env(), r(true)).await {
                    Ok(_) => {
                        let why =
                            format!("a fresh copy of {up} in {:.1}s; a standby of it", t0.elapsed().as_secs_f64());
                        self.history("recloned", &why).await
                    }
                    Err(e) => tracing::warn!("rejoin --reclone: {e}"),
                }
            }
            Err(e) if e.rewind_failed() => {
                let said = std::mem::replace(&mut *self.said_rewind.lock().unwrap_or_else(|e| e.into_inner()), true);
                if !said {
                    let what = "pg_rewind failed: the node stays down (`pgscale rejoin --reclone`, or allow it in the spec, `ha: {auto_reclone: true}` through apply-config)";
                    self.history(what, &e.to_string()).await;
                }
                tracing::warn!("rejoin: {e}");
            }
            Err(e) => tracing::warn!("rejoin: {e}"),
        }
    }

    /// Stream from `upstream`: its slot there first, then primary_conninfo.
    /// First, whether this node can: WAL past the fork of the upstream's
    /// timeline means a rewind ([`doctor::timeline::diverged`]).
    async fn follow(&self, inv: &Inventory, v: &View, upstream: &str) -> Result<Followed, String> {
        let me = inv.node(&self.me).ok_or("not in the inventory")?;
        let up = inv.node(upstream).ok_or("the leader is not in the inventory")?;
        let ut = self.target(inv, upstream).ok_or("no target")?;
        let (leader_tli, history) = timeline_of(&ut).await?;
        let forks = doctor::timeline::parse_history(&history);
        if doctor::timeline::diverged(v.local.timeline, v.local.flush_lsn, leader_tli, &forks) {
            return Ok(Followed::Diverged(format!(
                "WAL up to {} on timeline {}, past where {upstream}'s timeline {leader_tli} forked from it",
                model::PgLsn::from(v.local.flush_lsn),
                v.local.timeline
            )));
        }
        let t = self.target(inv, &self.me).ok_or("no target")?;
        let conninfo = plan::conf::primary_conninfo(inv, me, up);
        let c = pg::connect(&t, PROBE).await.map_err(|e| e.to_string())?;
        let now: String = tokio::time::timeout(PROBE, c.query_one("SELECT current_setting('primary_conninfo')", &[]))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?
            .get(0);
        if now == conninfo {
            // Pointed there already: its WAL receiver is (re)starting.
            return Ok(Followed::Waiting);
        }
        let slot = model::slot_name(&self.me);
        pg::execute(&ut, &plan::sql::create_slot(&slot), PROBE).await.map_err(|e| e.to_string())?;
        for sql in [
            plan::sql::alter_system_set("primary_conninfo", &conninfo),
            plan::sql::alter_system_set("primary_slot_name", &slot),
            "SELECT pg_reload_conf()".to_string(),
        ] {
            pg::execute(&t, &sql, PROBE).await.map_err(|e| e.to_string())?;
        }
        Ok(Followed::Repointed)
    }
}

/// What `follow` did.
enum Followed {
    Repointed,
    /// Already pointed at the upstream; its WAL receiver is starting.
    Waiting,
    /// It cannot stream from the upstream (why): it needs a rewind.
    Diverged(String),
}

/// A primary's timeline and its history file (empty on timeline 1), read
/// over SQL (the admin role is a superuser: pg_read_file).
async fn timeline_of(t: &pg::Target) -> Result<(u32, String), String> {
    let c = pg::connect(t, PROBE).await.map_err(|e| e.to_string())?;
    let q = "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8), \
             coalesce(pg_read_file('pg_wal/' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) || '.history', 0, 1048576, true), '')";
    let r = tokio::time::timeout(PROBE, c.query_one(q, &[]))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let hex: String = r.get(0);
    let tli = u32::from_str_radix(&hex, 16).map_err(|e| format!("timeline {hex}: {e}"))?;
    Ok((tli, r.get(1)))
}

/// Stop a server from acknowledging at once: SIGSTOP the postmaster (it
/// cannot start new backends), SIGKILL its children, then the postmaster.
/// Works on a stopped (SIGSTOPped) server too.
pub fn fence(data_dir: &Path) -> String {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let Some(pm) = crate::observe::postmaster(data_dir) else {
        return "no postmaster was running".into();
    };
    let _ = kill(Pid::from_raw(pm), Signal::SIGSTOP);
    let children = children_of(pm);
    for c in &children {
        let _ = kill(Pid::from_raw(*c), Signal::SIGKILL);
    }
    let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
    let until = Instant::now() + Duration::from_secs(2);
    while crate::observe::alive(pm) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    format!("killed the postmaster {pm} and {} processes under it", children.len())
}

/// PIDs whose parent is `pid` (from /proc).
fn children_of(pid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let ppid = after.split_whitespace().nth(1).and_then(|x| x.parse::<i32>().ok());
        if ppid == Some(pid) {
            v.push(p);
        }
    }
    v
}
