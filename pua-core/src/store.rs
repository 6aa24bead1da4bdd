//! Where records live, and how they are found (Kamailio's `hash.c` rules).
//!
//! [`Records`] is what the engine needs; [`MemoryStore`] implements it in memory (db_mode 0,
//! written back by the module), `storage::DbStore` in the database (db_mode 2).

use std::collections::HashMap;
use std::hash::BuildHasher;

use crate::record::{Kind, Record};

/// A lookup of a publication (`send_publish`'s search).
#[derive(Debug, Clone)]
pub struct PubQuery<'a> {
    pub pres_uri: &'a str,
    /// Source flag (the record's must share a bit).
    pub flag: i32,
    /// Event flag (same).
    pub event: i32,
    /// Empty: any id.
    pub id: &'a str,
    pub etag: Option<&'a str>,
}

/// A lookup of a subscription (`send_subscribe`'s search).
#[derive(Debug, Clone)]
pub struct SubQuery<'a> {
    pub pres_uri: &'a str,
    pub watcher_uri: &'a str,
    pub flag: i32,
    pub event: i32,
    pub id: &'a str,
    /// The caller's remote target (compared with the stored remote contact when
    /// check_remote_contact is on and the caller gives one).
    pub remote_target: Option<&'a str>,
    pub check_remote_contact: bool,
}

impl PubQuery<'_> {
    /// Kamailio's publication match: flag ∧, event ∧, same presentity, same id unless the query
    /// has none, same ETag when the query has one.
    pub fn matches(&self, r: &Record) -> bool {
        let Kind::Publish(p) = &r.kind else { return false };
        r.flag & self.flag != 0
            && r.event & self.event != 0
            && r.pres_uri == self.pres_uri
            && (self.id.is_empty() || r.id == self.id)
            && self.etag.is_none_or(|e| p.etag == e)
    }
}

impl SubQuery<'_> {
    /// Kamailio's subscription match, with the remote-contact test. Kamailio's quirk (a caller
    /// that gives no remote target never finds its dialog when check_remote_contact is on, so
    /// every refresh opened a new subscription and an unsubscribe did nothing) is fixed: with no
    /// remote target given, the dialog matches.
    pub fn matches(&self, r: &Record) -> bool {
        let Kind::Subscribe(s) = &r.kind else { return false };
        r.flag & self.flag != 0
            && r.event & self.event != 0
            && r.pres_uri == self.pres_uri
            && (self.id.is_empty() || r.id == self.id)
            && s.watcher_uri == self.watcher_uri
            && (!self.check_remote_contact || self.remote_target.is_none_or(|t| s.remote_contact == t))
    }
}

/// Storage as the engine sees it. Lookups return copies; changes are written back with
/// `update`.
pub trait Records: Send {
    /// The record with this key.
    fn get(&mut self, key: u64) -> Option<Record>;
    /// The newest matching publication.
    fn find_publication(&mut self, q: &PubQuery<'_>) -> Option<Record>;
    /// The newest matching subscription.
    fn find_subscription(&mut self, q: &SubQuery<'_>) -> Option<Record>;
    /// The subscription with this Call-ID and local tag (established or temporary).
    fn find_dialog(&mut self, call_id: &str, from_tag: &str) -> Option<Record>;
    /// Stores a new record; returns its key.
    fn insert(&mut self, r: Record) -> u64;
    /// Writes back a changed record.
    fn update(&mut self, r: &Record);
    /// Removes a record.
    fn remove(&mut self, key: u64);
    /// Keys of the records whose `expires` is before `before` (refresh and cleanup
    /// candidates).
    fn due(&mut self, before: i64) -> Vec<u64>;
    /// Every record (for `pua.list`).
    fn all(&mut self) -> Vec<Record>;
    /// Number of records (publications, subscriptions).
    fn counts(&mut self) -> (usize, usize);

    /// Starts an atomic operation (db_mode 2: a transaction, with a table lock when asked).
    fn begin(&mut self) {}
    /// Ends it.
    fn commit(&mut self) {}
    /// What to write back (db_mode 0); None for stores that write as they go.
    fn take_changes(&mut self) -> Option<Changes> {
        None
    }
    /// Records the row id a written-back record got.
    fn set_db_id(&mut self, _key: u64, _db_id: i64) {}
    /// Puts changes that could not be written back into the next write-back.
    fn requeue(&mut self, _changes: Changes) {}
}

/// What changed since the last write-back: records to insert or update (key, and whether the
/// body changed too: a refresh does not, so its body row is left alone), and row ids to delete.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub records: Vec<(u64, bool)>,
    pub deleted: Vec<i64>,
}

/// The keys filed under one index hash, oldest first. Most hashes have one record, which
/// then costs no allocation.
#[derive(Debug, Clone)]
enum Bucket {
    One(u64),
    Many(Vec<u64>),
}

impl Bucket {
    fn push(&mut self, key: u64) {
        match self {
            Bucket::One(k) => *self = Bucket::Many(vec![*k, key]),
            Bucket::Many(v) => v.push(key),
        }
    }

    /// Removes `key`; false when the bucket is empty afterwards.
    fn remove(&mut self, key: u64) -> bool {
        match self {
            Bucket::One(k) => *k != key,
            Bucket::Many(v) => {
                v.retain(|k| *k != key);
                match v.as_slice() {
                    [] => false,
                    [one] => {
                        *self = Bucket::One(*one);
                        true
                    }
                    _ => true,
                }
            }
        }
    }

    /// Newest first.
    fn newest_first(&self) -> impl Iterator<Item = u64> + '_ {
        let (one, many): (Option<u64>, &[u64]) = match self {
            Bucket::One(k) => (Some(*k), &[]),
            Bucket::Many(v) => (None, v),
        };
        one.into_iter().chain(many.iter().rev().copied())
    }
}

/// Records in memory, with the changes since the last write-back.
///
/// The indexes hold hashes, not copies of the strings: a record's URI, Call-ID and tag are
/// stored once, in the record, and a lookup compares them there. (A hash collision only means
/// one more record to compare.)
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: HashMap<u64, Record>,
    hasher: std::collections::hash_map::RandomState,
    /// hash(pres_uri) → keys, oldest first (searches go newest first: Kamailio inserts at the
    /// head).
    by_uri: HashMap<u64, Bucket>,
    /// hash(Call-ID, local tag) → keys.
    by_dialog: HashMap<u64, Bucket>,
    next_key: u64,
    /// Keys changed since the last write-back, and whether the body changed.
    dirty: HashMap<u64, bool>,
    /// Row ids of removed records still in the database.
    deleted_rows: Vec<i64>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self { next_key: 1, ..Default::default() }
    }

    /// A store with room for `n` records before its tables grow (`hash_size`).
    pub fn with_capacity(n: usize) -> Self {
        Self { records: HashMap::with_capacity(n), by_uri: HashMap::with_capacity(n), ..Self::new() }
    }

    fn uri_hash(&self, pres_uri: &str) -> u64 {
        self.hasher.hash_one(pres_uri)
    }

    fn dialog_hash(&self, call_id: &str, from_tag: &str) -> u64 {
        self.hasher.hash_one((call_id, from_tag))
    }

    fn file(index: &mut HashMap<u64, Bucket>, hash: u64, key: u64) {
        match index.entry(hash) {
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().push(key),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Bucket::One(key));
            }
        }
    }

    fn unfile(index: &mut HashMap<u64, Bucket>, hash: u64, key: u64) {
        if let Some(bucket) = index.get_mut(&hash)
            && !bucket.remove(key)
        {
            index.remove(&hash);
        }
    }

    fn index(&mut self, r: &Record) {
        let h = self.uri_hash(&r.pres_uri);
        Self::file(&mut self.by_uri, h, r.key);
        if let Kind::Subscribe(s) = &r.kind {
            let h = self.dialog_hash(&s.call_id, &s.from_tag);
            Self::file(&mut self.by_dialog, h, r.key);
        }
    }

    fn unindex(&mut self, r: &Record) {
        let h = self.uri_hash(&r.pres_uri);
        Self::unfile(&mut self.by_uri, h, r.key);
        if let Kind::Subscribe(s) = &r.kind {
            let h = self.dialog_hash(&s.call_id, &s.from_tag);
            Self::unfile(&mut self.by_dialog, h, r.key);
        }
    }

    fn newest(&self, pres_uri: &str, pred: impl Fn(&Record) -> bool) -> Option<Record> {
        self.by_uri
            .get(&self.uri_hash(pres_uri))?
            .newest_first()
            .filter_map(|k| self.records.get(&k))
            .find(|r| r.pres_uri == pres_uri && pred(r))
            .cloned()
    }

    /// Loads a record read from the database at start (already written: not dirty).
    pub fn load(&mut self, mut r: Record) -> u64 {
        r.key = self.next_key;
        self.next_key += 1;
        self.index(&r);
        let key = r.key;
        self.records.insert(key, r);
        key
    }
}

impl Records for MemoryStore {
    fn get(&mut self, key: u64) -> Option<Record> {
        self.records.get(&key).cloned()
    }

    fn find_publication(&mut self, q: &PubQuery<'_>) -> Option<Record> {
        self.newest(q.pres_uri, |r| q.matches(r))
    }

    fn find_subscription(&mut self, q: &SubQuery<'_>) -> Option<Record> {
        self.newest(q.pres_uri, |r| q.matches(r))
    }

    fn find_dialog(&mut self, call_id: &str, from_tag: &str) -> Option<Record> {
        self.by_dialog
            .get(&self.dialog_hash(call_id, from_tag))?
            .newest_first()
            .filter_map(|k| self.records.get(&k))
            .find(|r| r.subs().is_some_and(|s| s.call_id == call_id && s.from_tag == from_tag))
            .cloned()
    }

    fn insert(&mut self, mut r: Record) -> u64 {
        r.key = self.next_key;
        self.next_key += 1;
        self.index(&r);
        let key = r.key;
        self.records.insert(key, r);
        self.dirty.insert(key, true);
        key
    }

    fn update(&mut self, r: &Record) {
        let Some(old) = self.records.get(&r.key) else { return };
        let body_changed = match (old.publ(), r.publ()) {
            (Some(a), Some(b)) => a.body != b.body || a.content_type != b.content_type,
            _ => false,
        };
        let reindex = match (&old.kind, &r.kind) {
            (Kind::Subscribe(a), Kind::Subscribe(b)) => a.call_id != b.call_id || a.from_tag != b.from_tag,
            _ => false,
        } || old.pres_uri != r.pres_uri;
        if reindex {
            let old = old.clone();
            self.unindex(&old);
            self.index(r);
        }
        *self.dirty.entry(r.key).or_insert(false) |= body_changed;
        self.records.insert(r.key, r.clone());
    }

    fn remove(&mut self, key: u64) {
        if let Some(r) = self.records.remove(&key) {
            self.unindex(&r);
            self.dirty.remove(&key);
            if let Some(id) = r.db_id {
                self.deleted_rows.push(id);
            }
        }
    }

    fn due(&mut self, before: i64) -> Vec<u64> {
        self.records.values().filter(|r| r.expires < before).map(|r| r.key).collect()
    }

    fn all(&mut self) -> Vec<Record> {
        let mut v: Vec<Record> = self.records.values().cloned().collect();
        v.sort_by_key(|r| r.key);
        v
    }

    fn counts(&mut self) -> (usize, usize) {
        let p = self.records.values().filter(|r| matches!(r.kind, Kind::Publish(_))).count();
        (p, self.records.len() - p)
    }

    /// The changes since the last call (only keys: the module copies the records a batch at a
    /// time, so a write-back of everything never holds a second copy of everything).
    fn take_changes(&mut self) -> Option<Changes> {
        // Taken, not drained: the map gives its capacity back after a burst of changes.
        let mut records: Vec<(u64, bool)> = std::mem::take(&mut self.dirty).into_iter().collect();
        records.sort_unstable();
        Some(Changes { records, deleted: std::mem::take(&mut self.deleted_rows) })
    }

    /// When the record went away while its row was being written, the row is deleted next.
    fn set_db_id(&mut self, key: u64, db_id: i64) {
        match self.records.get_mut(&key) {
            Some(r) => r.db_id = Some(db_id),
            None => self.deleted_rows.push(db_id),
        }
    }

    fn requeue(&mut self, changes: Changes) {
        for (key, body) in changes.records {
            if self.records.contains_key(&key) {
                *self.dirty.entry(key).or_insert(false) |= body;
            }
        }
        self.deleted_rows.extend(changes.deleted);
    }
}

impl Records for Box<dyn Records> {
    fn get(&mut self, key: u64) -> Option<Record> {
        (**self).get(key)
    }
    fn find_publication(&mut self, q: &PubQuery<'_>) -> Option<Record> {
        (**self).find_publication(q)
    }
    fn find_subscription(&mut self, q: &SubQuery<'_>) -> Option<Record> {
        (**self).find_subscription(q)
    }
    fn find_dialog(&mut self, call_id: &str, from_tag: &str) -> Option<Record> {
        (**self).find_dialog(call_id, from_tag)
    }
    fn insert(&mut self, r: Record) -> u64 {
        (**self).insert(r)
    }
    fn update(&mut self, r: &Record) {
        (**self).update(r)
    }
    fn remove(&mut self, key: u64) {
        (**self).remove(key)
    }
    fn due(&mut self, before: i64) -> Vec<u64> {
        (**self).due(before)
    }
    fn all(&mut self) -> Vec<Record> {
        (**self).all()
    }
    fn counts(&mut self) -> (usize, usize) {
        (**self).counts()
    }
    fn begin(&mut self) {
        (**self).begin()
    }
    fn commit(&mut self) {
        (**self).commit()
    }
    fn take_changes(&mut self) -> Option<Changes> {
        (**self).take_changes()
    }
    fn set_db_id(&mut self, key: u64, db_id: i64) {
        (**self).set_db_id(key, db_id)
    }
    fn requeue(&mut self, changes: Changes) {
        (**self).requeue(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Subscription;

    fn publ(uri: &str, id: &str, etag: &str, flag: i32, event: i32) -> Record {
        let mut r = Record::publication(id, uri, event, flag);
        r.publ_mut().unwrap().etag = etag.into();
        r
    }

    #[test]
    fn publication_search_is_kamailios() {
        let mut s = MemoryStore::new();
        let a = s.insert(publ("sip:a@x", "UL_PUBLISH.1", "e1", 1, 1));
        let b = s.insert(publ("sip:a@x", "UL_PUBLISH.1", "e2", 1, 1));
        let q = |id: &'static str, etag: Option<&'static str>, flag| PubQuery {
            pres_uri: "sip:a@x",
            flag,
            event: 1,
            id,
            etag,
        };
        assert_eq!(s.find_publication(&q("UL_PUBLISH.1", None, 1)).unwrap().key, b, "the newest wins");
        assert_eq!(s.find_publication(&q("", Some("e1"), 1)).unwrap().key, a);
        assert_eq!(s.find_publication(&q("", None, 1)).unwrap().key, b, "an empty id matches any id");
        assert!(s.find_publication(&q("UL_PUBLISH.1", None, 2)).is_none(), "the source flag must share a bit");
        assert!(s.find_publication(&q("other", None, 1)).is_none());
        s.remove(b);
        assert_eq!(s.find_publication(&q("UL_PUBLISH.1", None, 1)).unwrap().key, a);
    }

    #[test]
    fn subscription_search_and_dialogs() {
        let mut s = MemoryStore::new();
        let sub = Subscription {
            watcher_uri: "sip:w@x".into(),
            call_id: "c1".into(),
            from_tag: "f1".into(),
            remote_contact: "sip:p@1.2.3.4".into(),
            ..Default::default()
        };
        let k = s.insert(Record::subscription("", "sip:p@x", 1, 256, sub));
        let mut q = SubQuery {
            pres_uri: "sip:p@x",
            watcher_uri: "sip:w@x",
            flag: 256,
            event: 1,
            id: "",
            remote_target: None,
            check_remote_contact: true,
        };
        assert_eq!(s.find_subscription(&q).unwrap().key, k, "no remote target given: the dialog matches");
        q.remote_target = Some("sip:other@1.2.3.4");
        assert!(s.find_subscription(&q).is_none());
        q.check_remote_contact = false;
        assert!(s.find_subscription(&q).is_some());
        assert_eq!(s.find_dialog("c1", "f1").unwrap().key, k);
        let mut r = s.get(k).unwrap();
        r.subs_mut().unwrap().to_tag = "t1".into();
        s.update(&r);
        assert!(!s.get(k).unwrap().is_temporary());
        s.remove(k);
        assert!(s.find_dialog("c1", "f1").is_none());
    }

    #[test]
    fn tracks_changes_for_write_back() {
        let mut s = MemoryStore::new();
        let k = s.insert(publ("sip:a@x", "i", "e", 1, 1));
        assert_eq!(
            s.take_changes().unwrap(),
            Changes { records: vec![(k, true)], deleted: vec![] },
            "new: with its body"
        );
        s.set_db_id(k, 77);
        assert!(s.take_changes().unwrap().records.is_empty());
        // A refresh (new ETag, same body) leaves the body row alone; a new body does not.
        let mut r = s.get(k).unwrap();
        r.publ_mut().unwrap().etag = "e2".into();
        s.update(&r);
        assert_eq!(s.take_changes().unwrap().records, vec![(k, false)]);
        r.publ_mut().unwrap().body = Some("<new/>".into());
        s.update(&r);
        r.publ_mut().unwrap().etag = "e3".into();
        s.update(&r);
        let changes = s.take_changes().unwrap();
        assert_eq!(changes.records, vec![(k, true)]);
        // A failed write-back comes back whole.
        s.requeue(changes);
        assert_eq!(s.take_changes().unwrap().records, vec![(k, true)]);
        s.remove(k);
        assert_eq!(s.take_changes().unwrap().deleted, vec![77]);
        s.set_db_id(12345, 78);
        assert_eq!(
            s.take_changes().unwrap().deleted,
            vec![78],
            "a row written for a record removed meanwhile is deleted"
        );
    }
}
