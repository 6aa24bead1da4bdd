//! What the server holds in memory: publications per presentity, subscriptions (dialogs) and
//! the authorization record of each watcher (Kamailio's `watchers` table). Plain data with no
//! locking and no I/O; `lib.rs` guards it with one mutex and performs the effects.

use std::collections::{HashMap, VecDeque};

/// One publication (a `presentity` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub etag: String,
    /// Absolute, epoch seconds.
    pub expires: i64,
    pub received_time: i64,
    pub body: Vec<u8>,
    pub sender: String,
    pub priority: i64,
}

/// Lists by (presentity URI, event), looked up with borrowed strings: a request's lookup
/// allocates nothing (a presentity has a few events, so they are a short list). The index of
/// subscriptions by presentity.
#[derive(Debug)]
pub struct ByPresentity<T> {
    map: HashMap<String, Vec<(String, Vec<T>)>>,
}

impl<T> Default for ByPresentity<T> {
    fn default() -> Self {
        Self { map: HashMap::new() }
    }
}

impl<T> ByPresentity<T> {
    /// The list of (uri, event).
    pub fn get(&self, uri: &str, event: &str) -> Option<&Vec<T>> {
        self.map.get(uri)?.iter().find(|(e, _)| e == event).map(|(_, l)| l)
    }

    /// Appends `v` to the list of (uri, event).
    pub fn push(&mut self, uri: &str, event: &str, v: T) {
        let events = match self.map.get_mut(uri) {
            Some(events) => events,
            None => self.map.entry(uri.to_string()).or_default(),
        };
        match events.iter_mut().find(|(e, _)| e == event) {
            Some((_, l)) => l.push(v),
            None => events.push((event.to_string(), vec![v])),
        }
    }

    /// Applies `f` to the list of (uri, event), then drops the list if it became empty.
    pub fn update<R>(&mut self, uri: &str, event: &str, f: impl FnOnce(&mut Vec<T>) -> R) -> Option<R> {
        let events = self.map.get_mut(uri)?;
        let i = events.iter().position(|(e, _)| e == event)?;
        let r = f(&mut events[i].1);
        if events[i].1.is_empty() {
            events.swap_remove(i);
            if events.is_empty() {
                self.map.remove(uri);
            }
        }
        Some(r)
    }
}

/// One stored publication: its presentity, event, ETag, sender and body in one allocation,
/// times as 32-bit epoch seconds (as Kamailio's int columns). 40 bytes plus the text: at 100k
/// presentities a publication costs less than Kamailio's shared-memory record.
struct Packed {
    /// presentity URI, event, ETag, sender, body, one after the other.
    data: Box<[u8]>,
    expires: u32,
    received_time: u32,
    priority: i32,
    uri_len: u16,
    event_len: u16,
    etag_len: u16,
    sender_len: u16,
}

/// `s` cut to at most 64 KiB at a character boundary. No SIP header or table column the
/// fields come from is that long; a longer one is cut rather than refused.
fn cut(s: &str) -> &str {
    let mut n = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

fn epoch32(t: i64) -> u32 {
    u32::try_from(t.max(0)).unwrap_or(u32::MAX)
}

impl Packed {
    fn new(uri: &str, event: &str, p: &Publication) -> Self {
        let (uri, event, etag, sender) = (cut(uri), cut(event), cut(&p.etag), cut(&p.sender));
        let mut data = Vec::with_capacity(uri.len() + event.len() + etag.len() + sender.len() + p.body.len());
        for part in [uri, event, etag, sender] {
            data.extend_from_slice(part.as_bytes());
        }
        data.extend_from_slice(&p.body);
        let len16 = |s: &str| s.len() as u16; // cut to fit
        Self {
            data: data.into_boxed_slice(),
            expires: epoch32(p.expires),
            received_time: epoch32(p.received_time),
            priority: i32::try_from(p.priority).unwrap_or(if p.priority < 0 { i32::MIN } else { i32::MAX }),
            uri_len: len16(uri),
            event_len: len16(event),
            etag_len: len16(etag),
            sender_len: len16(sender),
        }
    }

    fn part(&self, from: usize, len: u16) -> &str {
        // Built from &str pieces cut at their own length: always UTF-8.
        std::str::from_utf8(&self.data[from..from + usize::from(len)]).unwrap_or("")
    }

    fn uri(&self) -> &str {
        self.part(0, self.uri_len)
    }

    fn event(&self) -> &str {
        self.part(usize::from(self.uri_len), self.event_len)
    }

    fn etag(&self) -> &str {
        self.part(usize::from(self.uri_len) + usize::from(self.event_len), self.etag_len)
    }

    fn sender(&self) -> &str {
        let at = usize::from(self.uri_len) + usize::from(self.event_len) + usize::from(self.etag_len);
        self.part(at, self.sender_len)
    }

    fn body(&self) -> &[u8] {
        let at = usize::from(self.uri_len)
            + usize::from(self.event_len)
            + usize::from(self.etag_len)
            + usize::from(self.sender_len);
        &self.data[at..]
    }

    fn is(&self, uri: &str, event: &str) -> bool {
        self.uri() == uri && self.event() == event
    }

    fn publication(&self) -> Publication {
        Publication {
            etag: self.etag().to_string(),
            expires: i64::from(self.expires),
            received_time: i64::from(self.received_time),
            body: self.body().to_vec(),
            sender: self.sender().to_string(),
            priority: i64::from(self.priority),
        }
    }
}

/// Publications by (presentity URI, event name): one table entry per publication, hashed by
/// (URI, event), so the publications of a presentity are the entries of one hash; lookups take
/// borrowed strings and allocate nothing.
#[derive(Default)]
pub struct Presentities {
    table: hashbrown::HashTable<Packed>,
    /// SipHash with a random key, as std's maps: presentity URIs come from the network.
    hasher: std::hash::RandomState,
}

impl std::fmt::Debug for Presentities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presentities").field("len", &self.table.len()).finish()
    }
}

impl Presentities {
    fn hash(&self, uri: &str, event: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one((uri, event))
    }

    /// The publication with `etag`.
    pub fn find(&self, uri: &str, event: &str, etag: &str) -> Option<Publication> {
        self.table.find(self.hash(uri, event), |p| p.is(uri, event) && p.etag() == etag).map(Packed::publication)
    }

    /// Stores a new publication.
    pub fn insert(&mut self, uri: &str, event: &str, p: Publication) {
        let hash = self.hash(uri, event);
        let hasher = &self.hasher;
        let packed = Packed::new(uri, event, &p);
        self.table.insert_unique(hash, packed, |x| {
            use std::hash::BuildHasher;
            hasher.hash_one((x.uri(), x.event()))
        });
    }

    /// Replaces the publication with `etag` by `p`; false when there is none.
    pub fn replace(&mut self, uri: &str, event: &str, etag: &str, p: Publication) -> bool {
        let hash = self.hash(uri, event);
        match self.table.find_mut(hash, |x| x.is(uri, event) && x.etag() == etag) {
            Some(slot) => {
                *slot = Packed::new(uri, event, &p);
                true
            }
            None => false,
        }
    }

    /// Removes the publication with `etag`.
    pub fn remove(&mut self, uri: &str, event: &str, etag: &str) -> Option<Publication> {
        let hash = self.hash(uri, event);
        let entry = self.table.find_entry(hash, |x| x.is(uri, event) && x.etag() == etag).ok()?;
        Some(entry.remove().0.publication())
    }

    /// Unexpired publications, oldest first (by received time, then priority), as Kamailio's
    /// `retrieve_order` 0 gives them to the aggregation.
    pub fn current(&self, uri: &str, event: &str, now: i64) -> Vec<Publication> {
        let mut v: Vec<&Packed> = self
            .table
            .iter_hash(self.hash(uri, event))
            .filter(|p| p.is(uri, event) && i64::from(p.expires) > now)
            .collect();
        v.sort_by_key(|p| (p.received_time, p.priority));
        v.into_iter().map(Packed::publication).collect()
    }

    /// (uri, event, etag) of every publication expired at `now`.
    pub fn expired(&self, now: i64) -> Vec<(String, String, String)> {
        self.table
            .iter()
            .filter(|p| i64::from(p.expires) <= now)
            .map(|p| (p.uri().to_string(), p.event().to_string(), p.etag().to_string()))
            .collect()
    }

    /// Every publication with its presentity URI and event.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, Publication)> {
        self.table.iter().map(|p| (p.uri(), p.event(), p.publication()))
    }

    /// Number of publications.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Room for `n` more publications.
    pub fn reserve(&mut self, n: usize) {
        let hasher = &self.hasher;
        self.table.reserve(n, |x| {
            use std::hash::BuildHasher;
            hasher.hash_one((x.uri(), x.event()))
        });
    }

    /// No publications.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// The dialog of a subscription: Call-ID, our tag (To of the SUBSCRIBE), the watcher's tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogKey {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
}

/// A NOTIFY waiting for its turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedNotify {
    /// `Subscription-State` value.
    pub state: String,
    /// Content type and body (none for pending and terminated states).
    pub body: Option<(String, Vec<u8>)>,
    /// The last NOTIFY of the subscription: it is removed once this one is answered.
    pub last: bool,
}

/// One subscription (an `active_watchers` row plus what is needed to send in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub key: DialogKey,
    pub pres_uri: String,
    /// Package name (`presence`, `presence.winfo`, `dialog;sla`).
    pub event: String,
    pub event_id: String,
    /// The SUBSCRIBE's To and From URIs (our From and To in NOTIFYs).
    pub to_uri: String,
    pub from_uri: String,
    pub to_user: String,
    pub to_domain: String,
    pub from_user: String,
    pub from_domain: String,
    pub watcher_user: String,
    pub watcher_domain: String,
    pub local_cseq: u32,
    pub remote_cseq: u32,
    /// The watcher's Contact URI: the target of NOTIFYs.
    pub contact: String,
    /// Record-Route values, in the order received (our route set as the UAS).
    pub record_route: Vec<String>,
    pub expires: i64,
    /// [`plugin_api::api::presence::status`].
    pub status: i32,
    pub reason: String,
    /// Watcher-info document version, for winfo subscriptions.
    pub version: u32,
    pub socket_info: String,
    pub local_contact: String,
    pub user_agent: String,
    pub flags: i32,
    /// NOTIFYs not sent yet, in order.
    pub queue: VecDeque<QueuedNotify>,
    /// A NOTIFY is out and not answered.
    pub in_flight: bool,
    /// Ended (unsubscribed, expired, rejected): gone once its last NOTIFY is answered.
    pub ended: bool,
    /// subs_db_mode 3: when it was last read from the database (the copy here only carries
    /// NOTIFYs in order and goes when idle).
    pub touched: i64,
}

impl Subscription {
    /// `sip:user@domain` of the watcher.
    pub fn watcher_uri(&self) -> String {
        format!("sip:{}@{}", self.watcher_user, self.watcher_domain)
    }

    /// Queues a NOTIFY; a queued state update not sent yet is replaced by the newer one (the
    /// watcher needs the latest state, in order, not every intermediate one).
    pub fn push(&mut self, n: QueuedNotify) {
        if let Some(back) = self.queue.back_mut()
            && !back.last
            && !n.last
        {
            *back = n;
            return;
        }
        self.queue.push_back(n);
    }
}

/// Subscriptions by dialog, with an index by (presentity, event).
#[derive(Debug, Default)]
pub struct Subscriptions {
    by_key: HashMap<DialogKey, Subscription>,
    by_pres: ByPresentity<DialogKey>,
}

impl Subscriptions {
    pub fn get(&self, key: &DialogKey) -> Option<&Subscription> {
        self.by_key.get(key)
    }

    pub fn get_mut(&mut self, key: &DialogKey) -> Option<&mut Subscription> {
        self.by_key.get_mut(key)
    }

    /// Stores `s` (replacing one with the same dialog).
    pub fn insert(&mut self, s: Subscription) {
        let (uri, event, key) = (s.pres_uri.clone(), s.event.clone(), s.key.clone());
        if self.by_key.insert(key.clone(), s).is_none() {
            self.by_pres.push(&uri, &event, key);
        }
    }

    /// subs_db_mode 3: takes `s` as read from the database. Stored when absent; otherwise
    /// what a server sharing the table may have changed is refreshed and the send state (queue,
    /// NOTIFY out, CSeq) is kept.
    pub fn adopt(&mut self, s: &Subscription, now: i64) {
        match self.by_key.get_mut(&s.key) {
            Some(m) => {
                m.contact.clone_from(&s.contact);
                m.expires = s.expires;
                m.status = s.status;
                m.reason.clone_from(&s.reason);
                m.remote_cseq = m.remote_cseq.max(s.remote_cseq);
                m.ended |= s.ended;
                m.touched = now;
            }
            None => {
                let mut c = s.clone();
                c.touched = now;
                self.insert(c);
            }
        }
    }

    /// subs_db_mode 3: drops the copies with nothing queued or out that were not read since
    /// `before`; how many went.
    pub fn evict_idle(&mut self, before: i64) -> usize {
        let idle: Vec<DialogKey> = self
            .by_key
            .values()
            .filter(|s| !s.in_flight && s.queue.is_empty() && s.touched < before)
            .map(|s| s.key.clone())
            .collect();
        for k in &idle {
            self.remove(k);
        }
        idle.len()
    }

    /// Removes the subscription of `key`.
    pub fn remove(&mut self, key: &DialogKey) -> Option<Subscription> {
        let s = self.by_key.remove(key)?;
        self.by_pres.update(&s.pres_uri, &s.event, |keys| keys.retain(|k| k != key));
        Some(s)
    }

    /// Dialogs of the subscriptions to (pres_uri, event), ended ones included.
    pub fn keys_for(&self, pres_uri: &str, event: &str) -> Vec<DialogKey> {
        self.by_pres.get(pres_uri, event).cloned().unwrap_or_default()
    }

    /// Live (not ended, not expired) subscriptions to (pres_uri, event).
    pub fn live_for(&self, pres_uri: &str, event: &str, now: i64) -> impl Iterator<Item = &Subscription> {
        self.by_pres
            .get(pres_uri, event)
            .into_iter()
            .flatten()
            .filter_map(|k| self.by_key.get(k))
            .filter(move |s| !s.ended && s.expires > now)
    }

    /// Dialogs of subscriptions expired at `now` and not ended yet.
    pub fn expired(&self, now: i64) -> Vec<DialogKey> {
        self.by_key.values().filter(|s| !s.ended && s.expires <= now).map(|s| s.key.clone()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Subscription> {
        self.by_key.values()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Room for `n` more subscriptions.
    pub fn reserve(&mut self, n: usize) {
        self.by_key.reserve(n);
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// A watcher's authorization record (a `watchers` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub status: i32,
    pub reason: String,
    pub inserted_time: i64,
}

/// Authorization records by (presentity URI, watcher URI, event).
pub type Watchers = HashMap<(String, String, String), Authorization>;

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(etag: &str, t: i64) -> Publication {
        Publication {
            etag: etag.into(),
            expires: t + 100,
            received_time: t,
            body: etag.as_bytes().to_vec(),
            sender: String::new(),
            priority: 0,
        }
    }

    #[test]
    fn publications_by_presentity_oldest_first() {
        let mut p = Presentities::default();
        p.insert("sip:a@x", "presence", publication("e2", 20));
        p.insert("sip:a@x", "presence", publication("e1", 10));
        p.insert("sip:a@x", "dialog", publication("d", 10));
        let cur: Vec<String> = p.current("sip:a@x", "presence", 15).into_iter().map(|p| p.etag).collect();
        assert_eq!(cur, ["e1", "e2"]);
        assert_eq!(p.find("sip:a@x", "presence", "e2"), Some(publication("e2", 20)), "everything comes back");
        assert_eq!(p.current("sip:a@x", "presence", 115).len(), 1, "e1 expired at 110");
        let mut expired = p.expired(115);
        expired.sort();
        assert_eq!(
            expired,
            [("sip:a@x".into(), "dialog".into(), "d".into()), ("sip:a@x".into(), "presence".into(), "e1".into())]
        );
        assert!(p.replace("sip:a@x", "presence", "e1", publication("e3", 30)));
        assert!(p.find("sip:a@x", "presence", "e1").is_none());
        assert!(p.remove("sip:a@x", "presence", "e3").is_some());
        assert!(p.remove("sip:a@x", "presence", "e3").is_none());
        assert_eq!(p.len(), 2);
    }

    fn sub(call_id: &str) -> Subscription {
        Subscription {
            key: DialogKey { call_id: call_id.into(), to_tag: "t".into(), from_tag: "f".into() },
            pres_uri: "sip:a@x".into(),
            event: "presence".into(),
            event_id: String::new(),
            to_uri: "sip:a@x".into(),
            from_uri: "sip:w@y".into(),
            to_user: "a".into(),
            to_domain: "x".into(),
            from_user: "w".into(),
            from_domain: "y".into(),
            watcher_user: "w".into(),
            watcher_domain: "y".into(),
            local_cseq: 0,
            remote_cseq: 1,
            contact: "sip:w@127.0.0.1".into(),
            record_route: vec![],
            expires: 100,
            status: 1,
            reason: String::new(),
            version: 0,
            socket_info: String::new(),
            local_contact: String::new(),
            user_agent: String::new(),
            flags: 0,
            queue: VecDeque::new(),
            in_flight: false,
            ended: false,
            touched: 0,
        }
    }

    #[test]
    fn subscriptions_indexed_by_presentity() {
        let mut s = Subscriptions::default();
        s.insert(sub("c1"));
        s.insert(sub("c2"));
        s.insert(sub("c1"));
        assert_eq!(s.len(), 2);
        assert_eq!(s.keys_for("sip:a@x", "presence").len(), 2);
        assert_eq!(s.live_for("sip:a@x", "presence", 50).count(), 2);
        assert_eq!(s.live_for("sip:a@x", "presence", 100).count(), 0, "expired at 100");
        assert_eq!(s.expired(100).len(), 2);
        let k = s.keys_for("sip:a@x", "presence")[0].clone();
        s.remove(&k);
        assert_eq!(s.keys_for("sip:a@x", "presence").len(), 1);
    }

    #[test]
    fn adopted_copies_refresh_and_go_when_idle() {
        let mut s = Subscriptions::default();
        let mut row = sub("c");
        s.adopt(&row, 10);
        s.get_mut(&row.key).unwrap().in_flight = true;
        s.get_mut(&row.key).unwrap().local_cseq = 7;
        row.expires = 500;
        row.contact = "sip:w@10.0.0.2".into();
        s.adopt(&row, 20);
        let m = s.get(&row.key).unwrap();
        assert_eq!((m.expires, m.contact.as_str(), m.local_cseq, m.in_flight), (500, "sip:w@10.0.0.2", 7, true));
        assert_eq!(s.evict_idle(100), 0, "a NOTIFY is out");
        s.get_mut(&row.key).unwrap().in_flight = false;
        assert_eq!(s.evict_idle(20), 0, "read at 20");
        assert_eq!(s.evict_idle(21), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn queued_state_updates_collapse_but_final_notifies_stay() {
        let mut s = sub("c");
        let n = |state: &str, last| QueuedNotify { state: state.into(), body: None, last };
        s.push(n("active;expires=10", false));
        s.push(n("active;expires=9", false));
        assert_eq!(s.queue.len(), 1);
        assert_eq!(s.queue[0].state, "active;expires=9");
        s.push(n("terminated;reason=timeout", true));
        s.push(n("active;expires=8", false));
        assert_eq!(s.queue.len(), 3, "nothing collapses into a final NOTIFY");
    }
}
