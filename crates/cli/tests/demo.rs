//! The README's first quick-start command, run for real.

use testkit::Kit;

#[test]
fn demo_runs_end_to_end_and_cleans_up() {
    let k = Kit::new(env!("CARGO_BIN_EXE_pgscale"));
    let dir = k.path("demo");
    let out = k.cmd().args(["demo", "--dir"]).arg(&dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // the load ran while nodes came and went, and lost nothing
    let line = err.lines().find(|l| l.starts_with("committed ")).expect("load summary");
    assert!(line.contains(" 0 failed"), "{line}");
    let n: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(n > 0);
    assert!(line.contains(&format!("on pg1: {n}, on pg2: {n}")), "{line}");
    let out_s = String::from_utf8_lossy(&out.stdout);
    assert!(out_s.contains("sync") && out_s.contains("pg3"), "status shown: {out_s}");
    // cleaned up: no cluster left, no data directories
    assert!(!k.home().join("demo").exists());
    for n in ["pg1", "pg2", "pg3"] {
        assert!(!dir.join(n).exists(), "{n} removed");
    }
}
