//! `presence_xml` (Kamailio's presence_xml): adds the XML event packages to the presence
//! server and decides who may see what.
//!
//! - `presence` (application/pidf+xml): PUBLISH bodies are checked (well-formed PIDF, within
//!   depth and node limits, no DTD; presence's max_body limits the size); the publications of a presentity are aggregated into
//!   one document (reference §11.4), a removed one in its offline form; watchers are authorized
//!   by the presentity's pres-rules from the `xcap` table and see the document filtered by the
//!   rule's transformations (reference §11.3).
//! - `presence.winfo` (watcher-info, built by the server), `dialog;sla` (disable_bla=0), and
//!   `xcap-diff`.
//! - Functions `pres_check_basic(uri, status)` and `pres_check_activities(uri, activity)`.
//!
//! Rules are evaluated Kamailio's way by default (first matching rule; no transformations
//! means everything is shown), or as RFC 4745/5025 say with `rules_mode = "rfc"`.

pub mod hooks;

use std::sync::Arc;

use plugin_api::api::presence::{FfiEventSpec, Presence, kind};
use plugin_api::prelude::*;

use hooks::{BodyCheck, PidfHooks, Settings, XcapRules};

/// The module.
pub struct PresenceXml {
    presence: Option<Presence>,
}

fn spec(name: &str, content_type: &str, kind: i32, req_auth: bool, etag_not_new: bool, expires: u32) -> FfiEventSpec {
    FfiEventSpec {
        name: name.into(),
        content_type: content_type.into(),
        kind,
        req_auth,
        etag_not_new,
        default_expires: expires,
    }
}

impl PresenceXml {
    fn check(&self, call: &FunctionCall<'_>, f: impl Fn(&str, &str) -> i32) -> Result<i32, Error> {
        let (Some(uri), Some(arg)) = (call.arg(0), call.arg(1)) else { return Ok(-1) };
        let Some(p) = self.presence else { return Ok(-1) };
        let Some(doc) = p.presentity_body(uri, "presence") else { return Ok(-1) };
        Ok(f(&String::from_utf8_lossy(&doc), arg))
    }

    fn pres_check_basic(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        self.check(call, pidf::check_basic)
    }

    fn pres_check_activities(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        self.check(call, pidf::check_activities)
    }
}

impl Module for PresenceXml {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("presence_xml", env!("CARGO_PKG_VERSION"))
            .doc("XML event packages for the presence server: presence (PIDF, aggregation, XCAP pres-rules), presence.winfo, dialog;sla, xcap-diff.")
            .requires("presence")
            .param(Param::opt_str("db_url").doc("database with the xcap table (pres-rules documents)"))
            .param(Param::str("xcap_table", "xcap"))
            .param(Param::int("disable_presence", 0).range(0..=1))
            .param(Param::int("disable_winfo", 0).range(0..=1))
            .param(Param::int("disable_bla", 1).range(0..=1).doc("0 adds the dialog;sla package (bridged line appearance)"))
            .param(Param::int("disable_xcapdiff", 0).range(0..=1))
            .param(Param::int("force_active", 0).range(0..=1).doc("every watcher is active and no rules are read"))
            .param(
                Param::int("integrated_xcap_server", 0)
                    .range(0..=1)
                    .doc("1: rules only from the xcap table; 0: the table, then the xcap_server list over HTTP"),
            )
            .param(Param::str_list("xcap_server").doc("host[:port] of XCAP servers to fetch pres-rules from"))
            .param(Param::int("passive_mode", 0).range(0..=1).doc("1: add no packages (functions only)"))
            .param(Param::str("xcapauth_userdel_reason", "probation").doc("Subscription-State reason when a rule is removed"))
            .param(Param::int("force_dummy_presence", 0).range(0..=1).doc("send an open/Available document when there is no state"))
            .param(Param::int("force_presence_single_body", 0).range(0..=1))
            .param(Param::str("presence_single_body_priorities", "Available|Ringing|On the Phone"))
            .param(Param::str("presence_single_body_lookup_element", "note"))
            .param(Param::int("default_expires", 3600).min(1))
            .param(
                Param::str("rules_mode", "kamailio")
                    .doc("kamailio: Kamailio's evaluation (first matching rule, no transformations shows all); rfc: RFC 4745/5025"),
            )
            .param(Param::int("enable_sphere_check", 0).range(0..=1).doc("evaluate <sphere> conditions against the presentity's RPID sphere"))
            .function(
                Function::new("pres_check_basic", 2..=2, Self::pres_check_basic)
                    .doc("uri status: 1 when a tuple's basic status starts with status, else -1"),
            )
            .function(
                Function::new("pres_check_activities", 2..=2, Self::pres_check_activities)
                    .doc("uri activity: 1 when a person has the activity, -2 when none are published, -1 otherwise"),
            )
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        if params.int("passive_mode") == 1 {
            return Ok(PresenceXml { presence: Presence::bind(host).ok() });
        }
        let presence = Presence::bind(host)?;
        let mode = match params.str("rules_mode") {
            "kamailio" => pres_rules::Mode::Kamailio,
            "rfc" => pres_rules::Mode::Rfc,
            other => return Err(Error::new(format!("rules_mode must be \"kamailio\" or \"rfc\", not {other:?}"))),
        };
        let force_active = params.int("force_active") == 1;
        let rules = if force_active {
            None
        } else {
            let url = params.opt_str("db_url").filter(|u| !u.is_empty()).ok_or_else(|| {
                Error::new(
                    "presence_xml: db_url is needed to read pres-rules from the xcap table (or set force_active = 1)",
                )
            })?;
            let servers: Vec<String> = if params.int("integrated_xcap_server") == 1 {
                Vec::new()
            } else {
                params.strs("xcap_server").into_iter().map(str::to_string).collect()
            };
            Some(XcapRules::open(host, url, params.str("xcap_table"), servers)?)
        };
        // Size is the presence server's `max_body` (checked before any package sees a body);
        // here only the structure: depth, node count, no DTD.
        let limits = pidf::Limits { max_bytes: usize::MAX, ..pidf::Limits::default() };
        let settings = Arc::new(Settings {
            mode,
            force_active,
            userdel_reason: params.str("xcapauth_userdel_reason").to_string(),
            dummy: params.int("force_dummy_presence") == 1,
            single_body: (params.int("force_presence_single_body") == 1).then(|| {
                (
                    params.str("presence_single_body_priorities").to_string(),
                    params.str("presence_single_body_lookup_element").to_string(),
                )
            }),
            sphere_check: params.int("enable_sphere_check") == 1,
            presence: Some(presence),
            limits,
            rules,
        });
        let expires = u32::try_from(params.int("default_expires")).unwrap_or(3600);
        let add = |s: FfiEventSpec, code: i32| {
            if code < 0 { Err(Error::new(format!("presence refused the event package {}", s.name))) } else { Ok(()) }
        };
        if params.int("disable_presence") == 0 {
            let s = spec("presence", "application/pidf+xml", kind::PUBLISHED, true, false, expires);
            let code = presence.add_event(&s, Some(PidfHooks(settings.clone())));
            add(s, code)?;
        }
        if params.int("disable_winfo") == 0 {
            let s = spec("presence.winfo", "application/watcherinfo+xml", kind::WINFO, false, false, expires);
            let code = presence.add_event(&s, None::<PidfHooks>);
            add(s, code)?;
        }
        if params.int("disable_bla") == 0 {
            let s = spec("dialog;sla", "application/dialog-info+xml", kind::PUBLISHED, false, true, expires);
            let code = presence.add_event(&s, Some(BodyCheck(limits)));
            add(s, code)?;
        }
        if params.int("disable_xcapdiff") == 0 {
            let s = spec("xcap-diff", "application/xcap-diff+xml", kind::PUBLISHED, false, false, expires);
            let code = presence.add_event(&s, Some(BodyCheck(limits)));
            add(s, code)?;
        }
        Ok(PresenceXml { presence: Some(presence) })
    }
}

export_module!(PresenceXml);
