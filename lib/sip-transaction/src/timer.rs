//! The timer queue: RFC 3261 timers of all transactions, ordered by deadline.
//!
//! A `BTreeMap` keyed by `(deadline, sequence)`: O(log n) arm, cancel and pop, and the next
//! deadline is the first key. Each transaction remembers the keys of its (at most two) armed
//! timers and cancels them eagerly, so the queue never holds timers of dead transactions:
//! evicting a flood of transactions frees their timers too.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::TxId;

/// The RFC 3261 / RFC 6026 timer names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// INVITE client: request retransmission.
    A,
    /// INVITE client: transaction timeout in Calling.
    B,
    /// INVITE client: wait time for retransmitted non-2xx finals.
    D,
    /// Non-INVITE client: request retransmission.
    E,
    /// Non-INVITE client: transaction timeout.
    F,
    /// Non-INVITE client: wait time for retransmitted finals.
    K,
    /// INVITE client (RFC 6026): wait time for further 2xx.
    M,
    /// INVITE server: final response retransmission.
    G,
    /// INVITE server: wait time for the ACK.
    H,
    /// INVITE server: wait time for retransmitted ACKs.
    I,
    /// Non-INVITE server: wait time for retransmitted requests.
    J,
    /// INVITE server (RFC 6026): wait time for retransmitted INVITEs after a 2xx.
    L,
}

impl Timer {
    /// Which of a transaction's two timer slots this timer uses: retransmission timers run
    /// alongside a lifetime timer, never two of a kind.
    pub(crate) fn slot(self) -> usize {
        match self {
            Timer::A | Timer::E | Timer::G => 0,
            _ => 1,
        }
    }
}

/// Identifies an armed timer (to cancel it).
pub(crate) type TimerKey = (Instant, u64);

pub(crate) struct Timers {
    map: BTreeMap<TimerKey, (TxId, Timer)>,
    next_seq: u64,
}

impl Timers {
    pub(crate) fn new() -> Self {
        Timers { map: BTreeMap::new(), next_seq: 0 }
    }

    pub(crate) fn arm(&mut self, at: Instant, tx: TxId, timer: Timer) -> TimerKey {
        let key = (at, self.next_seq);
        self.next_seq += 1;
        self.map.insert(key, (tx, timer));
        key
    }

    pub(crate) fn cancel(&mut self, key: TimerKey) {
        self.map.remove(&key);
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.map.first_key_value().map(|(k, _)| k.0)
    }

    /// The sequence number the next armed timer gets; timers armed from now on are "new".
    pub(crate) fn seq(&self) -> u64 {
        self.next_seq
    }

    /// Pops the earliest timer due at `now` that was armed before `seq_limit`. Timers armed
    /// while handling expirations wait for the next call, so a zero interval cannot loop.
    pub(crate) fn pop_due(&mut self, now: Instant, seq_limit: u64) -> Option<(TxId, Timer, TimerKey)> {
        let (&key, _) = self.map.first_key_value()?;
        if key.0 > now || key.1 >= seq_limit {
            return None;
        }
        let (tx, timer) = self.map.remove(&key)?;
        Some((tx, timer, key))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn ordered_by_deadline_then_arming() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        let id = TxId::new(0, 0);
        let late = t.arm(t0 + Duration::from_secs(2), id, Timer::F);
        t.arm(t0 + Duration::from_secs(1), id, Timer::E);
        t.arm(t0 + Duration::from_secs(1), id, Timer::J);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        let limit = t.seq();
        assert_eq!(t.pop_due(t0, limit), None);
        assert_eq!(t.pop_due(t0 + Duration::from_secs(1), limit).map(|x| x.1), Some(Timer::E));
        assert_eq!(t.pop_due(t0 + Duration::from_secs(1), limit).map(|x| x.1), Some(Timer::J));
        t.cancel(late);
        assert_eq!(t.next_deadline(), None);
        let now = t0 + Duration::from_secs(5);
        let limit = t.seq();
        t.arm(now, id, Timer::A);
        assert_eq!(t.pop_due(now, limit), None, "armed during expiry handling: next call");
    }
}
