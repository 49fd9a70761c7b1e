//! The README's first quick-start command, run for real: init of three
//! nodes, a cascaded fourth added and removed, a switchover, kill -9 of the
//! primary, failover and rejoin, all under a write load whose every
//! acknowledged id is checked after each step.

use testkit::Kit;

#[test]
fn demo_runs_end_to_end_and_cleans_up() {
    let k = Kit::new(env!("CARGO_BIN_EXE_pgscale"));
    let dir = k.path("demo");
    let out = k.cmd().args(["demo", "--dir"]).arg(&dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // the closing table: every step, each with 0 ids lost
    let table: Vec<&str> = err.lines().skip_while(|l| !l.contains("IDS LOST")).collect();
    assert!(!table.is_empty(), "closing table: {err}");
    for step in ["init", "scale-out pg4", "scale-in pg4", "switchover to pg2", "kill -9 pg2, failover", "rejoin pg2"] {
        let row = table.iter().find(|l| l.trim_start().starts_with(step)).unwrap_or_else(|| panic!("{step}: {err}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols.last(), Some(&"0"), "ids lost in `{row}`");
    }
    // the load committed during the role changes
    let rejoin = table.iter().find(|l| l.trim_start().starts_with("rejoin")).unwrap();
    let acked: u64 = rejoin.split_whitespace().rev().nth(1).unwrap().parse().unwrap();
    assert!(acked > 0, "{rejoin}");
    // status after each step, on stdout: the sync standby and the cascaded node
    let out_s = String::from_utf8_lossy(&out.stdout);
    assert!(out_s.contains("sync") && out_s.contains("pg4") && out_s.contains("pg3"), "status shown: {out_s}");
    // cleaned up: no cluster left, no data directories
    assert!(!k.home().join("demo").exists());
    for n in ["pg1", "pg2", "pg3", "pg4"] {
        assert!(!dir.join(n).exists(), "{n} removed");
    }
}
