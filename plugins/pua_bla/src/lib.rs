//! `pua_bla` (Kamailio's pua_bla, reference §7): bridged line appearance per
//! draft-anil-sipping-bla-03. Several phones share one line (one AoR); each wants to see when
//! the line is in use on another phone.
//!
//! - **Subscribe on register.** A REGISTER whose route called `bla_set_flag()` before `save()`
//!   makes usrloc's contact callback subscribe, through pua, to the registered phone with
//!   `Event: dialog;sla` (presentity: the REGISTER's From URI; watcher: `sip:<aor>` with
//!   `@default_domain` when the AoR has no domain; Request-URI: the contact; Contact:
//!   `server_address`; next hop: `outbound_proxy`, else the contact's `received`). Expires is
//!   what is left of the contact's; a refresh REGISTER refreshes the subscription, and a removed
//!   or expired contact ends it (SUBSCRIBE with Expires 0).
//! - **NOTIFY → PUBLISH.** `bla_handle_notify()` on a phone's NOTIFY checks it against pua's
//!   dialogs and [`notify::check`], then PUBLISHes its dialog-info body (event `dialog;sla`,
//!   pua rewrites the version) to the To URI (the line) with `<header_name>: <NOTIFY Contact>`.
//!   The presence server's route calls `handle_publish("$hdr(<header_name>)")`, so every phone
//!   watching the line is notified except the one whose state it is.
//!
//! Differences from Kamailio (docs/compatibility.md): the mark of `bla_set_flag()` holds for
//! the contacts of that REGISTER only (Kamailio's global `is_bla_aor` was never reset, so after
//! one marked REGISTER every registration subscribed); an expired contact is unsubscribed
//! (Kamailio's timer process never had the mark); each subscription has the id
//! `BLA_SUBSCRIBE.<contact ruid>` so the phones of one line never take each other's dialog;
//! `bla_handle_notify()` answers a NOTIFY it refuses itself (481 outside our subscriptions,
//! 400/413 for a bad NOTIFY, 500 when pua fails) and returns 0, which ends the route; the
//! route answers the 2xx after it returned 1, as Kamailio's script does.

pub mod notify;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use dialog_info::Limits;
use plugin_api::api::pua::{INSERT_TYPE, Pua, SENT_NOTHING, SubscribeInfo, UPDATE_TYPE, event, source};
use plugin_api::api::usrloc::{FfiContact, Usrloc, cb};
use plugin_api::prelude::*;

use crate::notify::NotifyError;

thread_local! {
    /// The REGISTER being routed on this thread whose route called `bla_set_flag()`. usrloc
    /// runs its callbacks on the thread that calls `save()`, and a contact saved by that
    /// REGISTER carries its Call-ID and CSeq, so the mark says "this request is for a BLA line"
    /// without a post-script hook.
    static MARK: RefCell<Option<Mark>> = const { RefCell::new(None) };
}

/// What `bla_set_flag()` remembers of the REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: i32,
    /// The From URI: the presentity of the subscriptions (Kamailio's `reg_from_uri`).
    pub from_uri: String,
}

impl Mark {
    /// Whether `contact` was saved by the marked REGISTER.
    pub fn saved(&self, contact: &FfiContact) -> bool {
        self.call_id == contact.callid.as_str() && self.cseq == contact.cseq
    }
}

/// The modparams.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Contact of the SUBSCRIBEs.
    pub server_address: String,
    /// Appended as `@domain` to an AoR without one (the watcher URI).
    pub default_domain: String,
    /// Name of the header that carries the phone's Contact in the PUBLISH.
    pub header_name: String,
    /// Next hop of the SUBSCRIBEs.
    pub outbound_proxy: Option<String>,
}

impl Settings {
    /// The watcher URI of an AoR: `sip:<aor>`, with `@default_domain` when it has no domain.
    pub fn watcher_uri(&self, aor: &str) -> String {
        if aor.contains('@') { format!("sip:{aor}") } else { format!("sip:{aor}@{}", self.default_domain) }
    }

    /// The SUBSCRIBE for a contact change: `pres_uri` is the line, `now` the time in seconds.
    pub fn subscribe_info(&self, kind: i32, contact: &FfiContact, pres_uri: &str, now: i64) -> SubscribeInfo {
        let removal = kind & (cb::CONTACT_DELETE | cb::CONTACT_EXPIRE) != 0;
        let expires = if removal {
            0
        } else if contact.expires == 0 {
            // A permanent contact (from the API): pua's default, refreshed by pua.
            -1
        } else {
            i32::try_from((contact.expires - now).max(1)).unwrap_or(i32::MAX)
        };
        let outbound_proxy = self
            .outbound_proxy
            .clone()
            .or_else(|| (!contact.received.is_empty()).then(|| contact.received.to_string()));
        SubscribeInfo {
            id: format!("BLA_SUBSCRIBE.{}", contact.ruid),
            pres_uri: pres_uri.to_string(),
            watcher_uri: self.watcher_uri(contact.aor.as_str()),
            contact: self.server_address.clone(),
            remote_target: Some(contact.contact.to_string()),
            outbound_proxy,
            event: event::BLA,
            expires,
            source_flag: source::BLA_SUBSCRIBE,
            flag: if kind & cb::CONTACT_INSERT != 0 { INSERT_TYPE } else { UPDATE_TYPE },
            ..Default::default()
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// State shared with the usrloc callback.
struct Shared {
    pua: Pua,
    settings: Settings,
    /// The line (presentity) each subscribed contact (by ruid) belongs to, so its removal or
    /// expiry, which happens outside any marked REGISTER, ends the right subscription.
    lines: Mutex<HashMap<String, String>>,
}

impl Shared {
    fn lines(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on_contact(&self, kind: i32, contact: &FfiContact) {
        let removal = kind & (cb::CONTACT_DELETE | cb::CONTACT_EXPIRE) != 0;
        let pres_uri = if removal {
            // Known line, else the mark, else the watcher URI (the usual line: From = To =
            // the AoR), for subscriptions pua kept across a restart; pua sends nothing when
            // there is no such subscription.
            let known = self.lines().remove(contact.ruid.as_str());
            known
                .or_else(|| MARK.with(|m| m.borrow().as_ref().filter(|m| m.saved(contact)).map(|m| m.from_uri.clone())))
                .unwrap_or_else(|| self.settings.watcher_uri(contact.aor.as_str()))
        } else {
            let Some(from_uri) =
                MARK.with(|m| m.borrow().as_ref().filter(|m| m.saved(contact)).map(|m| m.from_uri.clone()))
            else {
                return;
            };
            self.lines().insert(contact.ruid.to_string(), from_uri.clone());
            from_uri
        };
        let info = self.settings.subscribe_info(kind, contact, &pres_uri, now());
        let code = self.pua.send_subscribe(&info);
        if code < 0 {
            tracing::error!("pua_bla: SUBSCRIBE to {} for {pres_uri} failed: {code}", contact.contact);
        } else if code != SENT_NOTHING {
            tracing::debug!("pua_bla: SUBSCRIBE to {} for {pres_uri}, expires {}", contact.contact, info.expires);
        }
    }
}

/// The module.
pub struct PuaBla {
    shared: Arc<Shared>,
    limits: Limits,
}

impl PuaBla {
    /// `bla_set_flag()`: the contacts this REGISTER saves subscribe. 1, or -1 without a From.
    fn bla_set_flag(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let mark = call.message().and_then(|m| {
            let cseq = m.cseq().ok()?.number;
            Some(Mark {
                call_id: m.call_id().ok()?.to_string(),
                cseq: i32::try_from(cseq).unwrap_or(i32::MAX),
                from_uri: m.from().ok()?.uri_str().to_string(),
            })
        });
        let ok = mark.is_some();
        MARK.with(|m| *m.borrow_mut() = mark);
        Ok(if ok { 1 } else { -1 })
    }

    /// `bla_handle_notify()`: 1 when the PUBLISH went to pua (the route sends the 2xx); else
    /// the NOTIFY is answered here and 0 ends the route.
    fn bla_handle_notify(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let Some(msg) = call.message() else { return Ok(0) };
        let result = self.handle_notify(&msg);
        match result {
            Ok(()) => Ok(1),
            Err((code, reason, why)) => {
                tracing::info!("pua_bla: NOTIFY refused ({code}): {why}");
                if let Err(e) = call.request().reply(code, reason) {
                    tracing::warn!("pua_bla: cannot answer the NOTIFY: {e}");
                }
                Ok(0)
            }
        }
    }

    fn handle_notify(&self, msg: &Message<'_>) -> Result<(), (u16, &'static str, String)> {
        let refuse = |e: NotifyError| {
            let (code, reason) = e.status();
            (code, reason, e.to_string())
        };
        let dialog = notify::dialog_of(msg).map_err(refuse)?;
        if self.shared.pua.is_dialog(&dialog.query()) < 0 {
            return Err(refuse(NotifyError::NoDialog));
        }
        let state = notify::check(msg, &self.limits).map_err(refuse)?;
        let info = notify::publish_info(&dialog, &state, &self.shared.settings.header_name);
        let code = self.shared.pua.send_publish(&info);
        if code < 0 {
            return Err((
                500,
                "Server Internal Error",
                format!("pua refused the PUBLISH for {}: {code}", info.pres_uri),
            ));
        }
        Ok(())
    }
}

fn required(params: &Params, name: &str) -> Result<String, Error> {
    let v = params.str(name).trim().to_string();
    if v.is_empty() { Err(Error::new(format!("modparam {name} is mandatory and must not be empty"))) } else { Ok(v) }
}

impl Module for PuaBla {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("pua_bla", env!("CARGO_PKG_VERSION"))
            .doc("Bridged line appearance (Kamailio's pua_bla): subscribes to the phones of a shared line with dialog;sla and PUBLISHes their NOTIFYs to the presence server.")
            .requires("pua")
            .requires("usrloc")
            .param(Param::required_str("server_address").doc("Contact of the SUBSCRIBEs to the phones (e.g. sip:bla@192.0.2.1:5060)"))
            .param(Param::required_str("default_domain").doc("appended as @domain to AoRs without a domain (the watcher URI)"))
            .param(Param::required_str("header_name").doc("header carrying the phone's Contact in the PUBLISH (e.g. Sender); handle_publish(\"$hdr(<name>)\") skips that phone"))
            .param(Param::opt_str("outbound_proxy").doc("next hop of the SUBSCRIBEs (default: the contact's received address, else its URI)"))
            .function(
                Function::new("bla_set_flag", 0..=0, Self::bla_set_flag)
                    .doc("call before save() on a REGISTER of a BLA line: its contacts are subscribed to (dialog;sla); returns 1"),
            )
            .function(Function::new("bla_handle_notify", 0..=0, Self::bla_handle_notify).doc(
                "on a NOTIFY with Event: dialog;sla: PUBLISHes its body for the line and returns 1 (the route sends the 2xx); a refused NOTIFY is answered here (481 outside our subscriptions, 400/413, 500) and 0 ends the route",
            ))
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let header_name = required(params, "header_name")?;
        if !header_name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(Error::new(format!("modparam header_name {header_name:?} is not a header name")));
        }
        let settings = Settings {
            server_address: required(params, "server_address")?,
            default_domain: required(params, "default_domain")?,
            header_name,
            outbound_proxy: params
                .opt_str("outbound_proxy")
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string),
        };
        let pua = Pua::bind(host)?;
        let ul = Usrloc::bind(host)?;
        let shared = Arc::new(Shared { pua, settings, lines: Mutex::new(HashMap::new()) });
        let s = shared.clone();
        if ul.register_callback(cb::ALL, move |kind, contact| s.on_contact(kind, contact)) < 0 {
            return Err(Error::new("cannot register the usrloc callbacks"));
        }
        Ok(PuaBla { shared, limits: Limits::default() })
    }
}

export_module!(PuaBla);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(proxy: Option<&str>) -> Settings {
        Settings {
            server_address: "sip:bla@192.0.2.9".into(),
            default_domain: "example.com".into(),
            header_name: "Sender".into(),
            outbound_proxy: proxy.map(str::to_string),
        }
    }

    fn contact() -> FfiContact {
        FfiContact {
            aor: "line".into(),
            contact: "sip:line@192.0.2.1:5070".into(),
            ruid: "uloc-7".into(),
            callid: "reg-1".into(),
            cseq: 3,
            expires: 1600,
            ..Default::default()
        }
    }

    #[test]
    fn subscribe_on_insert_update_and_removal() {
        let s = settings(None);
        let c = contact();
        let i = s.subscribe_info(cb::CONTACT_INSERT, &c, "sip:line@example.com", 1000);
        assert_eq!(i.pres_uri, "sip:line@example.com");
        assert_eq!(i.watcher_uri, "sip:line@example.com");
        assert_eq!(i.remote_target.as_deref(), Some("sip:line@192.0.2.1:5070"));
        assert_eq!(i.contact, "sip:bla@192.0.2.9");
        assert_eq!((i.expires, i.flag, i.event, i.source_flag), (600, INSERT_TYPE, event::BLA, source::BLA_SUBSCRIBE));
        assert_eq!(i.id, "BLA_SUBSCRIBE.uloc-7");
        assert_eq!(i.outbound_proxy, None);
        let u = s.subscribe_info(cb::CONTACT_UPDATE, &c, "sip:line@example.com", 1500);
        assert_eq!((u.expires, u.flag), (100, UPDATE_TYPE));
        for kind in [cb::CONTACT_DELETE, cb::CONTACT_EXPIRE] {
            let r = s.subscribe_info(kind, &c, "sip:line@example.com", 1500);
            assert_eq!((r.expires, r.flag), (0, UPDATE_TYPE));
        }
        let permanent = FfiContact { expires: 0, ..c.clone() };
        assert_eq!(s.subscribe_info(cb::CONTACT_INSERT, &permanent, "sip:x@y", 1000).expires, -1);
    }

    #[test]
    fn watcher_and_next_hop() {
        let s = settings(None);
        assert_eq!(s.watcher_uri("line"), "sip:line@example.com");
        assert_eq!(s.watcher_uri("line@other.org"), "sip:line@other.org");
        let natted = FfiContact { received: "sip:203.0.113.5:41000".into(), ..contact() };
        let i = s.subscribe_info(cb::CONTACT_INSERT, &natted, "sip:line@example.com", 0);
        assert_eq!(i.outbound_proxy.as_deref(), Some("sip:203.0.113.5:41000"), "the contact's received");
        let i = settings(Some("sip:edge.example.com")).subscribe_info(cb::CONTACT_INSERT, &natted, "sip:l@e", 0);
        assert_eq!(i.outbound_proxy.as_deref(), Some("sip:edge.example.com"), "the modparam wins");
    }

    #[test]
    fn the_mark_is_for_the_marked_register_only() {
        let m = Mark { call_id: "reg-1".into(), cseq: 3, from_uri: "sip:line@example.com".into() };
        assert!(m.saved(&contact()));
        assert!(!m.saved(&FfiContact { cseq: 4, ..contact() }));
        assert!(!m.saved(&FfiContact { callid: "reg-2".into(), ..contact() }));
    }
}
