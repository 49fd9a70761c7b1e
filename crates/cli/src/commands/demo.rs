use crate::args::DemoArgs;
use comfy_table::{presets, Table};
use ops::error::OpError;
use ops::{demo, Env};

pub async fn run(env: Env<'_>, a: DemoArgs) -> Result<u8, OpError> {
    let d = demo::run(env, demo::Request { dir: a.dir, keep: a.keep }).await?;
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(["STEP", "TOOK", "WRITE DOWNTIME", "ACKED IDS", "IDS LOST"]);
    for s in &d.steps {
        t.add_row([
            s.step.clone(),
            format!("{:.2} s", s.took.as_secs_f64()),
            if s.committed == 0 { "-".into() } else { format!("{:.0} ms", s.write_downtime.as_secs_f64() * 1000.0) },
            s.committed.to_string(),
            s.lost.to_string(),
        ]);
    }
    eprintln!("\n== what happened (write downtime: the longest pause between acknowledged commits during the step)");
    eprintln!("{t}");
    eprintln!(
        "every acknowledged id was found on the primary after every step; {} writes failed during role changes (not acknowledged, so not lost)",
        d.failures
    );
    Ok(0)
}
