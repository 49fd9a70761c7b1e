//! Reading an inventory file, in two passes over the YAML:
//!
//! 1. an untyped pass keeps what was written where (every value with its line
//!    and column): it finds YAML syntax errors and empty files, gives later
//!    checks the location of every field ([`Locations`]), and lets a type
//!    error say what it got;
//! 2. the typed pass (serde: unknown fields, types, port range), wrapped by
//!    `serde_path_to_error` so that a fault names its field path
//!    (`nodes[1].sync`); [`accepts`] says what that field takes.

use model::Inventory;
use serde::de::{DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{MessageFormatter, Spanned};
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

    /// The locations of one group of a sharded file (`prefix` like
    /// `data[1].`), renamed as in a file of its own; shared sections
    /// (`name`, `postgres`, ...) keep their places.
    pub fn group(&self, prefix: &str) -> Locations {
        let map = self
            .map
            .iter()
            .filter_map(|(k, v)| match k.strip_prefix(prefix) {
                Some(rest) => Some((rest.to_string(), *v)),
                None if k.starts_with("coordinator") || k.starts_with("data") => None,
                None => Some((k.clone(), *v)),
            })
            .collect();
        Locations { file: self.file.clone(), map }
    }

    /// Every value of the document, keyed by its path.
    fn of_document(file: &str, root: &Spanned<Value>) -> Locations {
        fn walk(map: &mut BTreeMap<String, (u64, u64)>, path: &mut String, v: &Spanned<Value>) {
            if !path.is_empty() {
                if let Some(l) = loc(v) {
                    map.insert(path.clone(), l);
                }
            }
            let len = path.len();
            match &v.value {
                Value::List(items) => {
                    for (i, item) in items.iter().enumerate() {
                        path.push_str(&format!("[{i}]"));
                        walk(map, path, item);
                        path.truncate(len);
                    }
                }
                Value::Map(entries) => {
                    for (k, item) in entries {
                        if !path.is_empty() {
                            path.push('.');
                        }
                        path.push_str(k);
                        walk(map, path, item);
                        path.truncate(len);
                    }
                }
                _ => {}
            }
        }
        let mut locs = Locations::for_file(file);
        walk(&mut locs.map, &mut String::new(), root);
        locs
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
    parse(file, text, Doc::Inventory)
}

/// A scale-out file: only `nodes:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodesFile {
    nodes: Vec<model::NodeSpec>,
}

/// Parse a scale-out file (`nodes:` with the inventory's node fields).
pub fn parse_nodes(file: &str, text: &str) -> Result<(Vec<model::NodeSpec>, Locations), Vec<Problem>> {
    let (f, locs) = parse::<NodesFile>(file, text, Doc::Nodes)?;
    Ok((f.nodes, locs))
}

/// Parse a sharded spec (`coordinator:` and `data:` groups).
pub fn parse_sharded(file: &str, text: &str) -> Result<(crate::shard::spec::ShardedFile, Locations), Vec<Problem>> {
    parse(file, text, Doc::Sharded)
}

/// Parse an `expand` file (`data:` groups).
pub fn parse_add_groups(file: &str, text: &str) -> Result<(crate::shard::spec::AddFile, Locations), Vec<Problem>> {
    parse(file, text, Doc::Groups)
}

/// Which kind of file is read, for the messages about the whole file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Doc {
    Inventory,
    Nodes,
    Sharded,
    Groups,
}

impl Doc {
    fn empty(self) -> &'static str {
        match self {
            Doc::Inventory => {
                "the file is empty: an inventory needs at least `name:` and `nodes:` \
                 (each node with name, host, port, data_dir; try `pgscale init --gen-template`)"
            }
            Doc::Nodes => {
                "the file is empty: a scale-out file needs `nodes:` \
                 (try `pgscale scale-out -n NAME --gen-template`)"
            }
            Doc::Sharded => {
                "the file is empty: a sharded spec needs `name:`, `coordinator:` and `data:` \
                 (try `pgscale init --gen-template --sharded`)"
            }
            Doc::Groups => {
                "the file is empty: an expand file needs `data:` (a list of groups with `name:` and `nodes:`)"
            }
        }
    }

    fn root(self) -> &'static str {
        match self {
            Doc::Inventory => "a mapping with `name:` and `nodes:`",
            Doc::Nodes => "a mapping with `nodes:`",
            Doc::Sharded => "a mapping with `name:`, `coordinator:` and `data:`",
            Doc::Groups => "a mapping with `data:`",
        }
    }
}

fn parse<T: DeserializeOwned>(file: &str, text: &str, doc: Doc) -> Result<(T, Locations), Vec<Problem>> {
    let problem = |loc: Option<(u64, u64)>, field: String, message: String| Problem {
        file: file.to_string(),
        line: loc.map(|l| l.0),
        column: loc.map(|l| l.1),
        field,
        message,
    };
    // Pass 1: untyped. YAML errors (syntax, duplicate keys, aliases…) end here;
    // `.inf` and `.nan` are values here, for the typed pass to refuse by field.
    let mut options = serde_saphyr::Options::default();
    options.non_finite_float_policy = serde_saphyr::options::NonFiniteFloatPolicy::PassThrough;
    let root = match serde_saphyr::from_str_with_options::<Option<Spanned<Value>>>(text, options) {
        Ok(Some(root)) if !matches!(root.value, Value::Null) => root,
        Ok(_) => return Err(vec![problem(None, String::new(), doc.empty().into())]),
        Err(e) => return Err(vec![problem(error_loc(&e), String::new(), user_message(&e))]),
    };
    // Pass 2: typed, keeping the path to the value being read.
    let mut failed_at = None;
    let typed = serde_saphyr::with_deserializer_from_str(text, |de| {
        let mut track = serde_path_to_error::Track::new();
        let r = T::deserialize(serde_path_to_error::Deserializer::new(de, &mut track));
        if r.is_err() {
            failed_at = Some(track.path());
        }
        r
    });
    match typed {
        Ok(v) => Ok((v, Locations::of_document(file, &root))),
        Err(e) => {
            let path: Vec<Seg> = failed_at.iter().flat_map(|p| p.iter()).filter_map(Seg::of).collect();
            let (field, message, loc) = explain(doc, &root, &path, &e);
            Err(vec![problem(loc, field, message)])
        }
    }
}

/// The field, message and location for an error of the typed pass at `path`.
fn explain(
    doc: Doc,
    root: &Spanned<Value>,
    path: &[Seg],
    e: &serde_saphyr::Error,
) -> (String, String, Option<(u64, u64)>) {
    let at = lookup(root, path);
    let value_loc = at.and_then(loc).or_else(|| error_loc(e));
    match original(e) {
        serde_saphyr::Error::SerdeUnknownField { field, expected, .. } => {
            // The path ends at the unknown key: name the mapping that has it.
            let parent = match path.split_last() {
                Some((Seg::Key(k), parent)) if k == field => parent,
                _ => path,
            };
            let message = if parent.is_empty() && doc == Doc::Nodes {
                format!("unknown field `{field}`: a scale-out file has only `nodes:`")
            } else if expected.is_empty() {
                format!("unknown field `{field}`")
            } else {
                format!("unknown field `{field}`, expected one of {}", expected.join(", "))
            };
            (render(parent), message, error_loc(e))
        }
        serde_saphyr::Error::SerdeMissingField { field, .. } => {
            (render(path), format!("missing field `{field}`"), value_loc)
        }
        inner => {
            let accepts = if path.is_empty() { Some(Accepts::Root(doc)) } else { accepts(&pattern(path)) };
            let message = match (accepts, at) {
                (Some(a), Some(v)) if !a.fits(&v.value) => format!("expected {a}, got {}", Got(&v.value)),
                _ => user_message(inner),
            };
            (render(path), message, value_loc)
        }
    }
}

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

impl Seg {
    fn of(s: &serde_path_to_error::Segment) -> Option<Seg> {
        use serde_path_to_error::Segment;
        match s {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            Segment::Unknown => None,
        }
    }
}

/// `nodes[0].port`, as `Locations` keys it.
fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The path with indices and parameter names left out: `nodes[].port`,
/// `postgres.parameters.*`.
fn pattern(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(_) if s == "postgres.parameters" => s.push_str(".*"),
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(_) => s.push_str("[]"),
        }
    }
    s
}

/// What a field of the inventory accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Accepts {
    Root(Doc),
    Text,
    Bool,
    Port,
    OneOf(&'static [&'static str]),
    Mapping,
    Nodes,
    Texts,
    Param,
    Bytes,
}

const SYNC_MODES: &[&str] = &["sync", "potential", "async"];
const ROLES: &[&str] = &["primary", "standby"];
const TRANSPORTS: &[&str] = &["local", "ssh"];
const PHASES: &[&str] = &["initializing", "ready"];

/// What the field at `pattern` (see [`pattern`]) accepts; `None` for a path
/// that is not a field of `model::Inventory`.
fn accepts(pattern: &str) -> Option<Accepts> {
    use Accepts::*;
    Some(match pattern {
        "name"
        | "postgres.bin_dir"
        | "postgres.os_user"
        | "postgres.admin_user"
        | "postgres.replication_user"
        | "postgres.hba[]"
        | "state.removed[]"
        | "state.previous_primary"
        | "nodes[].name"
        | "nodes[].host"
        | "nodes[].data_dir"
        | "nodes[].upstream"
        | "nodes[].socket_dir"
        | "nodes[].ssh.user"
        | "nodes[].ssh.identity_file"
        | "nodes[].ssh.known_hosts_file"
        | "nodes[].ssh.config_file"
        | "nodes[].state.created_dirs[]"
        | "nodes[].state.adopted_dirs[]" => Text,
        "postgres.allow_trust"
        | "postgres.install"
        | "ha.failsafe"
        | "ha.auto_reclone"
        | "nodes[].state.needs_rejoin"
        | "nodes[].state.joining"
        | "nodes[].state.leaving"
        | "nodes[].state.clear_dir" => Bool,
        "nodes[].port" | "nodes[].ssh.port" => Port,
        "nodes[].sync" => OneOf(SYNC_MODES),
        "nodes[].role" => OneOf(ROLES),
        "nodes[].transport" => OneOf(TRANSPORTS),
        "state.phase" => OneOf(PHASES),
        "ha.maximum_lag_on_failover" => Bytes,
        "postgres" | "postgres.parameters" | "ha" | "state" | "nodes[]" | "nodes[].ssh" | "nodes[].state" => Mapping,
        "nodes" => Nodes,
        "postgres.hba" | "state.removed" | "nodes[].state.created_dirs" | "nodes[].state.adopted_dirs" => Texts,
        "postgres.parameters.*" => Param,
        _ => return None,
    })
}

impl Accepts {
    /// Whether `v` has the shape this field takes (the typed pass may still
    /// refuse it; then its own message is used).
    fn fits(self, v: &Value) -> bool {
        match self {
            Accepts::Root(_) | Accepts::Mapping => matches!(v, Value::Map(_)),
            Accepts::Nodes | Accepts::Texts => matches!(v, Value::List(_)),
            Accepts::Text | Accepts::Param => matches!(v, Value::Str(_) | Value::Number(_) | Value::Bool(_)),
            Accepts::Bool => matches!(v, Value::Bool(_)),
            Accepts::Port => matches!(v, Value::Number(n) if n.parse::<u16>().is_ok_and(|p| p > 0)),
            Accepts::Bytes => matches!(v, Value::Number(n) if n.parse::<u64>().is_ok()),
            Accepts::OneOf(names) => matches!(v, Value::Str(s) if names.contains(&s.as_str())),
        }
    }
}

impl fmt::Display for Accepts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Accepts::Root(doc) => f.write_str(doc.root()),
            Accepts::Text => f.write_str("a string"),
            Accepts::Bool => f.write_str("true or false"),
            Accepts::Port => f.write_str("a port number 1-65535"),
            Accepts::OneOf(names) => write!(f, "one of {}", names.join(", ")),
            Accepts::Mapping => f.write_str("a mapping"),
            Accepts::Nodes => f.write_str("a list of nodes"),
            Accepts::Texts => f.write_str("a list of strings"),
            Accepts::Param => f.write_str("a string, number or boolean"),
            Accepts::Bytes => f.write_str("a number of bytes, e.g. 1048576"),
        }
    }
}

/// A value as the user wrote it, for `got …`.
struct Got<'a>(&'a Value);

impl fmt::Display for Got<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 40;
        match self.0 {
            Value::Null => f.write_str("nothing"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => f.write_str(n),
            Value::Str(s) if s.chars().count() > MAX => {
                let cut: String = s.chars().take(MAX).collect();
                write!(f, "{:?}…", cut)
            }
            Value::Str(s) => write!(f, "{s:?}"),
            Value::List(_) => f.write_str("a list"),
            Value::Map(_) => f.write_str("a mapping"),
        }
    }
}

/// The untyped document.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    /// As written by `Display` of the number read.
    Number(String),
    Str(String),
    List(Vec<Spanned<Value>>),
    Map(Vec<(String, Spanned<Value>)>),
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Number(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
                Ok(Value::Number(v.to_string()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
                Ok(Value::Number(v.to_string()))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
                Ok(Value::Number(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
                // Debug keeps the `.0` of `5432.0`, which is not a port
                Ok(Value::Number(format!("{v:?}")))
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Str(v.to_string()))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
                Ok(Value::Str(String::from_utf8_lossy(v).into_owned()))
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                Value::deserialize(d)
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                Value::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Value::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Spanned<Value>>()? {
                    entries.push(entry);
                }
                Ok(Value::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// The value at `path`, if the document has one there.
fn lookup<'a>(root: &'a Spanned<Value>, path: &[Seg]) -> Option<&'a Spanned<Value>> {
    path.iter().try_fold(root, |v, seg| match (&v.value, seg) {
        (Value::Map(entries), Seg::Key(k)) => entries.iter().find(|(key, _)| key == k).map(|(_, v)| v),
        (Value::List(items), Seg::Index(i)) => items.get(*i),
        _ => None,
    })
}

fn loc(v: &Spanned<Value>) -> Option<(u64, u64)> {
    Some((v.referenced.line(), v.referenced.column())).filter(|l| l.0 > 0)
}

fn error_loc(e: &serde_saphyr::Error) -> Option<(u64, u64)> {
    e.location().map(|l| (l.line(), l.column())).filter(|l| l.0 > 0)
}

/// The error itself, without the source snippet or alias wrapper.
fn original(e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    match e {
        serde_saphyr::Error::WithSnippet { error, .. } | serde_saphyr::Error::AliasError { error, .. } => {
            original(error)
        }
        other => other,
    }
}

/// serde-saphyr's user-facing wording, without location or snippet.
fn user_message(e: &serde_saphyr::Error) -> String {
    serde_saphyr::UserMessageFormatter.format_message(original(e)).into_owned()
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

    const NODE: &str = "name: demo\nnodes:\n  - name: pg1\n    host: 127.0.0.1\n    port: 5501\n    data_dir: /x\n";
    const ADD: &str = "nodes:\n  - name: pg2\n    host: 127.0.0.2\n    port: 5501\n    data_dir: /x\n";

    fn with_port(port: &str) -> String {
        NODE.replace("5501", port)
    }

    /// Every message the shape pass gives, one bad input each.
    #[test]
    fn shape_errors_name_the_field_and_what_it_accepts() {
        let inventory: Vec<(&str, String)> = vec![
            ("port: abc", with_port("abc")),
            ("port: 70000", with_port("70000")),
            ("port: -5", with_port("-5")),
            ("port: (nothing)", with_port("")),
            ("sync: maybe", format!("{NODE}    sync: maybe\n")),
            ("role: boss", format!("{NODE}    role: boss\n")),
            ("transport: telnet", format!("{NODE}    transport: telnet\n")),
            ("port: 5432.0", with_port("5432.0")),
            ("sync: 5", format!("{NODE}    sync: 5\n")),
            ("ssh.port: 99999", format!("{NODE}    ssh:\n      user: pg\n      port: 99999\n")),
            ("ssh: yes-please", format!("{NODE}    ssh: yes-please\n")),
            ("parameter is a list", format!("{NODE}postgres:\n  parameters:\n    work_mem: [4MB]\n")),
            ("parameter is a map", format!("{NODE}postgres:\n  parameters:\n    work_mem: {{a: 1}}\n")),
            ("parameter: .inf", format!("{NODE}postgres:\n  parameters:\n    work_mem: .inf\n")),
            ("allow_trust: maybe", format!("{NODE}postgres:\n  allow_trust: maybe\n")),
            ("hba is a string", format!("{NODE}postgres:\n  hba: host all all 10.0.0.0/8 md5\n")),
            ("name: [a, b]", NODE.replace("name: demo", "name: [a, b]")),
            ("host: {a: 1}", NODE.replace("host: 127.0.0.1", "host: {a: 1}")),
            ("data_dir: [x]", NODE.replace("data_dir: /x", "data_dir: [x]")),
            ("nodes: 5", "name: demo\nnodes: 5\n".into()),
            ("nodes: [5]", "name: demo\nnodes: [5]\n".into()),
            ("postgres: x", format!("{NODE}postgres: x\n")),
            ("unknown field", format!("{NODE}    colour: red\n")),
            ("unknown top-level field", format!("{NODE}colour: red\n")),
            ("missing field", NODE.replace("    port: 5501\n", "")),
            ("missing name", NODE.replace("name: demo\n", "")),
            ("empty file", String::new()),
            ("comments only", "# the cluster\n\n   \n# more\n".into()),
            ("not a mapping", "- pg1\n- pg2\n".into()),
            ("YAML syntax", "name: [demo\nnodes: []\n".into()),
            ("duplicate key", "name: a\nname: b\nnodes: []\n".into()),
        ];
        let scale_out: Vec<(&str, String)> = vec![
            ("port: abc", ADD.replace("5501", "abc")),
            ("sync: maybe", format!("{ADD}    sync: maybe\n")),
            ("nodes: x", "nodes: x\n".into()),
            ("name: (inventory field)", format!("name: demo\n{ADD}")),
            ("unknown field", format!("{ADD}    colour: red\n")),
            ("missing field", ADD.replace("    host: 127.0.0.2\n", "")),
            ("empty file", String::new()),
            ("comments only", "# nodes to add\n".into()),
        ];
        let mut out = String::new();
        let mut show = |what: &str, label: &str, r: Result<(), Vec<Problem>>| {
            let problems = r.expect_err(label);
            assert_eq!(problems.len(), 1, "{label}: {problems:?}");
            out.push_str(&format!("{what} / {label}\n    {}\n", problems[0]));
        };
        for (label, y) in &inventory {
            show("inventory", label, parse_inventory("cluster.yaml", y).map(|_| ()));
        }
        for (label, y) in &scale_out {
            show("scale-out", label, parse_nodes("add.yaml", y).map(|_| ()));
        }
        insta::assert_snapshot!("shape_errors", out);
    }

    #[test]
    fn empty_file_has_no_line() {
        for y in ["", "\n\n", "# only a comment\n", "---\n"] {
            let e = parse_inventory("c.yaml", y).unwrap_err();
            assert_eq!((e.len(), e[0].line, e[0].field.as_str()), (1, None, ""), "{y:?}: {e:?}");
            assert!(e[0].message.contains("`name:` and `nodes:`"), "{}", e[0]);
            let e = parse_nodes("add.yaml", y).unwrap_err();
            assert!(e[0].message.contains("needs `nodes:`"), "{}", e[0]);
        }
    }

    #[test]
    fn every_field_of_the_inventory_says_what_it_accepts() {
        // An inventory with every optional field set: each path it serializes
        // to must be known to `accepts`, so a new model field gets a message.
        let ssh = model::SshSpec {
            user: Some("u".into()),
            port: Some(22),
            identity_file: Some("/k".into()),
            known_hosts_file: Some("/h".into()),
            config_file: Some("/c".into()),
        };
        let y = "name: demo\nnodes:\n  - name: pg1\n    host: h\n    port: 1\n    data_dir: /d\n";
        let mut inv = parse_inventory("c.yaml", y).unwrap().0;
        let pg = &mut inv.postgres;
        pg.bin_dir = Some("/b".into());
        pg.os_user = Some("o".into());
        pg.parameters.insert("work_mem".into(), model::ParamValue::Str("4MB".into()));
        pg.hba.push("local all all peer".into());
        pg.allow_trust = true;
        pg.install = true;
        inv.ha = model::HaSpec { failsafe: true, maximum_lag_on_failover: 1, auto_reclone: true };
        inv.state.removed.push("pg9".into());
        inv.state.previous_primary = Some("pg1".into());
        inv.state.phase = model::Phase::Initializing;
        let n = &mut inv.nodes[0];
        n.role = Some(model::Role::Primary);
        n.upstream = Some("pg0".into());
        n.sync = Some(model::SyncMode::Sync);
        n.ssh = Some(ssh);
        n.transport = Some(model::Transport::Ssh);
        n.socket_dir = Some("/s".into());
        n.state.created_dirs.push("/d".into());
        n.state.adopted_dirs.push("/d".into());
        (n.state.needs_rejoin, n.state.joining, n.state.leaving, n.state.clear_dir) = (true, true, true, true);

        fn walk(path: &mut Vec<Seg>, v: &serde_json::Value, seen: &mut Vec<String>) {
            if !path.is_empty() {
                let p = pattern(path);
                assert!(accepts(&p).is_some(), "no message for `{p}`");
                seen.push(p);
            }
            match v {
                serde_json::Value::Object(m) => m.iter().for_each(|(k, v)| {
                    path.push(Seg::Key(k.clone()));
                    walk(path, v, seen);
                    path.pop();
                }),
                serde_json::Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| {
                    path.push(Seg::Index(i));
                    walk(path, v, seen);
                    path.pop();
                }),
                _ => {}
            }
        }
        let mut seen = Vec::new();
        walk(&mut Vec::new(), &serde_json::to_value(&inv).unwrap(), &mut seen);
        assert!(seen.len() > 40, "{seen:?}");
    }

    #[test]
    fn the_ha_section_is_read_with_defaults_and_its_faults_are_located() {
        let base = "name: demo\nnodes:\n  - name: pg1\n    host: h\n    port: 1\n    data_dir: /d\n";
        let inv = parse_inventory("c.yaml", base).unwrap().0;
        assert_eq!(inv.ha, model::HaSpec::default());
        assert_eq!(inv.ha.maximum_lag_on_failover, 1 << 20);
        let y = format!("{base}ha:\n  failsafe: true\n  maximum_lag_on_failover: 65536\n  auto_reclone: true\n");
        let ha = parse_inventory("c.yaml", &y).unwrap().0.ha;
        assert!(ha.failsafe && ha.auto_reclone && ha.maximum_lag_on_failover == 65536);
        let bad = parse_inventory("c.yaml", &format!("{base}ha:\n  maximum_lag_on_failover: 1MB\n")).unwrap_err();
        assert!(
            bad[0].to_string().contains("ha.maximum_lag_on_failover") && bad[0].to_string().contains("bytes"),
            "{bad:?}"
        );
        let bad = parse_inventory("c.yaml", &format!("{base}ha:\n  fail_safe: true\n")).unwrap_err();
        assert!(bad[0].to_string().contains("fail_safe"), "{bad:?}");
    }

    #[test]
    fn enum_lists_match_the_model() {
        fn variants<T: DeserializeOwned + fmt::Debug>() -> Vec<&'static str> {
            match original(&serde_saphyr::from_str::<T>("no-such-variant").unwrap_err()) {
                serde_saphyr::Error::SerdeUnknownVariant { expected, .. } => expected.clone(),
                e => panic!("{e:?}"),
            }
        }
        assert_eq!(variants::<model::SyncMode>(), SYNC_MODES);
        assert_eq!(variants::<model::Role>(), ROLES);
        assert_eq!(variants::<model::Transport>(), TRANSPORTS);
        assert_eq!(variants::<model::Phase>(), PHASES);
    }

    #[test]
    fn every_field_is_located() {
        let y = format!("{NODE}    ssh:\n      port: 22\npostgres:\n  parameters:\n    work_mem: 4MB\n");
        let (_, locs) = parse_inventory("c.yaml", &y).unwrap();
        assert_eq!(locs.problem("nodes[0].ssh.port", "x").to_string(), "c.yaml:8:13: nodes[0].ssh.port: x");
        assert_eq!(locs.problem("postgres.parameters.work_mem", "x").line, Some(11));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Any integer port: read as that port, or refused at the port's
            /// line with the accepted range (0 is read, and refused by
            /// validate).
            #[test]
            fn any_integer_port(port in prop_oneof![-10i64..70_000, any::<i64>()]) {
                match parse_inventory("c.yaml", &with_port(&port.to_string())) {
                    Ok((inv, _)) => {
                        prop_assert!((0..=65535).contains(&port), "{port} accepted");
                        prop_assert_eq!(i64::from(inv.nodes[0].port), port);
                    }
                    Err(e) => {
                        prop_assert!(!(0..=65535).contains(&port), "{port} refused: {e:?}");
                        prop_assert_eq!(e.len(), 1);
                        prop_assert_eq!(&e[0].field, "nodes[0].port");
                        prop_assert_eq!((e[0].line, e[0].column), (Some(5), Some(11)));
                        prop_assert_eq!(&e[0].message, &format!("expected a port number 1-65535, got {port}"));
                    }
                }
            }

            /// Any other word for `sync:` names the field, where it is, and
            /// the accepted modes.
            #[test]
            fn any_other_sync_mode(word in "[a-zA-Z][a-zA-Z0-9_-]{0,11}") {
                prop_assume!(!SYNC_MODES.contains(&word.as_str()));
                let e = parse_nodes("add.yaml", &format!("{ADD}    sync: {word}\n")).unwrap_err();
                prop_assert_eq!(e.len(), 1);
                prop_assert_eq!(&e[0].field, "nodes[0].sync");
                prop_assert_eq!(e[0].line, Some(6));
                prop_assert!(
                    e[0].message.starts_with("expected one of sync, potential, async, got "),
                    "{}", e[0]
                );
            }
        }
    }
}
