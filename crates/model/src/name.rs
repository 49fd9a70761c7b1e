//! A node's name, typed from the command line to the SQL. It becomes the
//! standby's `application_name` and the name of its physical replication
//! slot on its upstream, so it is validated once, here.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `[a-z0-9_]{1,63}`: safe as an application_name, a slot name and a
/// directory name without quoting.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The replication slot a node streams through on its upstream. One
/// function for the convention "slot = node name", so it is never applied
/// by hand.
pub fn slot_name(node: &str) -> String {
    node.to_string()
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

impl NodeName {
    pub fn new(s: impl Into<String>) -> Result<NodeName, String> {
        let s = s.into();
        if valid_name(&s) {
            Ok(NodeName(s))
        } else {
            Err(format!("`{s}` is not a valid node name: use 1 to 63 of a-z, 0-9, _"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its replication slot on its upstream.
    pub fn slot(&self) -> String {
        slot_name(&self.0)
    }
}

impl FromStr for NodeName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeName::new(s)
    }
}

impl TryFrom<String> for NodeName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        NodeName::new(s)
    }
}

impl From<NodeName> for String {
    fn from(n: NodeName) -> String {
        n.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for NodeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for NodeName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for NodeName {
    fn eq(&self, o: &str) -> bool {
        self.0 == o
    }
}

impl PartialEq<String> for NodeName {
    fn eq(&self, o: &String) -> bool {
        &self.0 == o
    }
}

/// The application_name a node's base copy runs under, so the copy can be
/// found on its upstream (progress in `pg_stat_progress_basebackup`, and
/// ended when a re-run finds it still in flight).
pub fn copy_app_name(node: &str) -> String {
    format!("pgscale_copy_{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_once() {
        assert!(NodeName::new("pg_1").is_ok());
        assert!("pg-1".parse::<NodeName>().unwrap_err().contains("a-z, 0-9, _"));
        assert!(NodeName::new("").is_err());
        assert!(NodeName::new("a".repeat(64)).is_err());
        assert_eq!(NodeName::new("pg2").unwrap().slot(), "pg2");
        let n: NodeName = serde_json::from_str("\"pg3\"").unwrap();
        assert_eq!(n, *"pg3");
        assert!(serde_json::from_str::<NodeName>("\"PG3\"").is_err());
    }
}
