//! `pua_usrloc` (Kamailio's pua_usrloc, reference §5): presence from registrations. It follows
//! usrloc's contact callbacks and, through the pua API, PUBLISHes `open` (the PIDF of §5) when
//! a contact registers, refreshes the publication when the contact is refreshed, and ends it
//! (PUBLISH with Expires 0) when the contact is removed or expires.
//!
//! Which registrations publish: those of a REGISTER whose route called `pua_set_publish()`
//! before `save()`, or, when `branch_flag` is set, contacts whose cflags carry that flag.
//! Unlike Kamailio, a removed or **expired** contact always ends its publication (Kamailio's
//! issue #3273: without branch_flag, nothing was sent on expiry), and a REGISTER with several
//! contacts publishes for each of them (Kamailio cleared its flag after the first callback).

use std::cell::RefCell;

use plugin_api::api::pua::{
    ERR_PUBLISH_NO_BODY, INSERT_TYPE, Pua, PublishInfo, SENT_NOTHING, UPDATE_TYPE, event, source,
};
use plugin_api::api::usrloc::{FfiContact, Usrloc, cb};
use plugin_api::prelude::*;

thread_local! {
    /// (Call-ID, CSeq) of the request being routed on this worker whose route called
    /// `pua_set_publish()`. usrloc runs its callbacks on the thread that calls `save()`, and a
    /// contact saved by that REGISTER carries its Call-ID and CSeq, so the mark says "this
    /// request asked to publish" without a post-script hook (Kamailio resets a process flag).
    static MARK: RefCell<Option<(String, i32)>> = const { RefCell::new(None) };
}

/// The settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Appended as `@domain` to an AoR without one.
    pub default_domain: String,
    /// `entity="<prefix>:<aor>"` when set.
    pub entity_prefix: Option<String>,
    /// Contacts with this cflag publish without `pua_set_publish()`.
    pub branch_flag: Option<u32>,
}

impl Settings {
    /// `user@domain` of an AoR.
    pub fn identity(&self, aor: &str) -> String {
        if aor.contains('@') { aor.to_string() } else { format!("{aor}@{}", self.default_domain) }
    }

    /// The presentity URI.
    pub fn pres_uri(&self, aor: &str) -> String {
        format!("sip:{}", self.identity(aor))
    }

    /// The PIDF of reference §5 (pua adds the tuple id).
    pub fn body(&self, aor: &str) -> String {
        let identity = self.identity(aor);
        let entity = match &self.entity_prefix {
            Some(p) => format!("{p}:{identity}"),
            None => identity,
        };
        format!(
            "<?xml version=\"1.0\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" xmlns:c=\"urn:ietf:params:xml:ns:pidf:cipid\" entity=\"{}\">\n  <tuple>\n    <status>\n      <basic>open</basic>\n    </status>\n  </tuple>\n</presence>\n",
            xml_attr(&entity)
        )
    }

    /// Whether a contact change publishes. Removals and expiries always do (pua sends nothing
    /// when there is no publication to end); inserts and updates when the contact carries the
    /// branch flag, or, without one, when the REGISTER that saved it called `pua_set_publish()`.
    pub fn publishes(&self, kind: i32, contact: &FfiContact, mark: Option<&(String, i32)>) -> bool {
        if kind & (cb::CONTACT_DELETE | cb::CONTACT_EXPIRE) != 0 {
            return true;
        }
        match self.branch_flag {
            Some(f) => contact.cflags & (1 << f) != 0,
            None => mark.is_some_and(|(callid, cseq)| callid == contact.callid.as_str() && *cseq == contact.cseq),
        }
    }

    /// The PUBLISH for a contact change, or None when it does not publish.
    pub fn publish_info(&self, kind: i32, contact: &FfiContact, now: i64) -> PublishInfo {
        let aor = contact.aor.as_str();
        let removal = kind & (cb::CONTACT_DELETE | cb::CONTACT_EXPIRE) != 0;
        let expires = if removal {
            0
        } else if contact.expires == 0 {
            // A permanent contact (from the API, never from a REGISTER): an hour, refreshed by
            // pua like any publication.
            3600
        } else {
            i32::try_from((contact.expires - now).max(1)).unwrap_or(i32::MAX)
        };
        let insert = kind & cb::CONTACT_INSERT != 0;
        PublishInfo {
            // One publication per contact (its ruid survives refreshes and a new Call-ID after a
            // reboot); Kamailio's `UL_PUBLISH.<Call-ID>` would merge the contacts of one
            // REGISTER into one publication.
            id: format!("UL_PUBLISH.{}", contact.ruid),
            pres_uri: self.pres_uri(aor),
            body: insert.then(|| self.body(aor)),
            expires,
            flag: if insert { INSERT_TYPE } else { UPDATE_TYPE },
            source_flag: source::UL_PUBLISH,
            event: event::PRESENCE,
            content_type: "application/pidf+xml".into(),
            ..Default::default()
        }
    }
}

fn xml_attr(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('"', "&quot;")
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The module.
pub struct PuaUsrloc {
    settings: Settings,
}

fn on_contact(pua: Pua, settings: &Settings, kind: i32, contact: &FfiContact) {
    let marked = MARK.with(|m| settings.publishes(kind, contact, m.borrow().as_ref()));
    if !marked {
        return;
    }
    let info = settings.publish_info(kind, contact, now());
    let mut code = pua.send_publish(&info);
    if code == ERR_PUBLISH_NO_BODY && info.flag == UPDATE_TYPE {
        // pua has no record to refresh (e.g. the REGISTER before did not publish, or pua lost
        // it): publish the full state, as Kamailio does.
        let full = PublishInfo { body: Some(settings.body(contact.aor.as_str())), flag: INSERT_TYPE, ..info.clone() };
        code = pua.send_publish(&full);
    }
    if code < 0 {
        tracing::error!("pua_usrloc: PUBLISH for {} ({}) failed: {code}", info.pres_uri, contact.contact);
    } else if code != SENT_NOTHING {
        tracing::debug!("pua_usrloc: PUBLISH {} expires {}", info.pres_uri, info.expires);
    }
}

impl PuaUsrloc {
    fn pua_set_publish(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let mark = call.message().and_then(|m| {
            let cseq = m.cseq().ok()?.number;
            Some((m.call_id().ok()?.to_string(), i32::try_from(cseq).unwrap_or(i32::MAX)))
        });
        MARK.with(|m| *m.borrow_mut() = mark);
        if let Some(f) = self.settings.branch_flag {
            call.request().set_branch_flag(f);
        }
        Ok(1)
    }
}

impl Module for PuaUsrloc {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("pua_usrloc", env!("CARGO_PKG_VERSION"))
            .doc("PUBLISHes open presence for registered contacts and ends it when they are removed or expire (Kamailio's pua_usrloc).")
            .requires("pua")
            .requires("usrloc")
            .param(Param::required_str("default_domain").doc("appended as @domain to AoRs without a domain"))
            .param(Param::opt_str("entity_prefix").doc("PIDF entity is <prefix>:<aor> when set (e.g. pres)"))
            .param(Param::int("branch_flag", -1).range(-1..=31).doc("contacts with this branch flag publish without pua_set_publish() (-1: unset)"))
            .function(
                Function::new("pua_set_publish", 0..=0, Self::pua_set_publish)
                    .doc("call before save(): the contacts this REGISTER saves publish their presence; returns 1"),
            )
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let default_domain = params.str("default_domain").trim().to_string();
        if default_domain.is_empty() {
            return Err(Error::new("default_domain must not be empty"));
        }
        let settings = Settings {
            default_domain,
            entity_prefix: params.opt_str("entity_prefix").filter(|p| !p.is_empty()).map(str::to_string),
            branch_flag: u32::try_from(params.int("branch_flag")).ok(),
        };
        let pua = Pua::bind(host)?;
        let ul = Usrloc::bind(host)?;
        let s = settings.clone();
        if ul.register_callback(cb::ALL, move |kind, contact| on_contact(pua, &s, kind, contact)) < 0 {
            return Err(Error::new("cannot register the usrloc callbacks"));
        }
        Ok(PuaUsrloc { settings })
    }
}

export_module!(PuaUsrloc);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(prefix: Option<&str>, branch_flag: Option<u32>) -> Settings {
        Settings { default_domain: "example.com".into(), entity_prefix: prefix.map(str::to_string), branch_flag }
    }

    fn contact(aor: &str) -> FfiContact {
        FfiContact {
            aor: aor.into(),
            contact: "sip:alice@192.0.2.1".into(),
            ruid: "uloc-1".into(),
            callid: "c1".into(),
            cseq: 3,
            expires: 1600,
            ..Default::default()
        }
    }

    #[test]
    fn pres_uri_and_body() {
        let s = settings(None, None);
        assert_eq!(s.pres_uri("alice"), "sip:alice@example.com");
        assert_eq!(s.pres_uri("bob@other.org"), "sip:bob@other.org");
        let body = s.body("alice");
        assert!(body.contains("entity=\"alice@example.com\""), "{body}");
        assert!(body.contains("<tuple>") && body.contains("<basic>open</basic>"), "{body}");
        assert!(!body.contains("<note") && !body.contains("<person"), "nothing but the tuple: {body}");
        assert!(settings(Some("pres"), None).body("alice").contains("entity=\"pres:alice@example.com\""));
    }

    #[test]
    fn insert_update_removal() {
        let s = settings(None, None);
        let c = contact("alice");
        let p = s.publish_info(cb::CONTACT_INSERT, &c, 1000);
        assert_eq!((p.id.as_str(), p.expires, p.flag), ("UL_PUBLISH.uloc-1", 600, INSERT_TYPE));
        assert_eq!((p.source_flag, p.event), (source::UL_PUBLISH, event::PRESENCE));
        assert!(p.body.is_some());
        let p = s.publish_info(cb::CONTACT_UPDATE, &c, 1000);
        assert_eq!((p.flag, p.body.is_none()), (UPDATE_TYPE, true), "a refresh has no body");
        for kind in [cb::CONTACT_DELETE, cb::CONTACT_EXPIRE] {
            let p = s.publish_info(kind, &c, 1000);
            assert_eq!((p.expires, p.body.is_none()), (0, true));
        }
    }

    #[test]
    fn who_publishes() {
        let c = contact("alice");
        let s = settings(None, None);
        let mark = ("c1".to_string(), 3);
        assert!(s.publishes(cb::CONTACT_INSERT, &c, Some(&mark)));
        assert!(!s.publishes(cb::CONTACT_INSERT, &c, None), "pua_set_publish() was not called");
        assert!(!s.publishes(cb::CONTACT_UPDATE, &c, Some(&("c1".to_string(), 2))), "another request's mark");
        assert!(s.publishes(cb::CONTACT_EXPIRE, &c, None), "an expiry always ends the publication");
        assert!(s.publishes(cb::CONTACT_DELETE, &c, None));

        let s = settings(None, Some(5));
        assert!(!s.publishes(cb::CONTACT_INSERT, &c, Some(&mark)), "without the branch flag");
        let flagged = FfiContact { cflags: 1 << 5, ..c.clone() };
        assert!(s.publishes(cb::CONTACT_INSERT, &flagged, None));
        assert!(s.publishes(cb::CONTACT_EXPIRE, &c, None));
    }
}
