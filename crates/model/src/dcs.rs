//! Where a cluster's state lives when it is not only in one admin's home:
//! `dcs: { etcd: { endpoints: [...], prefix: /pgscale } }` in the spec.

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Dcs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EtcdSpec {
    /// Client URLs (`http://10.0.0.1:2379`) or `host:port`.
    pub endpoints: Vec<String>,
    /// Every key pgscale writes starts with this (default `/pgscale`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

pub fn default_prefix() -> String {
    "/pgscale".into()
}

impl EtcdSpec {
    /// Endpoints as the client wants them (`http://` added where missing).
    pub fn urls(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| if e.contains("://") { e.clone() } else { format!("http://{e}") }).collect()
    }

    /// What is wrong with the endpoints and prefix, in words.
    pub fn problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.endpoints.is_empty() {
            v.push("dcs.etcd.endpoints: give at least one etcd client URL, e.g. http://10.0.0.1:2379".into());
        }
        for e in &self.endpoints {
            let rest = e.strip_prefix("http://").or_else(|| e.strip_prefix("https://")).unwrap_or(e);
            let ok = rest.rsplit_once(':').is_some_and(|(h, p)| {
                !h.is_empty()
                    && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
                    && p.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                v.push(format!("dcs.etcd.endpoints: `{e}` is not host:port or http://host:port"));
            }
        }
        let p = &self.prefix;
        let ok = p.starts_with('/')
            && p.len() > 1
            && !p.ends_with('/')
            && !p.contains("//")
            && !p.split('/').any(|s| s == "." || s == "..")
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-.".contains(&b));
        if !ok {
            v.push(format!(
                "dcs.etcd.prefix: `{p}` must start with /, not end with /, and use letters, digits, _ - . only"
            ));
        }
        v
    }
}

impl Dcs {
    pub fn is_empty(&self) -> bool {
        self.etcd.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_prefix_are_checked() {
        let ok =
            EtcdSpec { endpoints: vec!["127.0.0.1:2379".into(), "http://e2:2379".into()], prefix: "/pgscale".into() };
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());
        assert_eq!(ok.urls(), vec!["http://127.0.0.1:2379", "http://e2:2379"]);
        let bad = EtcdSpec { endpoints: vec!["e1".into(), "h:0".into(), "a b:1".into()], prefix: "pg/".into() };
        assert_eq!(bad.problems().len(), 4, "{:?}", bad.problems());
        let none = EtcdSpec { endpoints: vec![], prefix: "/a/../b".into() };
        assert_eq!(none.problems().len(), 2);
    }
}
