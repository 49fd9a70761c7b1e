//! Printing: tables and JSON on stdout, progress and questions on stderr.

use crate::args::OutputFormat;
use crate::fail::invalid;
use comfy_table::{presets, Table};
use exec::{Outcome, Progress, Report};
use plan::status::StatusReport;
use plan::Plan;
use std::io::{BufRead, IsTerminal, Write};

pub fn print_plan(p: &Plan, fmt: OutputFormat) {
    match fmt {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(p).unwrap_or_default()),
        OutputFormat::Table => print!("{}", p.render()),
    }
}

/// Progress on stderr: one line per finished step; a base copy shows a
/// bar (bytes done/total, rate) on a terminal and a line every 10% otherwise.
pub fn progress() -> impl FnMut(Progress) {
    let tty = std::io::stderr().is_terminal();
    let mut bars: std::collections::BTreeMap<String, indicatif::ProgressBar> = Default::default();
    let mut last_decile: std::collections::BTreeMap<String, u64> = Default::default();
    let multi = indicatif::MultiProgress::new();
    move |p| match p {
        Progress::Started { .. } => {}
        Progress::Bytes { step, done, total } => {
            if total == 0 {
                return;
            }
            if tty {
                let bar = bars.entry(step.id.clone()).or_insert_with(|| {
                    let b = multi.add(indicatif::ProgressBar::new(total));
                    b.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{msg:28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    b.set_message(step.id.clone());
                    b
                });
                bar.set_length(total);
                bar.set_position(done);
            } else {
                let dec = done * 10 / total;
                let prev = last_decile.entry(step.id.clone()).or_insert(u64::MAX);
                if *prev != dec {
                    *prev = dec;
                    eprintln!(
                        "        {} copied {} of {} MB ({}%)",
                        step.id,
                        done >> 20,
                        total >> 20,
                        done * 100 / total
                    );
                }
            }
        }
        Progress::Finished { index, total, step, result } => {
            if let Some(b) = bars.remove(&step.id) {
                b.finish_and_clear();
            }
            let w = total.to_string().len();
            let secs = result.elapsed.as_secs_f64();
            let line = match &result.outcome {
                Outcome::Done => format!("ok      {secs:.2}s"),
                Outcome::Skipped(why) => format!("skipped ({why})"),
                Outcome::Warned(e) => {
                    format!("WARNING {secs:.2}s\n        {e}\n        (best effort: the operation goes on)")
                }
                Outcome::Failed(e) => format!("FAILED  {secs:.2}s\n        {e}"),
                Outcome::NotRun => "not run".into(),
            };
            let _ = multi.println(format!("[{:>w$}/{total}] {:<28} {line}", index + 1, step.id));
            if !tty {
                // MultiProgress prints nothing without a terminal
                eprintln!("[{:>w$}/{total}] {:<28} {line}", index + 1, step.id);
            }
        }
    }
}

/// Summarise a run; Err(exit code 1) when something failed.
pub fn finish(report: &Report, what: &str, rerun: &str) -> anyhow::Result<()> {
    let failed: Vec<_> = report
        .results
        .iter()
        .filter_map(|r| if let Outcome::Failed(e) = &r.outcome { Some(e.as_str()) } else { None })
        .collect();
    if failed.is_empty() {
        eprintln!("{what}: done in {:.2}s", report.elapsed.as_secs_f64());
        Ok(())
    } else {
        Err(crate::fail::failed(format!(
            "{what} failed after {:.2}s:\n  {}\nRe-running `{rerun}` is safe: it continues from what is left.",
            report.elapsed.as_secs_f64(),
            failed.join("\n  ")
        )))
    }
}

/// Ask before a destructive change. Without a terminal, `--yes` is required.
pub fn confirm(question: &str, expect: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(invalid(format!("{question}: refusing without a terminal; pass --yes to confirm")));
    }
    eprint!("{question}\nType `{expect}` to confirm: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == expect)
}

fn dash(o: Option<String>) -> String {
    o.unwrap_or_else(|| "-".into())
}

pub fn print_status(r: &StatusReport, fmt: OutputFormat) {
    if fmt == OutputFormat::Json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(["NODE", "ADDRESS", "ROLE", "STATE", "UPSTREAM", "TL", "LSN", "LAG", "SYNC", "DATA_DIR"]);
    for n in &r.nodes {
        let role = if n.needs_rejoin { format!("{} (needs rejoin)", n.role) } else { n.role.to_string() };
        t.add_row([
            n.name.clone(),
            format!("{}:{}", n.host, n.port),
            role,
            n.state.to_string(),
            dash(n.upstream.clone()),
            dash(n.timeline.map(|x| x.to_string())),
            dash(n.lsn.clone()),
            dash(n.lag_bytes.map(|x| x.to_string())),
            dash(n.sync_state.clone()),
            n.data_dir.clone(),
        ]);
    }
    println!("cluster {}: primary {}", r.cluster, r.primary.as_deref().unwrap_or("NONE (no node answers as primary)"));
    println!("{t}");
    for n in &r.nodes {
        if let Some(e) = &n.error {
            println!("  {}: {e}", n.name);
        }
        if n.state == "running" && n.role != "unknown" && n.role != n.expected_role {
            println!("  {}: the inventory expects a {}, the server is a {}", n.name, n.expected_role, n.role);
        }
    }
}
