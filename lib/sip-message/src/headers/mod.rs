//! Typed header values, parsed lazily and zero-copy from a header value slice.
//!
//! Each type has a `parse(&[u8]) -> Option<Self>` constructor that checks the header's grammar;
//! [`Message`](crate::Message) wraps them into accessors that report failures as
//! [`HeaderError`](crate::HeaderError).

mod content_type;
mod cseq;
mod event;
mod name_addr;
mod params;
mod via;

pub use content_type::MediaType;
pub use cseq::CSeq;
pub use event::{Event, SubState, SubscriptionState};
pub use name_addr::NameAddr;
pub use params::{ParamIter, Params};
pub use via::Via;

/// One Contact value: either the `*` of a REGISTER that removes all bindings, or an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *`
    Star,
    /// An address with its parameters (`expires`, `q`, ...).
    Address(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// Parses one Contact value.
    pub fn parse(s: &'a [u8]) -> Option<Contact<'a>> {
        if crate::scan::trim_lws(s) == b"*" { Some(Contact::Star) } else { NameAddr::parse(s).map(Contact::Address) }
    }

    /// The address, unless this is `*`.
    pub fn address(&self) -> Option<&NameAddr<'a>> {
        match self {
            Contact::Star => None,
            Contact::Address(a) => Some(a),
        }
    }
}
