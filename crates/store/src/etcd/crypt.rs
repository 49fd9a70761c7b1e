//! Passwords in etcd are sealed with XChaCha20-Poly1305 under a 32-byte key
//! kept in a local 0600 file that never goes into etcd. The cluster's name
//! is bound in as associated data, so a sealed blob cannot be replayed as
//! another cluster's. A key id (a MAC of nothing under the key) tells which
//! key sealed a blob without revealing the key.

use crate::StoreError;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub struct Key {
    bytes: [u8; 32],
}

#[derive(Serialize, Deserialize)]
pub struct Sealed {
    pub alg: String,
    pub key_id: String,
    nonce: String,
    ct: String,
}

impl Key {
    /// Read the key file; with `create`, make one (mode 0600) when missing.
    pub fn load(path: &Path, create: bool) -> Result<Option<Key>, StoreError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0);
                if mode & 0o077 != 0 {
                    return Err(StoreError::Key(format!(
                        "the key file {} is readable by others (mode {:o}): chmod 600 it",
                        path.display(),
                        mode & 0o777
                    )));
                }
                let v = hex::decode(text.trim()).ok().filter(|v| v.len() == 32).ok_or_else(|| {
                    StoreError::Key(format!("the key file {} does not hold 64 hex digits", path.display()))
                })?;
                let mut bytes = [0u8; 32];
                bytes.copy_from_slice(&v);
                Ok(Some(Key { bytes }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| key_io("create", dir, e))?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| key_io("create", path, e))?;
                use std::io::Write;
                writeln!(f, "{}", hex::encode(key)).and_then(|_| f.sync_all()).map_err(|e| key_io("write", path, e))?;
                let mut bytes = [0u8; 32];
                bytes.copy_from_slice(&key);
                Ok(Some(Key { bytes }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(key_io("read", path, e)),
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.bytes).into())
    }

    pub fn id(&self) -> String {
        let tag =
            self.cipher().encrypt(&XNonce::default(), Payload { msg: b"", aad: b"pgscale key id" }).unwrap_or_default();
        hex::encode(&tag[..8.min(tag.len())])
    }

    pub fn seal(&self, cluster: &str, map: &BTreeMap<String, String>) -> Result<Sealed, StoreError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let msg = serde_json::to_vec(map).map_err(|e| StoreError::Key(e.to_string()))?;
        let aad = aad(cluster);
        let ct = self
            .cipher()
            .encrypt(&nonce, Payload { msg: &msg, aad: &aad })
            .map_err(|_| StoreError::Key("sealing the passwords failed".into()))?;
        Ok(Sealed {
            alg: "xchacha20poly1305".into(),
            key_id: self.id(),
            nonce: hex::encode(nonce),
            ct: hex::encode(ct),
        })
    }

    pub fn open(&self, cluster: &str, s: &Sealed, path: &Path) -> Result<BTreeMap<String, String>, StoreError> {
        let wrong = || {
            StoreError::Key(format!(
                "the passwords of cluster {cluster} in etcd were sealed with key {} but {} holds key {}: \
                 copy the key file of the machine that created the cluster (it is never stored in etcd)",
                s.key_id,
                path.display(),
                self.id()
            ))
        };
        let nonce = hex::decode(&s.nonce).ok().filter(|n| n.len() == 24).ok_or_else(wrong)?;
        let ct = hex::decode(&s.ct).map_err(|_| wrong())?;
        let aad = aad(cluster);
        let msg =
            self.cipher().decrypt(XNonce::from_slice(&nonce), Payload { msg: &ct, aad: &aad }).map_err(|_| wrong())?;
        serde_json::from_slice(&msg).map_err(|_| wrong())
    }
}

fn aad(cluster: &str) -> Vec<u8> {
    format!("pgscale secrets of {cluster}").into_bytes()
}

fn key_io(what: &str, p: &Path, e: std::io::Error) -> StoreError {
    StoreError::Key(format!("{what} the key file {}: {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_refuse_the_wrong_key_or_cluster() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("k");
        assert!(Key::load(&p, false).unwrap().is_none());
        let k = Key::load(&p, true).unwrap().unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let k2 = Key::load(&p, false).unwrap().unwrap();
        assert_eq!(k.id(), k2.id(), "the same key from the file");
        let map: BTreeMap<String, String> = [("postgres".to_string(), "s3cret-pw".to_string())].into();
        let s = k.seal("c1", &map).unwrap();
        let text = serde_json::to_string(&s).unwrap();
        assert!(!text.contains("s3cret-pw"), "never in clear text: {text}");
        assert_eq!(k2.open("c1", &s, &p).unwrap(), map);
        let err = k.open("c2", &s, &p).unwrap_err().to_string();
        assert!(err.contains("sealed with key"), "another cluster's blob is refused: {err}");
        let other = Key::load(&t.path().join("k2"), true).unwrap().unwrap();
        assert_ne!(other.id(), k.id());
        assert!(other.open("c1", &s, &p).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Key::load(&p, false).is_err(), "a key readable by others is refused");
    }
}
