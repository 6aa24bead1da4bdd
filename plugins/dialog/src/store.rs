//! The dialogs, as a sans-I/O state machine: every operation takes the time and returns the
//! callback events it caused, with a copy of the dialog after the change. `lib.rs` applies
//! operations under one mutex and runs the callbacks after releasing it.
//!
//! States and transitions are Kamailio's (`dlg_hash.c`, `next_state_dlg`): 1 unconfirmed →
//! 2 early (1xx with a To-tag) → 3 confirmed without ACK (2xx) → 4 confirmed (ACK); a final
//! reply ≥ 300 before a 2xx, a BYE after it, or the lifetime running out → 5 deleted, and the
//! dialog is removed at once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use plugin_api::api::dialog::{FfiDialog, cb, dir, state};

/// Hash entries (Kamailio's `hash_size` default): `h_entry` is the Call-ID's hash modulo this.
pub const HASH_SIZE: u32 = 4096;

/// (h_entry, h_id).
pub type Id = (u32, u32);

/// A tracked dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub h_entry: u32,
    pub h_id: u32,
    pub call_id: String,
    pub from_uri: String,
    pub from_tag: String,
    pub to_uri: String,
    pub to_tag: String,
    pub req_uri: String,
    pub caller_contact: String,
    pub callee_contact: String,
    pub caller_cseq: u32,
    pub callee_cseq: u32,
    /// Record-Route of the INVITE, comma-separated, as received.
    pub caller_route_set: String,
    /// Record-Route of the callee's reply.
    pub callee_route_set: String,
    /// The socket the INVITE arrived on (`udp:127.0.0.1:5060`).
    pub caller_socket: String,
    pub state: u32,
    pub init_ts: i64,
    pub start_ts: i64,
    pub lifetime: u32,
    /// Absolute expiry, 0 before the 2xx.
    pub timeout: i64,
}

impl Dialog {
    pub fn id(&self) -> Id {
        (self.h_entry, self.h_id)
    }

    pub fn to_ffi(&self) -> FfiDialog {
        FfiDialog {
            h_entry: self.h_entry,
            h_id: self.h_id,
            call_id: self.call_id.as_str().into(),
            from_uri: self.from_uri.as_str().into(),
            from_tag: self.from_tag.as_str().into(),
            to_uri: self.to_uri.as_str().into(),
            to_tag: self.to_tag.as_str().into(),
            req_uri: self.req_uri.as_str().into(),
            caller_contact: self.caller_contact.as_str().into(),
            callee_contact: self.callee_contact.as_str().into(),
            caller_cseq: self.caller_cseq,
            state: self.state,
            init_ts: self.init_ts,
            start_ts: self.start_ts,
            lifetime: self.lifetime,
            timeout: self.timeout,
        }
    }
}

/// What an initial INVITE says about a new dialog.
#[derive(Debug, Clone, Default)]
pub struct NewDialog {
    pub call_id: String,
    pub from_uri: String,
    pub from_tag: String,
    pub to_uri: String,
    pub req_uri: String,
    pub contact: String,
    pub cseq: u32,
    pub route_set: String,
    pub socket: String,
    pub lifetime: u32,
}

/// A callback to run: its type, the direction of the triggering message, the dialog after the
/// change.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: i32,
    pub direction: i32,
    pub dialog: FfiDialog,
}

/// Counts by state, for the statistics and `dlg.stats_active`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub unconfirmed: u64,
    pub early: u64,
    pub confirmed_na: u64,
    pub confirmed: u64,
}

/// What changed for the database since the last [`Dialogs::take_changes`]: confirmed
/// dialogs to write (as they are now) and stored ones to delete.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Dialogs to insert or rewrite.
    pub writes: Vec<Dialog>,
    /// Dialogs whose rows go.
    pub deletes: Vec<Id>,
}

impl Changes {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.deletes.is_empty()
    }
}

/// The dialog table.
#[derive(Debug, Default)]
pub struct Dialogs {
    dialogs: HashMap<Id, Dialog>,
    by_call_id: HashMap<String, Vec<Id>>,
    /// (timeout, id) of confirmed dialogs.
    deadlines: BTreeSet<(i64, Id)>,
    next_id: u32,
    counts: Counts,
    /// Changes are recorded for the database (db_mode 1 and 2).
    persist: bool,
    /// id → true: write the dialog; false: delete its row. Only confirmed dialogs are written
    /// (Kamailio stores a dialog from its 2xx on).
    pending: HashMap<Id, bool>,
    /// Dialogs that have a row (written or loaded), so a removed dialog that never reached
    /// the database costs no DELETE.
    stored: HashSet<Id>,
}

fn h_entry(call_id: &str) -> u32 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    call_id.hash(&mut h);
    (h.finish() % u64::from(HASH_SIZE)) as u32
}

impl Dialogs {
    pub fn new() -> Self {
        Self::default()
    }

    /// A table that records its changes for the database ([`Dialogs::take_changes`]).
    pub fn persistent() -> Self {
        Self { persist: true, ..Self::default() }
    }

    /// Whether changes wait for [`Dialogs::take_changes`].
    pub fn has_changes(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The changes since the last call; the written dialogs count as stored from now on.
    pub fn take_changes(&mut self) -> Changes {
        let mut out = Changes::default();
        for (id, write) in self.pending.drain() {
            if !write {
                out.deletes.push(id);
            } else if let Some(d) = self.dialogs.get(&id) {
                self.stored.insert(id);
                out.writes.push(d.clone());
            }
        }
        out.writes.sort_by_key(Dialog::id);
        out.deletes.sort_unstable();
        out
    }

    /// Every confirmed dialog (db_mode 3 writes them at shutdown); they count as stored.
    pub fn confirmed(&mut self) -> Vec<Dialog> {
        self.pending.clear();
        let mut v: Vec<Dialog> = self.dialogs.values().filter(|d| d.state >= state::CONFIRMED_NA).cloned().collect();
        v.sort_by_key(Dialog::id);
        self.stored = v.iter().map(Dialog::id).collect();
        v
    }

    /// A dialog read back from the database at start-up: kept as it was (its row stays), with
    /// its deadline; new dialogs get ids above it. A duplicate id or a deleted state is
    /// refused (false).
    pub fn load(&mut self, d: Dialog) -> bool {
        let id = d.id();
        if self.dialogs.contains_key(&id) || !(state::UNCONFIRMED..state::DELETED).contains(&d.state) {
            return false;
        }
        self.next_id = self.next_id.max(d.h_id);
        if d.timeout != 0 {
            self.deadlines.insert((d.timeout, id));
        }
        self.by_call_id.entry(d.call_id.clone()).or_default().push(id);
        self.count(d.state, 1);
        self.dialogs.insert(id, d);
        self.stored.insert(id);
        true
    }

    /// Records that dialog `id` changed, for the database.
    fn touch(&mut self, id: Id) {
        if self.persist && self.dialogs.get(&id).is_some_and(|d| d.state >= state::CONFIRMED_NA) {
            self.pending.insert(id, true);
        }
    }

    pub fn len(&self) -> usize {
        self.dialogs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dialogs.is_empty()
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn count(&mut self, st: u32, delta: i64) {
        let c = match st {
            state::UNCONFIRMED => &mut self.counts.unconfirmed,
            state::EARLY => &mut self.counts.early,
            state::CONFIRMED_NA => &mut self.counts.confirmed_na,
            state::CONFIRMED => &mut self.counts.confirmed,
            _ => return,
        };
        *c = c.saturating_add_signed(delta);
    }

    fn set_state(&mut self, id: Id, new: u32) {
        let Some(old) = self.dialogs.get_mut(&id).map(|d| std::mem::replace(&mut d.state, new)) else { return };
        self.count(old, -1);
        self.count(new, 1);
        if new != state::DELETED {
            self.touch(id);
        }
    }

    /// Removes a dialog whose state became DELETED, returning it.
    fn remove(&mut self, id: Id) -> Option<Dialog> {
        self.set_state(id, state::DELETED);
        let d = self.dialogs.remove(&id)?;
        if self.persist {
            if self.stored.remove(&id) {
                self.pending.insert(id, false);
            } else {
                self.pending.remove(&id);
            }
        }
        if let Some(ids) = self.by_call_id.get_mut(&d.call_id) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_call_id.remove(&d.call_id);
            }
        }
        if d.timeout != 0 {
            self.deadlines.remove(&(d.timeout, id));
        }
        Some(d)
    }

    /// A dialog by id.
    pub fn get(&self, id: Id) -> Option<&Dialog> {
        self.dialogs.get(&id)
    }

    /// The dialog with this Call-ID and caller tag.
    pub fn find(&self, call_id: &str, from_tag: &str) -> Option<&Dialog> {
        self.by_call_id.get(call_id)?.iter().filter_map(|id| self.dialogs.get(id)).find(|d| d.from_tag == from_tag)
    }

    /// Every dialog, by (h_entry, h_id).
    pub fn all(&self) -> Vec<&Dialog> {
        let mut v: Vec<&Dialog> = self.dialogs.values().collect();
        v.sort_by_key(|d| d.id());
        v
    }

    /// `dlg_manage()` on an initial INVITE. A second INVITE with the same Call-ID and From tag
    /// while the first is not answered (a spiral through this proxy) joins the existing dialog
    /// and raises nothing.
    pub fn create(&mut self, now: i64, new: NewDialog) -> (Id, Vec<Event>) {
        if let Some(d) = self.find(&new.call_id, &new.from_tag)
            && d.state <= state::EARLY
        {
            return (d.id(), Vec::new());
        }
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let id = (h_entry(&new.call_id), self.next_id);
        let d = Dialog {
            h_entry: id.0,
            h_id: id.1,
            call_id: new.call_id,
            from_uri: new.from_uri,
            from_tag: new.from_tag,
            to_uri: new.to_uri,
            to_tag: String::new(),
            req_uri: new.req_uri,
            caller_contact: new.contact,
            callee_contact: String::new(),
            caller_cseq: new.cseq,
            callee_cseq: 0,
            caller_route_set: new.route_set,
            callee_route_set: String::new(),
            caller_socket: new.socket,
            state: state::UNCONFIRMED,
            init_ts: now,
            start_ts: 0,
            lifetime: new.lifetime,
            timeout: 0,
        };
        let event = Event { kind: cb::CREATED, direction: dir::DOWNSTREAM, dialog: d.to_ffi() };
        self.by_call_id.entry(d.call_id.clone()).or_default().push(id);
        self.dialogs.insert(id, d);
        self.count(state::UNCONFIRMED, 1);
        (id, vec![event])
    }

    /// A reply to the dialog's INVITE (or the relay's local final): `to_tag`, `contact` and
    /// `route_set` from the reply when it has them.
    pub fn reply(
        &mut self,
        now: i64,
        id: Id,
        code: u16,
        to_tag: Option<&str>,
        contact: Option<&str>,
        route_set: Option<&str>,
    ) -> Vec<Event> {
        let Some(d) = self.dialogs.get_mut(&id) else { return Vec::new() };
        let old = d.state;
        if old > state::EARLY {
            return Vec::new(); // answered already: a late provisional or another branch's 2xx
        }
        let learn = |d: &mut Dialog| {
            if d.to_tag.is_empty()
                && let Some(t) = to_tag.filter(|t| !t.is_empty())
            {
                d.to_tag = t.to_string();
                d.callee_contact = contact.unwrap_or("").to_string();
                d.callee_route_set = route_set.unwrap_or("").to_string();
                d.callee_cseq = d.caller_cseq;
            }
        };
        match code {
            100..=199 => {
                if old == state::UNCONFIRMED && to_tag.is_some_and(|t| !t.is_empty()) {
                    learn(d);
                    self.set_state(id, state::EARLY);
                    return self.event(id, cb::EARLY, dir::UPSTREAM);
                }
                Vec::new()
            }
            200..=299 => {
                // The 2xx's To-tag wins over an early one from another branch.
                if let Some(t) = to_tag.filter(|t| !t.is_empty())
                    && d.to_tag != t
                {
                    d.to_tag.clear();
                }
                learn(d);
                d.start_ts = now;
                d.timeout = now + i64::from(d.lifetime);
                self.deadlines.insert((d.timeout, id));
                self.set_state(id, state::CONFIRMED_NA);
                self.event(id, cb::CONFIRMED_NA, dir::UPSTREAM)
            }
            _ => self.delete(id, cb::FAILED, dir::UPSTREAM),
        }
    }

    /// The INVITE was never relayed (the route answered or dropped it): the dialog fails.
    pub fn not_relayed(&mut self, id: Id) -> Vec<Event> {
        match self.dialogs.get(&id) {
            Some(d) if d.state <= state::EARLY => self.delete(id, cb::FAILED, dir::NONE),
            _ => Vec::new(),
        }
    }

    /// A request with a To-tag: finds its dialog by Call-ID and tags in either direction.
    /// `None` when it belongs to no dialog.
    pub fn request(
        &mut self,
        method: &str,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        cseq: u32,
    ) -> Option<Vec<Event>> {
        let (id, direction) = self.by_call_id.get(call_id)?.iter().find_map(|id| {
            let d = self.dialogs.get(id)?;
            if d.from_tag == from_tag && d.to_tag == to_tag {
                Some((*id, dir::DOWNSTREAM))
            } else if d.from_tag == to_tag && d.to_tag == from_tag {
                Some((*id, dir::UPSTREAM))
            } else {
                None
            }
        })?;
        let d = self.dialogs.get_mut(&id)?;
        let mut cseq_changed = false;
        if method != "ACK" && method != "CANCEL" {
            let side = if direction == dir::DOWNSTREAM { &mut d.caller_cseq } else { &mut d.callee_cseq };
            cseq_changed = cseq > *side;
            *side = (*side).max(cseq);
        }
        let st = d.state;
        if cseq_changed && method != "BYE" {
            self.touch(id);
        }
        Some(match method {
            "ACK" if st == state::CONFIRMED_NA => {
                self.set_state(id, state::CONFIRMED);
                self.event(id, cb::CONFIRMED, direction)
            }
            "ACK" => Vec::new(),
            "BYE" if st >= state::CONFIRMED_NA => self.delete(id, cb::TERMINATED, direction),
            "BYE" => Vec::new(),
            "CANCEL" => Vec::new(),
            _ if st >= state::CONFIRMED_NA => self.event(id, cb::REQ_WITHIN, direction),
            _ => Vec::new(),
        })
    }

    /// The first dialog of a Call-ID.
    pub fn find_call(&self, call_id: &str) -> Option<&Dialog> {
        self.by_call_id.get(call_id)?.iter().find_map(|id| self.dialogs.get(id))
    }

    /// Ends a confirmed dialog from here (`dlg.end_dlg`, `dlg.terminate_dlg`): the copy to
    /// send the BYEs from, and its TERMINATED event. `None` for an unknown or unconfirmed
    /// dialog.
    pub fn terminate(&mut self, id: Id) -> Option<(Dialog, Vec<Event>)> {
        let d = self.dialogs.get(&id)?;
        if d.state < state::CONFIRMED_NA {
            return None;
        }
        let copy = d.clone();
        Some((copy, self.delete(id, cb::TERMINATED, dir::NONE)))
    }

    /// Dialogs whose lifetime ran out by `now`: deleted, one EXPIRED event each.
    pub fn expire(&mut self, now: i64) -> Vec<Event> {
        let due: Vec<Id> = self.deadlines.range(..=(now, (u32::MAX, u32::MAX))).map(|(_, id)| *id).collect();
        due.into_iter().flat_map(|id| self.delete(id, cb::EXPIRED, dir::NONE)).collect()
    }

    fn event(&self, id: Id, kind: i32, direction: i32) -> Vec<Event> {
        self.dialogs.get(&id).map(|d| Event { kind, direction, dialog: d.to_ffi() }).into_iter().collect()
    }

    fn delete(&mut self, id: Id, kind: i32, direction: i32) -> Vec<Event> {
        match self.remove(id) {
            Some(mut d) => {
                d.state = state::DELETED;
                vec![Event { kind, direction, dialog: d.to_ffi() }]
            }
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(call_id: &str) -> NewDialog {
        NewDialog {
            call_id: call_id.into(),
            from_uri: "sip:alice@a.test".into(),
            from_tag: "ft".into(),
            to_uri: "sip:bob@b.test".into(),
            req_uri: "sip:bob@192.0.2.2".into(),
            contact: "sip:alice@192.0.2.1".into(),
            cseq: 1,
            lifetime: 60,
            ..Default::default()
        }
    }

    fn kinds(events: &[Event]) -> Vec<(i32, i32, u32)> {
        events.iter().map(|e| (e.kind, e.direction, e.dialog.state)).collect()
    }

    #[test]
    fn call_answered_and_hung_up_by_the_caller() {
        let mut t = Dialogs::new();
        let (id, ev) = t.create(100, invite("c1"));
        assert_eq!(kinds(&ev), [(cb::CREATED, dir::DOWNSTREAM, state::UNCONFIRMED)]);
        assert!(t.reply(100, id, 100, None, None, None).is_empty(), "100 has no To-tag");
        let ev = t.reply(101, id, 180, Some("tt"), Some("sip:bob@192.0.2.2"), None);
        assert_eq!(kinds(&ev), [(cb::EARLY, dir::UPSTREAM, state::EARLY)]);
        assert_eq!(ev[0].dialog.to_tag.as_str(), "tt");
        assert_eq!(ev[0].dialog.callee_contact.as_str(), "sip:bob@192.0.2.2");
        assert!(t.reply(101, id, 183, Some("tt"), None, None).is_empty(), "already early");
        let ev = t.reply(102, id, 200, Some("tt"), Some("sip:bob@192.0.2.2"), None);
        assert_eq!(kinds(&ev), [(cb::CONFIRMED_NA, dir::UPSTREAM, state::CONFIRMED_NA)]);
        assert_eq!((ev[0].dialog.start_ts, ev[0].dialog.timeout), (102, 162));
        assert_eq!(t.counts().confirmed_na, 1);
        // The ACK, from the caller.
        let ev = t.request("ACK", "c1", "ft", "tt", 1).unwrap();
        assert_eq!(kinds(&ev), [(cb::CONFIRMED, dir::DOWNSTREAM, state::CONFIRMED)]);
        assert!(t.request("ACK", "c1", "ft", "tt", 1).unwrap().is_empty(), "a retransmitted ACK");
        // A re-INVITE from the callee.
        let ev = t.request("INVITE", "c1", "tt", "ft", 7).unwrap();
        assert_eq!(kinds(&ev), [(cb::REQ_WITHIN, dir::UPSTREAM, state::CONFIRMED)]);
        assert_eq!(t.get(id).unwrap().callee_cseq, 7);
        // Not ours.
        assert!(t.request("BYE", "c1", "ft", "other", 2).is_none());
        assert!(t.request("BYE", "c2", "ft", "tt", 2).is_none());
        let ev = t.request("BYE", "c1", "ft", "tt", 2).unwrap();
        assert_eq!(kinds(&ev), [(cb::TERMINATED, dir::DOWNSTREAM, state::DELETED)]);
        assert_eq!(t.len(), 0);
        assert_eq!(t.counts(), Counts::default());
        assert!(t.request("BYE", "c1", "ft", "tt", 2).is_none(), "gone");
    }

    #[test]
    fn bye_from_the_callee_is_upstream() {
        let mut t = Dialogs::new();
        let (id, _) = t.create(0, invite("c1"));
        t.reply(0, id, 200, Some("tt"), None, None);
        t.request("ACK", "c1", "ft", "tt", 1);
        let ev = t.request("BYE", "c1", "tt", "ft", 1).unwrap();
        assert_eq!(kinds(&ev), [(cb::TERMINATED, dir::UPSTREAM, state::DELETED)]);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn failures_delete_the_dialog() {
        for (code, early) in [(486, false), (487, true), (408, true), (603, false)] {
            let mut t = Dialogs::new();
            let (id, _) = t.create(0, invite("c1"));
            if early {
                t.reply(0, id, 180, Some("tt"), None, None);
            }
            let ev = t.reply(1, id, code, Some("tt"), None, None);
            assert_eq!(kinds(&ev), [(cb::FAILED, dir::UPSTREAM, state::DELETED)], "{code}");
            assert_eq!((t.len(), t.counts()), (0, Counts::default()));
        }
        // Never relayed.
        let mut t = Dialogs::new();
        let (id, _) = t.create(0, invite("c1"));
        assert_eq!(kinds(&t.not_relayed(id)), [(cb::FAILED, dir::NONE, state::DELETED)]);
        // A BYE before any answer does not end it (CANCEL does, through the 487).
        let (id, _) = t.create(0, invite("c2"));
        t.reply(0, id, 180, Some("tt"), None, None);
        assert!(t.request("BYE", "c2", "ft", "tt", 2).unwrap().is_empty());
        assert_eq!(t.get(id).unwrap().state, state::EARLY);
    }

    #[test]
    fn terminate_only_confirmed_dialogs() {
        let mut t = Dialogs::new();
        let (id, _) = t.create(0, invite("c1"));
        t.reply(0, id, 180, Some("tt"), None, None);
        assert!(t.terminate(id).is_none(), "early: CANCEL is the caller's");
        t.reply(0, id, 200, Some("tt"), None, None);
        let (d, ev) = t.terminate(id).unwrap();
        assert_eq!((d.call_id.as_str(), d.to_tag.as_str()), ("c1", "tt"));
        assert_eq!(kinds(&ev), [(cb::TERMINATED, dir::NONE, state::DELETED)]);
        assert!(t.is_empty());
        assert!(t.terminate(id).is_none());
    }

    #[test]
    fn lifetime_runs_from_the_2xx() {
        let mut t = Dialogs::new();
        let (a, _) = t.create(0, invite("a"));
        let (b, _) = t.create(0, NewDialog { lifetime: 10, ..invite("b") });
        let (_c, _) = t.create(0, invite("c")); // never answered: no lifetime yet
        t.reply(5, a, 200, Some("t1"), None, None);
        t.reply(5, b, 200, Some("t2"), None, None);
        assert!(t.expire(14).is_empty());
        let ev = t.expire(15);
        assert_eq!(kinds(&ev), [(cb::EXPIRED, dir::NONE, state::DELETED)]);
        assert_eq!(ev[0].dialog.call_id.as_str(), "b");
        assert!(t.expire(64).is_empty());
        assert_eq!(t.expire(65).len(), 1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.counts().unconfirmed, 1);
    }

    #[test]
    fn changes_for_the_database() {
        let mut t = Dialogs::persistent();
        let (id, _) = t.create(0, invite("c1"));
        t.reply(0, id, 180, Some("tt"), Some("sip:bob@192.0.2.2"), Some("<sip:p;lr>"));
        assert!(!t.has_changes(), "early dialogs are not written");
        t.reply(1, id, 200, Some("tt"), Some("sip:bob@192.0.2.2"), Some("<sip:p;lr>"));
        let ch = t.take_changes();
        assert_eq!((ch.writes.len(), ch.deletes.len()), (1, 0));
        assert_eq!((ch.writes[0].state, ch.writes[0].callee_route_set.as_str()), (state::CONFIRMED_NA, "<sip:p;lr>"));
        assert!(t.take_changes().is_empty());
        t.request("ACK", "c1", "ft", "tt", 1);
        assert_eq!(t.take_changes().writes[0].state, state::CONFIRMED);
        t.request("ACK", "c1", "ft", "tt", 1);
        assert!(!t.has_changes(), "a retransmitted ACK changes nothing");
        t.request("INFO", "c1", "tt", "ft", 5);
        assert_eq!(t.take_changes().writes[0].callee_cseq, 5);
        t.request("BYE", "c1", "ft", "tt", 2);
        assert_eq!(t.take_changes(), Changes { writes: vec![], deletes: vec![id] });

        // Confirmed and ended between two flushes (db_mode 2): never reaches the database.
        let (id, _) = t.create(0, invite("c2"));
        t.reply(0, id, 200, Some("tt"), None, None);
        t.request("BYE", "c2", "ft", "tt", 2);
        assert!(t.take_changes().is_empty());
        // A failed call never does either.
        let (id, _) = t.create(0, invite("c3"));
        t.reply(0, id, 486, Some("tt"), None, None);
        assert!(!t.has_changes());
        // Memory-only tables record nothing.
        let mut m = Dialogs::new();
        let (id, _) = m.create(0, invite("c1"));
        m.reply(0, id, 200, Some("tt"), None, None);
        assert!(!m.has_changes());
    }

    #[test]
    fn loaded_dialogs_continue() {
        let mut t = Dialogs::persistent();
        let (id, _) = t.create(0, invite("c1"));
        t.reply(5, id, 200, Some("tt"), Some("sip:bob@192.0.2.2"), None);
        t.request("ACK", "c1", "ft", "tt", 1);
        let stored = t.take_changes().writes.remove(0);

        let mut after = Dialogs::persistent();
        assert!(after.load(stored.clone()));
        assert!(!after.load(stored.clone()), "a duplicate id");
        assert!(!after.load(Dialog { h_id: 99, state: state::DELETED, ..stored.clone() }), "a deleted row");
        assert!(!after.has_changes(), "loading writes nothing");
        assert_eq!(after.counts().confirmed, 1);
        assert_eq!(after.find("c1", "ft"), Some(&stored));
        // New dialogs take ids above the loaded ones.
        let (next, _) = after.create(0, invite("c9"));
        assert!(next.1 > stored.h_id);
        // The loaded dialog's BYE ends it and deletes its row; its lifetime still runs.
        let ev = after.request("BYE", "c1", "tt", "ft", 3).unwrap();
        assert_eq!(kinds(&ev), [(cb::TERMINATED, dir::UPSTREAM, state::DELETED)]);
        assert_eq!(after.take_changes().deletes, [id]);
        let mut again = Dialogs::persistent();
        again.load(stored.clone());
        assert_eq!(kinds(&again.expire(stored.timeout)), [(cb::EXPIRED, dir::NONE, state::DELETED)]);
        assert_eq!(again.take_changes().deletes, [id]);
    }

    #[test]
    fn spiral_joins_and_2xx_to_tag_wins() {
        let mut t = Dialogs::new();
        let (id, _) = t.create(0, invite("c1"));
        let (again, ev) = t.create(0, invite("c1"));
        assert_eq!((again, ev.len()), (id, 0));
        t.reply(0, id, 180, Some("branch1"), Some("sip:one"), None);
        let ev = t.reply(0, id, 200, Some("branch2"), Some("sip:two"), Some("<sip:p;lr>"));
        assert_eq!(ev[0].dialog.to_tag.as_str(), "branch2");
        assert_eq!(ev[0].dialog.callee_contact.as_str(), "sip:two");
        assert!(t.reply(0, id, 486, None, None, None).is_empty(), "answered already");
        assert!(t.find("c1", "ft").is_some());
        // A new INVITE with the same Call-ID and tag after the answer is a new dialog.
        let (other, ev) = t.create(0, invite("c1"));
        assert_ne!(other, id);
        assert_eq!(ev.len(), 1);
    }
}
