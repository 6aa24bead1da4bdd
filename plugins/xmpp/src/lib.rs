//! `xmpp` (Kamailio's xmpp module, reference §9.1): a gateway's connection to an XMPP server as
//! an XEP-0114 external component, the `xmpp` API other modules (pua_xmpp) use to send
//! stanzas, receive them and translate addresses, and instant messages both ways
//! (`xmpp_send_message()`, XMPP `<message>` → SIP MESSAGE).
//!
//! The connection runs on a thread of the module's own under `Host::spawn_supervised` (the
//! module cannot use the host's runtime): when the server goes away, refuses the handshake or
//! the thread panics, the reason is logged under the module's name and the connection is made
//! again after a back-off (1 s doubling to 30 s). Only `backend = "component"` is built;
//! `"server"` (Kamailio's minimal server-to-server mode, which carries no presence) is refused
//! at start-up.

pub mod conn;
pub mod message;
pub mod uri;

use std::sync::Arc;

use plugin_api::api::xmpp::{self as api, Stanza, Translation, XmppCallback, XmppService, cb};
use plugin_api::prelude::*;
use plugin_api::sip::HeaderName;

use crate::conn::{Settings, Shared};
use crate::uri::Translator;

/// What the API hands out.
struct Service {
    shared: Arc<Shared>,
    translator: Translator,
}

impl XmppService for Service {
    fn send_packet(&self, xml: &str) -> Result<(), Error> {
        let r = self.shared.send(xml);
        if let Err(e) = &r {
            tracing::warn!("xmpp: stanza not sent: {e}");
        }
        r
    }

    fn register_callback(&self, types: i32, callback: XmppCallback) -> Result<(), Error> {
        self.shared.register(types, callback);
        Ok(())
    }

    fn translate(&self, kind: Translation, uri: &str) -> Option<String> {
        match kind {
            Translation::DecodeSipXmpp => self.translator.decode_sip_xmpp(uri),
            Translation::EncodeSipXmpp => self.translator.encode_sip_xmpp(uri),
            Translation::DecodeXmppSip => self.translator.decode_xmpp_sip(uri),
            Translation::EncodeXmppSip => self.translator.encode_xmpp_sip(uri),
        }
    }
}

/// The module.
pub struct XmppModule {
    shared: Arc<Shared>,
    settings: Settings,
    translator: &'static Translator,
    started: std::sync::Once,
}

/// A received `<message>` with a body becomes a SIP MESSAGE (Kamailio: From =
/// encode_xmpp_sip(from), R-URI and To = decode_xmpp_sip(to), text/plain). Unlike Kamailio it
/// carries no Contact (RFC 3428 forbids one in MESSAGE).
fn on_message(host: Host, translator: &Translator, outbound_proxy: &str, s: &Stanza<'_>) {
    let Some((from, to, text)) = message::read(s.xml) else { return };
    let (Some(ruri), Some(from_uri)) = (translator.decode_xmpp_sip(&to), translator.encode_xmpp_sip(&from)) else {
        tracing::warn!("xmpp: message from {from} to {to} dropped: no SIP address for one of them");
        return;
    };
    let mut req = Request::new("MESSAGE", &ruri, &format!("<{from_uri}>"), &format!("<{ruri}>"));
    req.content_type = "text/plain".into();
    req.body = text.into_bytes();
    req.outbound_proxy = outbound_proxy.to_string();
    let what = format!("MESSAGE from {from_uri} to {ruri}");
    let sent = host.send_request(&req, move |reply| {
        if reply.code >= 300 {
            tracing::warn!("xmpp: {what}: {} {}", reply.code, reply.reason);
        }
    });
    if let Err(e) = sent {
        tracing::warn!("xmpp: MESSAGE to {ruri} not sent: {e}");
    }
}

impl XmppModule {
    /// `xmpp_send_message([destination])`: the SIP MESSAGE being routed goes to the XMPP user
    /// behind the destination (default: the Request-URI, else To) as a `<message>`.
    fn send_message(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let Some(msg) = call.message() else { return Ok(-1) };
        let text = match message::body_text(msg.header_str(HeaderName::CONTENT_TYPE).unwrap_or(""), msg.body()) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("xmpp_send_message: {e}");
                return Ok(-1);
            }
        };
        let (Ok(from), Ok(to)) = (msg.from(), msg.to()) else { return Ok(-1) };
        let dest = match call.arg(0).map(str::trim).filter(|d| !d.is_empty()) {
            Some(d) => d,
            None => msg.request_uri_str().unwrap_or_else(|| to.uri_str()),
        };
        let (Some(to_jid), Some(from_jid)) =
            (self.translator.decode_sip_xmpp(dest), self.translator.encode_sip_xmpp(from.uri_str()))
        else {
            tracing::warn!("xmpp_send_message: {dest} or {} has no XMPP address", from.uri_str());
            return Ok(-1);
        };
        let id = from.tag().unwrap_or_default();
        match self.shared.send(&message::stanza(id, &from_jid, &to_jid, text)) {
            Ok(()) => Ok(1),
            Err(e) => {
                tracing::warn!("xmpp_send_message: to {to_jid}: {e}");
                Ok(-1)
            }
        }
    }
}

/// Checks the modparams and builds the connection settings and the translator.
pub fn configure(params: &Params) -> Result<(Settings, Translator), Error> {
    match params.str("backend") {
        "component" => {}
        "server" => {
            return Err(Error::new(
                "backend \"server\" (XMPP server-to-server mode) is not built in this version; use backend = \"component\" (XEP-0114)",
            ));
        }
        other => {
            return Err(Error::new(format!("backend must be \"component\" (\"server\" is not built), not {other:?}")));
        }
    }
    let separator = params
        .str("domain_separator")
        .chars()
        .next()
        .ok_or_else(|| Error::new("domain_separator must not be empty"))?;
    if separator == '@' || separator.is_whitespace() {
        return Err(Error::new(format!("domain_separator {separator:?} cannot be used")));
    }
    let gwmap = uri::parse_gwmap(params.strs("gwmap")).map_err(Error::new)?;
    let domain = params.str("xmpp_domain").trim().to_string();
    let gateway_domain = params.str("gateway_domain").trim().to_string();
    if domain.is_empty() || gateway_domain.is_empty() {
        return Err(Error::new("xmpp_domain and gateway_domain must not be empty"));
    }
    let port = match params.int("xmpp_port") {
        0 => 5347,
        p => u16::try_from(p).map_err(|_| Error::new(format!("xmpp_port {p} is not a port")))?,
    };
    let settings = Settings {
        host: params.str("xmpp_host").trim().to_string(),
        port,
        domain: domain.clone(),
        secret: params.str("xmpp_password").to_string(),
    };
    Ok((settings, Translator { separator, gateway_domain, xmpp_domain: domain, gwmap }))
}

impl Module for XmppModule {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("xmpp", env!("CARGO_PKG_VERSION"))
            .doc("XMPP gateway connection (Kamailio's xmpp): an XEP-0114 component on its own supervised thread, SIP/XMPP address translation, the xmpp API for pua_xmpp.")
            .exports("xmpp")
            .param(Param::str("backend", "component").doc("component (XEP-0114); \"server\" is not built"))
            .param(Param::str("xmpp_domain", "xmpp2sip.example.net").doc("the component's XMPP domain, which stands for SIP users"))
            .param(Param::str("xmpp_host", "xmpp.example.com").doc("the XMPP server to connect to"))
            .param(Param::int("xmpp_port", 0).range(0..=65535).doc("its component port (0: 5347)"))
            .param(Param::str("xmpp_password", "secret").doc("the component secret (XEP-0114 handshake)"))
            .param(Param::str("gateway_domain", "sip2xmpp.example.net").doc("the SIP domain that stands for XMPP users"))
            .param(Param::str("domain_separator", "*").doc("encodes user<sep>domain in one user part (first character used)"))
            .param(Param::str_list("gwmap").doc("sipdomain=xmppdomain;... (repeatable); when set, the separator is not used"))
            .param(Param::opt_str("outbound_proxy").doc("next hop (SIP URI) of the SIP MESSAGEs made from XMPP messages; unset: the Request-URI's host"))
            .function(Function::new("xmpp_send_message", 0..=1, Self::send_message).doc(
                "[destination]: the SIP MESSAGE (text/plain or message/cpim) goes to the XMPP user behind destination (default: the Request-URI) as a chat <message>; 1 queued, -1 otherwise",
            ))
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let (settings, translator) = configure(params)?;
        let outbound_proxy = params.opt_str("outbound_proxy").map(str::trim).unwrap_or("").to_string();
        if !outbound_proxy.is_empty() && !outbound_proxy.starts_with("sip:") && !outbound_proxy.starts_with("sips:") {
            return Err(Error::new(format!("outbound_proxy must be a SIP URI, not {outbound_proxy:?}")));
        }
        let shared = Arc::new(Shared::default());
        let service: &'static Service = Box::leak(Box::new(Service { shared: shared.clone(), translator }));
        api::export(host, service)?;
        let (h, t) = (*host, &service.translator);
        shared.register(cb::RCV_MESSAGE, XmppCallback::new(move |s: &Stanza<'_>| on_message(h, t, &outbound_proxy, s)));
        tracing::info!(
            "xmpp: component {} at {}:{} (gateway_domain {})",
            settings.domain,
            settings.host,
            settings.port,
            service.translator.gateway_domain
        );
        Ok(XmppModule { shared, settings, translator: &service.translator, started: std::sync::Once::new() })
    }

    fn child_init(&self, host: &Host, _rank: u32) -> Result<(), Error> {
        // After every module's init, so the callbacks of pua_xmpp are registered before the
        // first stanza arrives.
        let mut result = Ok(());
        self.started.call_once(|| {
            let (settings, shared) = (self.settings.clone(), self.shared.clone());
            result = host.spawn_supervised("component", move || conn::run(&settings, &shared)).map(|_| ());
        });
        result
    }

    fn destroy(&self, _host: &Host) {
        self.shared.stop();
    }
}

export_module!(XmppModule);
