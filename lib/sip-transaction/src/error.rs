//! Why the TU's request could not start a client transaction.

use sip_message::{HeaderName, ParseError};

/// Why [`TransactionLayer::send_request`](crate::TransactionLayer::send_request) refused a
/// request. All of these are bugs in the TU, never peer input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// The bytes do not parse as a SIP message.
    #[error("request does not parse: {0}")]
    Parse(ParseError),
    /// The bytes are a response.
    #[error("not a request")]
    NotARequest,
    /// ACK is not sent in a client transaction (RFC 3261 §17.1.1.3: the transaction sends the
    /// ACK of a non-2xx itself; the ACK of a 2xx is the TU's, sent without a transaction).
    #[error("ACK does not start a client transaction")]
    Ack,
    /// No top Via, or its branch lacks the RFC 3261 magic cookie `z9hG4bK` (§8.1.1.7).
    #[error("top Via has no branch starting with z9hG4bK")]
    BadBranch,
    /// CSeq is missing or malformed, or its method differs from the request method.
    #[error("CSeq missing, malformed or not matching the method")]
    BadCSeq,
    /// A header every request needs (From, To, Call-ID) is missing.
    #[error("request has no {0} header")]
    MissingHeader(HeaderName),
    /// A client transaction with this branch and method already exists.
    #[error("a client transaction with this branch and method exists")]
    DuplicateBranch,
}
