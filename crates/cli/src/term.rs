//! The terminal side of an operation: lines and progress on stderr,
//! questions on the terminal, plans and status on stdout.

use crate::args::OutputFormat;
use crate::output::{print_plan, print_status, Progress};
use ops::error::{invalid, OpError};
use plan::status::StatusReport;
use plan::Plan;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;

pub struct TermUi {
    pub fmt: OutputFormat,
    progress: Mutex<Progress>,
}

impl TermUi {
    pub fn new(fmt: OutputFormat) -> TermUi {
        TermUi { fmt, progress: Mutex::new(Progress::new()) }
    }
}

impl ops::Ui for TermUi {
    fn say(&self, line: &str) {
        eprintln!("{line}");
    }

    fn interactive(&self) -> bool {
        std::io::stdin().is_terminal()
    }

    fn confirm(&self, plan: Option<&Plan>, question: &str, expect: &str) -> Result<bool, OpError> {
        if !self.interactive() {
            return Err(invalid(format!("{question}: refusing without a terminal; pass --yes to confirm")));
        }
        if let Some(p) = plan {
            print_plan(p, OutputFormat::Table);
        }
        eprint!("{question}\nType `{expect}` to confirm: ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| invalid(format!("read the answer: {e}")))?;
        Ok(line.trim() == expect)
    }

    fn progress(&self, p: &exec::Progress<'_>) {
        self.progress.lock().unwrap_or_else(|e| e.into_inner()).show(p);
    }

    fn meter(&self, m: &ops::Meter<'_>) {
        self.progress.lock().unwrap_or_else(|e| e.into_inner()).meter(m);
    }

    fn status(&self, r: &StatusReport) {
        print_status(r, self.fmt);
    }
}
