//! Zero-copy SIP message parsing (RFC 3261) and a small writer.
//!
//! The design separates an **index** from a **view**:
//!
//! * [`parse`] turns a buffer into a [`ParsedMessage`]: a [`StartLine`], one [`HeaderEntry`]
//!   per header line and the body range, all plain `#[repr(C)]` byte ranges into the buffer.
//!   The index owns no text and, for messages with up to 32 header lines, no heap memory; it
//!   is what crosses the plugin ABI.
//! * [`Message`] joins a buffer and an index ([`Message::new`], or [`Message::from_parts`]
//!   when the parts came across an FFI boundary) and offers typed accessors that parse header
//!   values on demand and borrow from the buffer.
//!
//! [`Message::validate`] applies the checks RFC 3261 requires before a request is processed,
//! [`Message::check_replyable`] says whether a 400 can be sent at all, [`frame_stream`] cuts
//! messages out of a TCP/TLS byte stream, and [`write_reply`] / [`write_request`] write
//! messages into a reusable `Vec<u8>`.
//!
//! Nothing here panics on peer input: all slicing goes through `get`, and the crate is tested
//! against the RFC 4475 and RFC 5118 torture messages and random inputs.
//!
//! ```
//! let buf = b"PUBLISH sip:alice@example.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:alice@example.com>;tag=1\r\n\
//! To: <sip:alice@example.com>\r\nCall-ID: c1\r\nCSeq: 1 PUBLISH\r\no: presence\r\n\
//! Expires: 3600\r\nContent-Length: 0\r\n\r\n";
//! let index = sip_message::parse(buf)?;
//! let msg = sip_message::Message::new(buf, &index);
//! msg.validate()?;
//! assert_eq!(msg.event()?.map(|e| e.package()), Some("presence"));
//! assert_eq!(msg.expires()?, Some(3600));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]
// Peer input must never panic the server: no unwrap/expect/panic/indexing outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod error;
mod framing;
mod header_name;
pub mod headers;
mod message;
mod method;
mod parse;
mod scan;
pub mod uri;
mod validate;
mod writer;

pub use error::{HeaderError, HeaderErrorKind, ParseError, ParseErrorKind};
pub use framing::{Frame, FrameError, frame_stream};
pub use header_name::HeaderName;
pub use message::{ListValues, Message, TypedList};
pub use method::Method;
pub use parse::{HeaderEntry, INLINE_HEADERS, ParsedMessage, StartLine, parse};
pub use scan::{percent_decode, unfold, unquote};
pub use uri::{Host, SipUri};
pub use validate::ValidationError;
pub use writer::{Body, ReplyOptions, RequestSpec, WriteError, push_unfolded, write_reply, write_request};
