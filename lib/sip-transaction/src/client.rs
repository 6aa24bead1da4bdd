//! Client transactions (RFC 3261 §17.1, RFC 6026): requests out, responses in.
//!
//! ```text
//!  INVITE:      Calling --1xx--> Proceeding --2xx--> Accepted (Timer M) --> gone
//!                  |  \___________________________3xx-6xx: send ACK
//!                  |                               v
//!                  +--Timer B: Timeout          Completed (Timer D) --> gone
//!  non-INVITE:  Trying --1xx--> Proceeding --final--> Completed (Timer K) --> gone
//!                  +---------------+--Timer F: Timeout
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_message::{HeaderName, Message, Method};

use crate::layer::{Role, Side, TransactionLayer};
use crate::timer::Timer;
use crate::{Reliability, ResponseEvent, TxError, TxId, compose, key};

/// State of a client transaction (RFC 3261 Figures 5 and 6, RFC 6026). A terminated
/// transaction has no state: it is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// INVITE sent, nothing received yet (Timers A and B run).
    Calling,
    /// Non-INVITE sent, nothing received yet (Timers E and F run).
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived (a 3xx–6xx for INVITE); retransmissions of it are absorbed.
    Completed,
    /// A 2xx to INVITE arrived (RFC 6026); further 2xx are passed up.
    Accepted,
}

/// The client side of a transaction.
pub(crate) struct ClientTx {
    pub(crate) state: ClientState,
    /// The request as sent, for retransmission and to derive ACK and CANCEL from.
    pub(crate) request: Bytes,
    /// The current retransmission interval (Timers A and E).
    pub(crate) interval: Duration,
    /// The ACK sent for a 3xx–6xx, re-sent when the final is retransmitted.
    pub(crate) ack: Option<Bytes>,
}

impl<D: Clone> TransactionLayer<D> {
    /// Starts a client transaction for `request` and returns its id and the message to send
    /// now.
    ///
    /// The request must be complete, its top Via carrying a unique branch with the magic
    /// cookie (RFC 3261 §8.1.1.7); the layer parses it to learn branch, method and CSeq. Over
    /// an unreliable transport the layer retransmits it (Timer A / E, via
    /// [`poll_transmit`](TransactionLayer::poll_transmit)); without a final response in 64*T1
    /// it reports [`Event::Timeout`](crate::Event::Timeout).
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Bytes,
        dest: D,
        rel: Reliability,
    ) -> Result<(TxId, (D, Bytes)), TxError> {
        let parsed = sip_message::parse(&request).map_err(TxError::Parse)?;
        let msg = Message::new(&request, &parsed);
        let method = msg.method().ok_or(TxError::NotARequest)?;
        if method == Method::Ack {
            return Err(TxError::Ack);
        }
        let via = msg.top_via().map_err(|_| TxError::BadBranch)?;
        let branch = via.branch().filter(|b| b.len() > key::COOKIE.len() && b.starts_with(key::COOKIE));
        let branch = branch.ok_or(TxError::BadBranch)?;
        if msg.cseq().map_err(|_| TxError::BadCSeq)?.method != method {
            return Err(TxError::BadCSeq);
        }
        for name in [HeaderName::FROM, HeaderName::TO, HeaderName::CALL_ID] {
            msg.header(name).ok_or(TxError::MissingHeader(name))?;
        }
        let mut buf = std::mem::take(&mut self.key_buf);
        key::client(&mut buf, branch, method.as_str());
        let duplicate = self.find(Side::Client, &buf).is_some();
        self.key_buf = buf;
        if duplicate {
            return Err(TxError::DuplicateBranch);
        }

        let invite = method == Method::Invite;
        let t1 = self.config.t1;
        let state = if invite { ClientState::Calling } else { ClientState::Trying };
        let role = Role::Client(ClientTx { state, request: request.clone(), interval: t1, ack: None });
        let id = self.insert(Side::Client, dest.clone(), rel, invite, role);
        let (retransmit, timeout) = if invite { (Timer::A, Timer::B) } else { (Timer::E, Timer::F) };
        if rel == Reliability::Unreliable {
            self.arm(id, now, t1, retransmit);
        }
        self.arm(id, now, t1.saturating_mul(64), timeout);
        Ok((id, (dest, request)))
    }

    /// Matches a response to its client transaction (RFC 3261 §17.1.3: top Via branch and
    /// CSeq method) and advances it. A 3xx–6xx to INVITE makes the layer send the ACK itself.
    ///
    /// The host has already checked that the top Via sent-by is its own (§18.1.2).
    pub fn receive_response(&mut self, now: Instant, msg: &Message<'_>) -> ResponseEvent {
        let Some((id, status)) = self.match_response(msg) else {
            self.stats.stray += 1;
            return ResponseEvent::Stray;
        };
        let Some(tx) = self.txs.get_mut(id) else { return ResponseEvent::Stray };
        let Role::Client(c) = &mut tx.role else { return ResponseEvent::Stray };
        let (invite, reliable, state) = (tx.invite, tx.reliable, c.state);
        let live = matches!(state, ClientState::Calling | ClientState::Trying | ClientState::Proceeding);

        if status < 200 {
            if !live {
                self.stats.absorbed += 1;
                return ResponseEvent::Absorbed;
            }
            c.state = ClientState::Proceeding;
            if state == ClientState::Calling {
                // RFC 3261 §17.1.1.2: no more retransmissions, and Timer B only runs in
                // Calling; from here on the TU (Timer C, CANCEL) decides how long to wait.
                self.disarm_all(id);
            }
            return ResponseEvent::Provisional(id);
        }

        let success = status < 300;
        match (invite, live, success, state) {
            (true, true, true, _) => {
                // RFC 6026: Accepted, so that further 2xx reach the TU.
                c.state = ClientState::Accepted;
                self.disarm_all(id);
                self.arm(id, now, self.config.t1.saturating_mul(64), Timer::M);
                ResponseEvent::Final(id)
            }
            (true, true, false, _) => {
                c.state = ClientState::Completed;
                let ack = Self::build_ack(&c.request, msg);
                c.ack = ack.clone();
                self.disarm_all(id);
                if let Some(ack) = ack {
                    self.queue_transmit(id, ack);
                }
                if reliable {
                    self.terminate(id);
                } else {
                    self.arm(id, now, self.config.timer_d, Timer::D);
                }
                ResponseEvent::Final(id)
            }
            (true, false, true, ClientState::Accepted) => ResponseEvent::Additional2xx(id),
            (true, false, false, ClientState::Completed) => {
                // §17.1.1.2: a retransmitted final is answered with the same ACK.
                if let Some(ack) = c.ack.clone() {
                    self.queue_transmit(id, ack);
                }
                self.stats.absorbed += 1;
                ResponseEvent::Absorbed
            }
            (false, true, _, _) => {
                c.state = ClientState::Completed;
                self.disarm_all(id);
                if reliable {
                    self.terminate(id);
                } else {
                    self.arm(id, now, self.config.t4, Timer::K);
                }
                ResponseEvent::Final(id)
            }
            _ => {
                self.stats.absorbed += 1;
                ResponseEvent::Absorbed
            }
        }
    }

    /// Builds the CANCEL for INVITE client transaction `invite` (RFC 3261 §9.1): same
    /// Request-URI, Call-ID, From, To, CSeq number, single top Via (branch included) and Route
    /// headers. The TU sends it with [`send_request`](TransactionLayer::send_request), to the
    /// same destination.
    ///
    /// `None` unless `invite` is an INVITE client transaction without a final response.
    /// RFC 3261 §9.1 also says not to send the CANCEL before a provisional response arrived
    /// ([`ClientState::Proceeding`]); that wait is the TU's.
    pub fn cancel_request(&self, invite: TxId) -> Option<Bytes> {
        let tx = self.txs.get(invite)?;
        let Role::Client(c) = &tx.role else { return None };
        if !tx.invite || !matches!(c.state, ClientState::Calling | ClientState::Proceeding) {
            return None;
        }
        let parsed = sip_message::parse(&c.request).ok()?;
        compose::cancel(&Message::new(&c.request, &parsed)).map(Bytes::from)
    }

    /// The state of client transaction `tx`; `None` if it is gone or a server transaction.
    pub fn client_state(&self, tx: TxId) -> Option<ClientState> {
        match &self.txs.get(tx)?.role {
            Role::Client(c) => Some(c.state),
            Role::Server(_) => None,
        }
    }

    fn match_response(&mut self, msg: &Message<'_>) -> Option<(TxId, u16)> {
        let status = msg.status_code()?;
        let via = msg.top_via().ok()?;
        let branch = via.branch()?;
        let cseq = msg.cseq().ok()?;
        let mut buf = std::mem::take(&mut self.key_buf);
        key::client(&mut buf, branch, cseq.method.as_str());
        let id = self.find(Side::Client, &buf);
        self.key_buf = buf;
        Some((id?, status))
    }

    fn build_ack(request: &Bytes, response: &Message<'_>) -> Option<Bytes> {
        let parsed = sip_message::parse(request).ok()?;
        compose::ack(&Message::new(request, &parsed), response.header(HeaderName::TO)).map(Bytes::from)
    }

    /// A timer of client transaction `id` fired (its slot is already cleared).
    pub(crate) fn client_timer(&mut self, now: Instant, id: TxId, timer: Timer) {
        let Some(tx) = self.txs.get_mut(id) else { return };
        let Role::Client(c) = &mut tx.role else { return };
        match timer {
            Timer::A | Timer::E => {
                let next = match (timer, c.state) {
                    // §17.1.1.2: Timer A doubles without a cap.
                    (Timer::A, ClientState::Calling) => c.interval.saturating_mul(2),
                    // §17.1.2.2: Timer E doubles up to T2; in Proceeding it is T2.
                    (Timer::E, ClientState::Trying) => c.interval.saturating_mul(2).min(self.config.t2),
                    (Timer::E, ClientState::Proceeding) => self.config.t2,
                    _ => return,
                };
                c.interval = next;
                let request = c.request.clone();
                self.stats.retransmitted += 1;
                self.queue_transmit(id, request);
                self.arm(id, now, next, timer);
            }
            Timer::B | Timer::F => {
                self.stats.timeouts += 1;
                self.events.push_back(crate::Event::Timeout(id));
                self.terminate(id);
            }
            _ => self.terminate(id),
        }
    }
}
