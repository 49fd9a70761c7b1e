//! Reading an inventory file: serde does the shape (unknown fields, types,
//! port range) with the line and column of the fault; a second pass keeps the
//! location of every node field so later checks can point at a line too.

use model::Inventory;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::fmt;

/// One thing wrong with the input, located when we know where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// e.g. `nodes[1].port`
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

/// Line/column of fields, keyed by path (`name`, `nodes[0]`, `nodes[0].port`).
#[derive(Clone, Debug, Default)]
pub struct Locations {
    pub file: String,
    map: BTreeMap<String, (u64, u64)>,
}

impl Locations {
    pub fn for_file(file: impl Into<String>) -> Self {
        Locations { file: file.into(), map: BTreeMap::new() }
    }

    /// A problem at `field`, located at the field or else its closest parent.
    pub fn problem(&self, field: impl Into<String>, message: impl Into<String>) -> Problem {
        let field = field.into();
        let mut key = field.as_str();
        let loc = loop {
            if let Some(l) = self.map.get(key) {
                break Some(*l);
            }
            match key.rfind(['.', '[']) {
                Some(i) => key = &key[..i],
                None => break None,
            }
        };
        Problem {
            file: self.file.clone(),
            line: loc.map(|l| l.0),
            column: loc.map(|l| l.1),
            field,
            message: message.into(),
        }
    }
}

type Loc = Option<Spanned<IgnoredAny>>;

#[derive(Deserialize)]
struct LocDoc {
    name: Loc,
    postgres: Option<Spanned<LocPostgres>>,
    #[serde(default)]
    nodes: Vec<Spanned<LocNode>>,
    state: Loc,
}

#[derive(Deserialize)]
struct LocPostgres {
    hba: Option<Vec<Spanned<IgnoredAny>>>,
    parameters: Loc,
    os_user: Loc,
    admin_user: Loc,
    replication_user: Loc,
    bin_dir: Loc,
}

#[derive(Deserialize)]
struct LocNode {
    name: Loc,
    host: Loc,
    port: Loc,
    data_dir: Loc,
    upstream: Loc,
    sync: Loc,
    role: Loc,
    socket_dir: Loc,
    state: Loc,
}

fn put(map: &mut BTreeMap<String, (u64, u64)>, key: String, loc: &Loc) {
    if let Some(s) = loc {
        map.insert(key, (s.referenced.line(), s.referenced.column()));
    }
}

/// A scale-out file: only `nodes:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodesFile {
    nodes: Vec<model::NodeSpec>,
}

/// Parse a scale-out file (`nodes:` with the inventory's node fields).
pub fn parse_nodes(file: &str, text: &str) -> Result<(Vec<model::NodeSpec>, Locations), Vec<Problem>> {
    let f: NodesFile = from_located(file, text)?;
    Ok((f.nodes, locations(file, text)))
}

fn from_located<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, Vec<Problem>> {
    serde_saphyr::from_str(text).map_err(|e| {
        let loc = e.location();
        // serde-saphyr's Display repeats the location and a source snippet;
        // the first line is the message.
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("invalid YAML").to_string();
        vec![Problem {
            file: file.to_string(),
            line: loc.map(|l| l.line()),
            column: loc.map(|l| l.column()),
            field: String::new(),
            message: first,
        }]
    })
}

impl Locations {
    /// Shift node indices by `offset`, for a file whose nodes are appended
    /// after `offset` existing ones; `unshift` maps a problem back.
    pub fn shifted(&self, offset: usize) -> Locations {
        let map = self
            .map
            .iter()
            .map(|(k, v)| match node_index(k) {
                Some((i, rest)) => (format!("nodes[{}]{rest}", i + offset), *v),
                None => (k.clone(), *v),
            })
            .collect();
        Locations { file: self.file.clone(), map }
    }
}

fn node_index(key: &str) -> Option<(usize, &str)> {
    let rest = key.strip_prefix("nodes[")?;
    let end = rest.find(']')?;
    Some((rest[..end].parse().ok()?, &rest[end + 1..]))
}

/// Map a problem found on the combined inventory back to the added file's
/// node numbering.
pub fn unshift(mut p: Problem, offset: usize) -> Problem {
    if let Some((i, rest)) = node_index(&p.field) {
        if i >= offset {
            p.field = format!("nodes[{}]{rest}", i - offset);
        }
    }
    p
}

/// Parse an inventory. On a shape error, returns the one located problem.
pub fn parse_inventory(file: &str, text: &str) -> Result<(Inventory, Locations), Vec<Problem>> {
    let inv: Inventory = from_located(file, text)?;
    Ok((inv, locations(file, text)))
}

fn locations(file: &str, text: &str) -> Locations {
    let mut locs = Locations::for_file(file);
    if let Ok(doc) = serde_saphyr::from_str::<LocDoc>(text) {
        let m = &mut locs.map;
        put(m, "name".into(), &doc.name);
        put(m, "state".into(), &doc.state);
        if let Some(pg) = &doc.postgres {
            m.insert("postgres".into(), (pg.referenced.line(), pg.referenced.column()));
            let p = &pg.value;
            put(m, "postgres.parameters".into(), &p.parameters);
            put(m, "postgres.os_user".into(), &p.os_user);
            put(m, "postgres.admin_user".into(), &p.admin_user);
            put(m, "postgres.replication_user".into(), &p.replication_user);
            put(m, "postgres.bin_dir".into(), &p.bin_dir);
            for (i, h) in p.hba.iter().flatten().enumerate() {
                m.insert(format!("postgres.hba[{i}]"), (h.referenced.line(), h.referenced.column()));
            }
        }
        for (i, n) in doc.nodes.iter().enumerate() {
            m.insert(format!("nodes[{i}]"), (n.referenced.line(), n.referenced.column()));
            let v = &n.value;
            for (f, l) in [
                ("name", &v.name),
                ("host", &v.host),
                ("port", &v.port),
                ("data_dir", &v.data_dir),
                ("upstream", &v.upstream),
                ("sync", &v.sync),
                ("role", &v.role),
                ("socket_dir", &v.socket_dir),
                ("state", &v.state),
            ] {
                put(m, format!("nodes[{i}].{f}"), l);
            }
        }
    }
    locs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_is_located() {
        let y = "name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 5501\n    data_dir: /x\n    colour: red\n";
        let e = parse_inventory("c.yaml", y).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, Some(7), "{e:?}");
        assert!(e[0].message.contains("colour"), "{}", e[0]);
    }

    #[test]
    fn missing_field_is_reported() {
        let y = "name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    data_dir: /x\n";
        let e = parse_inventory("c.yaml", y).unwrap_err();
        assert!(e[0].message.contains("port"), "{}", e[0]);
    }

    #[test]
    fn port_out_of_range_is_located() {
        let y = "name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 70000\n    data_dir: /x\n";
        let e = parse_inventory("c.yaml", y).unwrap_err();
        assert_eq!(e[0].line, Some(5), "{e:?}");
    }

    #[test]
    fn nodes_file_and_shifted_locations() {
        let y = "nodes:\n  - name: pg2\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /x\n";
        let (nodes, locs) = parse_nodes("add.yaml", y).unwrap();
        assert_eq!(nodes[0].name, "pg2");
        let sh = locs.shifted(3);
        let p = sh.problem("nodes[3].port", "bad");
        assert_eq!(p.line, Some(4));
        assert_eq!(unshift(p, 3).to_string(), "add.yaml:4:11: nodes[0].port: bad");
        assert!(parse_nodes("add.yaml", "name: x\nnodes: []\n").is_err(), "only nodes: in a scale-out file");
    }

    #[test]
    fn locations_of_fields_are_kept() {
        let y = "name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 5501\n    data_dir: /x\n";
        let (inv, locs) = parse_inventory("c.yaml", y).unwrap();
        assert_eq!(inv.nodes[0].port, 5501);
        let p = locs.problem("nodes[0].port", "bad");
        assert_eq!(p.line, Some(5));
        let p = locs.problem("nodes[0].sync", "bad");
        assert_eq!(p.line, Some(3), "falls back to the node: {p:?}");
        assert_eq!(p.to_string(), "c.yaml:3:5: nodes[0].sync: bad");
    }
}
