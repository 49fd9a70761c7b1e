//! Printing: tables and JSON on stdout, progress and questions on stderr.

use crate::args::OutputFormat;
use comfy_table::{presets, Table};
use exec::Outcome;
use plan::status::StatusReport;
use plan::Plan;
use std::collections::BTreeMap;
use std::io::IsTerminal;

pub fn print_plan(p: &Plan, fmt: OutputFormat) {
    match fmt {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(p).unwrap_or_default()),
        OutputFormat::Table => print!("{}", p.render()),
    }
}

/// Progress on stderr: one line per finished step; a base copy shows a
/// bar (bytes done/total, rate) on a terminal and a line every 10% otherwise.
pub struct Progress {
    tty: bool,
    bars: BTreeMap<String, indicatif::ProgressBar>,
    last_decile: BTreeMap<String, u64>,
    multi: indicatif::MultiProgress,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            bars: BTreeMap::new(),
            last_decile: BTreeMap::new(),
            multi: indicatif::MultiProgress::new(),
        }
    }

    pub fn show(&mut self, p: &exec::Progress<'_>) {
        match p {
            exec::Progress::Started { .. } => {}
            exec::Progress::Bytes { step, done, total } => {
                let (done, total) = (*done, *total);
                if total == 0 {
                    return;
                }
                if self.tty {
                    let multi = &self.multi;
                    let bar = self.bars.entry(step.id.clone()).or_insert_with(|| {
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
                    let prev = self.last_decile.entry(step.id.clone()).or_insert(u64::MAX);
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
            exec::Progress::Finished { index, total, step, result } => {
                if let Some(b) = self.bars.remove(&step.id) {
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
                let text = format!("[{:>w$}/{total}] {:<28} {line}", index + 1, step.id);
                if self.tty {
                    let _ = self.multi.println(text);
                } else {
                    // MultiProgress prints nothing without a terminal
                    eprintln!("{text}");
                }
            }
        }
    }
}

impl Progress {
    /// A long task's bar (a shard move): bytes copied, then the lag beside
    /// it; without a terminal, a line per phase change and every 10%.
    pub fn meter(&mut self, m: &ops::Meter<'_>) {
        let label = format!("{} {}", m.key, m.phase);
        if m.finished {
            if let Some(b) = self.bars.remove(m.key) {
                b.finish_and_clear();
            }
            self.last_decile.remove(m.key);
            return;
        }
        if self.tty {
            let multi = &self.multi;
            let bar = self.bars.entry(m.key.to_string()).or_insert_with(|| {
                let b = multi.add(indicatif::ProgressBar::new(m.total.max(1)));
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg:40} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b
            });
            bar.set_length(m.total.max(1));
            bar.set_position(m.done);
            bar.set_message(if m.detail.is_empty() { label } else { format!("{label} {}", m.detail) });
        } else {
            let phase_code = match m.phase {
                "copy" => 0,
                "catch-up" => 100,
                _ => 200,
            };
            let dec = phase_code + m.done * 10 / m.total.max(1);
            let prev = self.last_decile.entry(m.key.to_string()).or_insert(u64::MAX);
            if *prev != dec {
                *prev = dec;
                eprintln!("        {label}: {:.1} of {:.1} MB {}", m.done as f64 / 1e6, m.total as f64 / 1e6, m.detail);
            }
        }
    }
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
    println!(
        "cluster {}: primary {}   (state in {})",
        r.cluster,
        r.primary.as_deref().unwrap_or("NONE (no node answers as primary)"),
        r.store
    );
    println!("{t}");
    if let Some(e) = &r.store_error {
        println!("  store: {e}");
    }
    match r.automatic_failover {
        Some(model::HaMode::Paused) => {
            println!("  automatic failover: PAUSED (maintenance: agents observe, never act)")
        }
        Some(m) => println!("  automatic failover: {}", m.as_str()),
        None => {}
    }
    for n in &r.nodes {
        if let Some(e) = &n.error {
            println!("  {}: {e}", n.name);
        }
        if n.state == "running" && n.role != "unknown" && n.role != n.expected_role {
            println!("  {}: the inventory expects a {}, the server is a {}", n.name, n.expected_role, n.role);
        }
    }
}
