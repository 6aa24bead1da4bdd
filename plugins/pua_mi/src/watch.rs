//! The last NOTIFY of each subscription started here, so a script can read what it watches
//! (`pua.last_notify`).

use std::collections::HashMap;
use std::sync::Mutex;

use plugin_api::rpc::Value;
use serde_json::json;

/// One NOTIFY, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub body: String,
    pub content_type: String,
    pub event: String,
    pub subscription_state: String,
    pub call_id: String,
    /// Epoch seconds.
    pub received: i64,
}

impl Notify {
    pub fn to_json(&self, pres_uri: &str, watcher_uri: &str) -> Value {
        json!({
            "presentity_uri": pres_uri,
            "watcher_uri": watcher_uri,
            "event": self.event,
            "subscription_state": self.subscription_state,
            "content_type": self.content_type,
            "body": self.body,
            "call_id": self.call_id,
            "received": self.received,
        })
    }
}

/// The last NOTIFY per (presentity URI, watcher URI); bounded, oldest dropped first.
#[derive(Debug, Default)]
pub struct LastNotifies {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_pair: HashMap<(String, String), Notify>,
    /// Insertion order of first sight, for the bound.
    order: std::collections::VecDeque<(String, String)>,
}

/// Subscriptions remembered at most (a script watching more reads older ones as gone).
const MAX: usize = 100_000;

impl LastNotifies {
    /// Keeps `n` as the last NOTIFY of (pres_uri, watcher_uri).
    pub fn record(&self, pres_uri: &str, watcher_uri: &str, n: Notify) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = (pres_uri.to_string(), watcher_uri.to_string());
        if g.by_pair.insert(key.clone(), n).is_none() {
            g.order.push_back(key);
            while g.order.len() > MAX {
                if let Some(old) = g.order.pop_front() {
                    g.by_pair.remove(&old);
                }
            }
        }
    }

    /// The last NOTIFYs for `pres_uri` (of `watcher_uri` when given), as JSON.
    pub fn lookup(&self, pres_uri: &str, watcher_uri: Option<&str>) -> Vec<Value> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<(&(String, String), &Notify)> =
            g.by_pair.iter().filter(|((p, w), _)| p == pres_uri && watcher_uri.is_none_or(|x| x == w)).collect();
        v.sort_by_key(|(_, n)| std::cmp::Reverse(n.received));
        v.into_iter().map(|((p, w), n)| n.to_json(p, w)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(body: &str, t: i64) -> Notify {
        Notify {
            body: body.into(),
            content_type: "application/pidf+xml".into(),
            event: "presence".into(),
            subscription_state: "active;expires=60".into(),
            call_id: "c".into(),
            received: t,
        }
    }

    #[test]
    fn keeps_the_last_per_pair() {
        let l = LastNotifies::default();
        l.record("sip:a@x", "sip:w1@x", n("one", 1));
        l.record("sip:a@x", "sip:w1@x", n("two", 2));
        l.record("sip:a@x", "sip:w2@x", n("three", 3));
        let all = l.lookup("sip:a@x", None);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0]["body"], "three", "newest first");
        assert_eq!(l.lookup("sip:a@x", Some("sip:w1@x"))[0]["body"], "two");
        assert!(l.lookup("sip:b@x", None).is_empty());
    }
}
