//! pua's behaviour as a state machine without I/O: it gets calls, replies and the time, and
//! answers with [`Effect`]s (requests to send, callbacks to run). The module glue executes them;
//! the tests drive it with a fake clock.
//!
//! What it adds to Kamailio's pua (reference §2.5), each on purpose:
//! * **One request at a time per record.** A PUBLISH waits for the previous one's final reply,
//!   so it always carries the fresh ETag (Kamailio issues #21, #2048). Changes that arrive
//!   meanwhile collapse into the latest; every caller whose change was collapsed is told the
//!   final reply of the request that carried it, exactly once.
//! * **412** is answered with a fresh PUBLISH carrying the full stored body (also for timer
//!   refreshes, which Kamailio drops); **423** is retried once with the Min-Expires value
//!   (Kamailio deletes the record). Both keep the callers waiting for the chain's end.
//! * A failed in-dialog SUBSCRIBE, timeouts included, starts a new subscription (Kamailio drops
//!   the dialog on a timeout).

use std::collections::HashMap;

use plugin_api::api::pua::{
    ERR_PUBLISH_NO_BODY, ERR_WRONG_ETAG, INSERT_TYPE, PublishInfo, REQ_OTHER, SENT_NOTHING, SubscribeInfo, UaRecord,
    source,
};
use plugin_api::sip::Request;

use crate::config::Config;
use crate::events::Events;
use crate::record::{Kind, Record, Subscription};
use crate::store::{PubQuery, Records, SubQuery};

/// What the engine asks the glue to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send `request`; give its final reply to [`Engine::on_reply`] with `key`.
    Send { key: u64, request: Request },
    /// Run the callbacks registered for `source_flag` with the reply being handled.
    Notify { record: UaRecord, source_flag: i32 },
}

/// The parts of a final reply the engine needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyInfo {
    pub code: u16,
    /// No reply arrived (timeout, could not send).
    pub local: bool,
    pub etag: Option<String>,
    pub expires: Option<i64>,
    pub min_expires: Option<i64>,
    pub to_tag: Option<String>,
    /// URI of the first Contact.
    pub contact: Option<String>,
    /// Record-Route values, in message order.
    pub record_route: Vec<String>,
}

/// A caller to tell about a request's final reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiter {
    cb_param: u64,
    /// The source flag the caller used (callbacks are chosen by it).
    source_flag: i32,
}

#[derive(Debug)]
enum Sent {
    Publish {
        /// The SIP-If-Match sent.
        etag: Option<String>,
        /// The body as sent (after processing), None for refresh/remove.
        body: Option<String>,
        content_type: String,
        tuple_id: Option<String>,
        version: i32,
        /// The caller's expires (< 0: default; 0: remove).
        expires: i64,
        desired: i64,
    },
    Subscribe {
        initial: bool,
        expires: i64,
        desired: i64,
        cseq: i32,
    },
}

/// A request in flight for a record.
#[derive(Debug)]
struct Flight {
    sent: Sent,
    waiters: Vec<Waiter>,
    /// A publication that arrived meanwhile (the latest wins) and the callers collapsed into it.
    /// (Boxed, like `new_record`: rare, and a flight per record in a refresh burst must stay
    /// small.)
    queued_publish: Option<Box<(PublishInfo, Vec<Waiter>)>>,
    queued_subscribe: Option<Box<(SubscribeInfo, Vec<Waiter>)>>,
    /// The record of a new publication, stored only on its 2xx.
    new_record: Option<Box<Record>>,
    retried_423: bool,
    retried_412: bool,
}

/// Keys of records not stored yet (new publications in flight) are in their own range.
const TEMP_KEYS: u64 = 1 << 62;

/// What one refresh pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickStats {
    /// Refreshes sent.
    pub refreshed: u64,
    /// Of those, how many went out after the record had already expired (the pass came too
    /// late: a sign of an overloaded host or an update_period too long for the granted expiry).
    pub late: u64,
    /// Records removed because they expired and nobody wanted them any longer.
    pub expired: u64,
}

/// The engine.
pub struct Engine<R: Records> {
    pub cfg: Config,
    pub events: Events,
    pub records: R,
    flights: HashMap<u64, Flight>,
    /// New publications in flight: (pres_uri, id, event, flag) → temporary key.
    new_pubs: HashMap<(String, String, i32, i32), u64>,
    next_temp: u64,
    token: Box<dyn FnMut() -> String + Send>,
}

fn name_addr(uri: &str) -> String {
    if uri.starts_with('<') { uri.to_string() } else { format!("<{uri}>") }
}

/// The URI inside a name-addr (or the text itself).
fn uri_of(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(s), Some(e)) if e > s => &value[s + 1..e],
        _ => value.trim(),
    }
}

impl<R: Records> Engine<R> {
    /// An engine over `records`; `token` makes unique tokens (tags, Call-IDs, tuple ids).
    pub fn new(cfg: Config, events: Events, records: R, token: impl FnMut() -> String + Send + 'static) -> Self {
        Engine {
            cfg,
            events,
            records,
            flights: HashMap::new(),
            new_pubs: HashMap::new(),
            next_temp: TEMP_KEYS,
            token: Box::new(token),
        }
    }

    /// Requests waiting for a reply.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    // ---------------------------------------------------------------- PUBLISH

    /// `send_publish`: 0 (sent, queued, or nothing to do) with effects, or an error code.
    pub fn send_publish(&mut self, info: PublishInfo, now: i64) -> Result<Vec<Effect>, i32> {
        let waiter = Waiter { cb_param: info.cb_param, source_flag: info.source_flag };
        self.start_publish(info, vec![waiter], now)
    }

    fn start_publish(&mut self, info: PublishInfo, waiters: Vec<Waiter>, now: i64) -> Result<Vec<Effect>, i32> {
        if self.events.by_flag(info.event).is_none() {
            tracing::error!(event = info.event, "PUBLISH for an event that is not registered");
            return Err(-1);
        }
        let q = PubQuery {
            pres_uri: &info.pres_uri,
            flag: info.source_flag,
            event: info.event,
            id: &info.id,
            etag: info.etag.as_deref(),
        };
        let found = self.records.find_publication(&q);
        let key = match &found {
            Some(r) => Some(r.key),
            None if info.etag.is_some() => return Err(ERR_WRONG_ETAG),
            None => self.new_pubs.get(&(info.pres_uri.clone(), info.id.clone(), info.event, info.source_flag)).copied(),
        };
        if let Some(key) = key
            && let Some(flight) = self.flights.get_mut(&key)
        {
            // Collapse: the latest state replaces what was queued; its callers come along.
            let mut all = match flight.queued_publish.take() {
                Some(queued) => queued.1,
                None => Vec::new(),
            };
            all.extend(waiters);
            flight.queued_publish = Some(Box::new((info, all)));
            return Ok(Vec::new());
        }
        match found {
            None => {
                if info.expires == 0 {
                    return Err(SENT_NOTHING); // nothing to remove
                }
                let Some(body) = info.body.clone() else { return Err(ERR_PUBLISH_NO_BODY) };
                let mut r = Record::publication(&info.id, &info.pres_uri, info.event, info.source_flag);
                r.extra_headers = info.extra_headers.clone().unwrap_or_default();
                r.outbound_proxy = info.outbound_proxy.clone().unwrap_or_default();
                r.cb_param = info.cb_param;
                let key = self.next_temp;
                self.next_temp += 1;
                r.key = key;
                self.new_pubs.insert((info.pres_uri.clone(), info.id.clone(), info.event, info.source_flag), key);
                let effect = self.publish_request(
                    &mut r,
                    None,
                    Some(&body),
                    &info.content_type,
                    info.expires.into(),
                    now,
                    waiters,
                    true,
                )?;
                Ok(vec![effect])
            }
            Some(mut r) => {
                if info.extra_headers.is_some() {
                    r.extra_headers = info.extra_headers.clone().unwrap_or_default();
                }
                if info.outbound_proxy.is_some() {
                    r.outbound_proxy = info.outbound_proxy.clone().unwrap_or_default();
                }
                r.cb_param = info.cb_param;
                let etag = r.publ().map(|p| p.etag.clone()).filter(|e| !e.is_empty());
                let body = if info.expires == 0 { None } else { info.body.as_deref() };
                let effect = self.publish_request(
                    &mut r,
                    etag,
                    body,
                    &info.content_type,
                    info.expires.into(),
                    now,
                    waiters,
                    false,
                )?;
                self.records.update(&r);
                Ok(vec![effect])
            }
        }
    }

    /// Builds a PUBLISH for record `r` and records it in flight.
    #[allow(clippy::too_many_arguments)]
    fn publish_request(
        &mut self,
        r: &mut Record,
        etag: Option<String>,
        body: Option<&str>,
        content_type: &str,
        expires: i64,
        now: i64,
        waiters: Vec<Waiter>,
        new: bool,
    ) -> Result<Effect, i32> {
        let ev = self.events.by_flag(r.event).ok_or(-1)?;
        let stored_tuple = r.publ().map(|p| p.tuple_id.clone()).filter(|t| !t.is_empty());
        // The version counter moves with every new body of an existing publication.
        let version = match (new, body.is_some()) {
            (true, _) => 0,
            (false, true) => r.version + 1,
            (false, false) => r.version,
        };
        let (body, tuple_id, content_type) = match body {
            Some(b) => {
                let token = &mut self.token;
                let (b, t) =
                    ev.process(b, version, stored_tuple.as_deref(), || format!("0x{}", token())).map_err(|e| {
                        tracing::error!(pres_uri = %r.pres_uri, "cannot publish: {e}");
                        -1
                    })?;
                let ct = if content_type.is_empty() { ev.content_type.clone() } else { content_type.to_string() };
                (Some(b), t, ct)
            }
            None => (None, stored_tuple, String::new()),
        };
        let hdr_expires = self.cfg.publish_expires(expires);
        let mut headers = format!("Event: {}\r\nExpires: {hdr_expires}\r\n", ev.name);
        if let Some(e) = &etag {
            headers.push_str(&format!("SIP-If-Match: {e}\r\n"));
        }
        headers.push_str(&r.extra_headers);
        let desired = if expires < 0 { 0 } else { now + expires };
        let uri = name_addr(&r.pres_uri);
        let outbound = if r.outbound_proxy.is_empty() {
            self.cfg.outbound_proxy.clone().unwrap_or_default()
        } else {
            r.outbound_proxy.clone()
        };
        let request = Request {
            method: "PUBLISH".into(),
            ruri: r.pres_uri.clone(),
            from: uri.clone(),
            to: uri,
            extra_headers: headers,
            content_type: if body.is_some() { content_type.clone() } else { String::new() },
            body: body.clone().map(String::into_bytes).unwrap_or_default(),
            outbound_proxy: outbound,
            ..Default::default()
        };
        let key = r.key;
        let flight = Flight {
            sent: Sent::Publish { etag, body, content_type, tuple_id, version, expires, desired },
            waiters,
            queued_publish: None,
            queued_subscribe: None,
            new_record: new.then(|| Box::new(r.clone())),
            retried_423: false,
            retried_412: false,
        };
        self.flights.insert(key, flight);
        Ok(Effect::Send { key, request })
    }

    fn on_publish_reply(&mut self, key: u64, mut flight: Flight, reply: &ReplyInfo, now: i64) -> Vec<Effect> {
        let Sent::Publish { etag, body, content_type, tuple_id, version, expires, desired } = &flight.sent else {
            return Vec::new();
        };
        let mut record = match flight.new_record.take() {
            Some(r) => Some(*r),
            None => self.records.get(key),
        };
        let is_new = key >= TEMP_KEYS;
        let code = reply.code;
        let mut effects = Vec::new();
        let rpc = record.as_ref().is_some_and(|r| r.flag & (source::RPC_PUBLISH | source::RPC_ASYN_PUBLISH) != 0);
        let stored_body = record.as_ref().and_then(|r| r.publ()).and_then(|p| p.body.clone());
        // 412: the state on the server is gone; publish the full state again (once per chain).
        if code == 412 && !reply.local && etag.is_some() && !rpc && *expires != 0 && !flight.retried_412 {
            let full = body.clone().or(stored_body);
            if let (Some(full), Some(mut r)) = (full, record.clone()) {
                let again = if *desired == 0 { -1 } else { *desired - now + 3 };
                if again > 0 || *desired == 0 {
                    if let Some(p) = r.publ_mut() {
                        p.etag.clear();
                    }
                    let ct = content_type.clone();
                    let waiters = std::mem::take(&mut flight.waiters);
                    if let Ok(Effect::Send { key: k, request }) =
                        self.publish_request(&mut r, None, Some(&full), &ct, again, now, waiters, false)
                    {
                        let f = self.flights.get_mut(&k).expect("publish_request registered the flight");
                        f.retried_412 = true;
                        f.queued_publish = flight.queued_publish.take();
                        f.new_record = if is_new { Some(Box::new(r.clone())) } else { None };
                        if !is_new {
                            self.records.update(&r);
                        }
                        return vec![Effect::Send { key: k, request }];
                    }
                }
            }
        }
        // 423: retry once with the server's Min-Expires.
        if code == 423
            && !reply.local
            && !flight.retried_423
            && let (Some(min), Some(mut r)) = (reply.min_expires.filter(|m| *m > 0), record.clone())
        {
            let waiters = std::mem::take(&mut flight.waiters);
            let ct = content_type.clone();
            // Min-Expires is the Expires to send: publish_expires adds 1, so ask for min-1.
            if let Ok(Effect::Send { key: k, request }) =
                self.publish_request(&mut r, etag.clone(), body.as_deref(), &ct, (min - 1).max(1), now, waiters, is_new)
            {
                let f = self.flights.get_mut(&k).expect("publish_request registered the flight");
                f.retried_423 = true;
                f.retried_412 = flight.retried_412;
                f.queued_publish = flight.queued_publish.take();
                if let Sent::Publish { desired: d, .. } = &mut f.sent {
                    *d = *desired;
                }
                return vec![Effect::Send { key: k, request }];
            }
        }
        if is_new && let Some(r) = &record {
            self.new_pubs.remove(&(r.pres_uri.clone(), r.id.clone(), r.event, r.flag));
        }
        match code {
            _ if reply.local => {
                // No answer: the record stays as it was (Kamailio: FAKED_REPLY changes nothing).
            }
            200..=299 => match (reply.etag.as_deref(), reply.expires) {
                (Some(new_etag), Some(e)) if e > 0 => {
                    if let Some(r) = record.as_mut() {
                        r.expires = now + e;
                        r.desired_expires = *desired;
                        r.version = *version;
                        if let Some(p) = r.publ_mut() {
                            p.etag = new_etag.to_string();
                            if let Some(t) = tuple_id {
                                p.tuple_id = t.clone();
                            }
                            if body.is_some() {
                                p.body = body.clone();
                                p.content_type = content_type.clone();
                            }
                        }
                        if is_new {
                            let k = self.records.insert(r.clone());
                            r.key = k;
                        } else {
                            self.records.update(r);
                        }
                    }
                }
                (Some(_), Some(_)) => {
                    // Expires 0: removed on the server.
                    if !is_new {
                        self.records.remove(key);
                    }
                }
                _ => {
                    tracing::error!(code, "PUBLISH 2xx without SIP-ETag or Expires; nothing stored");
                }
            },
            _ => {
                // Any other failure: the publication is gone on the server (Kamailio deletes it).
                if !is_new {
                    self.records.remove(key);
                }
                tracing::info!(code, pres_uri = %record.as_ref().map_or("", |r| r.pres_uri.as_str()), "PUBLISH failed; record removed");
            }
        }
        self.notify(&record, &flight.waiters, &mut effects);
        if let Some(queued) = flight.queued_publish.take() {
            let (info, waiters) = *queued;
            match self.start_publish(info, waiters.clone(), now) {
                Ok(more) => effects.extend(more),
                Err(e) => {
                    tracing::info!(error = e, "a collapsed PUBLISH could not be sent; its callers get this reply");
                    self.notify(&record, &waiters, &mut effects);
                }
            }
        }
        effects
    }

    fn notify(&self, record: &Option<Record>, waiters: &[Waiter], effects: &mut Vec<Effect>) {
        let Some(r) = record else { return };
        for w in waiters {
            let mut ua = r.to_ua(REQ_OTHER);
            ua.cb_param = w.cb_param;
            ua.flag = w.source_flag;
            effects.push(Effect::Notify { record: ua, source_flag: w.source_flag });
        }
    }

    // ---------------------------------------------------------------- SUBSCRIBE

    /// `send_subscribe`: effects, or -1.
    pub fn send_subscribe(&mut self, info: SubscribeInfo, now: i64) -> Result<Vec<Effect>, i32> {
        let waiter = Waiter { cb_param: info.cb_param, source_flag: info.source_flag };
        self.start_subscribe(info, vec![waiter], now)
    }

    fn start_subscribe(&mut self, info: SubscribeInfo, waiters: Vec<Waiter>, now: i64) -> Result<Vec<Effect>, i32> {
        if self.events.by_flag(info.event).is_none() {
            tracing::error!(event = info.event, "SUBSCRIBE for an event that is not registered");
            return Err(-1);
        }
        // XMPP's initial subscriptions are stored as XMPP_SUBSCRIBE (callbacks keep the original).
        let stored_flag =
            if info.source_flag == source::XMPP_INITIAL_SUBS { source::XMPP_SUBSCRIBE } else { info.source_flag };
        let q = SubQuery {
            pres_uri: &info.pres_uri,
            watcher_uri: &info.watcher_uri,
            flag: stored_flag | info.source_flag,
            event: info.event,
            id: &info.id,
            remote_target: info.remote_target.as_deref(),
            check_remote_contact: self.cfg.check_remote_contact,
        };
        let found = if info.flag & INSERT_TYPE != 0 { None } else { self.records.find_subscription(&q) };
        let Some(mut r) = found else {
            if info.expires == 0 {
                return Err(SENT_NOTHING);
            }
            let target = info.remote_target.clone().unwrap_or_else(|| info.pres_uri.clone());
            let sub = Subscription {
                watcher_uri: info.watcher_uri.clone(),
                call_id: format!("{}-pua", (self.token)()),
                from_tag: (self.token)(),
                cseq: 1,
                remote_contact: target,
                contact: info.contact.clone(),
                ..Default::default()
            };
            let mut r = Record::subscription(&info.id, &info.pres_uri, info.event, stored_flag, sub);
            r.extra_headers = info.extra_headers.clone().unwrap_or_default();
            r.outbound_proxy = info.outbound_proxy.clone().unwrap_or_default();
            r.cb_param = info.cb_param;
            // A temporary dialog lets a NOTIFY that beats the 2xx match (Kamailio: 64 s).
            r.expires = now + 64;
            r.desired_expires = now + 64;
            let key = self.records.insert(r.clone());
            r.key = key;
            return Ok(vec![self.subscribe_request(&r, true, info.expires.into(), now, waiters)]);
        };
        if info.internal_update_flag != 0 {
            return Err(SENT_NOTHING);
        }
        if r.is_temporary() {
            if info.expires == 0 {
                self.records.remove(r.key);
                self.flights.remove(&r.key);
            }
            return Err(SENT_NOTHING);
        }
        if let Some(flight) = self.flights.get_mut(&r.key) {
            let mut all = match flight.queued_subscribe.take() {
                Some(queued) => queued.1,
                None => Vec::new(),
            };
            all.extend(waiters);
            flight.queued_subscribe = Some(Box::new((info, all)));
            return Ok(Vec::new());
        }
        if info.extra_headers.is_some() {
            r.extra_headers = info.extra_headers.clone().unwrap_or_default();
        }
        r.cb_param = info.cb_param;
        if let Some(s) = r.subs_mut() {
            s.cseq += 1;
        }
        self.records.update(&r);
        Ok(vec![self.subscribe_request(&r, false, info.expires.into(), now, waiters)])
    }

    /// A SUBSCRIBE for `r`: initial (out of dialog) or within its dialog.
    fn subscribe_request(&mut self, r: &Record, initial: bool, expires: i64, now: i64, waiters: Vec<Waiter>) -> Effect {
        let s = r.subs().cloned().unwrap_or_default();
        let ev_name = self.events.by_flag(r.event).map_or("presence", |e| e.name.as_str()).to_string();
        let hdr_expires = self.cfg.subscribe_expires(expires);
        // Kamailio's order (subs_build_hdr): Event, Contact, Expires, then the caller's headers.
        let mut headers =
            format!("Event: {ev_name}\r\nContact: {}\r\nExpires: {hdr_expires}\r\n", name_addr(&s.contact));
        headers.push_str(&r.extra_headers);
        let route_set: Vec<String> = if initial {
            Vec::new()
        } else {
            s.record_route.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect()
        };
        let request = Request {
            method: "SUBSCRIBE".into(),
            ruri: s.remote_contact.clone(),
            from: name_addr(&s.watcher_uri),
            from_tag: s.from_tag.clone(),
            to: name_addr(&r.pres_uri),
            to_tag: if initial { String::new() } else { s.to_tag.clone() },
            call_id: s.call_id.clone(),
            cseq: s.cseq.max(1) as u32,
            route_set,
            extra_headers: headers,
            outbound_proxy: r.outbound_proxy.clone(),
            ..Default::default()
        };
        let desired = if expires < 0 { 0 } else { now + expires };
        self.flights.insert(
            r.key,
            Flight {
                sent: Sent::Subscribe { initial, expires, desired, cseq: s.cseq },
                waiters,
                queued_publish: None,
                queued_subscribe: None,
                new_record: None,
                retried_423: false,
                retried_412: false,
            },
        );
        Effect::Send { key: r.key, request }
    }

    fn on_subscribe_reply(&mut self, key: u64, mut flight: Flight, reply: &ReplyInfo, now: i64) -> Vec<Effect> {
        let Sent::Subscribe { initial, expires, desired, cseq } = flight.sent else { return Vec::new() };
        let mut effects = Vec::new();
        let Some(mut r) = self.records.get(key) else {
            // Unsubscribed meanwhile.
            return effects;
        };
        let lexpire = reply.expires.unwrap_or(0);
        let ok = (200..300).contains(&reply.code) && !reply.local;
        let mut resubscribe = false;
        if initial {
            if !ok || lexpire == 0 {
                self.records.remove(key);
            } else if let Some(contact) = reply.contact.clone() {
                if let Some(s) = r.subs_mut() {
                    s.to_tag = reply.to_tag.clone().unwrap_or_default();
                    // The route set is the Record-Route in reverse, stored comma-separated.
                    s.record_route = reply.record_route.iter().rev().cloned().collect::<Vec<_>>().join(",");
                    s.remote_contact = uri_of(&contact).to_string();
                    s.cseq = cseq;
                }
                r.expires = now + lexpire;
                r.desired_expires = desired;
                self.records.update(&r);
            } else {
                tracing::error!("SUBSCRIBE 2xx without Contact; subscription dropped");
                self.records.remove(key);
            }
        } else if !ok {
            // 481 and every other failure, timeouts included: start over (unless unsubscribing).
            self.records.remove(key);
            resubscribe = expires != 0;
        } else if lexpire == 0 {
            self.records.remove(key);
        } else {
            r.expires = now + lexpire;
            r.desired_expires = desired;
            if let (Some(s), Some(c)) = (r.subs_mut(), reply.contact.as_deref()) {
                s.remote_contact = uri_of(c).to_string();
            }
            self.records.update(&r);
        }
        self.notify(&Some(r.clone()), &flight.waiters, &mut effects);
        if resubscribe {
            let again = if desired == 0 { -1 } else { desired - now + 3 };
            if desired == 0 || again > 0 {
                let s = r.subs().cloned().unwrap_or_default();
                let info = SubscribeInfo {
                    id: r.id.clone(),
                    pres_uri: r.pres_uri.clone(),
                    watcher_uri: s.watcher_uri.clone(),
                    contact: s.contact.clone(),
                    remote_target: Some(s.remote_contact.clone()),
                    outbound_proxy: (!r.outbound_proxy.is_empty()).then(|| r.outbound_proxy.clone()),
                    event: r.event,
                    extra_headers: (!r.extra_headers.is_empty()).then(|| r.extra_headers.clone()),
                    expires: i32::try_from(again).unwrap_or(i32::MAX),
                    source_flag: r.flag,
                    flag: INSERT_TYPE,
                    cb_param: r.cb_param,
                    internal_update_flag: 0,
                };
                if let Ok(more) = self.start_subscribe(info, Vec::new(), now) {
                    effects.extend(more);
                }
            }
        }
        if let Some(queued) = flight.queued_subscribe.take()
            && let Ok(more) = self.start_subscribe(queued.0, queued.1, now)
        {
            effects.extend(more);
        }
        effects
    }

    // ---------------------------------------------------------------- replies and time

    /// The final reply of the request sent for `key`.
    pub fn on_reply(&mut self, key: u64, reply: &ReplyInfo, now: i64) -> Vec<Effect> {
        let Some(flight) = self.flights.remove(&key) else { return Vec::new() };
        self.shrink_tables();
        match flight.sent {
            Sent::Publish { .. } => self.on_publish_reply(key, flight, reply, now),
            Sent::Subscribe { .. } => self.on_subscribe_reply(key, flight, reply, now),
        }
    }

    /// After a burst (a refresh pass, a mass publication) the in-flight tables hold capacity
    /// for all of it; hand it back once they are mostly empty, so memory follows the records.
    fn shrink_tables(&mut self) {
        if self.flights.capacity() > 1024 && self.flights.len() * 4 < self.flights.capacity() {
            self.flights.shrink_to(self.flights.len() * 2);
        }
        if self.new_pubs.capacity() > 1024 && self.new_pubs.len() * 4 < self.new_pubs.capacity() {
            self.new_pubs.shrink_to(self.new_pubs.len() * 2);
        }
    }

    /// The refresh and cleanup pass (every update_period - 5 s): records with less than
    /// update_period left are refreshed while the caller wants them, else removed once expired.
    pub fn tick(&mut self, now: i64) -> Vec<Effect> {
        self.tick_with_stats(now).0
    }

    /// [`Engine::tick`], also counting what it did.
    pub fn tick_with_stats(&mut self, now: i64) -> (Vec<Effect>, TickStats) {
        let due = self.due(now);
        self.refresh(&due, now)
    }

    /// The records a pass at `now` looks at (those with less than update_period left).
    pub fn due(&mut self, now: i64) -> Vec<u64> {
        self.records.due(now + self.cfg.update_period)
    }

    /// Refreshes or removes the records `keys` (from [`Engine::due`]). The module calls it for
    /// a few hundred keys at a time, so a pass over many records never holds the engine for
    /// long.
    pub fn refresh(&mut self, keys: &[u64], now: i64) -> (Vec<Effect>, TickStats) {
        let mut stats = TickStats::default();
        let mut effects = Vec::new();
        for &key in keys {
            if self.flights.contains_key(&key) {
                continue;
            }
            let Some(r) = self.records.get(key) else { continue };
            let wanted = r.desired_expires == 0 || r.desired_expires > r.expires + self.cfg.min_expires;
            if wanted && !r.is_temporary() {
                stats.refreshed += 1;
                if r.expires < now {
                    stats.late += 1;
                }
                // -1 keeps a "forever" record forever (sent with default_expires).
                let expires = if r.desired_expires == 0 { -1 } else { r.desired_expires - now };
                match &r.kind {
                    Kind::Publish(p) if !p.etag.is_empty() => {
                        let mut rec = r.clone();
                        // Refreshes keep the caller's next hop (Kamailio uses only the module's,
                        // which loses publications that need the caller's proxy).
                        if let Ok(e) = self.publish_request(
                            &mut rec,
                            Some(p.etag.clone()),
                            None,
                            "",
                            expires,
                            now,
                            Vec::new(),
                            false,
                        ) {
                            self.records.update(&rec);
                            effects.push(e);
                        }
                    }
                    Kind::Publish(_) => {}
                    Kind::Subscribe(_) => {
                        let mut rec = r.clone();
                        if let Some(s) = rec.subs_mut() {
                            s.cseq += 1;
                        }
                        self.records.update(&rec);
                        effects.push(self.subscribe_request(&rec, false, expires, now, Vec::new()));
                    }
                }
            } else if r.expires < now - 10 {
                self.records.remove(r.key);
                stats.expired += 1;
            }
        }
        (effects, stats)
    }

    // ---------------------------------------------------------------- lookups

    /// `is_dialog`: 0 established, 1 temporary, -1 none. Call-ID and tags compare exactly
    /// (Kamailio compares a prefix over the stored length).
    pub fn is_dialog(&mut self, d: &UaRecord) -> i32 {
        match self.dialog(d) {
            Some((_, true)) => 0,
            Some((_, false)) => 1,
            None => -1,
        }
    }

    /// The matching dialog and whether it is established.
    fn dialog(&mut self, d: &UaRecord) -> Option<(Record, bool)> {
        let r = self.records.find_dialog(&d.call_id, &d.from_tag)?;
        let s = r.subs()?;
        if s.to_tag.is_empty() {
            return Some((r, false));
        }
        let established = s.to_tag == d.to_tag && (d.flag == 0 || r.flag & d.flag != 0);
        established.then_some((r, true))
    }

    /// `get_record_id`.
    pub fn record_id(&mut self, d: &UaRecord) -> Option<String> {
        self.dialog(d).map(|(r, _)| r.id)
    }

    /// `get_subs_list`: the presentity of every record whose id starts with `did`.
    pub fn subs_list(&mut self, did: &str) -> Vec<String> {
        self.records.all().into_iter().filter(|r| r.id.starts_with(did)).map(|r| r.pres_uri).collect()
    }

    /// `pua_update_contact()`: the NOTIFY's Contact becomes the dialog's remote target. The
    /// dialog is found by Call-ID, local tag = the NOTIFY's To-tag and remote tag = its From-tag
    /// (Kamailio swaps the tags and never finds it). A NOTIFY that overtook the SUBSCRIBE's 2xx
    /// (RFC 6665 §4.1.2.4: the subscriber must be prepared for it) matches the temporary
    /// dialog, as `is_dialog` says (1); the 2xx, when it comes, sets the remote tag and target.
    pub fn update_contact(&mut self, call_id: &str, local_tag: &str, remote_tag: &str, contact: &str) -> bool {
        let Some(mut r) = self.records.find_dialog(call_id, local_tag) else { return false };
        match r.subs_mut() {
            Some(s) if s.to_tag.is_empty() => return true,
            Some(s) if s.to_tag == remote_tag => {
                s.remote_contact = uri_of(contact).to_string();
            }
            _ => return false,
        }
        self.records.update(&r);
        true
    }
}

#[cfg(test)]
mod tests;
