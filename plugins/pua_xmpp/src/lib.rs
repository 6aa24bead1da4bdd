//! `pua_xmpp` (Kamailio's pua_xmpp, reference §9.2): presence between SIP and XMPP users, on top
//! of pua (PUBLISH/SUBSCRIBE) and the xmpp module (the XMPP connection, address translation).
//!
//! - XMPP → SIP: an available `<presence>` from a JID becomes a PUBLISH for the gateway URI of
//!   that JID (`sip:juliet*xmpp.example@gateway_domain`): PIDF `basic` open, the `<status>` as
//!   the note, RPID activities from `<show>`; `unavailable` ends the publication.
//!   `subscribe`/`probe` from an XMPP user to a component JID become a SIP SUBSCRIBE to the SIP
//!   user it stands for (pua, source XMPP_INITIAL_SUBS); the reply is answered `subscribed` or
//!   with a stanza error; `unsubscribe` ends the SUBSCRIBE.
//! - SIP → XMPP: `pua_xmpp_notify()` turns the NOTIFYs of those subscriptions into presence
//!   stanzas, and the watcher-info NOTIFYs of `pua_xmpp_req_winfo()` into `subscribe` stanzas
//!   from each SIP watcher to the XMPP user, so the XMPP user learns who watches.
//!
//! Prosody's ways (reference peers.md §1): an `unavailable` from the **bare** JID, which Prosody
//! sends to acknowledge a pending inbound subscription, is not taken as the user going offline
//! (real clients send presence from a full JID); probes are answered by refreshing the SIP
//! subscription, whose NOTIFY carries the current state; delayed copies of a presence are
//! published like any other (they carry the current state too).

pub mod convert;

use plugin_api::api::pua::{
    INSERT_TYPE, Pua, PublishInfo, SENT_NOTHING, SubscribeInfo, UPDATE_TYPE, UaRecord, event, source,
};
use plugin_api::api::xmpp::{Stanza, Translation, Xmpp, cb};
use plugin_api::prelude::*;
use plugin_api::sip::HeaderName;

use crate::convert::{Action, SipPresence, XmppPresence};

/// The module.
pub struct PuaXmpp {
    pua: Pua,
    xmpp: Xmpp,
    server_address: String,
    outbound_proxy: Option<&'static str>,
}

/// The part of the module the callbacks need.
#[derive(Clone, Copy)]
struct Bridge {
    pua: Pua,
    xmpp: Xmpp,
    /// Next hop of the SUBSCRIBEs sent for XMPP users.
    outbound_proxy: Option<&'static str>,
}

fn publication_id(pres_uri: &str) -> String {
    format!("XMPP_PUBLISH.{pres_uri}")
}

impl Bridge {
    /// An XMPP `<presence>` arrived at the component.
    fn on_presence(&self, s: &Stanza<'_>) {
        let p = match convert::read_presence(s.xml) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("pua_xmpp: presence from {} dropped: {e}", s.from);
                return;
            }
        };
        match convert::action(&p.ty, s.from) {
            Action::Publish => self.publish(s.from, Some(&p)),
            Action::Unpublish => self.publish(s.from, None),
            Action::Subscribe => self.subscribe(s.from, s.to, -1),
            Action::Unsubscribe => self.subscribe(s.from, s.to, 0),
            Action::Ignore(why) => {
                tracing::debug!("pua_xmpp: presence {:?} from {} to {} ignored: {why}", p.ty, s.from, s.to)
            }
        }
    }

    /// PUBLISH the presence of the XMPP user `from` (None: it went offline).
    fn publish(&self, from: &str, p: Option<&XmppPresence>) {
        let Some(pres_uri) = self.xmpp.translate(Translation::EncodeXmppSip, from) else {
            tracing::debug!("pua_xmpp: no SIP URI for {from}");
            return;
        };
        let info = PublishInfo {
            id: publication_id(&pres_uri),
            body: p.map(|p| convert::pidf(&pres_uri, p)),
            expires: if p.is_some() { -1 } else { 0 },
            flag: if p.is_some() { INSERT_TYPE } else { UPDATE_TYPE },
            source_flag: source::XMPP_PUBLISH,
            event: event::PRESENCE,
            content_type: "application/pidf+xml".into(),
            pres_uri,
            ..Default::default()
        };
        match self.pua.send_publish(&info) {
            0 => tracing::debug!("pua_xmpp: PUBLISH {} expires {}", info.pres_uri, info.expires),
            SENT_NOTHING => tracing::debug!("pua_xmpp: {} had no publication to end", info.pres_uri),
            code => tracing::error!("pua_xmpp: PUBLISH for {} failed: {code}", info.pres_uri),
        }
    }

    /// SUBSCRIBE (expires -1: default; 0: end) the XMPP user `from` to the SIP user behind `to`.
    fn subscribe(&self, from: &str, to: &str, expires: i32) {
        let (Some(pres_uri), Some(watcher)) = (
            self.xmpp.translate(Translation::DecodeXmppSip, to),
            self.xmpp.translate(Translation::EncodeXmppSip, from),
        ) else {
            tracing::warn!("pua_xmpp: subscription from {from} to {to}: no SIP address for one of them");
            if expires != 0 {
                let _ = self.xmpp.send_packet(&convert::error_stanza(to, from, 484));
            }
            return;
        };
        let info = SubscribeInfo {
            id: format!("XMPP_SUBSCRIBE.{pres_uri}.{watcher}"),
            contact: watcher.clone(),
            watcher_uri: watcher,
            pres_uri,
            event: event::PRESENCE,
            expires,
            source_flag: source::XMPP_INITIAL_SUBS,
            // Not INSERT_TYPE: pua then looks for the subscription, so a probe or a repeated
            // subscribe refreshes it and an unsubscribe ends it instead of starting another.
            flag: 0,
            outbound_proxy: self.outbound_proxy.map(str::to_string),
            ..Default::default()
        };
        if self.pua.send_subscribe(&info) < 0 {
            tracing::error!("pua_xmpp: SUBSCRIBE {} for {} failed", info.pres_uri, info.watcher_uri);
        }
    }

    /// The final reply to a SUBSCRIBE made for an XMPP user.
    fn on_subscribe_reply(&self, record: &UaRecord, code: u16) {
        let (Some(from), Some(to)) = (
            self.xmpp.translate(Translation::EncodeSipXmpp, &record.pres_uri),
            self.xmpp.translate(Translation::DecodeSipXmpp, &record.watcher_uri),
        ) else {
            return;
        };
        tracing::debug!("pua_xmpp: SUBSCRIBE {} for {}: {code}", record.pres_uri, record.watcher_uri);
        let stanza = if (200..300).contains(&code) {
            convert::typed_stanza(&from, &to, None, "subscribed")
        } else {
            convert::error_stanza(&from, &to, code)
        };
        if let Err(e) = self.xmpp.send_packet(&stanza) {
            tracing::warn!("pua_xmpp: answer to {to}'s subscription to {from} not sent: {e}");
        }
    }
}

fn header<'a>(m: &plugin_api::sip::Message<'a>, name: HeaderName) -> &'a str {
    m.header_str(name).unwrap_or("").trim()
}

impl PuaXmpp {
    /// `pua_xmpp_notify()`: a NOTIFY of a subscription made for the XMPP side.
    fn notify(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let Some(msg) = call.message() else { return Ok(-1) };
        let (Ok(call_id), Ok(from), Ok(to)) = (msg.call_id(), msg.from(), msg.to()) else {
            tracing::warn!("pua_xmpp_notify: NOTIFY without Call-ID, From or To");
            return Ok(-1);
        };
        let ev = header(&msg, HeaderName::EVENT);
        let ev = ev.split(';').next().unwrap_or("").trim();
        let winfo = match ev {
            "presence" => false,
            "presence.winfo" => true,
            _ => {
                tracing::warn!("pua_xmpp_notify: Event {ev:?} is neither presence nor presence.winfo");
                return Ok(-1);
            }
        };
        let dialog = UaRecord {
            call_id: call_id.to_string(),
            from_tag: to.tag().unwrap_or_default().to_string(),
            to_tag: from.tag().unwrap_or_default().to_string(),
            flag: source::XMPP_SUBSCRIBE,
            ..Default::default()
        };
        if self.pua.is_dialog(&dialog) < 0 {
            tracing::warn!("pua_xmpp_notify: NOTIFY {call_id} matches no XMPP subscription");
            return Ok(-1);
        }
        let (Some(jid_to), Some(jid_from)) = (
            self.xmpp.translate(Translation::DecodeSipXmpp, to.uri_str()),
            self.xmpp.translate(Translation::EncodeSipXmpp, from.uri_str()),
        ) else {
            tracing::warn!("pua_xmpp_notify: {} or {} has no XMPP address", to.uri_str(), from.uri_str());
            return Ok(-1);
        };
        let state = header(&msg, HeaderName::SUBSCRIPTION_STATE).to_ascii_lowercase();
        let terminated = state.starts_with("terminated");
        let body = std::str::from_utf8(msg.body()).map_err(|_| Error::new("NOTIFY body is not UTF-8"))?;
        let id = to.tag().unwrap_or_default();
        let mut stanzas = Vec::new();
        if winfo {
            if !terminated && !body.trim().is_empty() {
                let watchers = match convert::read_winfo(body) {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::warn!("pua_xmpp_notify: {e}");
                        return Ok(-1);
                    }
                };
                for w in watchers {
                    if let Some(watcher) = self.xmpp.translate(Translation::EncodeSipXmpp, &w) {
                        stanzas.push(convert::typed_stanza(&watcher, &jid_to, None, "subscribe"));
                    }
                }
            }
        } else if terminated {
            if !state.contains("reason=timeout") {
                stanzas.push(convert::typed_stanza(&jid_from, &jid_to, Some(id), "unsubscribed"));
            }
        } else {
            let p = if body.trim().is_empty() {
                SipPresence::default()
            } else {
                match convert::read_pidf(body) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!("pua_xmpp_notify: {e}");
                        return Ok(-1);
                    }
                }
            };
            stanzas.push(convert::presence_stanza(&jid_from, &jid_to, id, &p));
        }
        tracing::debug!("pua_xmpp_notify: {ev} NOTIFY for {jid_to}: {} stanza(s)", stanzas.len());
        for s in &stanzas {
            if let Err(e) = self.xmpp.send_packet(s) {
                // The NOTIFY is ours and is answered 200 all the same: a failure reply would end
                // the subscription while the XMPP server is away; the probes Prosody sends when
                // its users come back bring the state again.
                tracing::warn!("pua_xmpp_notify: {e}");
                break;
            }
        }
        Ok(1)
    }

    /// `pua_xmpp_req_winfo(request_uri, expires)`: a presence.winfo subscription for the XMPP
    /// user a SIP watcher subscribes to, so the XMPP side learns who watches.
    fn req_winfo(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let uri = call.arg(0).unwrap_or("").trim();
        if uri.is_empty() || self.xmpp.translate(Translation::DecodeSipXmpp, uri).is_none() {
            tracing::warn!("pua_xmpp_req_winfo: {uri:?} is not a gateway URI of an XMPP user");
            return Ok(-1);
        }
        // Kamailio: "0" unsubscribes, anything else is the default.
        let expires = if call.arg(1).unwrap_or("").trim() == "0" { 0 } else { -1 };
        let info = SubscribeInfo {
            id: format!("XMPP_WINFO.{uri}"),
            pres_uri: uri.to_string(),
            watcher_uri: uri.to_string(),
            contact: self.server_address.clone(),
            event: event::PWINFO,
            expires,
            source_flag: source::XMPP_SUBSCRIBE,
            // Every SIP SUBSCRIBE of a watcher calls this: refresh the one winfo subscription.
            flag: 0,
            outbound_proxy: self.outbound_proxy.map(str::to_string),
            ..Default::default()
        };
        Ok(if self.pua.send_subscribe(&info) < 0 { -1 } else { 1 })
    }
}

impl Module for PuaXmpp {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("pua_xmpp", env!("CARGO_PKG_VERSION"))
            .doc("Presence between SIP and XMPP users through pua and the xmpp module (Kamailio's pua_xmpp).")
            .requires("pua")
            .requires("xmpp")
            .param(Param::required_str("server_address").doc("SIP URI of this gateway: the Contact of its presence.winfo SUBSCRIBEs"))
            .param(Param::opt_str("outbound_proxy").doc("next hop (SIP URI) of the SUBSCRIBEs sent for XMPP users and for watcher info; unset: the Request-URI's host"))
            .function(Function::new("pua_xmpp_notify", 0..=0, Self::notify).doc(
                "on a NOTIFY of a subscription made for the XMPP side: send it on as XMPP presence (1), -1 when it is not one; the route replies",
            ))
            .function(Function::new("pua_xmpp_req_winfo", 2..=2, Self::req_winfo).doc(
                "request_uri expires: SUBSCRIBE presence.winfo for the XMPP user behind request_uri (expires \"0\" ends it)",
            ))
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let server_address = params.str("server_address").trim().to_string();
        if !server_address.starts_with("sip:") && !server_address.starts_with("sips:") {
            return Err(Error::new(format!("server_address must be a SIP URI, not {server_address:?}")));
        }
        let outbound_proxy: Option<&'static str> = params
            .opt_str("outbound_proxy")
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| &*Box::leak(p.to_string().into_boxed_str()));
        if let Some(p) = outbound_proxy
            && !p.starts_with("sip:")
            && !p.starts_with("sips:")
        {
            return Err(Error::new(format!("outbound_proxy must be a SIP URI, not {p:?}")));
        }
        let pua = Pua::bind(host)?;
        let xmpp = Xmpp::bind(host)?;
        let bridge = Bridge { pua, xmpp, outbound_proxy };
        xmpp.register_callback(cb::RCV_PRESENCE, move |s| bridge.on_presence(s))?;
        let r = pua.register_callback(source::XMPP_INITIAL_SUBS, move |record, reply| {
            bridge.on_subscribe_reply(record, reply.code);
            0
        });
        if r < 0 {
            return Err(Error::new("cannot register the pua callback"));
        }
        Ok(PuaXmpp { pua, xmpp, server_address, outbound_proxy })
    }
}

export_module!(PuaXmpp);
