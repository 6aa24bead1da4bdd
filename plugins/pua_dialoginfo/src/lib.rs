//! `pua_dialoginfo` (Kamailio's pua_dialoginfo, reference §6): the busy lamp field from the
//! publisher side. It follows the calls the `dialog` module tracks (`dlg_manage()` on the
//! INVITE) through the dialog API's callbacks and, through the pua API, PUBLISHes an RFC 4235
//! dialog-info document (`dialog_info::build`) for the caller (the From URI, direction
//! `initiator`) and for the callee (the To URI, or the Request-URI with `include_req_uri`,
//! direction `recipient`) on every state change: `trying` when the INVITE is seen, `early`
//! on a provisional reply with a To-tag, `confirmed` on the 2xx (and again on requests within
//! the dialog), `terminated` on a failure, a BYE or the dialog's expiry.
//!
//! Message flags and AVPs are read from the request a callback runs inside
//! ([`Dialog::request`]): the INVITE at CREATED decides, once per dialog, whether it publishes
//! (`send_publish_flag`), whether a side is disabled (`disable_*_publish_flag`) and where each
//! side publishes (`use_pubruri_avps`); those [`Marks`] are kept until the dialog ends. An
//! in-dialog request carrying a disable flag suppresses that side's PUBLISH for it.
//!
//! Differences from Kamailio, on purpose: states are written in RFC 4235's lower case
//! (Kamailio writes `Trying`); the dialog id is derived from the dialog's identity
//! (`padi-<init_ts>-<h_entry>-<h_id>`, hex) instead of an sruid, so it needs no storage.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dialog_info::{Dialog as DialogDoc, Direction, Participant, State};
use plugin_api::api::dialog::{Dialog, DialogEvent, FfiDialog, cb};
use plugin_api::api::pua::{Pua, PublishInfo, SENT_NOTHING, UPDATE_TYPE, event, source};
use plugin_api::prelude::*;

/// Expires of a `terminated` PUBLISH (Kamailio's constant).
pub const TERMINATED_EXPIRES: i32 = 10;

/// The settings (reference §6 modparams).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `call-id` attribute.
    pub include_callid: bool,
    /// `local-tag` / `remote-tag` in early bodies.
    pub include_tags: bool,
    /// `<local>` and `<remote>` elements.
    pub include_localremote: bool,
    /// Expires of non-terminated PUBLISHes; 0: the dialog's lifetime.
    pub override_lifetime: u32,
    /// The callee is the Request-URI instead of the To URI.
    pub include_req_uri: bool,
    /// The caller is published `confirmed` where it would be `early`.
    pub caller_confirmed: bool,
    /// The callee is published `trying` too when the INVITE is seen.
    pub callee_trying: bool,
    /// Requests within the dialog (not PRACK or UPDATE) publish `confirmed` again.
    pub publish_dialog_req_within: bool,
    /// `display="<user part>"` on the remote `<target>`.
    pub attribute_display: bool,
    /// Only INVITEs with this message flag publish, without the local-URI check.
    pub send_publish_flag: Option<u32>,
    /// An INVITE (or in-dialog request) with this flag: the caller does not publish.
    pub disable_caller_publish_flag: Option<u32>,
    /// The same for the callee.
    pub disable_callee_publish_flag: Option<u32>,
    /// The caller's identity in the callee's body when the caller is disabled by the INVITE.
    pub caller_entity_when_publish_disabled: Option<String>,
    /// The callee's identity in the caller's body when the callee is disabled by the INVITE.
    pub callee_entity_when_publish_disabled: Option<String>,
    /// (caller AVP, callee AVP): the PUBLISH URIs of each side, one PUBLISH per value.
    pub pubruri_avps: Option<(String, String)>,
}

/// What the INVITE decided for a dialog at CREATED (Kamailio's per-dialog `dlginfo` cell).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    /// disable_caller_publish_flag was set on the INVITE.
    pub caller_disabled: bool,
    /// disable_callee_publish_flag was set on the INVITE.
    pub callee_disabled: bool,
    /// The caller's PUBLISH URIs from its AVP (use_pubruri_avps), newest first.
    pub caller_uris: Option<Vec<String>>,
    /// The callee's.
    pub callee_uris: Option<Vec<String>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            include_callid: true,
            include_tags: true,
            include_localremote: true,
            override_lifetime: 0,
            include_req_uri: false,
            caller_confirmed: false,
            callee_trying: false,
            publish_dialog_req_within: true,
            attribute_display: false,
            send_publish_flag: None,
            disable_caller_publish_flag: None,
            disable_callee_publish_flag: None,
            caller_entity_when_publish_disabled: None,
            callee_entity_when_publish_disabled: None,
            pubruri_avps: None,
        }
    }
}

/// The caller or the callee of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The From URI, direction initiator.
    Caller,
    /// The To URI (or R-URI), direction recipient.
    Callee,
}

/// The dialog callback types this module follows.
pub const TYPES: i32 = cb::LOADED
    | cb::CREATED
    | cb::EARLY
    | cb::CONFIRMED_NA
    | cb::REQ_WITHIN
    | cb::FAILED
    | cb::TERMINATED
    | cb::EXPIRED;

impl Settings {
    /// The dialog id of the documents, shared by caller and callee (Kamailio's uuid).
    pub fn dialog_id(d: &FfiDialog) -> String {
        format!("padi-{:x}-{:x}-{:x}", d.init_ts, d.h_entry, d.h_id)
    }

    /// The callee's URI.
    pub fn callee_uri<'a>(&self, d: &'a FfiDialog) -> &'a str {
        if self.include_req_uri && !d.req_uri.is_empty() { d.req_uri.as_str() } else { d.to_uri.as_str() }
    }

    /// The state each side publishes for a callback of `kind` (`method` is the in-dialog
    /// request's, for REQ_WITHIN): (caller, callee); None: that side publishes nothing.
    pub fn states(&self, kind: i32, method: Option<&str>) -> (Option<State>, Option<State>) {
        match kind {
            cb::CREATED => (Some(State::Trying), self.callee_trying.then_some(State::Trying)),
            cb::EARLY => {
                (Some(if self.caller_confirmed { State::Confirmed } else { State::Early }), Some(State::Early))
            }
            cb::CONFIRMED_NA => (Some(State::Confirmed), Some(State::Confirmed)),
            cb::REQ_WITHIN => {
                let skip = !self.publish_dialog_req_within
                    || method.is_some_and(|m| m.eq_ignore_ascii_case("PRACK") || m.eq_ignore_ascii_case("UPDATE"));
                if skip { (None, None) } else { (Some(State::Confirmed), Some(State::Confirmed)) }
            }
            cb::FAILED | cb::TERMINATED | cb::EXPIRED => (Some(State::Terminated), Some(State::Terminated)),
            _ => (None, None),
        }
    }

    /// The Expires of a PUBLISH in `state`.
    pub fn expires(&self, state: State, d: &FfiDialog) -> i32 {
        if state == State::Terminated {
            TERMINATED_EXPIRES
        } else if self.override_lifetime > 0 {
            i32::try_from(self.override_lifetime).unwrap_or(i32::MAX)
        } else {
            i32::try_from(d.lifetime.max(1)).unwrap_or(i32::MAX)
        }
    }

    /// The document `side` publishes in `state`, entity = its URI.
    pub fn body(&self, side: Side, state: State, d: &FfiDialog, marks: &Marks) -> String {
        let caller = match &self.caller_entity_when_publish_disabled {
            Some(e) if marks.caller_disabled && side == Side::Callee => e.as_str(),
            _ => d.from_uri.as_str(),
        };
        let callee = match &self.callee_entity_when_publish_disabled {
            Some(e) if marks.callee_disabled && side == Side::Caller => e.as_str(),
            _ => self.callee_uri(d),
        };
        let (entity, peer) = match side {
            Side::Caller => (caller, callee),
            Side::Callee => (callee, caller),
        };
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        // Targets: the caller's contact is the INVITE's, the callee's the one of its reply;
        // each falls back to the identity.
        let (local_target, remote_target) = match side {
            Side::Caller => (nonempty(&d.caller_contact), nonempty(&d.callee_contact)),
            Side::Callee => (nonempty(&d.callee_contact), nonempty(&d.caller_contact)),
        };
        // Tags only in early bodies, as Kamailio; the caller's local tag is the From tag.
        let tags = self.include_tags && state == State::Early && !d.to_tag.is_empty();
        let (local_tag, remote_tag) = match side {
            Side::Caller => (d.from_tag.as_str(), d.to_tag.as_str()),
            Side::Callee => (d.to_tag.as_str(), d.from_tag.as_str()),
        };
        let participants = self.include_localremote.then(|| {
            let local = Participant {
                identity: entity.to_string(),
                target: Some(local_target.unwrap_or_else(|| entity.to_string())),
                ..Default::default()
            };
            let remote = Participant {
                identity: peer.to_string(),
                target: Some(remote_target.unwrap_or_else(|| peer.to_string())),
                target_display: self.attribute_display.then(|| user_part(peer).to_string()).filter(|u| !u.is_empty()),
                ..Default::default()
            };
            (local, remote)
        });
        let (local, remote) = match participants {
            Some((l, r)) => (Some(l), Some(r)),
            None => (None, None),
        };
        let doc = DialogDoc {
            id: Self::dialog_id(d),
            call_id: self.include_callid.then(|| d.call_id.to_string()),
            local_tag: tags.then(|| local_tag.to_string()),
            remote_tag: tags.then(|| remote_tag.to_string()),
            direction: Some(match side {
                Side::Caller => Direction::Initiator,
                Side::Callee => Direction::Recipient,
            }),
            state,
            local,
            remote,
        };
        dialog_info::build(entity, 0, Some(&doc))
    }

    /// The PUBLISH of `side` in `state` to `pres_uri`.
    pub fn publish_info(&self, side: Side, state: State, d: &FfiDialog, marks: &Marks, pres_uri: &str) -> PublishInfo {
        PublishInfo {
            id: format!("DIALOG_PUBLISH.{}", Self::dialog_id(d)),
            body: Some(self.body(side, state, d, marks)),
            pres_uri: pres_uri.to_string(),
            expires: self.expires(state, d),
            flag: UPDATE_TYPE,
            source_flag: source::DIALOG_PUBLISH,
            event: event::DIALOG,
            content_type: dialog_info::CONTENT_TYPE.into(),
            ..Default::default()
        }
    }

    /// Whether dialogs need [`Marks`] kept from CREATED on (a flag or AVP modparam is set).
    pub fn keeps_marks(&self) -> bool {
        self.send_publish_flag.is_some()
            || self.disable_caller_publish_flag.is_some()
            || self.disable_callee_publish_flag.is_some()
            || self.pubruri_avps.is_some()
    }

    /// What the INVITE (`flag`: its message flags, `avps`: its AVPs) decides at CREATED;
    /// None: the dialog publishes nothing (send_publish_flag set and not on the INVITE).
    pub fn marks(&self, flag: impl Fn(u32) -> bool, avps: impl Fn(&str) -> Vec<String>) -> Option<Marks> {
        if self.send_publish_flag.is_some_and(|f| !flag(f)) {
            return None;
        }
        Some(Marks {
            caller_disabled: self.disable_caller_publish_flag.is_some_and(&flag),
            callee_disabled: self.disable_callee_publish_flag.is_some_and(&flag),
            caller_uris: self.pubruri_avps.as_ref().map(|(a, _)| avps(a)),
            callee_uris: self.pubruri_avps.as_ref().map(|(_, b)| avps(b)),
        })
    }

    /// Every PUBLISH for a callback of `kind`; `local` says whether a URI is this server's
    /// (with send_publish_flag unset only local URIs publish), `flag` whether the request the
    /// callback runs inside (if any) has a message flag.
    pub fn publishes(
        &self,
        kind: i32,
        method: Option<&str>,
        d: &FfiDialog,
        marks: &Marks,
        local: impl Fn(&str) -> bool,
        flag: impl Fn(u32) -> bool,
    ) -> Vec<PublishInfo> {
        let (caller, callee) = self.states(kind, method);
        let mut out = Vec::new();
        let sides = [
            (Side::Caller, caller, marks.caller_disabled, self.disable_caller_publish_flag, &marks.caller_uris),
            (Side::Callee, callee, marks.callee_disabled, self.disable_callee_publish_flag, &marks.callee_uris),
        ];
        for (side, state, disabled, disable_flag, uris) in sides {
            let Some(state) = state else { continue };
            if disabled || disable_flag.is_some_and(&flag) {
                continue;
            }
            let own = match side {
                Side::Caller => d.from_uri.to_string(),
                Side::Callee => self.callee_uri(d).to_string(),
            };
            let targets = uris.clone().unwrap_or_else(|| vec![own]);
            for uri in targets {
                if self.send_publish_flag.is_some() || local(&uri) {
                    out.push(self.publish_info(side, state, d, marks, &uri));
                }
            }
        }
        out
    }
}

/// An AVP spec as Kamailio writes it (`$avp(s:name)`, `$avp(name)`) or a bare name: the name.
pub fn avp_name(spec: &str) -> &str {
    let s = spec.trim();
    let s = s.strip_prefix("$avp(").and_then(|r| r.strip_suffix(')')).unwrap_or(s);
    s.strip_prefix("s:").unwrap_or(s)
}

/// The user part of a SIP URI (`bob` of `sip:bob@example.com`), empty without one.
pub fn user_part(uri: &str) -> &str {
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    rest.split_once('@').map_or("", |(u, _)| u.split(';').next().unwrap_or(u))
}

/// The module.
pub struct PuaDialoginfo {
    _settings: Arc<Settings>,
}

/// Marks of the live dialogs, by (h_entry, h_id, init_ts); only with [`Settings::keeps_marks`].
type MarksTable = Mutex<HashMap<(u32, u32, i64), Marks>>;

fn on_dialog(pua: Pua, dlg: Dialog, host: &Host, settings: &Settings, table: &MarksTable, e: DialogEvent<'_>) {
    let d = e.dialog;
    let key = (d.h_entry, d.h_id, d.init_ts);
    let request = dlg.request(&e);
    let flag = |f: u32| request.is_some_and(|r| r.is_flag_set(f));
    if e.kind == cb::LOADED {
        // A dialog read back by the dialog module after a restart (Kamailio's
        // `__dialog_loaded`): it publishes again from its next event on, as one whose INVITE
        // set no flag (flags and AVPs of the INVITE are not stored).
        if settings.keeps_marks() {
            table.lock().unwrap_or_else(|p| p.into_inner()).insert(key, Marks::default());
        }
        return;
    }
    let marks = if !settings.keeps_marks() {
        Marks::default()
    } else if e.kind == cb::CREATED {
        let Some(m) = settings.marks(flag, |name| request.map_or_else(Vec::new, |r| r.avps(avp_name(name)))) else {
            return;
        };
        table.lock().unwrap_or_else(|p| p.into_inner()).insert(key, m.clone());
        m
    } else {
        let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
        let found = if e.kind & (cb::FAILED | cb::TERMINATED | cb::EXPIRED) != 0 {
            t.remove(&key)
        } else {
            t.get(&key).cloned()
        };
        // A dialog whose CREATED did not publish (or came before this module) publishes nothing.
        let Some(m) = found else { return };
        m
    };
    let method = e.message.as_ref().and_then(|m| m.method()).map(|m| m.as_str().to_string());
    for info in settings.publishes(e.kind, method.as_deref(), d, &marks, |uri| host.is_myself(uri), flag) {
        let code = pua.send_publish(&info);
        if code < 0 {
            tracing::error!("pua_dialoginfo: PUBLISH for {} ({}) failed: {code}", info.pres_uri, d.call_id);
        } else if code != SENT_NOTHING {
            tracing::debug!("pua_dialoginfo: PUBLISH {} expires {}", info.pres_uri, info.expires);
        }
    }
}

fn flag(params: &Params, name: &str) -> bool {
    params.int(name) != 0
}

fn opt_flag(params: &Params, name: &str) -> Option<u32> {
    u32::try_from(params.int(name)).ok()
}

fn opt_uri(params: &Params, name: &str) -> Result<Option<String>, Error> {
    match params.opt_str(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if v.starts_with("sip:") || v.starts_with("sips:") => Ok(Some(v.to_string())),
        Some(v) => Err(Error::new(format!("{name} must be a SIP URI, not `{v}`"))),
    }
}

impl Module for PuaDialoginfo {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("pua_dialoginfo", env!("CARGO_PKG_VERSION"))
            .doc("PUBLISHes RFC 4235 dialog-info for the caller and the callee of the calls the dialog module tracks (Kamailio's pua_dialoginfo).")
            .requires("pua")
            .requires("dialog")
            .param(Param::int("include_callid", 1).range(0..=1).doc("add the call-id attribute"))
            .param(Param::int("include_tags", 1).range(0..=1).doc("add local-tag and remote-tag (early bodies only)"))
            .param(Param::int("include_localremote", 1).range(0..=1).doc("add the <local> and <remote> elements"))
            .param(
                Param::int("override_lifetime", 0)
                    .range(0..=i64::from(i32::MAX))
                    .doc("Expires of non-terminated PUBLISHes (0: the dialog's lifetime)"),
            )
            .param(Param::int("include_req_uri", 0).range(0..=1).doc("the callee is the INVITE's Request-URI instead of its To URI"))
            .param(Param::int("caller_confirmed", 0).range(0..=1).doc("publish the caller confirmed instead of early"))
            .param(Param::int("callee_trying", 0).range(0..=1).doc("publish the callee trying when the INVITE is seen"))
            .param(
                Param::int("publish_dialog_req_within", 1)
                    .range(0..=1)
                    .doc("requests within the dialog (not PRACK or UPDATE) publish confirmed again"),
            )
            .param(Param::int("attribute_display", 0).range(0..=1).doc("display=<user part> on the remote <target>"))
            .param(
                Param::int("send_publish_flag", -1)
                    .range(-1..=31)
                    .doc("only INVITEs with this message flag publish, without the local-URI check (-1: every INVITE, local URIs only)"),
            )
            .param(
                Param::int("disable_caller_publish_flag", -1)
                    .range(-1..=31)
                    .doc("a message flag on the INVITE (or an in-dialog request) that stops the caller's PUBLISHes"),
            )
            .param(
                Param::int("disable_callee_publish_flag", -1)
                    .range(-1..=31)
                    .doc("a message flag on the INVITE (or an in-dialog request) that stops the callee's PUBLISHes"),
            )
            .param(
                Param::opt_str("caller_entity_when_publish_disabled")
                    .doc("SIP URI shown as the caller in the callee's body when disable_caller_publish_flag is on the INVITE"),
            )
            .param(
                Param::opt_str("callee_entity_when_publish_disabled")
                    .doc("SIP URI shown as the callee in the caller's body when disable_callee_publish_flag is on the INVITE"),
            )
            .param(Param::int("use_pubruri_avps", 0).range(0..=1).doc("PUBLISH to the URIs in the pubruri AVPs of the INVITE (one PUBLISH per value)"))
            .param(Param::opt_str("pubruri_caller_avp").doc("AVP with the caller's PUBLISH URIs ($avp(s:name))"))
            .param(Param::opt_str("pubruri_callee_avp").doc("AVP with the callee's PUBLISH URIs ($avp(s:name))"))
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let avp = |name| params.opt_str(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
        let pubruri_avps = if flag(params, "use_pubruri_avps") {
            match (avp("pubruri_caller_avp"), avp("pubruri_callee_avp")) {
                (Some(a), Some(b)) => Some((a, b)),
                _ => return Err(Error::new("use_pubruri_avps needs pubruri_caller_avp and pubruri_callee_avp")),
            }
        } else {
            None
        };
        let settings = Arc::new(Settings {
            include_callid: flag(params, "include_callid"),
            include_tags: flag(params, "include_tags"),
            include_localremote: flag(params, "include_localremote"),
            override_lifetime: u32::try_from(params.int("override_lifetime")).unwrap_or(0),
            include_req_uri: flag(params, "include_req_uri"),
            caller_confirmed: flag(params, "caller_confirmed"),
            callee_trying: flag(params, "callee_trying"),
            publish_dialog_req_within: flag(params, "publish_dialog_req_within"),
            attribute_display: flag(params, "attribute_display"),
            send_publish_flag: opt_flag(params, "send_publish_flag"),
            disable_caller_publish_flag: opt_flag(params, "disable_caller_publish_flag"),
            disable_callee_publish_flag: opt_flag(params, "disable_callee_publish_flag"),
            caller_entity_when_publish_disabled: opt_uri(params, "caller_entity_when_publish_disabled")?,
            callee_entity_when_publish_disabled: opt_uri(params, "callee_entity_when_publish_disabled")?,
            pubruri_avps,
        });
        let pua = Pua::bind(host)?;
        let dlg = Dialog::bind(host)?;
        let s = settings.clone();
        let h = *host;
        let table: Arc<MarksTable> = Arc::default();
        dlg.register_callback(TYPES, move |e| on_dialog(pua, dlg, &h, &s, &table, e))?;
        Ok(PuaDialoginfo { _settings: settings })
    }
}

export_module!(PuaDialoginfo);

#[cfg(test)]
mod tests;
