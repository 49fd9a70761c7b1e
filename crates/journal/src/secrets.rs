//! Passwords of the cluster's roles, in a file in PostgreSQL's .pgpass
//! format (so psql and pg_basebackup read it through PGPASSFILE), mode 0600.
//! Passwords never appear in argv, logs or the inventory.

use crate::home::{io, write_atomic, HomeError};
use rand::distributions::{Alphanumeric, DistString};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct Secrets {
    path: PathBuf,
    by_user: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").field("path", &self.path).field("users", &self.by_user.keys()).finish()
    }
}

fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut it = field.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

/// One .pgpass line matching any host, port and database for `user`.
pub fn pgpass_line(user: &str, password: &str) -> String {
    format!("*:*:*:{}:{}\n", escape(user), escape(password))
}

/// Split a .pgpass line on unescaped colons.
fn fields(line: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut cur = String::new();
    let mut esc = false;
    for c in line.chars() {
        if esc {
            cur.push('\\');
            cur.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == ':' {
            v.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    v.push(cur);
    v
}

impl Secrets {
    pub(crate) fn load_or_create(path: &Path, users: &[&str], persist: bool) -> Result<Secrets, HomeError> {
        let mut by_user = BTreeMap::new();
        match fs::read_to_string(path) {
            Ok(text) => {
                let mode = fs::metadata(path).map_err(io("stat", path))?.permissions().mode();
                if persist && mode & 0o077 != 0 {
                    // Tighten rather than refuse: nobody else must read it.
                    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io("chmod", path))?;
                }
                for l in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
                    let f = fields(l);
                    if f.len() == 5 {
                        by_user.insert(unescape(&f[3]), unescape(&f[4]));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("read", path)(e)),
        }
        let (s, changed) = Secrets::from_map(path, by_user, users);
        if changed && persist {
            s.save()?;
        }
        Ok(s)
    }

    /// Passwords held elsewhere (etcd), to be written to `path` for
    /// PGPASSFILE; missing ones for `users` are generated (the bool says so).
    /// Nothing is written here.
    pub fn from_map(path: &Path, mut by_user: BTreeMap<String, String>, users: &[&str]) -> (Secrets, bool) {
        let mut changed = false;
        for u in users {
            if !by_user.contains_key(*u) {
                by_user.insert(u.to_string(), Alphanumeric.sample_string(&mut rand::rngs::OsRng, 32));
                changed = true;
            }
        }
        (Secrets { path: path.to_path_buf(), by_user }, changed)
    }

    /// Every user's password (for a store that keeps them encrypted).
    pub fn all(&self) -> &BTreeMap<String, String> {
        &self.by_user
    }

    /// Write the file (mode 0600, atomically).
    pub fn save(&self) -> Result<(), HomeError> {
        let mut text = String::from("# pgscale: passwords of this cluster's roles (.pgpass format). Keep mode 0600.\n");
        for (u, p) in &self.by_user {
            text += &pgpass_line(u, p);
        }
        write_atomic(&self.path, text.as_bytes(), 0o600)
    }

    pub fn password(&self, user: &str) -> Option<&str> {
        self.by_user.get(user).map(String::as_str)
    }

    /// For PGPASSFILE.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_kept_private_and_parsable() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("pgpass");
        let a = Secrets::load_or_create(&p, &["postgres", "repl"], true).unwrap();
        let pw = a.password("postgres").unwrap().to_string();
        assert_eq!(pw.len(), 32);
        assert_ne!(pw, a.password("repl").unwrap());
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let b = Secrets::load_or_create(&p, &["postgres"], true).unwrap();
        assert_eq!(b.password("postgres").unwrap(), pw, "stable across loads");
        assert!(!format!("{b:?}").contains(&pw), "Debug never shows passwords");
        let q = t.path().join("other");
        let c = Secrets::load_or_create(&q, &["x"], false).unwrap();
        assert!(c.password("x").is_some());
        assert!(!q.exists(), "not persisted: a dry run writes nothing");
        assert_eq!(fields("a\\:b:c"), vec!["a\\:b", "c"]);
        assert_eq!(unescape("a\\:b"), "a:b");
        assert_eq!(escape("a:b\\"), "a\\:b\\\\");
    }
}
