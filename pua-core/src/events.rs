//! Event packages pua can publish or subscribe to (Kamailio's `add_events.c`), and what each
//! does to a body before it is sent.

use plugin_api::api::pua::{BodyProcessor, event};

use crate::body;

/// What an event does to a PUBLISH body.
#[derive(Debug)]
pub enum Processor {
    /// Sent as given.
    Passthrough,
    /// PIDF: tuple (and person) id inserted and kept stable.
    PidfTupleId,
    /// `version` of this root element rewritten with the record's counter.
    Version(&'static str),
    /// Another module's processor (registered with `add_event`).
    External(BodyProcessor),
}

/// One event package.
#[derive(Debug)]
pub struct EventDef {
    pub flag: i32,
    pub name: String,
    /// Default Content-Type of a PUBLISH body (empty: SUBSCRIBE-only events).
    pub content_type: String,
    pub processor: Processor,
}

/// The registered events.
#[derive(Debug, Default)]
pub struct Events {
    list: Vec<EventDef>,
}

impl Events {
    /// The events pua registers at start (`presence`, `presence.winfo`, `dialog;sla`,
    /// `message-summary`, `dialog`, `reg`, `xcap-diff`, `as-feature-event`).
    pub fn with_defaults(dlginfo_increase_version: bool, reginfo_increase_version: bool) -> Self {
        let mut e = Events::default();
        let version_or_pass =
            |on: bool, el: &'static str| if on { Processor::Version(el) } else { Processor::Passthrough };
        e.add(event::PRESENCE, "presence", "application/pidf+xml", Processor::PidfTupleId);
        e.add(event::PWINFO, "presence.winfo", "", Processor::Passthrough);
        // dialog;sla always rewrites the version (Kamailio's bla_process_body).
        e.add(event::BLA, "dialog;sla", "application/dialog-info+xml", Processor::Version("dialog-info"));
        e.add(event::MSGSUM, "message-summary", "application/simple-message-summary", Processor::Passthrough);
        e.add(
            event::DIALOG,
            "dialog",
            "application/dialog-info+xml",
            version_or_pass(dlginfo_increase_version, "dialog-info"),
        );
        e.add(event::REGINFO, "reg", "application/reginfo+xml", version_or_pass(reginfo_increase_version, "reginfo"));
        // Kamailio registers xcap-diff with no processor and crashes on a PUBLISH with a body;
        // here the body passes through.
        e.add(event::XCAPDIFF, "xcap-diff", "application/xcap-diff+xml", Processor::Passthrough);
        e.add(event::DFKS, "as-feature-event", "application/x-as-feature-event+xml", Processor::Passthrough);
        e
    }

    /// Registers an event; an existing name is ignored (Kamailio's `add_event`). Returns
    /// whether it was added.
    pub fn add(&mut self, flag: i32, name: &str, content_type: &str, processor: Processor) -> bool {
        if self.list.iter().any(|e| e.name == name) {
            return false;
        }
        self.list.push(EventDef { flag, name: name.to_string(), content_type: content_type.to_string(), processor });
        true
    }

    /// The event with this flag.
    pub fn by_flag(&self, flag: i32) -> Option<&EventDef> {
        self.list.iter().find(|e| e.flag == flag)
    }

    /// Every registered event.
    pub fn iter(&self) -> impl Iterator<Item = &EventDef> {
        self.list.iter()
    }
}

impl EventDef {
    /// Processes `body` for a PUBLISH of a record with `version` and `tuple_id`; returns the
    /// body to send and the tuple id to keep.
    pub fn process(
        &self,
        body: &str,
        version: i32,
        tuple_id: Option<&str>,
        new_id: impl FnOnce() -> String,
    ) -> Result<(String, Option<String>), String> {
        match &self.processor {
            Processor::Passthrough => Ok((body.to_string(), tuple_id.map(str::to_string))),
            Processor::PidfTupleId => {
                body::pidf_tuple_id(body, tuple_id, new_id).map(|(b, t)| (b, (!t.is_empty()).then_some(t)))
            }
            Processor::Version(el) => body::set_version(body, el, version).map(|b| (b, tuple_id.map(str::to_string))),
            Processor::External(p) => {
                p.process(body, version, tuple_id.unwrap_or("")).map(|(b, t)| (b, (!t.is_empty()).then_some(t)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_add_event() {
        let mut e = Events::with_defaults(false, true);
        assert_eq!(e.by_flag(event::PRESENCE).unwrap().content_type, "application/pidf+xml");
        assert!(matches!(e.by_flag(event::DIALOG).unwrap().processor, Processor::Passthrough));
        assert!(matches!(e.by_flag(event::REGINFO).unwrap().processor, Processor::Version("reginfo")));
        assert!(!e.add(999, "presence", "x", Processor::Passthrough), "an existing name is ignored");
        assert!(e.add(1 << 20, "ua-profile", "application/x", Processor::Passthrough));
        assert_eq!(e.iter().count(), 9);
    }
}
