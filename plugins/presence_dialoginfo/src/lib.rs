//! `presence_dialoginfo` (Kamailio's presence_dialoginfo): adds the `dialog` event package
//! (RFC 4235, `application/dialog-info+xml`) to the presence server, for busy lamp fields.
//!
//! - PUBLISH bodies are checked with `dialog_info::check` (well-formed, root `dialog-info` in
//!   its namespace with version, state and entity, within depth and node limits, no DTD;
//!   presence's max_body limits the size): 415 for what is not dialog-info, 400 for a DTD,
//!   excessive nesting or a missing attribute. Kamailio checks nothing here.
//! - The publications of a presentity are aggregated into one full-state document
//!   (`dialog_info::aggregate`): all their dialogs under one root, or the one dialog
//!   force_single_dialog picks, or a terminated dummy dialog with force_dummy_dialog when there
//!   is no publication.
//! - No authorization (req_auth 0, as Kamailio): every watcher is active; restrict
//!   SUBSCRIBE in the routing script if needed.
//! - The document's `version` comes from a counter of this module (Kamailio writes each
//!   watcher's own NOTIFY count there; the presence API has no per-watcher hook for it).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use dialog_info::{Limits, Options};
use plugin_api::api::presence::{EventHooks, FfiEventSpec, Presence, kind};
use plugin_api::prelude::*;

/// The module.
pub struct PresenceDialogInfo;

/// The hooks of the `dialog` package.
pub struct DialogHooks {
    limits: Limits,
    options: Options,
    version: AtomicU32,
}

/// 2020-01-01T00:00:00Z: versions start at the seconds since then, so they keep increasing
/// across restarts (unless more than one document a second was built on average) while staying
/// far below 2^31 (Kamailio stores versions as signed 32-bit integers).
const VERSION_EPOCH: u64 = 1_577_836_800;

impl DialogHooks {
    /// Hooks with `options`; structure limits only (presence's max_body checks the size).
    pub fn new(options: Options) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let start = u32::try_from(now.saturating_sub(VERSION_EPOCH)).unwrap_or(0);
        DialogHooks {
            limits: Limits { max_bytes: usize::MAX, ..Limits::default() },
            options,
            version: AtomicU32::new(start),
        }
    }
}

impl EventHooks for DialogHooks {
    fn check_body(&self, body: &[u8]) -> Result<(), (u16, String)> {
        dialog_info::check(body, &self.limits).map_err(|e| (e.sip_status(), e.to_string()))
    }

    /// Kamailio ignores the index of a publication being removed: its body takes part as it
    /// was last published (pua_dialoginfo publishes `terminated` before it lets one expire).
    fn aggregate(&self, pres_uri: &str, bodies: &[&[u8]], _removed: Option<usize>) -> Option<Vec<u8>> {
        let texts: Vec<&str> = bodies.iter().filter_map(|b| std::str::from_utf8(b).ok()).collect();
        if texts.is_empty() && !bodies.is_empty() {
            return None;
        }
        let version = self.version.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
        dialog_info::aggregate(pres_uri, version, &texts, self.options).map(String::into_bytes)
    }
}

impl Module for PresenceDialogInfo {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("presence_dialoginfo", env!("CARGO_PKG_VERSION"))
            .doc("The dialog event package (RFC 4235 dialog-info) for the presence server: body checks and aggregation of a presentity's dialogs.")
            .requires("presence")
            .param(
                Param::int("force_single_dialog", 0)
                    .range(0..=1)
                    .doc("1: NOTIFY only one dialog, the most interesting by state (early, confirmed, proceeding, trying, terminated)"),
            )
            .param(
                Param::int("force_dummy_dialog", 0)
                    .range(0..=1)
                    .doc("1: NOTIFY a terminated dummy dialog when the presentity has published nothing"),
            )
            .param(Param::int("default_expires", 3600).min(1).doc("Expires of a dialog PUBLISH or SUBSCRIBE without one"))
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let presence = Presence::bind(host)?;
        let options = Options {
            force_single_dialog: params.int("force_single_dialog") == 1,
            force_dummy_dialog: params.int("force_dummy_dialog") == 1,
        };
        let spec = FfiEventSpec {
            name: "dialog".into(),
            content_type: dialog_info::CONTENT_TYPE.into(),
            kind: kind::PUBLISHED,
            req_auth: false,
            etag_not_new: false,
            default_expires: u32::try_from(params.int("default_expires")).unwrap_or(3600),
        };
        if presence.add_event(&spec, Some(DialogHooks::new(options))) < 0 {
            return Err(Error::new("presence refused the event package dialog"));
        }
        Ok(PresenceDialogInfo)
    }
}

export_module!(PresenceDialogInfo);

#[cfg(test)]
mod tests {
    use super::*;

    fn body(id: &str, state: &str) -> String {
        format!(
            "<dialog-info xmlns=\"{}\" version=\"0\" state=\"full\" entity=\"sip:a@x\"><dialog id=\"{id}\"><state>{state}</state></dialog></dialog-info>",
            dialog_info::NS
        )
    }

    #[test]
    fn check_body_codes() {
        let h = DialogHooks::new(Options::default());
        assert_eq!(h.check_body(body("d1", "early").as_bytes()), Ok(()));
        assert_eq!(h.check_body(b"<dialog-info").unwrap_err().0, 415);
        assert_eq!(h.check_body(b"<presence xmlns='urn:ietf:params:xml:ns:pidf'/>").unwrap_err().0, 415);
        let no_entity = format!("<dialog-info xmlns=\"{}\" version=\"0\" state=\"full\"/>", dialog_info::NS);
        assert_eq!(h.check_body(no_entity.as_bytes()).unwrap_err().0, 400);
        let dtd = "<!DOCTYPE a [<!ENTITY b \"c\">]><dialog-info/>";
        assert_eq!(h.check_body(dtd.as_bytes()).unwrap_err().0, 400);
    }

    #[test]
    fn aggregate_versions_increase_and_options_apply() {
        let h = DialogHooks::new(Options::default());
        let (a, b) = (body("d1", "confirmed"), body("d2", "early"));
        let one = String::from_utf8(h.aggregate("sip:a@x", &[a.as_bytes(), b.as_bytes()], None).unwrap()).unwrap();
        assert!(one.contains("id=\"d1\"") && one.contains("id=\"d2\""), "{one}");
        let two = String::from_utf8(h.aggregate("sip:a@x", &[a.as_bytes()], Some(0)).unwrap()).unwrap();
        let version = |s: &str| -> u32 {
            let v = s.split("version=\"").nth(2).and_then(|r| r.split('"').next()).unwrap();
            v.parse().unwrap()
        };
        assert_eq!(version(&two), version(&one) + 1);
        assert!(two.contains("id=\"d1\""), "a removed publication keeps its last state: {two}");
        assert_eq!(h.aggregate("sip:a@x", &[], None), None);

        let single = DialogHooks::new(Options { force_single_dialog: true, force_dummy_dialog: true });
        let s = String::from_utf8(single.aggregate("sip:a@x", &[a.as_bytes(), b.as_bytes()], None).unwrap()).unwrap();
        assert!(s.contains("id=\"d2\"") && !s.contains("id=\"d1\""), "{s}");
        let d = String::from_utf8(single.aggregate("sip:a@x", &[], None).unwrap()).unwrap();
        assert!(d.contains(dialog_info::DUMMY_DIALOG_ID) && d.contains("terminated"), "{d}");
    }
}
