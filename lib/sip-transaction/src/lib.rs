//! SIP transactions (RFC 3261 §17, with the RFC 6026 fixes) as a sans-I/O state machine.
//!
//! [`TransactionLayer`] holds every client and server transaction of one endpoint. It never
//! touches a socket or the OS clock: the host feeds it what arrived
//! ([`receive_request`](TransactionLayer::receive_request),
//! [`receive_response`](TransactionLayer::receive_response)), what the transaction user (TU)
//! wants to send ([`send_request`](TransactionLayer::send_request),
//! [`send_response`](TransactionLayer::send_response)), failures
//! ([`transport_error`](TransactionLayer::transport_error)) and the passage of time
//! ([`handle_timeout`](TransactionLayer::handle_timeout)); every call takes `now`. It then asks
//! what to do: [`poll_transmit`](TransactionLayer::poll_transmit) (retransmissions and ACKs),
//! [`poll_event`](TransactionLayer::poll_event) (timeouts, terminations) and
//! [`poll_timeout`](TransactionLayer::poll_timeout) (when to call `handle_timeout` next). This
//! is the shape of `quinn-proto`, and it makes the RFC timers testable without sleeping.
//!
//! `D` is the host's opaque destination (a socket address, a connection handle, ...): the
//! layer stores it with each transaction and hands it back with every message to send.
//!
//! The host drains [`poll_transmit`](TransactionLayer::poll_transmit) and
//! [`poll_event`](TransactionLayer::poll_event) after every call; both queues grow until it
//! does.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sip_transaction::{Config, Reliability, RequestEvent, TransactionLayer};
//!
//! let raw = b"MESSAGE sip:bob@example.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
//! From: <sip:alice@example.com>;tag=1928301774\r\nTo: <sip:bob@example.com>\r\n\
//! Call-ID: a84b4c76e66710\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
//! let peer: std::net::SocketAddr = "192.0.2.1:5060".parse()?;
//! let mut layer = TransactionLayer::new(Config::default());
//! let now = Instant::now();
//!
//! // A request arrives: new server transaction, handed to the TU.
//! let index = sip_message::parse(raw)?;
//! let msg = sip_message::Message::new(raw, &index);
//! let RequestEvent::New(tx) = layer.receive_request(now, &msg, peer, Reliability::Unreliable) else {
//!     unreachable!()
//! };
//! // The TU answers; the host sends what comes back.
//! let mut reply = Vec::new();
//! let opts = sip_message::ReplyOptions { to_tag: Some("x1"), ..Default::default() };
//! sip_message::write_reply(&mut reply, &msg, 200, "OK", &opts)?;
//! let (dest, bytes) = layer.send_response(now, tx, 200, reply.into()).unwrap();
//! assert_eq!(dest, peer);
//!
//! // The same request again (the 200 was lost): absorbed, answered with the same bytes.
//! match layer.receive_request(now, &msg, peer, Reliability::Unreliable) {
//!     RequestEvent::Retransmission(Some((_, again))) => assert_eq!(again, bytes),
//!     other => panic!("{other:?}"),
//! }
//!
//! // The host's loop: sleep until poll_timeout, then handle_timeout and drain the queues.
//! assert_eq!(layer.poll_timeout(), Some(now + Duration::from_secs(32))); // Timer J
//! layer.handle_timeout(now + Duration::from_secs(32));
//! while let Some((dest, bytes)) = layer.poll_transmit() { /* send */ }
//! while let Some(event) = layer.poll_event() { /* Terminated(tx) */ }
//! assert!(layer.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Matching
//!
//! * Server transactions (RFC 3261 §17.2.3): the top Via `branch` (when it carries the magic
//!   cookie `z9hG4bK`), the Via sent-by and the method, with ACK matching the INVITE and CANCEL
//!   having its own transaction; branch and host compare case-insensitively. Without the
//!   cookie the RFC 2543 rule applies: Request-URI, To-tag, From-tag, Call-ID, CSeq and the
//!   top Via, compared as written (retransmissions are byte copies).
//! * Client transactions (§17.1.3): the top Via branch of the response and the CSeq method.
//!
//! # Decisions worth knowing
//!
//! * **2xx to INVITE** (RFC 6026): both sides move to *Accepted* for 64*T1. A client
//!   transaction reports the first 2xx as [`ResponseEvent::Final`] and every further 2xx
//!   (retransmissions, other forks) as [`ResponseEvent::Additional2xx`], never absorbed: the
//!   UAC core re-sends its ACK, a proxy forwards them. A server transaction absorbs
//!   retransmitted INVITEs during Timer L (the TU, not the transaction, retransmits the 2xx)
//!   and passes through further 2xx the TU sends.
//! * **ACK for 2xx** is end-to-end: it has its own branch, matches nothing and comes out as
//!   [`RequestEvent::AckToTu`]. The layer never builds it; it builds only the ACK for 3xx–6xx.
//! * **CANCEL** always gets its own server transaction, which the TU answers;
//!   [`RequestEvent::Cancel`] also names the INVITE server transaction it targets, in whatever
//!   state, or `None` (the TU answers 481, RFC 3261 §9.2, or a proxy forwards it).
//! * **INVITE client transactions in Proceeding have no timer** (RFC 3261 Figure 5: Timer B
//!   only runs in Calling). A proxy's Timer C or a UAC's give-up timer belongs to the TU, which
//!   sends a CANCEL ([`TransactionLayer::cancel_request`]) and, if even that goes unanswered,
//!   drops the transaction with [`TransactionLayer::abort`].
//! * **Server transactions answer retransmissions at the retransmission's source** (the `src`
//!   of that call), while timer-driven retransmissions go to the first request's source.
//! * **100 Trying** for INVITE is written by the layer when [`Config::auto_100_trying`] is set
//!   (RFC 3261 §17.2.1 requires it unless the TU answers within 200 ms).
//! * **Memory bound**: completed server transactions (kept only to absorb retransmissions) are
//!   capped at [`Config::max_completed`]; the oldest are evicted first and counted in
//!   [`Stats::evicted`]. Server transactions the TU has not answered are not capped: answering
//!   them is the TU's job.
//! * Nothing a peer sends can panic the layer: malformed requests are
//!   [`RequestEvent::Unmatchable`], malformed responses [`ResponseEvent::Stray`].

#![warn(missing_docs)]
#![forbid(unsafe_code)]
// Peer input must never panic the server: no unwrap/expect/panic/indexing outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod client;
mod compose;
mod error;
mod key;
mod layer;
mod server;
mod slab;
mod timer;

use std::time::Duration;

pub use client::ClientState;
pub use error::TxError;
pub use layer::TransactionLayer;
pub use server::ServerState;

/// Timer values and limits (RFC 3261 §17.1.1.1, Table 4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// T1, the round-trip estimate: first retransmission interval; 64*T1 is the transaction
    /// timeout (Timers B, F, H, J, L, M). Default 500 ms.
    pub t1: Duration,
    /// T2, the cap on non-INVITE request and INVITE final response retransmission intervals.
    /// Default 4 s.
    pub t2: Duration,
    /// T4, the time the network may hold a message: Timers I and K over unreliable transports.
    /// Default 5 s.
    pub t4: Duration,
    /// Timer D, how long an INVITE client transaction absorbs retransmitted non-2xx finals over
    /// unreliable transports (RFC 3261: at least 32 s). Default 32 s.
    pub timer_d: Duration,
    /// Cap on server transactions kept only to absorb retransmissions (Completed, Confirmed,
    /// Accepted); beyond it the oldest are evicted. Default 200 000.
    pub max_completed: usize,
    /// Whether a new INVITE server transaction answers `100 Trying` by itself (RFC 3261
    /// §17.2.1). The 100 copies the request's Via values unchanged (no `received`/`rport`).
    /// Default true.
    pub auto_100_trying: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
            max_completed: 200_000,
            auto_100_trying: true,
        }
    }
}

/// Whether the transport retransmits by itself: decides request/response retransmission and
/// zeroes Timers D, I, J and K (RFC 3261 §17).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reliability {
    /// TCP, TLS, SCTP, WebSocket.
    Reliable,
    /// UDP.
    Unreliable,
}

/// Identifies one transaction for as long as it lives; not reused for a long time after
/// (a slot index plus a generation counter).
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct TxId(u64);

impl TxId {
    /// The id as a number, e.g. for logs or a host-side map.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    pub(crate) fn new(index: u32, generation: u32) -> Self {
        TxId(u64::from(generation) << 32 | u64::from(index))
    }

    pub(crate) fn index(self) -> u32 {
        self.0 as u32
    }

    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// Something the TU should learn about, from [`TransactionLayer::poll_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// A client transaction got no final response in time (Timer B or F): the TU acts as if
    /// a 408 had arrived (RFC 3261 §8.1.3.1).
    Timeout(TxId),
    /// An INVITE server transaction sent a 3xx–6xx and no ACK came before Timer H (RFC 3261
    /// §17.2.1: "indicate to the TU that a transaction failure has occurred").
    AckTimeout(TxId),
    /// The host reported that it could not send for this transaction; it is terminated. For a
    /// client transaction the TU acts as if a 503 had arrived (RFC 3261 §8.1.3.1).
    TransportError(TxId),
    /// The transaction is gone (any reason, eviction included); its id will not be seen again.
    Terminated(TxId),
}

/// What [`TransactionLayer::receive_request`] made of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestEvent<D> {
    /// A new server transaction: hand the request to the TU, which answers it with
    /// [`TransactionLayer::send_response`].
    New(TxId),
    /// A retransmission, absorbed; send this (the last response, to the retransmission's
    /// source) if `Some`.
    Retransmission(Option<(D, bytes::Bytes)>),
    /// The ACK of a 3xx–6xx sent by an INVITE server transaction (or a retransmission of it).
    AckAbsorbed,
    /// An ACK that belongs to no transaction, in practice the end-to-end ACK of a 2xx: the TU
    /// (proxy or UAS core) handles it statelessly.
    AckToTu,
    /// A CANCEL: its own new server transaction `cancel`, which the TU must answer, and the
    /// INVITE server transaction it targets if one matches (RFC 3261 §9.2).
    Cancel {
        /// The CANCEL's own server transaction.
        cancel: TxId,
        /// The INVITE server transaction it cancels, in any state; `None` if unknown.
        invite: Option<TxId>,
    },
    /// The request cannot be matched (no usable top Via, CSeq, ...); the TU may answer 400
    /// statelessly or drop it. Carries the reason.
    Unmatchable(&'static str),
}

/// What [`TransactionLayer::receive_response`] made of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseEvent {
    /// A 1xx for this client transaction: pass it to the TU.
    Provisional(TxId),
    /// The first final response of this client transaction: pass it to the TU (exactly once
    /// per transaction).
    Final(TxId),
    /// A further 2xx to an INVITE in the Accepted state (a retransmission or another fork's
    /// answer; RFC 6026): pass it to the TU, which re-ACKs (UAC) or forwards it (proxy).
    Additional2xx(TxId),
    /// Matched a transaction but needs no action (a retransmitted final; the layer re-sent the
    /// ACK itself if one was due).
    Absorbed,
    /// Matches no client transaction (or is malformed); passed to the core (RFC 3261
    /// §18.1.2). Since the INVITE client transaction stays in Accepted for 64*T1 (RFC 6026),
    /// retransmitted 2xx come out as [`ResponseEvent::Additional2xx`] instead, so a stateful
    /// proxy may drop stray responses; a stateless one forwards them (§16.11).
    Stray,
}

/// Counters, for metrics. All monotonically increasing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Completed server transactions evicted because of [`Config::max_completed`].
    pub evicted: u64,
    /// Requests and responses re-sent on a retransmission timer (A, E, G).
    pub retransmitted: u64,
    /// Retransmitted requests and responses received and absorbed.
    pub absorbed: u64,
    /// Client transactions that timed out (B, F) and INVITE server transactions without ACK (H).
    pub timeouts: u64,
    /// Responses that matched no client transaction.
    pub stray: u64,
    /// Requests that could not be matched.
    pub unmatchable: u64,
}
