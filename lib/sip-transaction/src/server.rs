//! Server transactions (RFC 3261 §17.2, RFC 6026): requests in, responses out.
//!
//! ```text
//!  INVITE:      Proceeding --2xx--> Accepted (Timer L) --> gone
//!                  |
//!                  +--3xx-6xx--> Completed (Timers G, H) --ACK--> Confirmed (Timer I) --> gone
//!                                   +--Timer H: AckTimeout
//!  non-INVITE:  Trying --1xx--> Proceeding --final--> Completed (Timer J) --> gone
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_message::{Message, Method, ReplyOptions, write_reply};

use crate::key::{self, RequestHead, ToTag};
use crate::layer::{Role, Side, TransactionLayer};
use crate::timer::Timer;
use crate::{Event, Reliability, RequestEvent, TxId};

/// State of a server transaction (RFC 3261 Figures 7 and 8, RFC 6026). A terminated
/// transaction has no state: it is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerState {
    /// Non-INVITE received, no response sent yet.
    Trying,
    /// A provisional response was sent (an INVITE starts here).
    Proceeding,
    /// A final response was sent (3xx–6xx for INVITE); retransmissions get it again.
    Completed,
    /// INVITE only: the ACK of the 3xx–6xx arrived.
    Confirmed,
    /// INVITE only: a 2xx was sent (RFC 6026); retransmitted INVITEs are absorbed.
    Accepted,
}

/// The server side of a transaction.
pub(crate) struct ServerTx {
    pub(crate) state: ServerState,
    /// The last response sent, to answer retransmissions and for Timer G.
    pub(crate) last_response: Option<Bytes>,
    /// The current Timer G interval.
    pub(crate) interval: Duration,
    /// RFC 2543 INVITE only: the To-tag of the final response, which the ACK must carry.
    pub(crate) final_to_tag: Option<Box<[u8]>>,
    pub(crate) rfc2543: bool,
    /// Counted against `Config::max_completed`.
    pub(crate) in_completed: bool,
}

impl ServerTx {
    fn new(state: ServerState, rfc2543: bool) -> Self {
        ServerTx {
            state,
            last_response: None,
            interval: Duration::ZERO,
            final_to_tag: None,
            rfc2543,
            in_completed: false,
        }
    }
}

impl<D: Clone> TransactionLayer<D> {
    /// Matches a request received from `src` to a server transaction (RFC 3261 §17.2.3) and
    /// says what the TU has to do with it.
    ///
    /// A new request (other than ACK) creates a server transaction; the TU answers it with
    /// [`send_response`](TransactionLayer::send_response). A retransmission is absorbed and
    /// answered with the last response; the ACK of a 3xx–6xx is absorbed; any other ACK goes
    /// to the TU.
    pub fn receive_request(&mut self, now: Instant, msg: &Message<'_>, src: D, rel: Reliability) -> RequestEvent<D> {
        let head = match RequestHead::parse(msg) {
            Ok(head) => head,
            Err(why) => return self.unmatchable(why),
        };
        match head.method {
            Method::Ack => self.receive_ack(now, msg, &head),
            Method::Cancel => self.receive_cancel(msg, &head, src, rel),
            _ => self.receive_other(msg, &head, src, rel),
        }
    }

    /// Sends a response in server transaction `tx` and returns what to send now; `None` when
    /// the transaction is gone or the response must not be sent: a second final response,
    /// or anything after the final but a further 2xx to INVITE (RFC 3261 §17.2.2; RFC 6026:
    /// a proxy forwards every 2xx).
    ///
    /// `status` is the status code of `bytes`. A final response completes the transaction:
    /// over an unreliable transport it then lives on for 64*T1 (Timer J, L or H) to answer
    /// retransmissions, and an INVITE's 3xx–6xx is retransmitted (Timer G) until the ACK.
    pub fn send_response(&mut self, now: Instant, tx: TxId, status: u16, bytes: Bytes) -> Option<(D, Bytes)> {
        let t = self.txs.get_mut(tx)?;
        let Role::Server(s) = &mut t.role else { return None };
        let (invite, reliable) = (t.invite, t.reliable);
        let out = (t.dest.clone(), bytes.clone());
        let t1 = self.config.t1;
        let provisional = status < 200;
        let success = (200..300).contains(&status);
        match (invite, s.state) {
            (false, ServerState::Trying | ServerState::Proceeding) => {
                s.last_response = Some(bytes);
                if provisional {
                    s.state = ServerState::Proceeding;
                } else {
                    s.state = ServerState::Completed;
                    if reliable {
                        // §17.2.2: Timer J is zero over reliable transports.
                        self.terminate(tx);
                    } else {
                        self.arm(tx, now, t1.saturating_mul(64), Timer::J);
                        self.mark_completed(tx);
                    }
                }
            }
            (true, ServerState::Proceeding) if provisional => s.last_response = Some(bytes),
            (true, ServerState::Proceeding) if success => {
                // RFC 6026: the TU retransmits the 2xx, not the transaction, so the
                // response need not be kept.
                s.state = ServerState::Accepted;
                s.last_response = None;
                self.arm(tx, now, t1.saturating_mul(64), Timer::L);
                self.mark_completed(tx);
            }
            (true, ServerState::Proceeding) => {
                s.state = ServerState::Completed;
                if s.rfc2543 {
                    s.final_to_tag = to_tag_of(&bytes);
                }
                s.last_response = Some(bytes);
                s.interval = t1;
                if !reliable {
                    self.arm(tx, now, t1, Timer::G);
                }
                self.arm(tx, now, t1.saturating_mul(64), Timer::H);
                self.mark_completed(tx);
            }
            (true, ServerState::Accepted) if success => {}
            _ => return None,
        }
        Some(out)
    }

    /// The state of server transaction `tx`; `None` if it is gone or a client transaction.
    pub fn server_state(&self, tx: TxId) -> Option<ServerState> {
        match &self.txs.get(tx)?.role {
            Role::Server(s) => Some(s.state),
            Role::Client(_) => None,
        }
    }

    fn unmatchable(&mut self, why: &'static str) -> RequestEvent<D> {
        self.stats.unmatchable += 1;
        RequestEvent::Unmatchable(why)
    }

    /// Writes the key of `msg` (as `method`) into `key_buf` and looks it up.
    fn lookup(
        &mut self,
        msg: &Message<'_>,
        head: &RequestHead<'_>,
        method: Method<'_>,
        to_tag: ToTag,
    ) -> Result<Option<TxId>, &'static str> {
        let mut buf = std::mem::take(&mut self.key_buf);
        let result = key::server(&mut buf, msg, head, method.as_str(), to_tag);
        let found = result.map(|()| self.find(Side::Server, &buf));
        self.key_buf = buf;
        found
    }

    fn receive_other(
        &mut self,
        msg: &Message<'_>,
        head: &RequestHead<'_>,
        src: D,
        rel: Reliability,
    ) -> RequestEvent<D> {
        match self.lookup(msg, head, head.method, ToTag::Own) {
            Err(why) => self.unmatchable(why),
            Ok(Some(id)) => self.retransmission(id, src),
            Ok(None) => {
                let invite = head.method == Method::Invite;
                let rfc2543 = head.rfc3261_branch().is_none();
                let state = if invite { ServerState::Proceeding } else { ServerState::Trying };
                let id = self.insert(Side::Server, src, rel, invite, Role::Server(ServerTx::new(state, rfc2543)));
                if invite && self.config.auto_100_trying {
                    self.send_100_trying(id, msg);
                }
                RequestEvent::New(id)
            }
        }
    }

    /// RFC 3261 §17.2.1: the INVITE server transaction answers 100 itself, so that the client
    /// stops retransmitting while the TU works.
    fn send_100_trying(&mut self, id: TxId, msg: &Message<'_>) {
        let mut out = Vec::with_capacity(msg.buf().len().min(1024));
        if write_reply(&mut out, msg, 100, "Trying", &ReplyOptions::default()).is_err() {
            return;
        }
        let bytes = Bytes::from(out);
        if let Some(tx) = self.txs.get_mut(id)
            && let Role::Server(s) = &mut tx.role
        {
            s.last_response = Some(bytes.clone());
        }
        self.queue_transmit(id, bytes);
    }

    /// A request matched server transaction `id`: absorb it and resend the last response.
    fn retransmission(&mut self, id: TxId, src: D) -> RequestEvent<D> {
        self.stats.absorbed += 1;
        let Some(tx) = self.txs.get(id) else { return RequestEvent::Retransmission(None) };
        let Role::Server(s) = &tx.role else { return RequestEvent::Retransmission(None) };
        let resend = match s.state {
            // RFC 3261 §17.2.1, §17.2.2: the last provisional or the final goes out again,
            // to where the retransmission came from.
            ServerState::Proceeding | ServerState::Completed => s.last_response.clone(),
            // Trying: nothing sent yet. Confirmed: the client has the final. Accepted: the
            // TU retransmits its 2xx itself (RFC 6026).
            ServerState::Trying | ServerState::Confirmed | ServerState::Accepted => None,
        };
        RequestEvent::Retransmission(resend.map(|b| (src, b)))
    }

    fn receive_ack(&mut self, now: Instant, msg: &Message<'_>, head: &RequestHead<'_>) -> RequestEvent<D> {
        // §17.2.3: an ACK matches the INVITE transaction.
        let found = match self.lookup(msg, head, Method::Invite, ToTag::Own) {
            Err(why) => return self.unmatchable(why),
            Ok(found) => found,
        };
        let found = match found {
            Some(id) => Some(id),
            // RFC 2543: the ACK of an initial INVITE carries the To-tag of our final
            // response, the INVITE had none; the tag must be the response's.
            None if head.rfc3261_branch().is_none() => {
                let ack_tag = msg.to().ok().and_then(|t| t.tag()).unwrap_or_default();
                match self.lookup(msg, head, Method::Invite, ToTag::Empty) {
                    Ok(Some(id)) if self.final_to_tag_matches(id, ack_tag) => Some(id),
                    _ => None,
                }
            }
            None => None,
        };
        let Some(id) = found else { return RequestEvent::AckToTu };
        let Some(tx) = self.txs.get_mut(id) else { return RequestEvent::AckToTu };
        let reliable = tx.reliable;
        let Role::Server(s) = &mut tx.role else { return RequestEvent::AckToTu };
        match s.state {
            ServerState::Completed => {
                // §17.2.1: Confirmed; Timer I absorbs retransmitted ACKs (zero if reliable).
                s.state = ServerState::Confirmed;
                s.last_response = None;
                self.disarm_all(id);
                if reliable {
                    self.terminate(id);
                } else {
                    self.arm(id, now, self.config.t4, Timer::I);
                }
                RequestEvent::AckAbsorbed
            }
            ServerState::Confirmed => {
                self.stats.absorbed += 1;
                RequestEvent::AckAbsorbed
            }
            // An ACK in Accepted (a 2xx ACK reusing the INVITE's branch) belongs to the TU
            // (RFC 6026); in Proceeding it acknowledges nothing we sent.
            _ => RequestEvent::AckToTu,
        }
    }

    fn final_to_tag_matches(&self, id: TxId, ack_tag: &str) -> bool {
        match self.txs.get(id).map(|t| &t.role) {
            Some(Role::Server(s)) => s.final_to_tag.as_deref().is_none_or(|t| t == ack_tag.as_bytes()),
            _ => false,
        }
    }

    fn receive_cancel(
        &mut self,
        msg: &Message<'_>,
        head: &RequestHead<'_>,
        src: D,
        rel: Reliability,
    ) -> RequestEvent<D> {
        match self.lookup(msg, head, Method::Cancel, ToTag::Own) {
            Err(why) => self.unmatchable(why),
            Ok(Some(id)) => self.retransmission(id, src),
            Ok(None) => {
                let rfc2543 = head.rfc3261_branch().is_none();
                let state = Role::Server(ServerTx::new(ServerState::Trying, rfc2543));
                let cancel = self.insert(Side::Server, src, rel, false, state);
                // §9.2: the INVITE is found with the §17.2.3 rules, its method put in place
                // of CANCEL; the CANCEL copies Request-URI, Via, To, From, Call-ID and CSeq
                // number from it.
                let invite = self.lookup(msg, head, Method::Invite, ToTag::Own).ok().flatten();
                RequestEvent::Cancel { cancel, invite }
            }
        }
    }

    /// A timer of server transaction `id` fired (its slot is already cleared).
    pub(crate) fn server_timer(&mut self, now: Instant, id: TxId, timer: Timer) {
        let Some(tx) = self.txs.get_mut(id) else { return };
        let Role::Server(s) = &mut tx.role else { return };
        match timer {
            Timer::G => {
                if s.state != ServerState::Completed {
                    return;
                }
                // §17.2.1: Timer G doubles up to T2.
                s.interval = s.interval.saturating_mul(2).min(self.config.t2);
                let next = s.interval;
                if let Some(response) = s.last_response.clone() {
                    self.stats.retransmitted += 1;
                    self.queue_transmit(id, response);
                }
                self.arm(id, now, next, Timer::G);
            }
            Timer::H => {
                self.stats.timeouts += 1;
                self.events.push_back(Event::AckTimeout(id));
                self.terminate(id);
            }
            _ => self.terminate(id),
        }
    }
}

/// The To-tag of a response the TU sends (RFC 2543 ACK matching).
fn to_tag_of(response: &[u8]) -> Option<Box<[u8]>> {
    let parsed = sip_message::parse(response).ok()?;
    let msg = Message::new(response, &parsed);
    let to = msg.to().ok()?;
    Some(to.tag()?.as_bytes().into())
}
