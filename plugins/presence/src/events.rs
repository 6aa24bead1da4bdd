//! Event packages the server knows (Kamailio's `pres_ev_t` list), added through the `presence`
//! API by other modules (presence_xml adds `presence`, `presence.winfo`, `dialog;sla`).

use std::sync::Arc;

use plugin_api::api::presence::{Hooks, kind};
use plugin_api::sip::sip_message::headers::Event;

/// One package.
#[derive(Debug)]
pub struct Package {
    /// Name with its parameters as registered (`presence`, `dialog;sla`).
    pub name: String,
    pub content_type: String,
    /// [`kind::PUBLISHED`] or [`kind::WINFO`].
    pub kind: i32,
    pub req_auth: bool,
    pub etag_not_new: bool,
    pub default_expires: u32,
    pub hooks: Option<Hooks>,
}

impl Package {
    /// A watcher-info package (`presence.winfo`): its bodies are built by the server.
    pub fn is_winfo(&self) -> bool {
        self.kind == kind::WINFO
    }

    /// The package a winfo package reports on (`presence` for `presence.winfo`), or the winfo
    /// package of this one (Kamailio's `wipeer`).
    pub fn peer_name(&self) -> String {
        match self.name.strip_suffix(".winfo") {
            Some(base) => base.to_string(),
            None => format!("{}.winfo", self.name),
        }
    }
}

/// The registry, in registration order (the order of `Allow-Events`).
#[derive(Debug, Default)]
pub struct Registry {
    packages: Vec<Arc<Package>>,
}

impl Registry {
    /// Adds a package; false when the name is taken.
    pub fn add(&mut self, p: Package) -> bool {
        if self.get(&p.name).is_some() {
            return false;
        }
        self.packages.push(Arc::new(p));
        true
    }

    /// The package registered under `name` (exact, case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Arc<Package>> {
        self.packages.iter().find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// The package an Event header names: `dialog;sla` when the header is `dialog;sla` (or has
    /// an `sla` parameter) and that is registered, else the bare package name. The `id`
    /// parameter never selects a package.
    pub fn lookup(&self, event: &Event<'_>) -> Option<&Arc<Package>> {
        let base = event.event_type();
        for (name, value) in event.params() {
            if value.is_none()
                && !name.eq_ignore_ascii_case("id")
                && let Some(p) = self.get(&format!("{base};{name}"))
            {
                return Some(p);
            }
        }
        self.get(base)
    }

    /// `Allow-Events` value: every name, in registration order.
    pub fn allow_events(&self) -> String {
        self.packages.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Every package.
    pub fn all(&self) -> &[Arc<Package>] {
        &self.packages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str) -> Package {
        Package {
            name: name.into(),
            content_type: "application/pidf+xml".into(),
            kind: kind::PUBLISHED,
            req_auth: false,
            etag_not_new: false,
            default_expires: 3600,
            hooks: None,
        }
    }

    #[test]
    fn lookup_by_header() {
        let mut r = Registry::default();
        assert!(r.add(pkg("presence")));
        assert!(r.add(pkg("dialog;sla")));
        assert!(!r.add(pkg("Presence")), "names are unique, case-insensitively");
        let ev = |s: &'static str| Event::parse(s.as_bytes()).unwrap();
        assert_eq!(r.lookup(&ev("presence")).unwrap().name, "presence");
        assert_eq!(r.lookup(&ev("presence;id=7")).unwrap().name, "presence");
        assert_eq!(r.lookup(&ev("dialog;sla")).unwrap().name, "dialog;sla");
        assert!(r.lookup(&ev("dialog")).is_none());
        assert!(r.lookup(&ev("message-summary")).is_none());
        assert_eq!(r.allow_events(), "presence, dialog;sla");
        assert_eq!(pkg("presence").peer_name(), "presence.winfo");
        assert_eq!(pkg("presence.winfo").peer_name(), "presence");
    }
}
