use crate::lock::{Holder, LockGuard};
use crate::log::Journal;
use crate::secrets::Secrets;
use model::Inventory;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("read {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cluster {cluster} is busy: {holder} holds its lock; wait for it to finish, or if that process is gone, run the command again")]
    Held { cluster: String, holder: Holder },
    #[error("cluster `{0}` is not known in this home; `pgscale list` shows the known ones")]
    Unknown(String),
}

pub(crate) fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> HomeError + 'a {
    move |source| HomeError::Io { what, path: path.to_path_buf(), source }
}

#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

const INVENTORY: &str = "inventory.yaml";

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn cluster_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn ensure_dir(&self, dir: &Path) -> Result<(), HomeError> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io("create directory", dir))
    }

    /// Clusters recorded in this home, sorted by name.
    pub fn list(&self) -> Result<Vec<String>, HomeError> {
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io("read directory", &self.root)(e)),
        };
        let mut v: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(INVENTORY).is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        v.sort();
        Ok(v)
    }

    pub fn exists(&self, name: &str) -> bool {
        self.cluster_dir(name).join(INVENTORY).is_file()
    }

    pub fn load(&self, name: &str) -> Result<Inventory, HomeError> {
        let path = self.cluster_dir(name).join(INVENTORY);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(HomeError::Unknown(name.into())),
            Err(e) => return Err(io("read", &path)(e)),
        };
        serde_saphyr::from_str(&text).map_err(|e| HomeError::Parse { path, message: e.to_string() })
    }

    /// Write the inventory atomically: temp file in the same directory,
    /// fsync, rename over the old one, fsync the directory. A crash leaves
    /// the old file or the new one, never half of either.
    pub fn save(&self, inv: &Inventory) -> Result<(), HomeError> {
        let dir = self.cluster_dir(&inv.name);
        self.ensure_dir(&dir)?;
        let path = dir.join(INVENTORY);
        let text = serde_saphyr::to_string(inv)
            .map_err(|e| HomeError::Parse { path: path.clone(), message: e.to_string() })?;
        let text = format!("# Written by pgscale: the cluster as pgscale manages it. Do not edit.\n{text}");
        write_atomic(&path, text.as_bytes(), 0o600)
    }

    /// Remove the cluster's record entirely (inventory, secrets, journal).
    pub fn forget(&self, name: &str) -> Result<(), HomeError> {
        let dir = self.cluster_dir(name);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &dir)(e)),
        }
    }

    /// Take the cluster's lock (creating its directory if needed). A second
    /// mutating command gets `HomeError::Held` naming the holder.
    pub fn lock(&self, name: &str, command: &str) -> Result<LockGuard, HomeError> {
        let dir = self.cluster_dir(name);
        self.ensure_dir(&dir)?;
        LockGuard::acquire(name, &dir.join("lock"), command)
    }

    pub fn journal(&self, name: &str) -> Result<Journal, HomeError> {
        let dir = self.cluster_dir(name);
        self.ensure_dir(&dir)?;
        Journal::open(&dir.join("journal.jsonl"))
    }

    pub fn secrets_path(&self, name: &str) -> PathBuf {
        self.cluster_dir(name).join("pgpass")
    }

    /// The cluster's passwords; missing ones for `users` are generated and
    /// saved (mode 0600) before they are used anywhere.
    pub fn secrets(&self, name: &str, users: &[&str]) -> Result<Secrets, HomeError> {
        let dir = self.cluster_dir(name);
        self.ensure_dir(&dir)?;
        Secrets::load_or_create(&self.secrets_path(name), users, true)
    }

    /// Like `secrets`, but writes nothing (for dry runs): missing passwords
    /// are generated in memory only.
    pub fn secrets_readonly(&self, name: &str, users: &[&str]) -> Result<Secrets, HomeError> {
        Secrets::load_or_create(&self.secrets_path(name), users, false)
    }
}

pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), HomeError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("create temp file in", dir))?;
    tmp.as_file().set_permissions(fs::Permissions::from_mode(mode)).map_err(io("chmod", tmp.path()))?;
    tmp.write_all(data).map_err(io("write", path))?;
    tmp.as_file().sync_all().map_err(io("fsync", path))?;
    tmp.persist(path).map_err(|e| io("rename onto", path)(e.error))?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{NodeSpec, PostgresSpec};

    fn inv() -> Inventory {
        Inventory {
            name: "demo".into(),
            postgres: PostgresSpec::default(),
            nodes: vec![NodeSpec {
                name: "pg1".into(),
                host: "127.0.0.1".into(),
                port: 5501,
                data_dir: "/d/pg1".into(),
                role: Some(model::Role::Primary),
                upstream: None,
                sync: None,
                ssh: None,
                transport: None,
                socket_dir: None,
                state: model::NodeState { created_dirs: vec!["/d/pg1".into()], ..Default::default() },
            }],
            dcs: None,
            ha: Default::default(),
            sharding: None,
            state: Default::default(),
        }
    }

    #[test]
    fn save_load_list_forget() {
        let t = tempfile::tempdir().unwrap();
        let h = Home::new(t.path().join("home"));
        assert!(h.list().unwrap().is_empty());
        assert!(matches!(h.load("demo"), Err(HomeError::Unknown(_))));
        h.save(&inv()).unwrap();
        assert_eq!(h.load("demo").unwrap(), inv());
        assert_eq!(h.list().unwrap(), vec!["demo"]);
        let mode = fs::metadata(h.cluster_dir("demo").join(INVENTORY)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = fs::metadata(h.cluster_dir("demo")).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
        // no temp files left behind
        assert_eq!(fs::read_dir(h.cluster_dir("demo")).unwrap().count(), 1);
        h.forget("demo").unwrap();
        assert!(!h.exists("demo"));
    }
}
