//! A REGISTER read and checked before anything is stored (RFC 3261 §10.3 steps 5-6): the AoR,
//! Call-ID, CSeq, and each Contact with its expiry and q-value. Any fault becomes a
//! [`RegError`] with Kamailio's reply code and `P-Registrar-Error` text (`rerrno.c`), so a
//! malformed request changes nothing.

use plugin_api::sip::sip_message::headers::Contact as ContactValue;
use plugin_api::sip::{HeaderName, Message, SipUri};

/// Largest contact URI the `location.contact` column holds (Kamailio's CONTACT_MAX_SIZE).
pub const CONTACT_MAX_SIZE: usize = 512;
/// Largest AoR (Kamailio's MAX_AOR_LEN).
pub const MAX_AOR_LEN: usize = 256;
/// Largest Call-ID the `location.callid` column holds.
pub const CALLID_MAX_SIZE: usize = 255;

/// Why a REGISTER is refused (Kamailio's `rerrno` values that a request can cause).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegError {
    /// To (or the AoR argument) is not a SIP URI.
    #[error("Error while parsing AOR")]
    AorParse,
    /// The AoR has no user part.
    #[error("No username in To URI")]
    NoUser,
    /// The AoR is too long.
    #[error("Address Of Record too long")]
    AorLen,
    /// Call-ID missing or malformed.
    #[error("Call-ID header not found")]
    CallId,
    /// Call-ID longer than the column.
    #[error("Callid too long")]
    CallIdLen,
    /// CSeq missing or malformed.
    #[error("CSeq header not found")]
    CSeq,
    /// The Expires header is not delta-seconds.
    #[error("Expires parse error")]
    ExpiresHeader,
    /// A Contact value does not parse (or its URI is not a SIP URI).
    #[error("Contact parse error")]
    ContactParse,
    /// A Contact's `expires` parameter is not delta-seconds.
    #[error("Invalid expires param in contact")]
    ContactExpires,
    /// A Contact's `q` parameter is not a qvalue.
    #[error("Invalid q param in contact")]
    ContactQ,
    /// A contact URI longer than the column.
    #[error("Contact/received too long")]
    ContactLen,
    /// `*` with a non-zero Expires.
    #[error("* used in contact and expires is not zero")]
    StarExpires,
    /// `*` with other contacts.
    #[error("* used in contact and more than 1 contact")]
    StarContacts,
    /// A stored binding of the same Call-ID has a higher CSeq.
    #[error("Out of order request")]
    OutOfOrder,
    /// A stored binding of the same Call-ID has the same CSeq.
    #[error("Retransmission")]
    Retransmission,
    /// More contacts than max_contacts.
    #[error("Too many registered contacts")]
    TooMany,
    /// usrloc refused a change.
    #[error("usrloc_contact_insert failed")]
    Usrloc,
}

impl RegError {
    /// Kamailio's reply code for it.
    pub fn code(&self) -> u16 {
        match self {
            RegError::OutOfOrder | RegError::Retransmission | RegError::Usrloc => 500,
            RegError::TooMany => 503,
            _ => 400,
        }
    }

    /// The reason phrase (Kamailio's MSG_400 / MSG_500 / MSG_503).
    pub fn reason(&self) -> &'static str {
        match self.code() {
            500 => "Server Internal Error",
            503 => "Service Unavailable",
            _ => "Bad Request",
        }
    }
}

/// The settings the expiry of a contact depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryRules {
    /// Used when neither the contact nor the request gives one.
    pub default_expires: u32,
    /// Non-zero expiries below it are raised to it.
    pub min_expires: u32,
    /// Expiries above it are lowered to it (0: no limit).
    pub max_expires: u32,
    /// q of a contact without one, thousandths (-1: unspecified).
    pub default_q: i32,
}

impl ExpiryRules {
    /// Kamailio's `calc_contact_expires`: the contact's parameter, else the Expires header,
    /// else default_expires; a non-zero value clamped to [min_expires, max_expires].
    pub fn expires(&self, param: Option<u32>, header: Option<u32>) -> u32 {
        let e = param.or(header).unwrap_or(self.default_expires);
        if e == 0 {
            return 0;
        }
        let e = e.max(self.min_expires);
        if self.max_expires > 0 { e.min(self.max_expires) } else { e }
    }
}

/// One contact of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContact {
    /// The URI.
    pub uri: String,
    /// Relative expiry after the rules (0: remove).
    pub expires: u32,
    /// q in thousandths, or the default.
    pub q: i32,
    /// `+sip.instance`, unquoted.
    pub instance: String,
    /// `reg-id`.
    pub reg_id: u32,
}

/// What the Contact headers ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bindings {
    /// No Contact: a query for the current bindings.
    Query,
    /// `Contact: *` with `Expires: 0`: remove every binding.
    RemoveAll,
    /// Add, refresh or remove (expires 0) these.
    Contacts(Vec<NewContact>),
}

/// A checked REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// AoR: `user` or `user@domain` (use_domain).
    pub aor: String,
    /// Call-ID.
    pub callid: String,
    /// CSeq number.
    pub cseq: u32,
    /// User-Agent, if any.
    pub user_agent: String,
    /// Path values, comma-separated.
    pub path: String,
    /// The contacts.
    pub bindings: Bindings,
}

/// The AoR of `uri`: the user part, with `@domain` (lower-cased) when `use_domain`.
pub fn aor_of(uri: &str, use_domain: bool) -> Result<String, RegError> {
    let uri = SipUri::parse(uri.trim()).map_err(|_| RegError::AorParse)?;
    let user = uri.user_unescaped().ok_or(RegError::NoUser)?;
    let user = String::from_utf8(user.into_owned()).map_err(|_| RegError::AorParse)?;
    if user.is_empty() {
        return Err(RegError::NoUser);
    }
    let aor = if use_domain {
        let host = uri.host().ok_or(RegError::AorParse)?;
        format!("{user}@{}", host.as_str().to_ascii_lowercase())
    } else {
        user
    };
    if aor.len() > MAX_AOR_LEN {
        return Err(RegError::AorLen);
    }
    Ok(aor)
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s)
}

/// Reads and checks a REGISTER; `aor_uri` replaces the To URI (save's third argument).
pub fn parse(
    msg: &Message<'_>,
    aor_uri: Option<&str>,
    rules: &ExpiryRules,
    use_domain: bool,
) -> Result<Register, RegError> {
    let aor = match aor_uri {
        Some(u) => aor_of(u, use_domain)?,
        None => aor_of(msg.to().map_err(|_| RegError::AorParse)?.uri_str(), use_domain)?,
    };
    let callid = msg.call_id().map_err(|_| RegError::CallId)?.to_string();
    if callid.len() > CALLID_MAX_SIZE {
        return Err(RegError::CallIdLen);
    }
    let cseq = msg.cseq().map_err(|_| RegError::CSeq)?.number;
    let header_expires = msg.expires().map_err(|_| RegError::ExpiresHeader)?;
    let user_agent = msg.header_str(HeaderName::USER_AGENT).unwrap_or("").trim().to_string();
    let path: Vec<&str> =
        msg.headers(HeaderName::PATH).filter_map(|v| std::str::from_utf8(v).ok()).map(str::trim).collect();

    let mut star = false;
    let mut contacts = Vec::new();
    for value in msg.contacts() {
        match value.map_err(|_| RegError::ContactParse)? {
            ContactValue::Star => star = true,
            ContactValue::Address(a) => {
                let uri = a.uri_str();
                let parsed = SipUri::parse(uri).map_err(|_| RegError::ContactParse)?;
                if parsed.host().is_none() {
                    return Err(RegError::ContactParse);
                }
                if uri.len() > CONTACT_MAX_SIZE {
                    return Err(RegError::ContactLen);
                }
                let params = a.params();
                let param_expires = match params.get("expires") {
                    None => None,
                    Some(v) => Some(a.expires().filter(|_| v.is_some()).ok_or(RegError::ContactExpires)?),
                };
                let q = match params.get("q") {
                    None => rules.default_q,
                    Some(_) => i32::from(a.q().ok_or(RegError::ContactQ)?),
                };
                contacts.push(NewContact {
                    uri: uri.to_string(),
                    expires: rules.expires(param_expires, header_expires),
                    q,
                    instance: params.get("+sip.instance").flatten().map(|s| unquote(s).to_string()).unwrap_or_default(),
                    reg_id: params.get("reg-id").flatten().and_then(|v| v.parse().ok()).unwrap_or(0),
                });
            }
        }
    }
    let bindings = if star {
        if !contacts.is_empty() {
            return Err(RegError::StarContacts);
        }
        if header_expires != Some(0) {
            return Err(RegError::StarExpires);
        }
        Bindings::RemoveAll
    } else if contacts.is_empty() {
        Bindings::Query
    } else {
        Bindings::Contacts(contacts)
    };
    Ok(Register { aor, callid, cseq, user_agent, path: path.join(","), bindings })
}

/// A Contact header value of the 200 reply: `<uri>;expires=N[;q=0.5]`.
pub fn reply_contact(uri: &str, expires_in: i64, q: i32) -> String {
    let mut s = format!("<{uri}>;expires={}", expires_in.max(0));
    if q >= 0 {
        let q = format!("{:.3}", f64::from(q) / 1000.0);
        let q = q.trim_end_matches('0').trim_end_matches('.');
        s.push_str(";q=");
        s.push_str(if q.is_empty() { "0" } else { q });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::sip::sip_message;

    const RULES: ExpiryRules = ExpiryRules { default_expires: 3600, min_expires: 60, max_expires: 7200, default_q: -1 };

    fn register(headers: &[&str]) -> Result<Register, RegError> {
        let mut text = String::from(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@Example.COM>\r\nCall-ID: abc@192.0.2.1\r\nCSeq: 7 REGISTER\r\n",
        );
        for h in headers {
            text.push_str(h);
            text.push_str("\r\n");
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        let parsed = sip_message::parse(text.as_bytes()).expect("parses");
        let msg = Message::new(text.as_bytes(), &parsed);
        parse(&msg, None, &RULES, true)
    }

    fn contacts(r: Register) -> Vec<NewContact> {
        match r.bindings {
            Bindings::Contacts(c) => c,
            other => panic!("not contacts: {other:?}"),
        }
    }

    #[test]
    fn aor_call_id_cseq() {
        let r = register(&["Contact: <sip:alice@192.0.2.1:5060>", "User-Agent: phone/1.0"]).unwrap();
        assert_eq!((r.aor.as_str(), r.callid.as_str(), r.cseq), ("alice@example.com", "abc@192.0.2.1", 7));
        assert_eq!(r.user_agent, "phone/1.0");
        assert_eq!(aor_of("sip:alice@example.com", false).unwrap(), "alice");
        assert_eq!(aor_of("sip:example.com", false), Err(RegError::NoUser));
        assert_eq!(aor_of("alice", false), Err(RegError::AorParse));
    }

    #[test]
    fn expires_from_param_header_default_clamped() {
        let c = contacts(register(&["Contact: <sip:a@1.2.3.4>"]).unwrap());
        assert_eq!(c[0].expires, 3600, "default_expires");
        let c = contacts(register(&["Expires: 120", "Contact: <sip:a@1.2.3.4>"]).unwrap());
        assert_eq!(c[0].expires, 120, "the header");
        let c = contacts(register(&["Expires: 120", "Contact: <sip:a@1.2.3.4>;expires=300"]).unwrap());
        assert_eq!(c[0].expires, 300, "the contact parameter overrides the header");
        let c = contacts(register(&["Contact: <sip:a@1.2.3.4>;expires=10"]).unwrap());
        assert_eq!(c[0].expires, 60, "raised to min_expires");
        let c = contacts(register(&["Contact: <sip:a@1.2.3.4>;expires=999999"]).unwrap());
        assert_eq!(c[0].expires, 7200, "lowered to max_expires");
        let c = contacts(register(&["Expires: 3600", "Contact: <sip:a@1.2.3.4>;expires=0"]).unwrap());
        assert_eq!(c[0].expires, 0, "removal");
        let c = contacts(register(&["Contact: <sip:a@1.2.3.4>;q=0.5, <sip:a@5.6.7.8>"]).unwrap());
        assert_eq!((c[0].q, c[1].q), (500, -1));
    }

    #[test]
    fn star() {
        assert_eq!(register(&["Expires: 0", "Contact: *"]).unwrap().bindings, Bindings::RemoveAll);
        assert_eq!(register(&["Contact: *"]), Err(RegError::StarExpires));
        assert_eq!(register(&["Expires: 0", "Contact: *, <sip:a@1.2.3.4>"]), Err(RegError::StarContacts));
        assert_eq!(register(&[]).unwrap().bindings, Bindings::Query);
    }

    #[test]
    fn malformed_input_is_refused() {
        assert_eq!(register(&["Contact: <sip:a@1.2.3.4"]), Err(RegError::ContactParse));
        assert_eq!(register(&["Contact: <mailto:a@b>"]), Err(RegError::ContactParse));
        assert_eq!(register(&["Contact: <sip:a@1.2.3.4>;expires=soon"]), Err(RegError::ContactExpires));
        assert_eq!(register(&["Contact: <sip:a@1.2.3.4>;q=2"]), Err(RegError::ContactQ));
        assert_eq!(register(&["Expires: never", "Contact: <sip:a@1.2.3.4>"]), Err(RegError::ExpiresHeader));
        let long = format!("Contact: <sip:{}@1.2.3.4>", "a".repeat(600));
        assert_eq!(register(&[&long]), Err(RegError::ContactLen));
        assert_eq!(RegError::ContactParse.code(), 400);
        assert_eq!(RegError::TooMany.code(), 503);
    }

    #[test]
    fn reply_contacts() {
        assert_eq!(reply_contact("sip:a@1", 60, -1), "<sip:a@1>;expires=60");
        assert_eq!(reply_contact("sip:a@1", 60, 500), "<sip:a@1>;expires=60;q=0.5");
        assert_eq!(reply_contact("sip:a@1", 60, 1000), "<sip:a@1>;expires=60;q=1");
        assert_eq!(reply_contact("sip:a@1", 60, 0), "<sip:a@1>;expires=60;q=0");
    }
}
