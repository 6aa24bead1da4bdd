//! The location table in memory, as a sans-I/O state machine: every operation takes the time
//! and returns the [`Change`]s it made, which the module then writes to the database and hands
//! to the callbacks (outside the lock). Expiry is a call like any other, so it is tested
//! without sleeping.

use std::collections::HashMap;

use plugin_api::api::usrloc::{BindingKey, FfiContact, cb, same_binding, upsert};

/// A registered contact (Kamailio's `ucontact_t`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contact {
    /// Table (usrloc domain).
    pub table: String,
    /// Address of record.
    pub aor: String,
    /// Contact URI.
    pub contact: String,
    /// Unique record id.
    pub ruid: String,
    /// Source of the REGISTER when it differs from the contact's address.
    pub received: String,
    /// Path, comma-separated.
    pub path: String,
    /// Local socket the REGISTER arrived on.
    pub socket: String,
    /// User-Agent.
    pub user_agent: String,
    /// Call-ID.
    pub callid: String,
    /// CSeq.
    pub cseq: i32,
    /// Absolute expiry; 0 = permanent.
    pub expires: i64,
    /// q in thousandths, -1 unspecified.
    pub q: i32,
    /// usrloc flags.
    pub flags: u32,
    /// Branch flags.
    pub cflags: u32,
    /// Methods mask.
    pub methods: u32,
    /// `+sip.instance`.
    pub instance: String,
    /// `reg-id`.
    pub reg_id: u32,
    /// Last change.
    pub last_modified: i64,
}

impl Contact {
    /// From the ABI form.
    pub fn from_ffi(c: &FfiContact) -> Self {
        Self {
            table: c.table.to_string(),
            aor: c.aor.to_string(),
            contact: c.contact.to_string(),
            ruid: c.ruid.to_string(),
            received: c.received.to_string(),
            path: c.path.to_string(),
            socket: c.socket.to_string(),
            user_agent: c.user_agent.to_string(),
            callid: c.callid.to_string(),
            cseq: c.cseq,
            expires: c.expires,
            q: c.q,
            flags: c.flags,
            cflags: c.cflags,
            methods: c.methods,
            instance: c.instance.to_string(),
            reg_id: c.reg_id,
            last_modified: c.last_modified,
        }
    }

    /// To the ABI form.
    pub fn to_ffi(&self) -> FfiContact {
        FfiContact {
            table: self.table.as_str().into(),
            aor: self.aor.as_str().into(),
            contact: self.contact.as_str().into(),
            ruid: self.ruid.as_str().into(),
            received: self.received.as_str().into(),
            path: self.path.as_str().into(),
            socket: self.socket.as_str().into(),
            user_agent: self.user_agent.as_str().into(),
            callid: self.callid.as_str().into(),
            cseq: self.cseq,
            expires: self.expires,
            q: self.q,
            flags: self.flags,
            cflags: self.cflags,
            methods: self.methods,
            instance: self.instance.as_str().into(),
            reg_id: self.reg_id,
            last_modified: self.last_modified,
        }
    }

    /// What identifies its binding ([`same_binding`]).
    pub fn key(&self) -> BindingKey<'_> {
        BindingKey { contact: &self.contact, callid: &self.callid, path: &self.path }
    }

    /// Whether the contact is still valid at `now` (permanent, or expiring later).
    pub fn alive(&self, now: i64) -> bool {
        self.expires == 0 || self.expires > now
    }
}

/// One change to the table: a [`cb`] kind and the contact as it is after the change (as it was,
/// for a removal).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `cb::CONTACT_INSERT`, `_UPDATE`, `_DELETE` or `_EXPIRE`.
    pub kind: i32,
    /// The contact.
    pub contact: Contact,
}

/// Every table's contacts: table → AoR → contacts in insertion order.
#[derive(Debug, Default)]
pub struct Location {
    tables: HashMap<String, HashMap<String, Vec<Contact>>>,
    ruid_counter: u64,
    ruid_prefix: String,
    /// usrloc's `matching_mode` ([`matching`]).
    matching_mode: i32,
}

impl Location {
    /// An empty table set; new ruids are `<prefix>-<counter>` (the module passes Kamailio's
    /// `uloc-<start time>-<pid>` so ruids stay unique across restarts).
    pub fn new(ruid_prefix: &str) -> Self {
        Self { ruid_prefix: ruid_prefix.to_string(), ..Self::default() }
    }

    /// Room for `aors` AoRs in `table` from the start (usrloc's `hash_size`), so a burst of
    /// registrations after a start does not rehash the table again and again.
    pub fn with_capacity(mut self, table: &str, aors: usize) -> Self {
        self.tables.entry(table.to_string()).or_default().reserve(aors);
        self
    }

    /// The same, with contacts matched by `mode` ([`matching`]) instead of by URI.
    pub fn with_matching(mut self, mode: i32) -> Self {
        self.matching_mode = mode;
        self
    }

    /// The matching mode.
    pub fn matching_mode(&self) -> i32 {
        self.matching_mode
    }

    /// A new unique record id.
    pub fn next_ruid(&mut self) -> String {
        self.ruid_counter += 1;
        format!("{}-{}", self.ruid_prefix, self.ruid_counter)
    }

    /// Makes `table` known (an empty table is listed by ul.dump).
    pub fn add_table(&mut self, table: &str) {
        self.tables.entry(table.to_string()).or_default();
    }

    /// Whether `table` is known.
    pub fn has_table(&self, table: &str) -> bool {
        self.tables.contains_key(table)
    }

    /// The table names, sorted.
    pub fn table_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tables.keys().cloned().collect();
        v.sort();
        v
    }

    /// Puts a contact loaded from the database back, as it was. A row of the same binding
    /// loaded earlier (or of the same ruid) is replaced: the later row wins.
    pub fn restore(&mut self, c: Contact) {
        let mode = self.matching_mode;
        let aor = self.tables.entry(c.table.clone()).or_default().entry(c.aor.clone()).or_default();
        aor.retain(|o| o.ruid != c.ruid && !same_binding(mode, o.key(), c.key()));
        aor.push(c);
    }

    /// Every contact of `aor` (expired ones too, until the timer removes them).
    pub fn aor(&self, table: &str, aor: &str) -> Option<&[Contact]> {
        self.tables.get(table)?.get(aor).map(Vec::as_slice)
    }

    /// The AoRs of `table` with their contacts, sorted by AoR.
    pub fn aors(&self, table: &str) -> Vec<(&str, &[Contact])> {
        let mut v: Vec<(&str, &[Contact])> = self
            .tables
            .get(table)
            .map(|t| t.iter().map(|(a, c)| (a.as_str(), c.as_slice())).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Number of contacts in every table.
    pub fn len(&self) -> usize {
        self.tables.values().flat_map(|t| t.values()).map(Vec::len).sum()
    }

    /// No contacts at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts or updates the contact of the same binding in (table, aor): the same URI, and
    /// by the matching mode the same Call-ID (1) or Path (2). Returns the [`upsert`] code and
    /// the change. A stored contact with the same Call-ID and a CSeq that is not lower is left
    /// alone (`STALE`); an expired one is replaced as if new.
    pub fn upsert(&mut self, mut c: Contact, now: i64) -> (i32, Option<Change>) {
        if c.table.is_empty() || c.aor.is_empty() || c.contact.is_empty() {
            return (upsert::INVALID, None);
        }
        c.last_modified = now;
        // Most AoRs have one contact: a Vec's first push would reserve room for four.
        let contacts = self
            .tables
            .entry(c.table.clone())
            .or_default()
            .entry(c.aor.clone())
            .or_insert_with(|| Vec::with_capacity(1));
        let mode = self.matching_mode;
        if let Some(old) = contacts.iter_mut().find(|o| same_binding(mode, o.key(), c.key())) {
            if old.alive(now) {
                if old.callid == c.callid && old.cseq >= c.cseq {
                    return (upsert::STALE, None);
                }
                c.ruid = std::mem::take(&mut old.ruid);
                *old = c;
                return (upsert::UPDATED, Some(Change { kind: cb::CONTACT_UPDATE, contact: old.clone() }));
            }
            // Expired but not yet collected: a new registration takes its place.
            c.ruid = std::mem::take(&mut old.ruid);
            *old = c;
            return (upsert::INSERTED, Some(Change { kind: cb::CONTACT_INSERT, contact: old.clone() }));
        }
        if c.ruid.is_empty() {
            self.ruid_counter += 1;
            c.ruid = format!("{}-{}", self.ruid_prefix, self.ruid_counter);
        }
        contacts.push(c.clone());
        (upsert::INSERTED, Some(Change { kind: cb::CONTACT_INSERT, contact: c }))
    }

    /// Removes the contacts with URI `contact` of `aor` (several when matching_mode 1 or 2
    /// keeps more than one binding of a URI).
    pub fn delete_contact(&mut self, table: &str, aor: &str, contact: &str) -> Vec<Change> {
        let Some(t) = self.tables.get_mut(table) else { return Vec::new() };
        let Some(contacts) = t.get_mut(aor) else { return Vec::new() };
        let removed: Vec<Change> = contacts
            .extract_if(.., |c| c.contact == contact)
            .map(|contact| Change { kind: cb::CONTACT_DELETE, contact })
            .collect();
        if contacts.is_empty() {
            t.remove(aor);
        }
        removed
    }

    /// Removes every contact of `aor`, or only the one whose ruid is `ruid` when it is given.
    pub fn delete_aor(&mut self, table: &str, aor: &str, ruid: Option<&str>) -> Vec<Change> {
        let Some(t) = self.tables.get_mut(table) else { return Vec::new() };
        let Some(contacts) = t.get_mut(aor) else { return Vec::new() };
        let removed: Vec<Contact> = match ruid {
            Some(r) => contacts.extract_if(.., |c| c.ruid == r).collect(),
            None => std::mem::take(contacts),
        };
        if contacts.is_empty() {
            t.remove(aor);
        }
        removed.into_iter().map(|contact| Change { kind: cb::CONTACT_DELETE, contact }).collect()
    }

    /// Removes every contact that expired at `now` (Kamailio's timer), as `CONTACT_EXPIRE`
    /// changes.
    pub fn expire(&mut self, now: i64) -> Vec<Change> {
        let mut out = Vec::new();
        for t in self.tables.values_mut() {
            t.retain(|_, contacts| {
                out.extend(
                    contacts
                        .extract_if(.., |c| !c.alive(now))
                        .map(|contact| Change { kind: cb::CONTACT_EXPIRE, contact }),
                );
                !contacts.is_empty()
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::api::usrloc::matching;

    fn contact(aor: &str, uri: &str, callid: &str, cseq: i32, expires: i64) -> Contact {
        Contact {
            table: "location".into(),
            aor: aor.into(),
            contact: uri.into(),
            callid: callid.into(),
            cseq,
            expires,
            q: -1,
            ..Default::default()
        }
    }

    #[test]
    fn insert_update_and_stale_cseq() {
        let sized = Location::new("u").with_capacity("location", 1 << 12);
        assert!(sized.tables["location"].capacity() >= 4096, "hash_size pre-sizes the table");
        assert_eq!(sized.len(), 0);
        let mut l = Location::new("uloc-1-2");
        let (code, ch) = l.upsert(contact("alice", "sip:a@1.2.3.4", "c1", 1, 1100), 1000);
        assert_eq!(code, upsert::INSERTED);
        let ch = ch.unwrap();
        assert_eq!((ch.kind, ch.contact.ruid.as_str()), (cb::CONTACT_INSERT, "uloc-1-2-1"));

        // Same Call-ID, CSeq not higher: a retransmission or out of order, nothing changes.
        assert_eq!(l.upsert(contact("alice", "sip:a@1.2.3.4", "c1", 1, 2000), 1001), (upsert::STALE, None));
        assert_eq!(l.aor("location", "alice").unwrap()[0].expires, 1100);

        let (code, ch) = l.upsert(contact("alice", "sip:a@1.2.3.4", "c1", 2, 1200), 1002);
        assert_eq!(code, upsert::UPDATED);
        let ch = ch.unwrap();
        assert_eq!((ch.kind, ch.contact.ruid.as_str(), ch.contact.expires), (cb::CONTACT_UPDATE, "uloc-1-2-1", 1200));

        // Another Call-ID (the phone rebooted): its CSeq may start lower.
        assert_eq!(l.upsert(contact("alice", "sip:a@1.2.3.4", "c2", 1, 1300), 1003).0, upsert::UPDATED);
        assert_eq!(l.len(), 1);

        // Another contact of the same AoR is a second binding.
        assert_eq!(l.upsert(contact("alice", "sip:a@5.6.7.8", "c3", 1, 1300), 1003).0, upsert::INSERTED);
        assert_eq!(l.aor("location", "alice").unwrap().len(), 2);
        assert_eq!(l.upsert(contact("", "sip:x@y", "c", 1, 0), 1).0, upsert::INVALID);
    }

    #[test]
    fn delete_and_expire() {
        let mut l = Location::new("u");
        l.upsert(contact("alice", "sip:a@1", "c1", 1, 1100), 1000);
        l.upsert(contact("alice", "sip:a@2", "c2", 1, 1200), 1000);
        l.upsert(contact("bob", "sip:b@1", "c3", 1, 0), 1000);
        assert_eq!(l.delete_contact("location", "alice", "sip:a@9"), []);
        let ch = l.delete_contact("location", "alice", "sip:a@1");
        assert_eq!(ch.len(), 1);
        assert_eq!((ch[0].kind, ch[0].contact.contact.as_str()), (cb::CONTACT_DELETE, "sip:a@1"));

        assert!(l.expire(1199).is_empty(), "nothing is due yet");
        let expired = l.expire(1200);
        assert_eq!(expired.len(), 1);
        assert_eq!((expired[0].kind, expired[0].contact.contact.as_str()), (cb::CONTACT_EXPIRE, "sip:a@2"));
        assert!(l.aor("location", "alice").is_none(), "an AoR without contacts is gone");
        assert!(l.expire(1_000_000).is_empty(), "a permanent contact never expires");
        assert_eq!(l.delete_aor("location", "bob", None).len(), 1);
        assert!(l.is_empty());
    }

    #[test]
    fn an_expired_contact_registering_again_is_new() {
        let mut l = Location::new("u");
        l.upsert(contact("alice", "sip:a@1", "c1", 5, 1100), 1000);
        let (code, ch) = l.upsert(contact("alice", "sip:a@1", "c1", 5, 1500), 1200);
        assert_eq!(code, upsert::INSERTED);
        assert_eq!(ch.unwrap().contact.ruid, "u-1", "the row keeps its ruid");
    }

    #[test]
    fn delete_one_by_ruid() {
        let mut l = Location::new("u");
        l.upsert(contact("alice", "sip:a@1", "c1", 1, 0), 1);
        l.upsert(contact("alice", "sip:a@2", "c2", 1, 0), 1);
        let gone = l.delete_aor("location", "alice", Some("u-2"));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].contact.contact, "sip:a@2");
        assert_eq!(l.aor("location", "alice").unwrap().len(), 1);
    }

    fn with_path(mut c: Contact, path: &str) -> Contact {
        c.path = path.into();
        c
    }

    #[test]
    fn matching_mode_1_keys_bindings_by_call_id() {
        let mut l = Location::new("u").with_matching(matching::CONTACT_CALLID);
        assert_eq!(l.upsert(contact("alice", "sip:a@1", "c1", 5, 1100), 1000).0, upsert::INSERTED);
        // The same URI from another Call-ID (another device or a reboot) is a second binding.
        let (code, ch) = l.upsert(contact("alice", "sip:a@1", "c2", 1, 1200), 1001);
        assert_eq!(code, upsert::INSERTED);
        assert_eq!(ch.unwrap().contact.ruid, "u-2");
        assert_eq!(l.aor("location", "alice").unwrap().len(), 2);
        // Each refreshes on its own, with its own CSeq order.
        assert_eq!(l.upsert(contact("alice", "sip:a@1", "c1", 5, 1300), 1002), (upsert::STALE, None));
        let (code, ch) = l.upsert(contact("alice", "sip:a@1", "c2", 2, 1400), 1002);
        assert_eq!((code, ch.unwrap().contact.ruid.as_str()), (upsert::UPDATED, "u-2"));
        let exp: Vec<i64> = l.aor("location", "alice").unwrap().iter().map(|c| c.expires).collect();
        assert_eq!(exp, [1100, 1400]);
        // Mode 0 for comparison: the second Call-ID takes the binding over.
        let mut l0 = Location::new("u");
        l0.upsert(contact("alice", "sip:a@1", "c1", 5, 1100), 1000);
        assert_eq!(l0.upsert(contact("alice", "sip:a@1", "c2", 1, 1200), 1001).0, upsert::UPDATED);
        assert_eq!(l0.len(), 1);
        // Removing the URI removes both bindings of mode 1.
        assert_eq!(l.delete_contact("location", "alice", "sip:a@1").len(), 2);
        assert!(l.is_empty());
    }

    #[test]
    fn matching_mode_2_keys_bindings_by_path() {
        let mut l = Location::new("u").with_matching(matching::CONTACT_PATH);
        let edge1 = "<sip:edge1.test;lr>";
        let edge2 = "<sip:edge2.test;lr>";
        l.upsert(with_path(contact("alice", "sip:a@1", "c1", 1, 1100), edge1), 1000);
        // Through another proxy: another binding, even with the same Call-ID.
        let (code, _) = l.upsert(with_path(contact("alice", "sip:a@1", "c1", 2, 1200), edge2), 1001);
        assert_eq!(code, upsert::INSERTED);
        assert_eq!(l.aor("location", "alice").unwrap().len(), 2);
        // Through the first proxy again: its binding is refreshed.
        let (code, ch) = l.upsert(with_path(contact("alice", "sip:a@1", "c1", 3, 1300), edge1), 1002);
        assert_eq!((code, ch.unwrap().contact.ruid.as_str()), (upsert::UPDATED, "u-1"));
        // No Path: the URI alone decides (the first binding of it).
        let (code, ch) = l.upsert(contact("alice", "sip:a@1", "c1", 4, 1400), 1003);
        assert_eq!((code, ch.unwrap().contact.ruid.as_str()), (upsert::UPDATED, "u-1"));
        assert_eq!(l.aor("location", "alice").unwrap().len(), 2);
    }

    #[test]
    fn restore_keeps_distinct_bindings_of_one_uri() {
        let mut rows = vec![contact("alice", "sip:a@1", "c1", 1, 0), contact("alice", "sip:a@1", "c2", 1, 0)];
        rows[0].ruid = "r1".into();
        rows[1].ruid = "r2".into();
        let mut l1 = Location::new("u").with_matching(matching::CONTACT_CALLID);
        let mut l0 = Location::new("u");
        for r in &rows {
            l1.restore(r.clone());
            l0.restore(r.clone());
        }
        assert_eq!(l1.len(), 2, "mode 1: two Call-IDs, two bindings");
        assert_eq!(l0.len(), 1, "mode 0: one URI, one binding (the later row)");
        assert_eq!(l0.aor("location", "alice").unwrap()[0].ruid, "r2");
    }
}
