//! Instant messages between SIP and XMPP (Kamailio's `xmpp_send_message()` and the SIP MESSAGE
//! it makes of an XMPP `<message>`, reference §9.1).

use xmpp_stream::escape;

/// The text of a SIP MESSAGE body: `text/plain` as it is; `message/cpim` (RFC 3862) unwrapped
/// to its content. Err for other types and for bodies that are not UTF-8.
pub fn body_text<'a>(content_type: &str, body: &'a [u8]) -> Result<&'a str, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the MESSAGE body is not UTF-8".to_string())?;
    let ct = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match ct.as_str() {
        "text/plain" | "" => Ok(text),
        "message/cpim" => {
            // CPIM headers, a blank line, the MIME headers of the content, a blank line, the
            // content.
            let mut parts = text.splitn(3, "\r\n\r\n");
            match (parts.next(), parts.next(), parts.next()) {
                (Some(_), Some(_), Some(content)) => Ok(content),
                _ => Err("a message/cpim body without content".into()),
            }
        }
        other => Err(format!("MESSAGE bodies of type {other} cannot go to XMPP (text/plain or message/cpim)")),
    }
}

/// The `<message>` stanza of `xmpp_send_message()`.
pub fn stanza(id: &str, from: &str, to: &str, text: &str) -> String {
    format!(
        "<message id='{}' from='{}' to='{}' type='chat'><body>{}</body></message>",
        escape(id),
        escape(from),
        escape(to),
        escape(text)
    )
}

/// What a received `<message>` carries for a SIP MESSAGE: (from, to, body); None for errors
/// and messages without a body (chat states, receipts).
pub fn read(xml: &str) -> Option<(String, String, String)> {
    xmpp_stream::parse_stanza(xml, crate::conn::NS, |n| {
        if n.attribute("type") == Some("error") {
            return None;
        }
        let body = xmpp_stream::child_text(n, "body")?;
        Some((n.attribute("from")?.to_string(), n.attribute("to")?.to_string(), body.to_string()))
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_bodies() {
        assert_eq!(body_text("text/plain; charset=UTF-8", b"hi <b>").unwrap(), "hi <b>");
        let cpim = b"From: <sip:a@b>\r\nTo: <sip:c@d>\r\nDateTime: 2026-01-01T00:00:00Z\r\n\r\nContent-Type: text/plain\r\n\r\nhello\r\n\r\nworld";
        assert_eq!(body_text("Message/CPIM", cpim).unwrap(), "hello\r\n\r\nworld");
        assert!(body_text("message/cpim", b"From: x\r\n\r\nonly headers").is_err());
        assert!(body_text("application/im-iscomposing+xml", b"<x/>").is_err());
        assert!(body_text("text/plain", &[0xff, 0xfe]).is_err());
        assert_eq!(
            stanza("t1", "a*s@gw", "b@x", "1 < 2 & 'q'"),
            "<message id='t1' from='a*s@gw' to='b@x' type='chat'><body>1 &lt; 2 &amp; &apos;q&apos;</body></message>"
        );
    }

    #[test]
    fn xmpp_messages() {
        let m = "<message from='b@x/r' to='a*s@gw' type='chat'><body>hi &amp; bye</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>";
        assert_eq!(read(m), Some(("b@x/r".into(), "a*s@gw".into(), "hi & bye".into())));
        assert_eq!(
            read(
                "<message from='b@x/r' to='a*s@gw'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
            ),
            None
        );
        assert_eq!(read("<message from='b@x/r' to='a*s@gw' type='error'><body>x</body></message>"), None);
        assert_eq!(read("<message to='a*s@gw'><body>x</body></message>"), None);
        assert_eq!(read("<message><body>x</message>"), None);
    }
}
