//! [`TransactionLayer`]: transaction storage, lookup, timers and the output queues shared by
//! the client side (`client.rs`) and the server side (`server.rs`).

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashTable;

use crate::client::ClientTx;
use crate::server::ServerTx;
use crate::slab::Slab;
use crate::timer::{Timer, TimerKey, Timers};
use crate::{Config, Event, Reliability, Stats, TxId};

/// All client and server transactions of one endpoint, driven by the host.
///
/// See the [crate documentation](crate) for the driving loop and the behaviour. Every
/// operation is O(1) or O(log n) in the number of transactions; per message the only
/// allocation is the key of a new transaction (plus amortized growth of the tables).
pub struct TransactionLayer<D: Clone> {
    pub(crate) config: Config,
    pub(crate) txs: Slab<Tx<D>>,
    /// Keys are peer-controlled, so they are hashed with the randomly keyed SipHash of
    /// `RandomState`: nobody can aim a flood of requests at one bucket.
    hasher: RandomState,
    client_keys: HashTable<(u64, TxId)>,
    server_keys: HashTable<(u64, TxId)>,
    pub(crate) timers: Timers,
    /// Server transactions kept only to absorb retransmissions, oldest first. Ids of
    /// transactions that ended meanwhile stay until popped or compacted away.
    completed: VecDeque<TxId>,
    completed_live: usize,
    pub(crate) transmits: VecDeque<(D, Bytes)>,
    pub(crate) events: VecDeque<Event>,
    /// Reused buffer for the key of the message at hand.
    pub(crate) key_buf: Vec<u8>,
    clients: usize,
    servers: usize,
    pub(crate) stats: Stats,
}

/// One transaction.
pub(crate) struct Tx<D> {
    pub(crate) key: Box<[u8]>,
    pub(crate) hash: u64,
    /// Where requests (client) or responses (server) go.
    pub(crate) dest: D,
    pub(crate) reliable: bool,
    pub(crate) invite: bool,
    /// The armed retransmission timer (A, E, G).
    pub(crate) retransmit: Option<TimerKey>,
    /// The armed lifetime timer (B, D, F, H, I, J, K, L, M).
    pub(crate) lifetime: Option<TimerKey>,
    pub(crate) role: Role,
}

/// The side-specific part of a transaction.
pub(crate) enum Role {
    Client(ClientTx),
    Server(ServerTx),
}

/// Which key table.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

impl<D> Tx<D> {
    fn slot(&mut self, timer: Timer) -> &mut Option<TimerKey> {
        if timer.slot() == 0 { &mut self.retransmit } else { &mut self.lifetime }
    }
}

impl<D: Clone> TransactionLayer<D> {
    /// An empty layer.
    pub fn new(config: Config) -> Self {
        TransactionLayer {
            config,
            txs: Slab::new(),
            hasher: RandomState::new(),
            client_keys: HashTable::new(),
            server_keys: HashTable::new(),
            timers: Timers::new(),
            completed: VecDeque::new(),
            completed_live: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            key_buf: Vec::with_capacity(128),
            clients: 0,
            servers: 0,
            stats: Stats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Number of live transactions: `(client, server)`.
    pub fn len(&self) -> (usize, usize) {
        (self.clients, self.servers)
    }

    /// Whether there are no transactions at all.
    pub fn is_empty(&self) -> bool {
        self.clients == 0 && self.servers == 0
    }

    /// Runs every timer due at `now`: retransmissions go to [`poll_transmit`], timeouts and
    /// terminations to [`poll_event`]. Call it at (or after) [`poll_timeout`].
    ///
    /// [`poll_transmit`]: TransactionLayer::poll_transmit
    /// [`poll_event`]: TransactionLayer::poll_event
    /// [`poll_timeout`]: TransactionLayer::poll_timeout
    pub fn handle_timeout(&mut self, now: Instant) {
        let limit = self.timers.seq();
        while let Some((id, timer, key)) = self.timers.pop_due(now, limit) {
            let Some(tx) = self.txs.get_mut(id) else { continue };
            let slot = tx.slot(timer);
            if *slot != Some(key) {
                continue;
            }
            *slot = None;
            if matches!(tx.role, Role::Client(_)) {
                self.client_timer(now, id, timer);
            } else {
                self.server_timer(now, id, timer);
            }
        }
    }

    /// The earliest deadline of any timer; `None` when no timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// The next message to send: request and response retransmissions, ACKs of non-2xx
    /// finals, automatic 100 Trying.
    pub fn poll_transmit(&mut self) -> Option<(D, Bytes)> {
        self.transmits.pop_front()
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The host could not send a message of transaction `tx`: the transaction ends with
    /// [`Event::TransportError`] then [`Event::Terminated`] (RFC 3261 §17.1.4, §17.2.4).
    /// Unknown ids are ignored. `now` is unused today; every input carries the time.
    pub fn transport_error(&mut self, now: Instant, tx: TxId) {
        let _ = now;
        if self.txs.get(tx).is_some() {
            self.events.push_back(Event::TransportError(tx));
            self.terminate(tx);
        }
    }

    /// The TU gives up on transaction `tx`: it ends at once with [`Event::Terminated`] and
    /// nothing more is sent for it. For instance an INVITE client transaction in Proceeding
    /// whose CANCEL went unanswered (RFC 3261 §16.8, Timer C). Unknown ids are ignored.
    pub fn abort(&mut self, tx: TxId) {
        self.terminate(tx);
    }

    /// Looks up the transaction whose key is `key`.
    pub(crate) fn find(&self, side: Side, key: &[u8]) -> Option<TxId> {
        let hash = self.hasher.hash_one(key);
        let table = if side == Side::Client { &self.client_keys } else { &self.server_keys };
        table.find(hash, |&(h, id)| h == hash && self.txs.get(id).is_some_and(|t| *t.key == *key)).map(|&(_, id)| id)
    }

    /// Creates a transaction under the key currently in `key_buf`.
    pub(crate) fn insert(&mut self, side: Side, dest: D, rel: Reliability, invite: bool, role: Role) -> TxId {
        let key: Box<[u8]> = self.key_buf.as_slice().into();
        let hash = self.hasher.hash_one(&*key);
        let reliable = rel == Reliability::Reliable;
        let id = self.txs.insert(Tx { key, hash, dest, reliable, invite, retransmit: None, lifetime: None, role });
        let table = match side {
            Side::Client => {
                self.clients += 1;
                &mut self.client_keys
            }
            Side::Server => {
                self.servers += 1;
                &mut self.server_keys
            }
        };
        table.insert_unique(hash, (hash, id), |&(h, _)| h);
        id
    }

    /// Arms `timer` of `id` to fire `after` from `now`, replacing the timer of its slot.
    pub(crate) fn arm(&mut self, id: TxId, now: Instant, after: Duration, timer: Timer) {
        let Some(tx) = self.txs.get_mut(id) else { return };
        let slot = tx.slot(timer);
        if let Some(old) = slot.take() {
            self.timers.cancel(old);
        }
        // Only an absurd configuration overflows `Instant`; then the timer never fires.
        if let Some(at) = now.checked_add(after) {
            *slot = Some(self.timers.arm(at, id, timer));
        }
    }

    /// Stops both timers of `id`.
    pub(crate) fn disarm_all(&mut self, id: TxId) {
        let Some(tx) = self.txs.get_mut(id) else { return };
        for key in [tx.retransmit.take(), tx.lifetime.take()].into_iter().flatten() {
            self.timers.cancel(key);
        }
    }

    /// Removes a transaction with its timers and key, and reports [`Event::Terminated`].
    pub(crate) fn terminate(&mut self, id: TxId) {
        self.disarm_all(id);
        let Some(tx) = self.txs.remove(id) else { return };
        let table = match &tx.role {
            Role::Client(_) => {
                self.clients -= 1;
                &mut self.client_keys
            }
            Role::Server(s) => {
                self.servers -= 1;
                if s.in_completed {
                    self.completed_live -= 1;
                }
                &mut self.server_keys
            }
        };
        if let Ok(entry) = table.find_entry(tx.hash, |&(_, i)| i == id) {
            entry.remove();
        }
        // Give a burst's table back once it is three quarters empty (amortized: each shrink
        // at least halves the capacity).
        if table.capacity() > 4096 && table.len() * 4 < table.capacity() {
            table.shrink_to(table.len() * 2, |&(h, _)| h);
        }
        self.events.push_back(Event::Terminated(id));
    }

    /// Counts server transaction `id` as kept only for retransmissions, and evicts the oldest
    /// such transactions beyond [`Config::max_completed`].
    pub(crate) fn mark_completed(&mut self, id: TxId) {
        let Some(Tx { role: Role::Server(s), .. }) = self.txs.get_mut(id) else { return };
        if s.in_completed {
            return;
        }
        s.in_completed = true;
        self.completed.push_back(id);
        self.completed_live += 1;
        while self.completed_live > self.config.max_completed {
            let Some(oldest) = self.completed.pop_front() else { break };
            if self.txs.get(oldest).is_some() {
                self.stats.evicted += 1;
                self.terminate(oldest);
            }
        }
        // Ids of transactions that ended on their own pile up at the front until eviction
        // reaches them; compact when they outnumber the live ones (amortized O(1)).
        if self.completed.len() > 2 * self.completed_live + 64 {
            let txs = &self.txs;
            self.completed.retain(|&id| txs.get(id).is_some());
            if self.completed.capacity() > 4 * self.completed.len() + 1024 {
                self.completed.shrink_to(2 * self.completed.len());
            }
        }
    }

    /// Sends `bytes` to the destination of `id` via the transmit queue.
    pub(crate) fn queue_transmit(&mut self, id: TxId, bytes: Bytes) {
        if let Some(tx) = self.txs.get(id) {
            self.transmits.push_back((tx.dest.clone(), bytes));
        }
    }

    #[cfg(test)]
    pub(crate) fn armed_timers(&self) -> usize {
        self.timers.len()
    }

    #[cfg(test)]
    pub(crate) fn completed_queue_len(&self) -> usize {
        self.completed.len()
    }
}

impl<D: Clone> std::fmt::Debug for TransactionLayer<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionLayer")
            .field("clients", &self.clients)
            .field("servers", &self.servers)
            .field("completed", &self.completed_live)
            .field("next_timeout", &self.timers.next_deadline())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use sip_message::{Message, parse};

    use super::*;
    use crate::RequestEvent;

    fn message(branch: usize) -> Vec<u8> {
        format!(
            "MESSAGE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{branch}\r\n\
From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n\r\n"
        )
        .into_bytes()
    }

    /// A flood of answered requests keeps memory (transactions, timers, eviction queue)
    /// bounded by the cap.
    #[test]
    fn flood_stays_within_the_cap() {
        let t0 = Instant::now();
        let mut l = TransactionLayer::<u8>::new(Config { max_completed: 100, ..Config::default() });
        for i in 0..10_000 {
            let raw = message(i);
            let p = parse(&raw).unwrap();
            let now = t0 + Duration::from_millis(i as u64);
            let RequestEvent::New(id) = l.receive_request(now, &Message::new(&raw, &p), 0, Reliability::Unreliable)
            else {
                panic!()
            };
            l.send_response(now, id, 200, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"));
            while l.poll_event().is_some() {}
            assert!(l.len().1 <= 100);
            assert!(l.armed_timers() <= 100);
            assert!(l.completed_queue_len() <= 2 * 100 + 64);
        }
        assert_eq!(l.stats().evicted, 9_900);
        assert_eq!(l.server_keys.len(), 100);
    }

    /// Transactions that end on their own do not pile up in the eviction queue.
    #[test]
    fn eviction_queue_is_compacted() {
        let t0 = Instant::now();
        let mut l = TransactionLayer::<u8>::new(Config::default());
        for i in 0..5_000 {
            let raw = message(i);
            let p = parse(&raw).unwrap();
            let now = t0 + Duration::from_millis(100 * i as u64);
            if let RequestEvent::New(id) = l.receive_request(now, &Message::new(&raw, &p), 0, Reliability::Unreliable) {
                l.send_response(now, id, 200, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"));
            }
            l.handle_timeout(now);
            while l.poll_event().is_some() {}
        }
        // Timer J (32 s) at one request per 100 ms: about 320 live.
        assert!((300..=330).contains(&l.len().1), "{:?}", l.len());
        assert!(l.completed_queue_len() <= 2 * l.len().1 + 64);
        assert_eq!(l.stats().evicted, 0);
    }

    #[test]
    fn abort_ends_a_transaction_silently() {
        let t0 = Instant::now();
        let mut l = TransactionLayer::<u8>::new(Config::default());
        let raw = message(1);
        let (id, _) = l.send_request(t0, Bytes::from(raw), 0, Reliability::Unreliable).unwrap();
        l.abort(id);
        assert_eq!(l.poll_event(), Some(Event::Terminated(id)));
        assert_eq!(l.poll_timeout(), None);
        assert_eq!(l.client_keys.len(), 0);
        assert!(l.is_empty());
    }
}
