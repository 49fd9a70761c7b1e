//! pg_controldata's output, parsed (run with LC_ALL=C so labels are English).

use model::PgLsn;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlData {
    /// "shut down", "shut down in recovery", "in production", "in archive recovery", …
    pub state: String,
    pub checkpoint: Option<PgLsn>,
    pub timeline: Option<u32>,
}

fn lsn(s: &str) -> Option<PgLsn> {
    s.trim().parse().ok()
}

pub fn parse(text: &str) -> ControlData {
    let mut c = ControlData { state: String::new(), checkpoint: None, timeline: None };
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        match k.trim() {
            "Database cluster state" => c.state = v.trim().to_string(),
            "Latest checkpoint location" => c.checkpoint = lsn(v),
            "Latest checkpoint's TimeLineID" => c.timeline = v.trim().parse().ok(),
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fields_we_use() {
        let t = "pg_control version number:            1300\nDatabase cluster state:               shut down\n\
                 Latest checkpoint location:           0/3000028\nLatest checkpoint's REDO location:    0/3000028\n\
                 Latest checkpoint's TimeLineID:       2\n";
        let c = parse(t);
        assert_eq!(c.state, "shut down");
        assert_eq!(c.checkpoint, Some(PgLsn::from(0x3000028)));
        assert_eq!(c.timeline, Some(2));
        assert_eq!(parse("garbage").checkpoint, None);
    }
}
