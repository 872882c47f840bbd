//! The agent's mirror of the server's resources: the documents of every kind it follows, as
//! the snapshot and then the change feed deliver them, and the revision it has reached.

use std::collections::BTreeMap;

use serde_json::Value;

/// Resources by kind and id, at one revision of the feed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cluster {
    /// Feed revision these documents reflect.
    pub revision: i64,
    kinds: BTreeMap<String, BTreeMap<String, Value>>,
}

impl Cluster {
    /// Builds a mirror from a snapshot document:
    /// `{"revision": R, "resources": {"network": [...], ...}}`.
    pub fn from_snapshot(doc: &Value) -> Cluster {
        let mut cluster = Cluster {
            revision: doc["revision"].as_i64().unwrap_or(0),
            ..Cluster::default()
        };
        if let Some(kinds) = doc["resources"].as_object() {
            for (kind, items) in kinds {
                let entry = cluster.kinds.entry(kind.clone()).or_default();
                for item in items.as_array().into_iter().flatten() {
                    if let Some(id) = item["id"].as_str() {
                        entry.insert(id.to_string(), item.clone());
                    }
                }
            }
        }
        cluster
    }

    /// Applies one page (or stream line) of the feed:
    /// `{"revision": R, "changes": [{"kind", "id", "body": {...} | null}]}`.
    /// Returns whether any document changed.
    pub fn apply_page(&mut self, page: &Value) -> bool {
        let mut changed = false;
        for change in page["changes"].as_array().into_iter().flatten() {
            let (Some(kind), Some(id)) = (change["kind"].as_str(), change["id"].as_str()) else {
                continue;
            };
            changed |= self.put(kind, id, change.get("body").filter(|b| !b.is_null()));
        }
        if let Some(r) = page["revision"].as_i64() {
            self.revision = self.revision.max(r);
        }
        changed
    }

    /// Sets (or, with `None`, removes) one document; returns whether anything changed.
    pub fn put(&mut self, kind: &str, id: &str, body: Option<&Value>) -> bool {
        let entry = self.kinds.entry(kind.to_string()).or_default();
        match body {
            Some(b) => entry.insert(id.to_string(), b.clone()).as_ref() != Some(b),
            None => entry.remove(id).is_some(),
        }
    }

    /// One document.
    pub fn get(&self, kind: &str, id: &str) -> Option<&Value> {
        self.kinds.get(kind)?.get(id)
    }

    /// Every document of a kind, by id.
    pub fn all(&self, kind: &str) -> impl Iterator<Item = &Value> {
        self.kinds.get(kind).into_iter().flat_map(|m| m.values())
    }

    /// Number of documents of a kind.
    pub fn count(&self, kind: &str) -> usize {
        self.kinds.get(kind).map_or(0, BTreeMap::len)
    }
}

/// A string attribute of a document (empty when absent).
pub fn text<'a>(doc: &'a Value, key: &str) -> &'a str {
    doc.get(key).and_then(Value::as_str).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn snapshot_then_pages() {
        let mut c = Cluster::from_snapshot(&json!({"revision": 4, "resources": {
            "network": [{"id": "n1", "mtu": 1450}], "port": []}}));
        assert_eq!((c.revision, c.count("network")), (4, 1));
        let changed = c.apply_page(&json!({"revision": 6, "changes": [
            {"kind": "port", "id": "p1", "body": {"id": "p1"}},
            {"kind": "network", "id": "n1", "body": null}]}));
        assert!(changed);
        assert_eq!((c.revision, c.count("network"), c.count("port")), (6, 0, 1));
        // Replaying the same page changes nothing (the feed may repeat itself).
        assert!(!c.apply_page(&json!({"revision": 6, "changes": [
            {"kind": "port", "id": "p1", "body": {"id": "p1"}}]})));
        assert_eq!(c.revision, 6);
    }
}
