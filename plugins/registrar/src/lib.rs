//! `registrar` (Kamailio's registrar): REGISTER per RFC 3261 §10 over the `usrloc` API.
//!
//! Config functions (Kamailio's names, arguments and return codes):
//! - `save(table[, flags[, uri]])` — adds, refreshes and removes the bindings of the REGISTER
//!   and replies: 200 with every binding, or the error with a `P-Registrar-Error` header.
//!   Returns 1 (inserted), 2 (updated), 3 (deleted), 4 (query), -1 (error, replied).
//!   flags: 0x02 no reply, 0x04 the request's contacts replace every other binding.
//! - `lookup(table[, uri])` — rewrites the Request-URI to the best contact of the AoR of the
//!   Request-URI (or `uri`) and sets the branch flags it was saved with: 1 found, -1 not found.
//!   A contact saved with a Path (`use_path`) is reached through it (RFC 3327): the destination
//!   URI is the first Path hop and the relayed request carries the Path as Route headers, in
//!   order, above its own; otherwise the destination is the contact's received address, if any.
//! - `registered(table[, uri])` — 1 when the AoR has a contact, else -1.
//! - `unregister(table, uri[, ruid])` — removes the AoR's contacts (or one): 1, or -1 if none.
//!
//! A REGISTER's contact refreshes or removes the stored binding usrloc's `matching_mode` says
//! it is (the same URI; with the same Call-ID in mode 1; with the same Path in mode 2), and the
//! CSeq order and `max_contacts` checks count bindings the same way.
//!
//! `path_use_received = 1`: the `received` parameter of the first Path URI (an edge proxy's
//! record of the phone's public address) is stored as the contact's received address.

pub mod request;

use plugin_api::api::usrloc::{BindingKey, FfiContact, Usrloc, same_binding, upsert};
use plugin_api::prelude::*;

use request::{Bindings, ExpiryRules, RegError, Register, reply_contact};

/// save() flag: send no reply.
pub const SAVE_NOREPLY: i64 = 0x02;
/// save() flag: the request's contacts replace every other binding.
pub const SAVE_REPLACE: i64 = 0x04;

/// The module.
pub struct Registrar {
    ul: Usrloc,
    rules: ExpiryRules,
    max_contacts: usize,
    use_path: bool,
    path_use_received: bool,
    /// usrloc's matching_mode, read at bind time.
    matching_mode: i32,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Contacts sorted for lookup and replies: higher q first, then the most recently changed.
fn by_preference(contacts: &mut [FfiContact]) {
    contacts.sort_by(|a, b| b.q.cmp(&a.q).then(b.last_modified.cmp(&a.last_modified)));
}

impl Registrar {
    fn table_arg<'a>(call: &FunctionCall<'a>) -> Result<&'a str, Error> {
        call.arg(0).map(str::trim).filter(|t| !t.is_empty()).ok_or_else(|| Error::new("the table name is missing"))
    }

    /// The source address as a SIP URI, when it differs from the contact's own address (a
    /// phone behind NAT): what `lookup` needs to reach it.
    fn received(peer: &plugin_api::sip::Peer, contact_uri: &str) -> String {
        let parsed = plugin_api::sip::SipUri::parse(contact_uri).ok();
        let same = parsed
            .as_ref()
            .is_some_and(|u| u.host().and_then(|h| h.ip()) == Some(peer.ip) && u.port().unwrap_or(5060) == peer.port);
        if same {
            return String::new();
        }
        let host = match peer.ip {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        match peer.transport {
            plugin_api::sip::Transport::Udp => format!("sip:{host}:{}", peer.port),
            t => format!("sip:{host}:{};transport={}", peer.port, t.as_str()),
        }
    }

    /// What identifies the binding a REGISTER's contact `uri` asks for.
    fn new_key<'a>(&self, reg: &'a Register, uri: &'a str) -> BindingKey<'a> {
        BindingKey { contact: uri, callid: &reg.callid, path: if self.use_path { &reg.path } else { "" } }
    }

    /// Whether stored contact `stored` is the binding of one of the request's `contacts`.
    fn is_requested(&self, stored: &FfiContact, reg: &Register, contacts: &[request::NewContact]) -> bool {
        contacts.iter().any(|c| same_binding(self.matching_mode, BindingKey::of(stored), self.new_key(reg, &c.uri)))
    }

    fn reply_error(call: &FunctionCall<'_>, e: &RegError, reply: bool) -> i32 {
        tracing::info!("registrar: REGISTER refused: {} {} ({e})", e.code(), e.reason());
        if reply {
            let info = e.to_string();
            if let Err(err) = call.request().reply_with(e.code(), e.reason(), &[("P-Registrar-Error", &info)], None) {
                tracing::error!("registrar: reply not sent: {err}");
            }
        }
        -1
    }

    fn reply_ok(&self, call: &FunctionCall<'_>, table: &str, reg: &Register) -> Result<(), Error> {
        let now = now();
        let mut contacts = self.ul.contacts(table, &reg.aor);
        by_preference(&mut contacts);
        let values: Vec<String> = contacts
            .iter()
            .map(|c| {
                let left = if c.expires == 0 { i64::from(u32::MAX) } else { c.expires - now };
                reply_contact(c.contact.as_str(), left, c.q)
            })
            .collect();
        let mut headers: Vec<(&str, &str)> = values.iter().map(|v| ("Contact", v.as_str())).collect();
        if self.use_path && !reg.path.is_empty() {
            headers.push(("Path", reg.path.as_str()));
        }
        call.request().reply_with(200, "OK", &headers, None)
    }

    /// RFC 3261 §10.3 step 7 against what is stored: a binding of the same Call-ID must have a
    /// lower CSeq.
    fn check_order(&self, table: &str, reg: &Register, contacts: &[request::NewContact]) -> Result<(), RegError> {
        for stored in self.ul.contacts(table, &reg.aor) {
            if stored.callid.as_str() != reg.callid || !self.is_requested(&stored, reg, contacts) {
                continue;
            }
            let stored_cseq = u32::try_from(stored.cseq).unwrap_or(0);
            if stored_cseq == reg.cseq {
                return Err(RegError::Retransmission);
            }
            if stored_cseq > reg.cseq {
                return Err(RegError::OutOfOrder);
            }
        }
        Ok(())
    }

    fn save(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let table = Self::table_arg(call)?;
        let flags = match call.arg(1).map(str::trim).filter(|s| !s.is_empty()) {
            None => 0,
            Some(f) => parse_flags(f)?,
        };
        let aor_uri = call.arg(2).map(str::trim).filter(|s| !s.is_empty());
        let reply = flags & SAVE_NOREPLY == 0;
        let Some(msg) = call.message() else { return Ok(-1) };
        let reg = match request::parse(&msg, aor_uri, &self.rules, self.ul.use_domain()) {
            Ok(r) => r,
            Err(e) => return Ok(Self::reply_error(call, &e, reply)),
        };
        let outcome = match &reg.bindings {
            Bindings::Query => 4,
            Bindings::RemoveAll => {
                self.ul.delete_aor(table, &reg.aor, None);
                3
            }
            Bindings::Contacts(contacts) => match self.apply(call, table, &reg, contacts, flags) {
                Ok(code) => code,
                Err(e) => return Ok(Self::reply_error(call, &e, reply)),
            },
        };
        if reply {
            self.reply_ok(call, table, &reg)?;
        }
        Ok(outcome)
    }

    fn apply(
        &self,
        call: &FunctionCall<'_>,
        table: &str,
        reg: &Register,
        contacts: &[request::NewContact],
        flags: i64,
    ) -> Result<i32, RegError> {
        self.check_order(table, reg, contacts)?;
        let existing = self.ul.contacts(table, &reg.aor);
        if self.max_contacts > 0 {
            let kept_others = if flags & SAVE_REPLACE != 0 {
                0
            } else {
                existing.iter().filter(|s| !self.is_requested(s, reg, contacts)).count()
            };
            let wanted = contacts.iter().filter(|c| c.expires > 0).count();
            if kept_others + wanted > self.max_contacts {
                return Err(RegError::TooMany);
            }
        }
        let request = call.request();
        let peer = request.peer();
        let socket = request.received_socket().unwrap_or_default();
        let cflags = (0..32u32).filter(|f| request.is_branch_flag_set(*f)).fold(0u32, |acc, f| acc | (1 << f));
        let now = now();
        let (mut inserted, mut updated, mut deleted) = (false, false, false);
        if flags & SAVE_REPLACE != 0 {
            for s in existing.iter().filter(|s| !self.is_requested(s, reg, contacts)) {
                deleted |= self.ul.delete_aor(table, &reg.aor, Some(s.ruid.as_str())) > 0;
            }
        }
        let path = if self.use_path { reg.path.as_str() } else { "" };
        let path_received = if self.path_use_received { path_received(path) } else { None };
        for c in contacts {
            if c.expires == 0 {
                // Only the binding this contact is (by matching_mode), as Kamailio's
                // get_ucontact finds it.
                let key = self.new_key(reg, &c.uri);
                for s in existing.iter().filter(|s| same_binding(self.matching_mode, BindingKey::of(s), key)) {
                    deleted |= self.ul.delete_aor(table, &reg.aor, Some(s.ruid.as_str())) > 0;
                }
                continue;
            }
            let received = match &path_received {
                Some(r) => r.clone(),
                None => Self::received(&peer, &c.uri),
            };
            let contact = FfiContact {
                table: table.into(),
                aor: reg.aor.as_str().into(),
                contact: c.uri.as_str().into(),
                received: received.into(),
                path: path.into(),
                socket: socket.as_str().into(),
                user_agent: reg.user_agent.as_str().into(),
                callid: reg.callid.as_str().into(),
                cseq: i32::try_from(reg.cseq).unwrap_or(i32::MAX),
                expires: now + i64::from(c.expires),
                q: c.q,
                cflags,
                methods: u32::MAX,
                instance: c.instance.as_str().into(),
                reg_id: c.reg_id,
                last_modified: now,
                ..Default::default()
            };
            match self.ul.upsert_contact(&contact) {
                upsert::INSERTED => inserted = true,
                upsert::UPDATED => updated = true,
                upsert::STALE => {}
                _ => return Err(RegError::Usrloc),
            }
        }
        Ok(if inserted {
            1
        } else if updated {
            2
        } else if deleted {
            3
        } else {
            4
        })
    }

    fn aor_for(&self, call: &FunctionCall<'_>, arg: usize) -> Option<String> {
        let uri = match call.arg(arg).map(str::trim).filter(|s| !s.is_empty()) {
            Some(u) => u.to_string(),
            None => call.message()?.request_uri_str()?.to_string(),
        };
        match request::aor_of(&uri, self.ul.use_domain()) {
            Ok(aor) => Some(aor),
            Err(e) => {
                tracing::info!("registrar: no AoR in {uri}: {e}");
                None
            }
        }
    }

    fn lookup(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let table = Self::table_arg(call)?;
        let Some(aor) = self.aor_for(call, 1) else { return Ok(-1) };
        let mut contacts = self.ul.contacts(table, &aor);
        if contacts.is_empty() {
            return Ok(-1);
        }
        by_preference(&mut contacts);
        let best = &contacts[0];
        if let Err(e) = call.request().set_ruri(best.contact.as_str()) {
            tracing::error!("registrar: lookup: {e}");
            return Ok(-3);
        }
        // The branch flags the contact was saved with come back on the branch (Kamailio restores
        // cflags, e.g. a NAT flag set at REGISTER time, for the script after lookup).
        let request = call.request();
        for f in (0..32u32).filter(|f| best.cflags & (1 << f) != 0) {
            request.set_branch_flag(f);
        }
        // As Kamailio: a contact registered through proxies (Path) is reached through the first
        // of them, with the Path as the route set (RFC 3327 §5: the edge proxy handles NAT, so
        // Path wins over received); a contact behind NAT without Path at the address its
        // REGISTER came from.
        let hops = path_uris(best.path.as_str());
        let dst = match hops.first() {
            Some(first) => {
                // A Path the host cannot use as a route set (not `<sip:...>` values, e.g. a row
                // another tool wrote) still names the first hop.
                if let Err(e) = call.request().set_path(best.path.as_str()) {
                    tracing::warn!("registrar: lookup({table}): {aor}: Path not added as Route headers: {e}");
                }
                Some(*first)
            }
            None => Some(best.received.as_str().trim()).filter(|r| !r.is_empty()),
        };
        if let Some(dst) = dst
            && let Err(e) = call.request().set_dst_uri(dst)
        {
            tracing::warn!("registrar: lookup({table}): {aor}: destination {dst}: {e}");
        }
        Ok(1)
    }

    fn registered(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let table = Self::table_arg(call)?;
        let Some(aor) = self.aor_for(call, 1) else { return Ok(-1) };
        Ok(if self.ul.contacts(table, &aor).is_empty() { -1 } else { 1 })
    }

    fn unregister(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let table = Self::table_arg(call)?;
        if call.arg(1).is_none_or(|u| u.trim().is_empty()) {
            return Err(Error::new("unregister: the AoR URI is missing"));
        }
        let Some(aor) = self.aor_for(call, 1) else { return Ok(-1) };
        let ruid = call.arg(2).map(str::trim).filter(|s| !s.is_empty());
        Ok(if self.ul.delete_aor(table, &aor, ruid) > 0 { 1 } else { -1 })
    }
}

/// The URIs of a Path vector (`<sip:a;lr>,<sip:b;lr>`, as stored), in order. Commas inside
/// `<...>` or quotes do not split.
pub fn path_uris(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (false, false, None);
    for (i, ch) in path.char_indices() {
        match ch {
            '"' if !depth => quoted = !quoted,
            '<' if !quoted && !depth => {
                depth = true;
                start = Some(i + 1);
            }
            '>' if depth => {
                depth = false;
                if let Some(s) = start.take() {
                    out.push(path[s..i].trim());
                }
            }
            _ => {}
        }
    }
    out.retain(|u| !u.is_empty());
    // A bare URI without angle brackets (not what registrar stores, but a table may hold it).
    if out.is_empty() {
        out.extend(path.split(',').map(str::trim).filter(|u| !u.is_empty()).map(|u| u.split(';').next().unwrap_or(u)));
    }
    out
}

/// The `received` parameter of the first Path URI, percent-decoded (Kamailio's
/// `path_use_received`: an edge proxy records the phone's public address there).
pub fn path_received(path: &str) -> Option<String> {
    let first = *path_uris(path).first()?;
    let value = first.split(';').skip(1).find_map(|p| {
        let (name, v) = p.split_once('=')?;
        name.trim().eq_ignore_ascii_case("received").then(|| v.trim())
    })?;
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok().map(|s| s.trim_matches('"').to_string()).filter(|s| !s.is_empty())
}

/// save()'s flags: decimal or `0x` hex.
fn parse_flags(s: &str) -> Result<i64, Error> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => i64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| Error::new(format!("save: flags {s:?} are not a number")))
}

fn u32_param(p: &Params, name: &str) -> u32 {
    u32::try_from(p.int(name)).unwrap_or(0)
}

impl Module for Registrar {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("registrar", env!("CARGO_PKG_VERSION"))
            .doc("REGISTER per RFC 3261 §10: save(), lookup(), registered(), unregister() over the usrloc API (Kamailio's registrar).")
            .requires("usrloc")
            .param(Param::int("default_expires", 3600).min(0).doc("expiry of a contact when neither it nor the request gives one"))
            .param(Param::int("min_expires", 60).min(0).doc("non-zero expiries below it are raised to it"))
            .param(Param::int("max_expires", 0).min(0).doc("expiries above it are lowered to it (0: no limit)"))
            .param(Param::int("default_q", -1).range(-1..=1000).doc("q of a contact without one, in thousandths (-1: unspecified)"))
            .param(Param::int("max_contacts", 0).min(0).doc("most contacts per AoR (0: no limit); more are refused with 503"))
            .param(
                Param::int("use_path", 0)
                    .range(0..=1)
                    .doc("1: store the Path header, return it in the 200, and route lookup()'s requests through it"),
            )
            .param(Param::int("path_use_received", 0).range(0..=1).doc(
                "1: store the `received` parameter of the first Path URI as the contact's received address",
            ))
            .function(
                Function::new("save", 1..=3, Self::save)
                    .doc("table [flags [uri]]: store the REGISTER's bindings and reply; 1 inserted, 2 updated, 3 deleted, 4 query, -1 error"),
            )
            .function(
                Function::new("lookup", 1..=2, Self::lookup)
                    .doc("table [uri]: Request-URI := the AoR's best contact; 1 found, -1 not found"),
            )
            .function(
                Function::new("registered", 1..=2, Self::registered)
                    .doc("table [uri]: 1 when the AoR has a contact, else -1"),
            )
            .function(
                Function::new("unregister", 2..=3, Self::unregister)
                    .doc("table uri [ruid]: remove the AoR's contacts (or one); 1, or -1 when none"),
            )
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let ul = Usrloc::bind(host)?;
        Ok(Registrar {
            ul,
            matching_mode: ul.matching_mode(),
            rules: ExpiryRules {
                default_expires: u32_param(params, "default_expires"),
                min_expires: u32_param(params, "min_expires"),
                max_expires: u32_param(params, "max_expires"),
                default_q: i32::try_from(params.int("default_q")).unwrap_or(-1),
            },
            max_contacts: usize::try_from(params.int("max_contacts")).unwrap_or(0),
            use_path: params.int("use_path") == 1,
            path_use_received: params.int("path_use_received") == 1,
        })
    }
}

export_module!(Registrar);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        assert_eq!(parse_flags("0x04").unwrap(), 4);
        assert_eq!(parse_flags("6").unwrap(), 6);
        assert!(parse_flags("x").is_err());
    }

    #[test]
    fn preference_is_q_then_newest() {
        let c =
            |uri: &str, q: i32, t: i64| FfiContact { contact: uri.into(), q, last_modified: t, ..Default::default() };
        let mut v = vec![c("a", -1, 5), c("b", 500, 1), c("c", 500, 3), c("d", 1000, 0)];
        by_preference(&mut v);
        let order: Vec<&str> = v.iter().map(|c| c.contact.as_str()).collect();
        assert_eq!(order, ["d", "c", "b", "a"]);
    }

    #[test]
    fn received_only_when_the_source_differs() {
        let peer = plugin_api::sip::Peer {
            ip: "192.0.2.9".parse().unwrap(),
            port: 40000,
            transport: plugin_api::sip::Transport::Udp,
        };
        assert_eq!(Registrar::received(&peer, "sip:a@192.0.2.9:40000"), "");
        assert_eq!(Registrar::received(&peer, "sip:a@10.0.0.2:5060"), "sip:192.0.2.9:40000");
        let tcp = plugin_api::sip::Peer { transport: plugin_api::sip::Transport::Tcp, ..peer };
        assert_eq!(Registrar::received(&tcp, "sip:a@10.0.0.2"), "sip:192.0.2.9:40000;transport=tcp");
    }

    #[test]
    fn path_vectors() {
        assert_eq!(
            path_uris("<sip:edge1.test;lr>,<sip:edge2.test:5070;lr>"),
            ["sip:edge1.test;lr", "sip:edge2.test:5070;lr"]
        );
        assert_eq!(path_uris(" <sip:a;lr;x=\"1,2\">;p=1 , <sip:b;lr>"), ["sip:a;lr;x=\"1,2\"", "sip:b;lr"]);
        assert_eq!(path_uris("sip:bare.test;lr"), ["sip:bare.test"]);
        assert!(path_uris("").is_empty());
        assert_eq!(
            path_received("<sip:edge.test;lr;received=sip:203.0.113.9%3A41000>,<sip:core;lr>").as_deref(),
            Some("sip:203.0.113.9:41000")
        );
        assert_eq!(
            path_received("<sip:edge.test;lr;received=sip:203.0.113.9:5060%3Btransport%3Dtcp>").as_deref(),
            Some("sip:203.0.113.9:5060;transport=tcp")
        );
        assert_eq!(path_received("<sip:edge.test;lr>"), None);
        assert_eq!(path_received(""), None);
    }
}
