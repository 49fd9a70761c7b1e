//! Sharded clusters against real servers on 127.0.0.x: a coordinator and
//! data groups (each a primary and a synchronous standby), a sharded table
//! written through the coordinator by INSERT/UPDATE/DELETE writers whose
//! every change is audited; expand, rebalance and shrink under that load;
//! pgscale killed after every step of a move; a failover of the source
//! group mid-move; the refusals (no primary key, DDL during a move, a
//! target without room). After each step: every acknowledged change is
//! there exactly once, every shard routed to exactly one group, nothing
//! left behind.

use serde_json::Value;
use std::time::Duration;
use testkit::shardload::{Ledger, Load, LoadSpec, AUDIT, TABLE};
use testkit::{free_port, Kit};

fn kit() -> Kit {
    Kit::new(env!("CARGO_BIN_EXE_pgscale"))
}

/// stdout of a command that must succeed (testkit's check of the exit).
fn ok(o: std::process::Output) -> String {
    String::from_utf8_lossy(&testkit::ok(o).stdout).into_owned()
}

/// A node: (name, address, port).
type N = (String, String, u16);

fn nodes_yaml(k: &Kit, nodes: &[N], indent: &str) -> String {
    let mut y = String::new();
    for (i, (n, h, p)) in nodes.iter().enumerate() {
        y += &format!(
            "{indent}- name: {n}\n{indent}  host: {h}\n{indent}  port: {p}\n{indent}  data_dir: {}\n",
            k.path(n).display()
        );
        if i > 0 {
            y += &format!("{indent}  sync: sync\n");
        }
    }
    y
}

fn group_nodes(g: &str, a: u8) -> Vec<N> {
    group_of(g, a, 2)
}

/// A group of `n` nodes (`{g}a`, `{g}b`, ...) on 127.0.`a`.x.
fn group_of(g: &str, a: u8, n: usize) -> Vec<N> {
    ["a", "b", "c"][..n]
        .iter()
        .map(|x| format!("{g}{x}"))
        .enumerate()
        .map(|(i, n)| {
            let h = format!("127.0.{a}.{}", i + 1);
            let p = free_port(&h);
            (n, h, p)
        })
        .collect()
}

struct Bed {
    k: Kit,
    name: String,
    coord: Vec<N>,
}

impl Bed {
    fn new(name: &str, net: u8, groups: &[&str]) -> Bed {
        Bed::with_shards(name, net, groups, 8)
    }

    fn with_shards(name: &str, net: u8, groups: &[&str], shards: u32) -> Bed {
        Bed::build(name, net, groups, shards, 2)
    }

    /// Groups (the coordinator's too) of `per_group` nodes each.
    fn build(name: &str, net: u8, groups: &[&str], shards: u32, per_group: usize) -> Bed {
        let k = kit();
        let coord = group_of(&format!("{name}c"), net, per_group);
        let mut y = format!(
            "name: {name}\nshards: {shards}\ncoordinator:\n  nodes:\n{}data:\n",
            nodes_yaml(&k, &coord, "    ")
        );
        for (i, g) in groups.iter().enumerate() {
            y += &format!(
                "  - name: {g}\n    nodes:\n{}",
                nodes_yaml(&k, &group_of(&format!("{name}{g}"), net + 1 + i as u8, per_group), "      ")
            );
        }
        let f = k.write("sharded.yaml", &y);
        let out = ok(k.cmd().args(["init", "-c"]).arg(&f).output().unwrap());
        let _ = out;
        let b = Bed { k, name: name.into(), coord };
        b.pgscale(&["table", "create", "-n", name, "--table", "orders", "--key", "cid", "--", TABLE]);
        b.psql_coord(AUDIT);
        b
    }

    fn pgscale(&self, args: &[&str]) -> String {
        ok(self.k.cmd().args(args).output().unwrap())
    }

    /// `pgscale move` of `shard` to `to`, with failpoint `fp` if any.
    fn run_move(&self, shard: u64, to: &str, fp: Option<&str>) -> std::process::Output {
        let mut c = self.k.cmd();
        if let Some(fp) = fp {
            c.env("PGSCALE_FAILPOINT", fp);
        }
        c.args(["move", "-n", &self.name, "--shard", &shard.to_string(), "--to", to]).output().unwrap()
    }

    /// One of `from`'s shards set moving to `to`, pgscale killed at `fp`.
    fn die_moving(&self, from: &str, to: &str, fp: &str) -> u64 {
        let shard = (0..8u64).find(|s| self.holder(*s) == from).unwrap();
        let o = self.run_move(shard, to, Some(fp));
        assert!(!o.status.success(), "{fp}: pgscale was to die: {}", String::from_utf8_lossy(&o.stderr));
        shard
    }

    /// `pgscale ARGS --output json`, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        serde_json::from_str(&self.pgscale(&a)).unwrap()
    }

    fn psql_coord(&self, sql: &str) -> String {
        self.pgscale(&["psql", "-n", &self.name, "--", "-Atc", sql])
    }

    fn psql(&self, cluster: &str, sql: &str) -> String {
        self.pgscale(&["psql", "-n", cluster, "--", "-Atc", sql]).trim().to_string()
    }

    /// `pg_ctl ACTION -w` on a node, as the servers' OS user; -l: the
    /// server's output goes to a file, not to this test's pipes.
    fn pg_ctl(&self, node: &str, action: &[&str]) {
        let pg_ctl = testkit::bin_dir().join("pg_ctl");
        let log = self.k.path(&format!("{node}.sock/pg_ctl.log"));
        let dir = self.k.path(node);
        let mut argv = vec![pg_ctl.to_str().unwrap(), "-D", dir.to_str().unwrap(), "-l", log.to_str().unwrap()];
        argv.extend(action);
        argv.push("-w");
        let o = testkit::as_os_user(&argv);
        assert!(o.status.success(), "pg_ctl {action:?}: {}", String::from_utf8_lossy(&o.stderr));
    }

    fn password(&self) -> String {
        testkit::admin_password(&self.k.home(), &self.name)
    }

    fn load(&self, ledger: Ledger) -> Load {
        let (_, h, p) = &self.coord[0];
        let spec = LoadSpec {
            host: h.clone(),
            port: *p,
            password: self.password(),
            writers: 4,
            every: Duration::from_millis(5),
            max_ops: 100_000,
            pad: 50,
        };
        Load::start(spec, ledger)
    }

    fn shards(&self) -> Value {
        self.json(&["shards", "-n", &self.name])
    }

    fn holder(&self, shard: u64) -> String {
        let s = self.shards();
        s["shards"].as_array().unwrap().iter().find(|x| x["shard"] == shard).unwrap()["group"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn counts(&self) -> Vec<(String, u64)> {
        let s = self.shards();
        s["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (g["group"].as_str().unwrap().to_string(), g["shards"].as_u64().unwrap()))
            .collect()
    }

    /// Every acknowledged change exactly once (the audit against the data),
    /// read through the coordinator.
    fn verify(&self, ledger: &Ledger) {
        let (_, h, p) = &self.coord[0];
        let pw = self.password();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let v = rt.block_on(async {
            let mut c = tokio_postgres::Config::new();
            c.host(h).port(*p).user("postgres").password(&pw).dbname("postgres");
            let (cl, conn) = c.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            ledger.verify(&cl).await
        });
        let v = v.unwrap_or_else(|e| {
            // For the post-mortem (PGSCALE_TEST_KEEP=1): every group's rows
            // and the coordinator's routing and moves, as they are now.
            let mut groups: Vec<String> = vec![self.name.clone()];
            groups.extend(self.counts().into_iter().map(|(g, _)| format!("{}_{g}", self.name)));
            for c in groups {
                let q = "SELECT cid, id, v, tableoid::regclass FROM orders ORDER BY 1, 2";
                let out = self.k.cmd().args(["psql", "-n", &c, "--", "-Atc", q]).output().unwrap();
                std::fs::write(self.k.path(&format!("dump-{c}.txt")), &out.stdout).unwrap();
            }
            let q = "SELECT * FROM pgscale.moves ORDER BY id";
            let out = self.k.cmd().args(["psql", "-n", &self.name, "--", "-Atc", q]).output().unwrap();
            std::fs::write(self.k.path("dump-moves.txt"), &out.stdout).unwrap();
            panic!("{e} (dumps in {})", self.k.dir.path().display())
        });
        assert!(v.acked > 0 && v.rows > 0, "{v:?}");
        eprintln!("verified: {v:?}");
    }

    /// check is clean: every shard routed to exactly one group (the one the
    /// catalog names), no publication, subscription, slot or shard copy left
    /// over; and, asked directly, no move object on any group.
    fn assert_clean(&self) {
        let out = self.k.cmd().args(["check", "-n", &self.name]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "check: {text}{}", String::from_utf8_lossy(&out.stderr));
        for (g, _) in self.counts() {
            let c = format!("{}_{g}", self.name);
            let left = self.psql(
                &c,
                "SELECT (SELECT count(*) FROM pg_publication WHERE pubname LIKE 'pgscale_mv_%') + \
                 (SELECT count(*) FROM pg_subscription WHERE subname LIKE 'pgscale_mv_%') + \
                 (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgscale_mv_%' OR slot_name LIKE 'pg\\_%\\_sync\\_%')",
            );
            assert_eq!(left, "0", "move objects left on {g}");
        }
        let shards = self.shards();
        assert_eq!(shards["moves"].as_array().unwrap().len(), 0, "{shards}");
        let total: u64 = self.counts().iter().map(|(_, n)| n).sum();
        assert_eq!(total, shards["shards"].as_array().unwrap().len() as u64, "{shards}");
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        // The kit stops every server by PID; nothing else to do.
    }
}

#[test]
fn expand_rebalance_shrink_under_load_lose_nothing() {
    let b = Bed::new("shp", 40, &["dg1", "dg2"]);
    assert_eq!(b.counts(), vec![("dg1".into(), 4), ("dg2".into(), 4)]);
    // Every command works on a group: --group, or a node of the group.
    let s: Value = b.json(&["status", "-n", "shp", "--group", "dg2"]);
    assert_eq!(s["cluster"], "shp_dg2");
    assert_eq!(
        b.pgscale(&["psql", "-n", "shp", "--node", "shpdg2b", "--", "-Atc", "SELECT pg_is_in_recovery()"]).trim(),
        "t"
    );
    let all: Value = b.json(&["status", "-n", "shp"]);
    assert_eq!(all.as_array().map(|a| a.len()), Some(3), "status covers every group: {all}");
    // A table without a primary key is refused with the reason.
    let o =
        b.k.cmd()
            .args([
                "table",
                "create",
                "-n",
                "shp",
                "--table",
                "nopk",
                "--key",
                "cid",
                "--",
                "CREATE TABLE nopk (cid bigint)",
            ])
            .output()
            .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no primary key"), "{}", String::from_utf8_lossy(&o.stderr));

    let load = b.load(Ledger::default());
    std::thread::sleep(Duration::from_secs(1));
    // Expand: a third group, added only.
    let add = format!("data:\n  - name: dg3\n    nodes:\n{}", nodes_yaml(&b.k, &group_nodes("shpdg3", 43), "      "));
    let f = b.k.write("add.yaml", &add);
    // The dry run shows the moves onto the new group (8 shards over 3: 2 move).
    let plan: Value = b.json(&["expand", "-n", "shp", "-c", f.to_str().unwrap(), "--dry-run"]);
    let planned = plan["planned"].as_array().unwrap();
    assert_eq!(planned.len(), 2, "{plan}");
    assert!(planned.iter().all(|m| m["to"] == "dg3" && m["bytes"].as_u64().unwrap() > 0), "{plan}");
    assert!(plan["eta_secs"].as_f64().unwrap() > 0.0, "{plan}");
    b.pgscale(&["expand", "-n", "shp", "-c", f.to_str().unwrap(), "--no-rebalance"]);
    assert!(b.counts().contains(&("dg3".into(), 0)), "{:?}", b.counts());
    let ledger = load.finish();
    b.verify(&ledger);
    b.assert_clean();

    // Move objects left behind are check findings: a publication, and a
    // table-sync slot of a subscription of dg1 that is gone (as a teardown
    // mid-copy with the source unreachable leaves it).
    b.psql("shp_dg2", "CREATE PUBLICATION pgscale_mv_99_dg9");
    let sysid = b.psql("shp_dg1", "SELECT system_identifier FROM pg_control_system()");
    let sync = format!("pg_99999_sync_1_{sysid}");
    b.psql("shp_dg2", &format!("SELECT pg_create_logical_replication_slot('{sync}', 'pgoutput')"));
    let o = b.k.cmd().args(["check", "-n", "shp"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("publication pgscale_mv_99_dg9 is left over"), "{text}");
    assert!(text.contains(&format!("table-sync slot {sync} is left over")), "{text}");

    // A target without room is refused before anything is copied (the
    // leftovers are removed first, as by every move command).
    let load = b.load(ledger);
    let o = b.k.cmd().args(["rebalance", "-n", "shp", "--min-free", "1000000GB"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not enough disk"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("removed 2 object(s)"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        b.psql("shp_dg2", "SELECT (SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'logical')"),
        "0"
    );
    assert_eq!(b.shards()["moves"].as_array().unwrap().len(), 0);
    assert_eq!(b.psql("shp_dg3", "SELECT count(*) FROM pg_subscription"), "0");

    // A cut-over that cannot fit in --max-pause rolls back every attempt:
    // the shard stays where it is, its move ready for the next run.
    let o =
        b.k.cmd()
            .args(["move", "-n", "shp", "--shard", "1", "--to", "dg3", "--max-pause", "1ms", "--attempts", "3"])
            .output()
            .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no cut-over finished within --max-pause"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_ne!(b.holder(1), "dg3");
    let moving = b.shards()["moves"].clone();
    assert_eq!(moving[0]["state"], "copying", "{moving}");

    // DDL during a move is refused: a move left half-way by a killed pgscale.
    let o =
        b.k.cmd()
            .env("PGSCALE_FAILPOINT", "move:set-up")
            .args(["move", "-n", "shp", "--shard", "0", "--to", "dg3"])
            .output()
            .unwrap();
    assert!(!o.status.success());
    let o = b.k.cmd().args(["ddl", "-n", "shp", "-c", "ALTER TABLE orders ADD COLUMN note text"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refused while shard moves are unfinished"));

    // Rebalance: the unfinished move first, then the balance (3/3/2).
    let out = b.pgscale(&["rebalance", "-n", "shp", "--output", "json"]);
    let rep: Value = serde_json::from_str(&out).unwrap();
    let moves = rep["moves"].as_array().unwrap();
    assert!(moves.len() >= 2, "{rep}");
    for m in moves {
        assert!(m["pause_ms"].as_f64().unwrap() < 1000.0, "the pause cap holds: {m}");
        assert_eq!(m["to"], "dg3");
    }
    let mut c: Vec<u64> = b.counts().iter().map(|(_, n)| *n).collect();
    c.sort();
    assert_eq!(c, vec![2, 3, 3]);
    let ledger = load.finish();
    b.verify(&ledger);
    b.assert_clean();

    // DDL after the moves: on the coordinator and every shard.
    b.pgscale(&["ddl", "-n", "shp", "-c", "ALTER TABLE orders ADD COLUMN note text"]);
    assert_eq!(b.psql_coord("SELECT count(note) FROM orders").trim(), "0");
    let s0 = b.holder(0);
    assert_eq!(b.psql(&format!("shp_{s0}"), "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'pgscale_shards' AND table_name = 'orders_0' AND column_name = 'note'"), "1");

    // A script as Citus users write it: a sharded table, a table on the
    // coordinator only, and an index everywhere.
    let f = b.k.write(
        "schema.sql",
        "CREATE TABLE items (cid bigint, iid bigint, name text, PRIMARY KEY (cid, iid));\n\
         SELECT create_distributed_table('items', 'cid');\n\
         CREATE TABLE countries (code text PRIMARY KEY, name text);\n\
         SELECT create_reference_table('countries');\n\
         CREATE INDEX items_name ON items (name);\n",
    );
    b.pgscale(&["ddl", "-n", "shp", "-f", f.to_str().unwrap()]);
    b.psql_coord("INSERT INTO items SELECT g, g, 'n' || g FROM generate_series(1, 100) g; INSERT INTO countries VALUES ('fr', 'France')");
    assert_eq!(b.psql_coord("SELECT count(*) FROM items JOIN countries ON true").trim(), "100");
    assert!(b.shards()["tables"].to_string().contains("items"), "{}", b.shards());
    assert_eq!(
        b.psql(
            "shp_dg2",
            "SELECT to_regclass('public.countries') IS NULL AND to_regclass('public.items_name') IS NOT NULL"
        ),
        "t"
    );

    // Shrink back to two groups under load.
    let load = b.load(ledger);
    b.pgscale(&["shrink", "-n", "shp", "--drain", "dg1", "--yes"]);
    let c = b.counts();
    assert_eq!(c.iter().map(|(g, _)| g.as_str()).collect::<Vec<_>>(), ["dg2", "dg3"], "{c:?}");
    assert_eq!(c.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [4, 4]);
    let o = b.k.cmd().args(["status", "-n", "shp_dg1"]).output().unwrap();
    assert!(!o.status.success(), "the drained group's cluster is gone");
    let ledger = load.finish();
    b.verify(&ledger);
    b.assert_clean();
    b.pgscale(&["destroy", "-n", "shp", "--yes"]);
    assert!(!b.k.path("shpdg2a").join("PG_VERSION").exists());
}

#[test]
fn a_move_killed_after_every_step_or_losing_its_source_primary_finishes_on_rerun() {
    let b = Bed::new("shk", 50, &["dg1", "dg2"]);
    let mut ledger = Ledger::default();
    let steps = [
        "move:registered",
        "move:set-up",
        "move:caught-up",
        "move:locked",
        "move:marker-seen",
        "move:switched",
        "move:cleaned",
    ];
    for (i, fp) in steps.iter().enumerate() {
        let load = b.load(ledger);
        let shard = i as u64;
        let from = b.holder(shard);
        let to = if from == "dg1" { "dg2" } else { "dg1" };
        let o = b.run_move(shard, to, Some(fp));
        assert!(!o.status.success(), "{fp}: pgscale was to die: {}", String::from_utf8_lossy(&o.stderr));
        // Re-run: the same command, or resume.
        if i % 2 == 0 {
            testkit::ok(b.run_move(shard, to, None));
        } else {
            b.pgscale(&["resume", "-n", "shk"]);
        }
        assert_eq!(b.holder(shard), to, "after {fp}");
        ledger = load.finish();
        b.verify(&ledger);
        b.assert_clean();
    }

    // A node restart mid-move: the source group's primary restarts while
    // the move is set up; the re-run finishes it.
    let load = b.load(ledger);
    let shard = b.die_moving("dg1", "dg2", "move:set-up");
    b.pg_ctl("shkdg1a", &["restart", "-m", "fast"]);
    testkit::ok(b.run_move(shard, "dg2", None));
    assert_eq!(b.holder(shard), "dg2");
    let ledger = load.finish();
    b.verify(&ledger);
    b.assert_clean();

    // The source's primary loses the role and gets it back while pgscale
    // is away (A → B → A; a dg2 shard: dg1 has few left): the same node on
    // a new timeline; the move's slot on it is not trusted, the move is
    // redone.
    let load = b.load(ledger);
    let shard = b.die_moving("dg2", "dg1", "move:set-up");
    b.pgscale(&["switchover", "-n", "shk_dg2", "--to", "shkdg2b", "--yes"]);
    b.pgscale(&["switchover", "-n", "shk_dg2", "--to", "shkdg2a", "--yes"]);
    let out = b.run_move(shard, "dg1", None);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("source group's primary changed") && err.contains("→ shkdg2a (timeline"), "{err}");
    assert_eq!(b.holder(shard), "dg1");
    let ledger = load.finish();
    b.verify(&ledger);
    b.assert_clean();

    // The source group's primary fails over while a move is under way
    // (re-run: the same command), then the target group's (re-run: resume).
    let ledger = failover_mid_move(&b, ledger, "dg1", "move:set-up", &["failover", "-n", "shk_dg1", "--yes"], None);
    failover_mid_move(
        &b,
        ledger,
        "dg2",
        "move:caught-up",
        &["failover", "-n", "shk", "--group", "dg2", "--yes"],
        Some(&["resume", "-n", "shk"]),
    );
}

#[test]
fn parallel_moves_run_between_disjoint_pairs_and_a_crashed_source_is_survived() {
    // Single-node groups: a coordinator and two data groups, then two more.
    let b = Bed::build("shq", 80, &["dg1", "dg2"], 8, 1);
    let load = b.load(Ledger::default());
    std::thread::sleep(Duration::from_secs(1));
    let mut add = String::from("data:\n");
    for (g, a) in [("dg3", 83), ("dg4", 84)] {
        add +=
            &format!("  - name: {g}\n    nodes:\n{}", nodes_yaml(&b.k, &group_of(&format!("shq{g}"), a, 1), "      "));
    }
    let f = b.k.write("add.yaml", &add);
    let rep: Value = b.json(&["expand", "-n", "shq", "-c", f.to_str().unwrap(), "--parallel", "2"]);
    assert_eq!(b.counts().iter().map(|(_, n)| *n).collect::<Vec<_>>(), [2, 2, 2, 2], "{rep}");
    let moves = rep["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 4, "{rep}");
    // Moves sharing a group never overlap in time; disjoint ones ran
    // together (two waves of two). RFC 3339 UTC with millis: ordered as text.
    let span = |m: &Value| (m["started"].as_str().unwrap().to_string(), m["finished"].as_str().unwrap().to_string());
    let mut together = 0;
    for (i, a) in moves.iter().enumerate() {
        for c in &moves[i + 1..] {
            let ((s1, e1), (s2, e2)) = (span(a), span(c));
            let overlap = s1 < e2 && s2 < e1;
            let shared = [&a["from"], &a["to"]].iter().any(|g| **g == c["from"] || **g == c["to"]);
            assert!(!(overlap && shared), "moves sharing a group ran at once: {a} {c}");
            together += overlap as usize;
        }
    }
    assert_eq!(together, 2, "two waves of two moves each ran at once: {rep}");
    let ledger = load.finish();
    b.verify(&ledger);
    b.assert_clean();

    // A crash of the source's only node mid-move (kill -9, then started
    // again: crash recovery, the slot's confirmed position may go back):
    // the re-run finishes the move and nothing is lost.
    let load = b.load(ledger);
    std::thread::sleep(Duration::from_millis(500));
    let shard = b.die_moving("dg1", "dg2", "move:caught-up");
    testkit::kill_server(testkit::postmaster_pid(&b.k.path("shqdg1a")).expect("dg1's primary runs"));
    std::thread::sleep(Duration::from_millis(500));
    b.pg_ctl("shqdg1a", &["start"]);
    testkit::ok(b.run_move(shard, "dg2", None));
    assert_eq!(b.holder(shard), "dg2");
    let ledger = load.finish();
    b.verify(&ledger);
    b.assert_clean();
    b.pgscale(&["destroy", "-n", "shq", "--yes"]);
}

/// A move of a dg1 shard to dg2, pgscale killed at `fp`, then `group`'s
/// primary killed and `failover` run; the re-run (`rerun`, else the same
/// move) must notice the new primary, redo the move and lose nothing;
/// the old primary rejoins and `check` is clean.
fn failover_mid_move(
    b: &Bed,
    ledger: Ledger,
    group: &str,
    fp: &str,
    failover: &[&str],
    rerun: Option<&[&str]>,
) -> Ledger {
    let load = b.load(ledger);
    let shard = b.die_moving("dg1", "dg2", fp);
    let old = format!("shk{group}a");
    testkit::kill_server(testkit::postmaster_pid(&b.k.path(&old)).expect("the group's primary runs"));
    b.pgscale(failover);
    let out = match rerun {
        Some(r) => b.k.cmd().args(r).output().unwrap(),
        None => b.run_move(shard, "dg2", None),
    };
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let which = if group == "dg1" { "source" } else { "target" };
    assert!(
        err.contains(&format!("{which} group's primary changed")),
        "the move noticed the failover and started over: {err}"
    );
    assert_eq!(b.holder(shard), "dg2");
    let ledger = load.finish();
    b.verify(&ledger);
    b.pgscale(&["rejoin", "-n", &format!("shk_{group}"), "--node", &old, "--yes"]);
    b.assert_clean();
    ledger
}

/// The figures of bench/expand.sh (ignored: run by the benchmark, release
/// build). A coordinator and two data groups holding PGSCALE_BENCH_MB of
/// rows in 64 shards, a write load through the coordinator; then a third
/// group added and the shards moved onto it. Measured in the same run: the
/// write pause of every move (server side, and the worst latency a writer
/// saw), each sampled move's copy rate against a bare `COPY TO STDOUT |
/// COPY FROM STDIN` of the same shard between the same nodes, rows lost or
/// duplicated (the audit), and the whole expand against a pg_basebackup of
/// one data node (the first step of AntDB's way). Markdown goes to
/// PGSCALE_BENCH_OUT.
#[test]
#[ignore]
fn expand_figures() {
    let mb: u64 = std::env::var("PGSCALE_BENCH_MB").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let out = std::env::var("PGSCALE_BENCH_OUT").expect("PGSCALE_BENCH_OUT: where the Markdown goes");
    let b = Bed::with_shards("bex", 60, &["dg1", "dg2"], 64);
    // Bulk rows through the coordinator, batched by postgres_fdw.
    for g in ["dg1", "dg2"] {
        b.psql_coord(&format!("ALTER SERVER pgscale_{g} OPTIONS (ADD batch_size '1000')"));
    }
    let rows = mb * 1_000_000 / 230;
    let t = std::time::Instant::now();
    b.psql_coord(&format!(
        "INSERT INTO orders (cid, id, v, pad) SELECT g % 100003, -g, (g % 1000)::int, repeat('x', 150) FROM generate_series(1, {rows}) g"
    ));
    let bulk = "SELECT count(*), sum(id) FROM orders WHERE id < 0";
    let bulk_before = b.psql_coord(bulk);
    let bytes: u64 = b.shards()["groups"].as_array().unwrap().iter().map(|g| g["bytes"].as_u64().unwrap()).sum();
    eprintln!("loaded {rows} rows, {:.0} MB in shards, in {:.1}s", bytes as f64 / 1e6, t.elapsed().as_secs_f64());

    // AntDB's first step: a base copy of a data node.
    let bb = b.k.path("basebackup");
    let dg1a = b.k.path("bexdg1a");
    let (h, p) = addr_of(&b, "bex_dg1", "bexdg1a");
    let pgpass = std::fs::read_to_string(b.k.home().join("bex_dg1").join("pgpass")).unwrap();
    let pw =
        pgpass.lines().find(|l| l.contains(":pgscale_repl:")).and_then(|l| l.rsplit(':').next()).unwrap().to_string();
    let t = std::time::Instant::now();
    let st = std::process::Command::new(testkit::bin_dir().join("pg_basebackup"))
        .args(["-h", &h, "-p", &p.to_string(), "-U", "pgscale_repl", "-D"])
        .arg(&bb)
        .args(["-X", "stream", "-c", "fast"])
        .env("PGPASSWORD", &pw)
        .status()
        .unwrap();
    assert!(st.success());
    let basebackup_s = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&bb);
    let _ = dg1a;

    let load = b.load(Ledger::default());
    std::thread::sleep(Duration::from_secs(2));
    let t_expand = std::time::Instant::now();
    let add = format!("data:\n  - name: dg3\n    nodes:\n{}", nodes_yaml(&b.k, &group_nodes("bexdg3", 63), "      "));
    let f = b.k.write("add.yaml", &add);
    b.pgscale(&["expand", "-n", "bex", "-c", f.to_str().unwrap(), "--no-rebalance"]);
    let groups_s = t_expand.elapsed().as_secs_f64();
    let plan: Value = b.json(&["rebalance", "-n", "bex", "--dry-run"]);
    let planned = plan["planned"].as_array().unwrap().clone();
    // Bare copies of a few of the shards about to move, same nodes, same run.
    let mut bare: Vec<(u64, f64)> = Vec::new();
    for m in planned.iter().step_by((planned.len() / 4).max(1)).take(4) {
        let shard = m["shard"].as_u64().unwrap();
        let src = m["from"].as_str().unwrap();
        bare.push((shard, bare_copy(&b, src, "dg3", shard)));
    }
    let t_moves = std::time::Instant::now();
    let rep: Value = b.json(&["rebalance", "-n", "bex"]);
    let moves_s = t_moves.elapsed().as_secs_f64();
    let ledger = load.finish();
    b.verify(&ledger);
    b.assert_clean();
    assert_eq!(b.psql_coord(bulk), bulk_before, "the bulk rows, by count and sum of ids");

    let moves = rep["moves"].as_array().unwrap();
    let f = |m: &Value, k: &str| m[k].as_f64().unwrap();
    let mut pauses: Vec<f64> = moves.iter().map(|m| f(m, "pause_ms")).collect();
    pauses.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |v: &[f64], p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    let retried = moves.iter().filter(|m| m["attempts"].as_u64().unwrap() > 1).count();
    // Writers' worst latency while the moves ran (every op through the coordinator).
    let mut lat: Vec<f64> = ledger.latencies.iter().map(|(_, d)| d.as_secs_f64() * 1000.0).collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut md = String::new();
    md += &format!(
        "Data: {:.0} MB in 64 shards on 2 groups (each a primary + a synchronous standby), 4 writers through the coordinator \
         (INSERT/UPDATE/DELETE, each audited), {} acknowledged changes during the run.\n\n",
        bytes as f64 / 1e6,
        ledger.acked.len()
    );
    md += "| figure | value | goal |\n| --- | --- | --- |\n";
    md += &format!("| moves | {} ({} needed a second cut-over attempt) | - |\n", moves.len(), retried);
    md += &format!(
        "| write pause per move p50 / p99 / max | {:.1} / {:.1} / {:.1} ms | <= 50 / <= 300 / < 1000 ms |\n",
        pct(&pauses, 0.5),
        pct(&pauses, 0.99),
        pauses.last().copied().unwrap_or(0.0)
    );
    md += &format!(
        "| writers' op latency p50 / p99 / max over the whole run | {:.1} / {:.1} / {:.1} ms | - |\n",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    for (shard, bare_mb_s) in &bare {
        let m = moves.iter().find(|m| m["shard"].as_u64() == Some(*shard)).unwrap();
        let rate = f(m, "copy_mb_per_s");
        md += &format!(
            "| copy rate, shard {shard} ({:.1} MB) {}→dg3: move / bare COPY pipe | {:.1} / {:.1} MB/s = {:.2}x | >= 0.7x |\n",
            f(m, "bytes") / 1e6,
            m["from"].as_str().unwrap(),
            rate,
            bare_mb_s,
            rate / bare_mb_s
        );
    }
    md += &format!(
        "| rows lost / duplicated | 0 / 0 (the writers' {} rows against the audit; the {rows} bulk rows by count and sum) | 0 |\n",
        ledger.rows.len()
    );
    md += &format!(
        "| expand 2 → 3 groups: new group {:.1} s + moves {:.1} s = {:.1} s; pg_basebackup of one data node {:.1} s | {:.2}x the base copy | - |\n",
        groups_s,
        moves_s,
        groups_s + moves_s,
        basebackup_s,
        (groups_s + moves_s) / basebackup_s
    );
    std::fs::write(&out, &md).unwrap();
    eprintln!("{md}");
}

/// A node's address in a group's recorded inventory.
fn addr_of(b: &Bed, cluster: &str, node: &str) -> (String, u16) {
    let s: Value = b.json(&["status", "-n", cluster]);
    let n = s["nodes"].as_array().unwrap().iter().find(|n| n["name"] == node).unwrap();
    (n["host"].as_str().unwrap().to_string(), n["port"].as_u64().unwrap() as u16)
}

/// `psql -c 'COPY leaf TO STDOUT' | psql -c 'COPY scratch FROM STDIN'`
/// from the shard's group to `dst` (a table like the shard, with its
/// key); MB/s of the shard's table size.
fn bare_copy(b: &Bed, src: &str, dst: &str, shard: u64) -> f64 {
    let (sc, dc) = (format!("bex_{src}"), format!("bex_{dst}"));
    let leaf = format!("pgscale_shards.orders_{shard}");
    let size: f64 = b.psql(&sc, &format!("SELECT pg_table_size('{leaf}')")).parse().unwrap();
    b.psql(&dc, "DROP TABLE IF EXISTS bench_copy; CREATE TABLE bench_copy (LIKE public.orders INCLUDING ALL)");
    let (sp, dp) = (b.psql(&sc, "SELECT pg_is_in_recovery()"), b.psql(&dc, "SELECT pg_is_in_recovery()"));
    assert_eq!((sp.as_str(), dp.as_str()), ("f", "f"));
    let (sh, sport) = addr_of(b, &sc, &format!("bex{src}a"));
    let (dh, dport) = addr_of(b, &dc, &format!("bex{dst}a"));
    let psql = testkit::bin_dir().join("psql");
    let t = std::time::Instant::now();
    let mut from = std::process::Command::new(&psql)
        .args([
            "-h",
            &sh,
            "-p",
            &sport.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            &format!("COPY {leaf} TO STDOUT"),
        ])
        .env("PGPASSWORD", testkit::admin_password(&b.k.home(), &sc))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let to = std::process::Command::new(&psql)
        .args([
            "-h",
            &dh,
            "-p",
            &dport.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            "COPY bench_copy FROM STDIN",
        ])
        .env("PGPASSWORD", testkit::admin_password(&b.k.home(), &dc))
        .stdin(from.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(from.wait().unwrap().success() && to.status.success(), "{}", String::from_utf8_lossy(&to.stderr));
    let secs = t.elapsed().as_secs_f64();
    b.psql(&dc, "DROP TABLE bench_copy");
    size / 1e6 / secs
}

#[test]
fn a_target_group_on_a_disk_too_small_is_refused_before_copying() {
    if !testkit::is_root() {
        eprintln!("mounting a small tmpfs needs root: this part runs in CI (root)");
        return;
    }
    let b = Bed::new("shd", 70, &["dg1", "dg2"]);
    for g in ["dg1", "dg2"] {
        b.psql_coord(&format!("ALTER SERVER pgscale_{g} OPTIONS (ADD batch_size '1000')"));
    }
    // About 15 MB per shard.
    b.psql_coord(
        "INSERT INTO orders (cid, id, v, pad) SELECT g, -g, 0, repeat('x', 150) FROM generate_series(1, 500000) g",
    );
    let small = b.k.path("small");
    std::fs::create_dir(&small).unwrap();
    testkit::sh(&["mount", "-t", "tmpfs", "-o", "size=150m,mode=1777", "tmpfs", &small.display().to_string()]);
    let _unmount = testkit::Unmount(small.clone());
    let mut nodes = group_nodes("shddg3", 73);
    for (i, n) in nodes.iter_mut().enumerate() {
        n.0 = format!("small/shddg3{}", ["a", "b"][i]);
    }
    // The nodes' data directories on the small filesystem.
    let add = nodes_yaml(&b.k, &nodes, "      ").replace("name: small/", "name: ");
    let f = b.k.write("add.yaml", &format!("data:\n  - name: dg3\n    nodes:\n{add}"));
    b.pgscale(&["expand", "-n", "shd", "-c", f.to_str().unwrap(), "--no-rebalance"]);
    let o = b.k.cmd().args(["rebalance", "-n", "shd"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("not enough disk") && err.contains("dg3/shddg3a") && err.contains("MB free"), "{err}");
    assert_eq!(b.shards()["moves"].as_array().unwrap().len(), 0, "nothing recorded");
    assert_eq!(b.psql("shd_dg3", "SELECT count(*) FROM pg_subscription"), "0", "nothing copied");
    assert!(b.counts().contains(&("dg3".into(), 0)));
    b.pgscale(&["destroy", "-n", "shd", "--yes"]);
}
