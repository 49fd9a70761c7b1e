//! Operations as data: a plan is an ordered list of steps, each naming its
//! node, the exact command or SQL it runs, the guard that makes a re-run safe
//! and a one-line reason. `--dry-run` prints exactly this.

use model::Phase;
use serde::Serialize;
use std::fmt::Write;
use std::net::IpAddr;
use std::path::PathBuf;

/// What the planners need to know about the hosts, resolved before planning.
#[derive(Clone, Debug, PartialEq)]
pub struct Ctx {
    pub bin_dir: PathBuf,
    pub os_user: String,
    /// Addresses that may connect for replication and administration.
    pub peers: Vec<IpAddr>,
    /// Deadline for pg_ctl waits, in seconds.
    pub wait_secs: u64,
    /// Nodes whose host could not be reached (SSH): nothing is planned
    /// there that needs the host; the plan says so instead.
    pub unreachable: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Write the desired inventory to the home (atomically).
    SaveInventory {
        phase: Phase,
    },
    /// Make a directory, mode 0700, owned by the OS user. `adopt`: it exists
    /// and is empty; pgscale takes it over (and will only empty it later).
    CreateDir {
        path: PathBuf,
        adopt: bool,
    },
    /// `pwfile`: a 0600 file the executor fills with the admin password just
    /// before initdb and removes right after.
    InitDb {
        data_dir: PathBuf,
        pwfile: PathBuf,
        argv: Vec<String>,
    },
    WriteFile {
        path: PathBuf,
        mode: u32,
        contents: String,
    },
    Start {
        data_dir: PathBuf,
        argv: Vec<String>,
    },
    /// `deadline_secs`: how long pgscale waits for pg_ctl (its own -t plus a
    /// margin); a node that does not stop by then is reported.
    Stop {
        data_dir: PathBuf,
        argv: Vec<String>,
        deadline_secs: u64,
    },
    Restart {
        data_dir: PathBuf,
        argv: Vec<String>,
    },
    Sql {
        sql: String,
    },
    /// Create or update a role with the password kept in the home's secret
    /// file (sent as a SCRAM verifier, never in clear text).
    EnsureRole {
        role: String,
        replication: bool,
    },
    /// Refuse to go on if the server finds errors in pg_hba.conf.
    CheckHba,
    /// A .pgpass file with `user`'s password from the home's secret file.
    WritePassfile {
        path: PathBuf,
        user: String,
    },
    /// pg_basebackup into `data_dir`, PGPASSFILE=`passfile`. Complete when
    /// `backup_manifest` exists (pg_basebackup writes it last).
    BaseBackup {
        data_dir: PathBuf,
        passfile: PathBuf,
        argv: Vec<String>,
    },
    /// On the step's node (the upstream): wait until `standby` streams and
    /// has flushed the WAL the upstream had when streaming began.
    WaitStreaming {
        standby: String,
        timeout_secs: u64,
    },
    /// Promote the step's node (`pg_promote`, waiting up to `timeout_secs`).
    /// Guard: not in recovery → already a primary.
    Promote {
        timeout_secs: u64,
    },
    /// Read the stopped old primary's shutdown checkpoint (`argv` is its
    /// pg_controldata) and wait until `standby` has replayed past it.
    WaitReplay {
        argv: Vec<String>,
        standby: String,
        timeout_secs: u64,
    },
    /// pg_rewind the step's node from the primary. Guard: pg_controldata
    /// says "in archive recovery" (rewound, not started yet) → skip.
    Rewind {
        data_dir: PathBuf,
        controldata: Vec<String>,
        argv: Vec<String>,
    },
    /// On the step's node (an upstream): end a base copy of `node` that is
    /// still in flight (a pgscale that died left it running), so the
    /// directory can be emptied and copied again.
    EndCopy {
        node: String,
    },
    /// The role change is complete: forget `previous_primary`.
    ClearIntent,
    /// Clear `needs_rejoin` for a node in the inventory.
    MarkRejoined {
        node: String,
    },
    /// Record in the inventory that a joining node is now a member.
    MarkMember {
        node: String,
    },
    /// Remove a leaving node from the inventory.
    ForgetNode {
        node: String,
    },
    Reload,
    /// Remove a directory pgscale created.
    RemoveDir {
        path: PathBuf,
    },
    /// Remove what is inside a directory pgscale adopted empty.
    EmptyDir {
        path: PathBuf,
    },
    /// Remove the cluster's record from the home.
    ForgetCluster,
}

impl Action {
    /// Stop a node's server with pg_ctl (`mode`: fast, immediate), letting
    /// pg_ctl wait `wait_secs` and pgscale 2 s more before it reports the
    /// node as not stopping.
    pub fn stop(ctx: &Ctx, data_dir: &std::path::Path, mode: &str, wait_secs: u64) -> Action {
        Action::Stop {
            data_dir: data_dir.to_path_buf(),
            argv: crate::argv::pg_ctl_stop(&ctx.bin_dir, data_dir, mode, wait_secs),
            deadline_secs: wait_secs + 2,
        }
    }

    /// The guard that makes the step safe to run again.
    pub fn guard(&self) -> &'static str {
        match self {
            Action::SaveInventory { .. } => "atomic rename: old or new, never half",
            Action::CreateDir { .. } => "exists and empty: fix mode/owner only",
            Action::InitDb { .. } => "PG_VERSION exists: skip",
            Action::WriteFile { .. } => "whole-file atomic write",
            Action::Start { .. } => "already running: skip",
            Action::Stop { .. } => "not running: skip",
            Action::Restart { .. } => "pg_ctl restart waits",
            Action::Sql { .. } => "idempotent statement",
            Action::EnsureRole { .. } => "exists: ALTER instead of CREATE",
            Action::CheckHba => "read-only",
            Action::WritePassfile { .. } => "whole-file atomic write",
            Action::BaseBackup { .. } => "backup_manifest exists: skip",
            Action::WaitStreaming { .. } => "read-only",
            Action::MarkMember { .. } => "already a member: no change",
            Action::Promote { .. } => "not in recovery: already a primary",
            Action::WaitReplay { .. } => "read-only",
            Action::Rewind { .. } => "already rewound (in archive recovery): skip",
            Action::MarkRejoined { .. } => "idempotent",
            Action::EndCopy { .. } => "no copy running: skip",
            Action::ClearIntent => "idempotent",
            Action::ForgetNode { .. } => "not in the inventory: skip",
            Action::Reload => "idempotent",
            Action::RemoveDir { .. } => "missing: skip",
            Action::EmptyDir { .. } => "missing or empty: skip",
            Action::ForgetCluster => "missing: skip",
        }
    }

    pub fn summary(&self) -> String {
        match self {
            Action::SaveInventory { phase } => format!("save inventory (phase {phase:?})").to_lowercase(),
            Action::CreateDir { path, adopt: false } => format!("create directory {} (0700)", path.display()),
            Action::CreateDir { path, adopt: true } => format!("adopt empty directory {} (0700)", path.display()),
            Action::InitDb { argv, .. }
            | Action::Start { argv, .. }
            | Action::Stop { argv, .. }
            | Action::Restart { argv, .. } => {
                format!("run: {}", argv.join(" "))
            }
            Action::WriteFile { path, mode, contents } => {
                format!("write {} ({} bytes, mode {:04o})", path.display(), contents.len(), mode)
            }
            Action::Sql { sql } => format!("sql: {sql}"),
            Action::EnsureRole { role, replication } => format!(
                "ensure role {role} ({}, password from the home's secret file)",
                if *replication { "LOGIN REPLICATION" } else { "LOGIN SUPERUSER" }
            ),
            Action::CheckHba => "check pg_hba_file_rules for errors".into(),
            Action::WritePassfile { path, user } => {
                format!("write {} (.pgpass line for {user}, mode 0600)", path.display())
            }
            Action::BaseBackup { argv, passfile, .. } => {
                format!("run: PGPASSFILE={} {}", passfile.display(), argv.join(" "))
            }
            Action::WaitStreaming { standby, timeout_secs } => {
                format!("wait until {standby} streams and has caught up (up to {timeout_secs}s)")
            }
            Action::MarkMember { node } => format!("record {node} as a member in the inventory"),
            Action::Promote { timeout_secs } => format!("sql: SELECT pg_promote(true, {timeout_secs})"),
            Action::WaitReplay { standby, timeout_secs, .. } => {
                format!("read the shutdown checkpoint (pg_controldata), wait until {standby} replayed past it (up to {timeout_secs}s)")
            }
            Action::Rewind { argv, .. } => format!("run: {}", argv.join(" ")),
            Action::MarkRejoined { node } => format!("record that {node} no longer needs a rejoin"),
            Action::EndCopy { node } => format!(
                "end a copy of {node} still running (the walsender of slot {} and backends named {})",
                model::slot_name(node),
                model::copy_app_name(node)
            ),
            Action::ClearIntent => "record that the role change is complete".into(),
            Action::ForgetNode { node } => format!("remove {node} from the inventory"),
            Action::Reload => "sql: SELECT pg_reload_conf()".into(),
            Action::RemoveDir { path } => format!("remove directory {}", path.display()),
            Action::EmptyDir { path } => format!("empty directory {}", path.display()),
            Action::ForgetCluster => "forget the cluster (remove its record from the home)".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// Stable id: `<lane>:<verb>`; journal entries and fault injection name it.
    pub id: String,
    /// The node it runs on; empty for steps on the home.
    pub node: String,
    /// Steps of one lane run in order; lanes of one wave may run at the same
    /// time (scale-out adds independent nodes in parallel). The lane is the
    /// node being worked on, which may differ from where the step runs (a
    /// slot made on the upstream for a joining node).
    pub lane: String,
    pub wave: u32,
    /// A failure is reported, and does not stop the lane (stopping a node
    /// that does not answer, during scale-in).
    pub best_effort: bool,
    pub action: Action,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub cluster: String,
    pub operation: String,
    /// After a failed step: go on with other nodes' steps (true), or stop.
    pub keep_going: bool,
    pub steps: Vec<Step>,
    /// Things the user should know that are not steps (skipped nodes…).
    pub notes: Vec<String>,
    /// Lanes of a wave run at most this many at a time; 1 = strictly in order.
    pub parallel: usize,
}

impl Plan {
    pub fn new(cluster: &str, operation: &str) -> Self {
        Plan {
            cluster: cluster.into(),
            operation: operation.into(),
            keep_going: false,
            steps: Vec::new(),
            notes: Vec::new(),
            parallel: 1,
        }
    }

    pub fn push(&mut self, node: &str, verb: &str, action: Action, reason: impl Into<String>) {
        self.push_in(0, node, node, verb, action, reason);
    }

    /// A step in `wave`, in `lane`, running on `node`.
    pub fn push_in(
        &mut self,
        wave: u32,
        lane: &str,
        node: &str,
        verb: &str,
        action: Action,
        reason: impl Into<String>,
    ) {
        let base = if lane.is_empty() { verb.to_string() } else { format!("{lane}:{verb}") };
        // Ids stay unique when a verb repeats in a lane.
        let n = self.steps.iter().filter(|s| s.id == base || s.id.starts_with(&format!("{base}#"))).count();
        let id = if n == 0 { base } else { format!("{base}#{}", n + 1) };
        self.steps.push(Step {
            id,
            node: node.into(),
            lane: lane.into(),
            wave,
            best_effort: false,
            action,
            reason: reason.into(),
        });
    }

    /// Run `next` after this plan, as one plan: this plan's steps first, in
    /// order and alone (wave 0, no lanes), then `next`'s waves and lanes.
    /// `next`'s `record` step is dropped when this plan records already;
    /// its other steps keep unique ids (`#2` when this plan has the id).
    pub fn then(mut self, next: Plan) -> Plan {
        for s in &mut self.steps {
            s.wave = 0;
            s.lane = String::new();
        }
        let records = |s: &Step| matches!(s.action, Action::SaveInventory { .. }) && s.id == "record";
        let recorded = self.steps.iter().any(records);
        for mut s in next.steps.into_iter().filter(|s| !(recorded && records(s))) {
            s.wave += 1;
            if self.steps.iter().any(|x| x.id == s.id) {
                let base = s.id.clone();
                let n = self.steps.iter().filter(|x| x.id == base || x.id.starts_with(&format!("{base}#"))).count();
                s.id = format!("{base}#{}", n + 1);
            }
            self.steps.push(s);
        }
        self.parallel = self.parallel.max(next.parallel);
        self.keep_going |= next.keep_going;
        self.notes.extend(next.notes);
        self
    }

    /// Mark the last step best-effort.
    pub fn best_effort(&mut self) {
        if let Some(s) = self.steps.last_mut() {
            s.best_effort = true;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The human-readable plan, as `--dry-run` prints it.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let n = self.steps.len();
        let _ = writeln!(
            s,
            "Plan: {} of cluster {} ({} step{})",
            self.operation,
            self.cluster,
            n,
            if n == 1 { "" } else { "s" }
        );
        for (i, st) in self.steps.iter().enumerate() {
            let node = if st.node.is_empty() { "-" } else { &st.node };
            let wave = if self.parallel > 1 { format!("w{} ", st.wave) } else { String::new() };
            let be = if st.best_effort { " (best effort)" } else { "" };
            let _ = writeln!(s, "{:>3}. {wave}[{}] {}{be}", i + 1, node, st.action.summary());
            let _ = writeln!(s, "       why: {}  (guard: {})", st.reason, st.action.guard());
            if let Action::WriteFile { contents, .. } = &st.action {
                for l in contents.lines() {
                    let _ = writeln!(s, "       | {l}");
                }
            }
        }
        if n == 0 {
            s.push_str("  nothing to do: the cluster already matches.\n");
        }
        for note in &self.notes {
            let _ = writeln!(s, "note: {note}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_render_lists_every_step() {
        let mut p = Plan::new("demo", "init");
        p.push("pg1", "reload", Action::Reload, "r1");
        p.push("pg1", "reload", Action::Reload, "r2");
        p.push("", "forget", Action::ForgetCluster, "bye");
        let ids: Vec<_> = p.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["pg1:reload", "pg1:reload#2", "forget"]);
        let r = p.render();
        assert!(r.starts_with("Plan: init of cluster demo (3 steps)\n"), "{r}");
        assert!(r.contains("  3. [-] forget the cluster"), "{r}");
        let j = serde_json::to_value(&p).unwrap();
        assert_eq!(j["steps"][0]["action"]["kind"], "reload");
    }

    #[test]
    fn then_runs_the_first_plan_alone_and_keeps_ids_unique() {
        let mut a = Plan::new("demo", "init");
        a.push("", "record", Action::SaveInventory { phase: Phase::Initializing }, "intent");
        a.push("pg1", "check-hba", Action::CheckHba, "check");
        let mut b = Plan::new("demo", "scale-out");
        b.parallel = 2;
        b.push_in(0, "", "", "record", Action::SaveInventory { phase: Phase::Ready }, "intent");
        b.push_in(0, "pg1", "pg1", "check-hba", Action::CheckHba, "check again");
        b.push_in(1, "pg2", "pg2", "start", Action::Reload, "x");
        let p = a.then(b);
        let ids: Vec<_> = p.steps.iter().map(|s| (s.id.as_str(), s.wave, s.lane.as_str())).collect();
        assert_eq!(
            ids,
            [("record", 0, ""), ("pg1:check-hba", 0, ""), ("pg1:check-hba#2", 1, "pg1"), ("pg2:start", 2, "pg2")]
        );
        assert_eq!(p.parallel, 2);
    }
}
