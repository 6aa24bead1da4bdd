//! Watcher-info documents (RFC 3857/3858) as Kamailio's `create_winfo_xml` writes them: one
//! `watcher-list` for the presentity, one `watcher` per subscription, `event="subscribe"`.

use std::fmt::Write;

/// One watcher in a watcher-info document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherEntry {
    /// `sip:user@domain`.
    pub uri: String,
    /// The watcher's subscription Call-ID (or, for a waiting watcher without a dialog, an id
    /// made from its URI).
    pub id: String,
    /// `active`, `pending`, `terminated` or `waiting`.
    pub status: &'static str,
}

/// Status name for a status code.
pub fn status_name(status: i32) -> &'static str {
    use plugin_api::api::presence::status;
    match status {
        status::ACTIVE | status::POLITE_BLOCK => "active",
        status::PENDING => "pending",
        status::WAITING => "waiting",
        _ => "terminated",
    }
}

fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['<', '>', '&', '"', '\'']) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out.into()
}

/// The document: `full` lists every watcher, otherwise (partial) the ones that changed.
pub fn document(version: u32, full: bool, resource: &str, package: &str, watchers: &[WatcherEntry]) -> String {
    let mut x = String::with_capacity(256 + 128 * watchers.len());
    let state = if full { "full" } else { "partial" };
    let _ = write!(
        x,
        "<?xml version=\"1.0\"?>\n<watcherinfo xmlns=\"urn:ietf:params:xml:ns:watcherinfo\" version=\"{version}\" state=\"{state}\">\n  <watcher-list resource=\"{}\" package=\"{}\">\n",
        escape(resource),
        escape(package)
    );
    for w in watchers {
        let _ = writeln!(
            x,
            "    <watcher id=\"{}\" event=\"subscribe\" status=\"{}\">{}</watcher>",
            escape(&w.id),
            w.status,
            escape(&w.uri)
        );
    }
    x.push_str("  </watcher-list>\n</watcherinfo>\n");
    x
}

/// The id of a waiting watcher (no dialog): its URI in base64, as Kamailio writes it.
pub fn waiting_id(uri: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = uri.as_bytes();
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_document() {
        let w = [
            WatcherEntry { uri: "sip:bob@x".into(), id: "cid1".into(), status: "active" },
            WatcherEntry { uri: "sip:eve@y".into(), id: "cid<2>".into(), status: "pending" },
        ];
        let d = document(3, true, "sip:alice@x", "presence", &w);
        assert!(d.starts_with("<?xml version=\"1.0\"?>\n<watcherinfo xmlns=\"urn:ietf:params:xml:ns:watcherinfo\" version=\"3\" state=\"full\">"));
        assert!(d.contains("<watcher-list resource=\"sip:alice@x\" package=\"presence\">"));
        assert!(d.contains("<watcher id=\"cid1\" event=\"subscribe\" status=\"active\">sip:bob@x</watcher>"));
        assert!(d.contains("id=\"cid&lt;2&gt;\""));
        assert!(document(4, false, "sip:a@x", "presence", &[]).contains("state=\"partial\""));
    }

    #[test]
    fn base64_ids() {
        assert_eq!(waiting_id("sip:a@b"), "c2lwOmFAYg==");
        assert_eq!(waiting_id("sip:ab@b"), "c2lwOmFiQGI=");
        assert_eq!(waiting_id("sip:abc@b"), "c2lwOmFiY0Bi");
    }

    #[test]
    fn status_names() {
        assert_eq!(status_name(1), "active");
        assert_eq!(status_name(2), "pending");
        assert_eq!(status_name(3), "terminated");
        assert_eq!(status_name(4), "waiting");
        assert_eq!(status_name(5), "active");
    }
}
