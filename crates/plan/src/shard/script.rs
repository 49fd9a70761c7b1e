//! A DDL script for a sharded cluster, as Citus users write it: statements
//! split at their semicolons (not inside quotes, dollar quotes or
//! comments), and the calls `SELECT create_distributed_table('t', 'key')`
//! and `SELECT create_reference_table('t')` that say what a `CREATE TABLE`
//! of the script becomes.

/// What one statement of a script is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt {
    /// Run on the coordinator and every data group.
    Everywhere(String),
    /// `CREATE TABLE t ...` of a table made sharded by `key`.
    Sharded { table: String, key: String, create: String },
    /// `CREATE TABLE t ...` of a table kept on the coordinator only.
    Reference { table: String, create: String },
}

/// Split a script into statements (without their semicolons; empty ones
/// and pure comments dropped).
pub fn split(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'$' => {
                // $tag$ ... $tag$
                let tag_end = b[i + 1..].iter().position(|c| *c == b'$').map(|p| i + 1 + p);
                if let Some(e) =
                    tag_end.filter(|e| b[i + 1..*e].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_'))
                {
                    let tag = &text[i..=e];
                    match text[e + 1..].find(tag) {
                        Some(p) => i = e + 1 + p + tag.len() - 1,
                        None => i = b.len(),
                    }
                }
            }
            b';' => {
                push(&mut out, &text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push(&mut out, &text[start.min(text.len())..]);
    out
}

fn push(out: &mut Vec<String>, s: &str) {
    let meaningful = s.lines().map(|l| l.split("--").next().unwrap_or("").trim()).any(|l| !l.is_empty());
    if meaningful {
        out.push(s.trim().to_string());
    }
}

/// Words of a statement, lower-cased, comments skipped (enough to know
/// what it is).
fn head(s: &str, n: usize) -> Vec<String> {
    s.lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == '(').filter(|w| !w.is_empty()))
        .take(n)
        .map(|w| w.to_lowercase())
        .collect()
}

/// `SELECT name('a', 'b')`: the function name and its string arguments.
fn call(s: &str) -> Option<(String, Vec<String>)> {
    let t: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let rest = t.strip_prefix("SELECT ").or_else(|| t.strip_prefix("select "))?;
    let open = rest.find('(')?;
    let name = rest[..open].trim().to_lowercase();
    let args = rest[open + 1..].trim_end().strip_suffix(')')?;
    let vals: Option<Vec<String>> = args
        .split(',')
        .map(|a| a.trim().strip_prefix('\'').and_then(|a| a.strip_suffix('\'')).map(|a| a.to_string()))
        .collect();
    Some((name, vals?))
}

/// The table a `CREATE TABLE` statement creates (unquoted, schema public).
fn created_table(s: &str) -> Option<String> {
    let h = head(s, 6);
    if h.first().map(String::as_str) != Some("create") || h.get(1).map(String::as_str) != Some("table") {
        return None;
    }
    let mut i = 2;
    if h.get(2).map(String::as_str) == Some("if") {
        i = 5;
    }
    let name = h.get(i)?;
    Some(name.strip_prefix("public.").unwrap_or(name).to_string())
}

/// Classify a script. Errors: a distribution call for a table the script
/// does not create, or a malformed call.
pub fn classify(text: &str) -> Result<Vec<Stmt>, String> {
    let stmts = split(text);
    let mut sharded: Vec<(String, String)> = Vec::new();
    let mut reference: Vec<String> = Vec::new();
    let mut rest = Vec::new();
    for s in stmts {
        match call(&s) {
            Some((f, args)) if f == "create_distributed_table" => match args.as_slice() {
                [t, k] => sharded.push((t.clone(), k.clone())),
                _ => return Err(format!("`{s}`: create_distributed_table('table', 'key column') takes two names")),
            },
            Some((f, args)) if f == "create_reference_table" => match args.as_slice() {
                [t] => reference.push(t.clone()),
                _ => return Err(format!("`{s}`: create_reference_table('table') takes one name")),
            },
            _ => rest.push(s),
        }
    }
    let mut out = Vec::new();
    for s in rest {
        let t = created_table(&s);
        if let Some(i) = t.as_ref().and_then(|t| sharded.iter().position(|(x, _)| x == t)) {
            let (table, key) = sharded.remove(i);
            out.push(Stmt::Sharded { table, key, create: s });
            continue;
        }
        match t.as_ref().and_then(|t| reference.iter().position(|x| x == t)) {
            Some(i) => {
                let table = reference.remove(i);
                out.push(Stmt::Reference { table, create: s });
            }
            None => out.push(Stmt::Everywhere(s)),
        }
    }
    if let Some((t, _)) = sharded.first() {
        return Err(format!("create_distributed_table('{t}', ...) names a table the script does not create"));
    }
    if let Some(t) = reference.first() {
        return Err(format!("create_reference_table('{t}') names a table the script does not create"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_comments() {
        let s = split(
            "CREATE TABLE a (x text DEFAULT ';'); -- a; comment\n\
             CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n\
             /* block; */ ALTER TABLE a ADD COLUMN \"y;z\" int;\n-- only a comment;\n",
        );
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(s[1].contains("SELECT 1; $$"));
        assert!(s[2].ends_with("\"y;z\" int"));
    }

    #[test]
    fn distribution_calls_say_what_a_create_becomes() {
        let c = classify(
            "CREATE TYPE st AS ENUM ('a', 'b');\n\
             CREATE TABLE orders (cid bigint, id bigint, s st, PRIMARY KEY (cid, id));\n\
             SELECT create_distributed_table('orders', 'cid');\n\
             CREATE TABLE IF NOT EXISTS public.countries (code text PRIMARY KEY);\n\
             SELECT create_reference_table('countries');\n\
             CREATE INDEX ON orders (s);",
        )
        .unwrap();
        assert!(matches!(&c[0], Stmt::Everywhere(s) if s.starts_with("CREATE TYPE")));
        assert!(matches!(&c[1], Stmt::Sharded { table, key, .. } if table == "orders" && key == "cid"));
        assert!(matches!(&c[2], Stmt::Reference { table, .. } if table == "countries"));
        assert!(matches!(&c[3], Stmt::Everywhere(s) if s.starts_with("CREATE INDEX")));
        assert!(classify("SELECT create_distributed_table('nope', 'k')").unwrap_err().contains("does not create"));
    }
}
