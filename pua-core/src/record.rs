//! The stored record (Kamailio's `ua_pres_t`): one publication or one subscription dialog.

use plugin_api::api::pua::{UaRecord, event};

/// Publication-only fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Publication {
    /// The ETag of the last 2xx ("" before the first one).
    pub etag: String,
    /// PIDF tuple id, kept stable across updates.
    pub tuple_id: String,
    /// The last body published (kept to answer a 412 with the full state).
    pub body: Option<String>,
    /// Its Content-Type ("" = the event's default).
    pub content_type: String,
}

/// Subscription-only fields (boxed: publications are the common case and stay small).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    pub watcher_uri: String,
    pub call_id: String,
    /// Remote tag ("" while the dialog is temporary: no 2xx yet).
    pub to_tag: String,
    /// Local tag.
    pub from_tag: String,
    pub cseq: i32,
    /// Route set as Kamailio stores it: the Record-Route values reversed, comma-separated.
    pub record_route: String,
    /// Remote target (Contact of the 2xx, or where the initial SUBSCRIBE went).
    pub remote_contact: String,
    /// Our Contact.
    pub contact: String,
}

/// What kind of record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Publish(Publication),
    Subscribe(Box<Subscription>),
}

/// A record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Store key (memory) or database row id (db_mode 2).
    pub key: u64,
    /// Row id in the `pua` table, once written.
    pub db_id: Option<i64>,
    /// Series id (`pres_id` column).
    pub id: String,
    pub pres_uri: String,
    /// Event flag.
    pub event: i32,
    /// Source flag.
    pub flag: i32,
    /// Server-granted expiry (epoch seconds).
    pub expires: i64,
    /// Wanted expiry (epoch seconds; 0 = keep refreshing forever).
    pub desired_expires: i64,
    /// dialog-info / reginfo version counter (subscriptions: the version of the last NOTIFY).
    pub version: i32,
    pub extra_headers: String,
    /// Next hop given by the caller ("" = the module's outbound_proxy).
    pub outbound_proxy: String,
    /// The caller's parameter, handed to callbacks.
    pub cb_param: u64,
    pub kind: Kind,
}

impl Record {
    /// A new publication record.
    pub fn publication(id: &str, pres_uri: &str, event: i32, flag: i32) -> Record {
        Record {
            key: 0,
            db_id: None,
            id: id.to_string(),
            pres_uri: pres_uri.to_string(),
            event,
            flag,
            expires: 0,
            desired_expires: 0,
            version: 0,
            extra_headers: String::new(),
            outbound_proxy: String::new(),
            cb_param: 0,
            kind: Kind::Publish(Publication::default()),
        }
    }

    /// A new subscription record.
    pub fn subscription(id: &str, pres_uri: &str, event: i32, flag: i32, sub: Subscription) -> Record {
        Record { kind: Kind::Subscribe(Box::new(sub)), ..Record::publication(id, pres_uri, event, flag) }
    }

    pub fn publ(&self) -> Option<&Publication> {
        match &self.kind {
            Kind::Publish(p) => Some(p),
            Kind::Subscribe(_) => None,
        }
    }

    pub fn publ_mut(&mut self) -> Option<&mut Publication> {
        match &mut self.kind {
            Kind::Publish(p) => Some(p),
            Kind::Subscribe(_) => None,
        }
    }

    pub fn subs(&self) -> Option<&Subscription> {
        match &self.kind {
            Kind::Subscribe(s) => Some(s),
            Kind::Publish(_) => None,
        }
    }

    pub fn subs_mut(&mut self) -> Option<&mut Subscription> {
        match &mut self.kind {
            Kind::Subscribe(s) => Some(s),
            Kind::Publish(_) => None,
        }
    }

    /// A subscription whose initial SUBSCRIBE has no 2xx yet.
    pub fn is_temporary(&self) -> bool {
        self.subs().is_some_and(|s| s.to_tag.is_empty())
    }

    /// The record as callbacks and other modules see it.
    pub fn to_ua(&self, ua_flag: i32) -> UaRecord {
        let mut u = UaRecord {
            id: self.id.clone(),
            pres_uri: self.pres_uri.clone(),
            event: self.event,
            expires: self.expires,
            desired_expires: self.desired_expires,
            flag: self.flag,
            version: self.version,
            extra_headers: self.extra_headers.clone(),
            outbound_proxy: self.outbound_proxy.clone(),
            cb_param: self.cb_param,
            ua_flag,
            ..Default::default()
        };
        match &self.kind {
            Kind::Publish(p) => {
                u.etag = p.etag.clone();
                u.tuple_id = p.tuple_id.clone();
                u.content_type = p.content_type.clone();
            }
            Kind::Subscribe(s) => {
                u.watcher_uri = s.watcher_uri.clone();
                u.call_id = s.call_id.clone();
                u.to_tag = s.to_tag.clone();
                u.from_tag = s.from_tag.clone();
                u.cseq = s.cseq;
                u.record_route = s.record_route.clone();
                u.remote_contact = s.remote_contact.clone();
                u.contact = s.contact.clone();
            }
        }
        u
    }

    /// The event's name for logs.
    pub fn event_name(&self) -> &'static str {
        match self.event {
            event::PRESENCE => "presence",
            event::PWINFO => "presence.winfo",
            event::BLA => "dialog;sla",
            event::MSGSUM => "message-summary",
            event::DIALOG => "dialog",
            event::REGINFO => "reg",
            event::XCAPDIFF => "xcap-diff",
            event::DFKS => "as-feature-event",
            _ => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publication_stays_small() {
        // The inline part of a record; strings add their text on the heap. The 1 KB budget per
        // publication (bodies aside) leaves room for the texts and the indexes.
        assert!(std::mem::size_of::<Record>() <= 320, "{}", std::mem::size_of::<Record>());
    }
}
