//! `xmpp` (Kamailio's xmpp module, reference §9.1): a gateway's connection to an XMPP server as
//! an XEP-0114 external component, and the `xmpp` API other modules (pua_xmpp) use to send
//! stanzas, receive them and translate addresses.
//!
//! The connection runs on a thread of the module's own under `Host::spawn_supervised` (the
//! module cannot use the host's runtime): when the server goes away, refuses the handshake or
//! the thread panics, the reason is logged under the module's name and the connection is made
//! again after a back-off (1 s doubling to 30 s). Only `backend = "component"` is built;
//! `"server"` (Kamailio's minimal server-to-server mode, which carries no presence) is refused
//! at start-up.

pub mod conn;
pub mod uri;

use std::sync::Arc;

use plugin_api::api::xmpp::{self as api, Translation, XmppCallback, XmppService};
use plugin_api::prelude::*;

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
    started: std::sync::Once,
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
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let (settings, translator) = configure(params)?;
        let shared = Arc::new(Shared::default());
        let service: &'static Service = Box::leak(Box::new(Service { shared: shared.clone(), translator }));
        api::export(host, service)?;
        tracing::info!(
            "xmpp: component {} at {}:{} (gateway_domain {})",
            settings.domain,
            settings.host,
            settings.port,
            service.translator.gateway_domain
        );
        Ok(XmppModule { shared, settings, started: std::sync::Once::new() })
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
