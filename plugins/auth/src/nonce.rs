//! Nonces: issued signed (so a forged or altered one is refused without state), expiring after
//! `nonce_expire` seconds, and, with replay protection on, tracked in a bounded table so a
//! nonce is used once (`one_time_nonce`) or with an increasing `nc` (`nonce_count`).
//!
//! A nonce is base64url (no padding) of 32 bytes: the issue time (u64 BE seconds), an index
//! (u64 BE, a counter of this process) and the first 16 bytes of HMAC-SHA256(secret, time ‖
//! index).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Why a nonce was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// Not one of ours (bad encoding or signature, or issued in the future).
    #[error("the nonce was not issued by this server")]
    Invalid,
    /// Expired, or no longer in the replay table: the client should retry with a fresh one
    /// (`stale=true`).
    #[error("the nonce is stale")]
    Stale,
    /// Used before (one-time nonce), or its `nc` did not increase.
    #[error("the nonce was used before")]
    Reused,
}

/// Replay protection settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replay {
    /// `nonce_count`: with qop, each use must carry a higher `nc`.
    pub nonce_count: bool,
    /// `one_time_nonce`: each nonce authenticates one request.
    pub one_time: bool,
}

impl Replay {
    fn tracked(self) -> bool {
        self.nonce_count || self.one_time
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    expires: u64,
    /// Highest nc accepted (0: none yet).
    last_nc: u32,
    used: bool,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<u64, Entry>,
    /// Indexes in issue order: the oldest (first to expire) in front.
    order: VecDeque<u64>,
}

/// The nonce issuer and checker.
#[derive(Debug)]
pub struct Nonces {
    secret: Vec<u8>,
    expire: u64,
    max_drift: u64,
    replay: Replay,
    capacity: usize,
    next: AtomicU64,
    table: Mutex<Table>,
}

const RAW_LEN: usize = 32;

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // RFC 2104 over SHA-256 (64-byte blocks).
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(msg);
    let ih = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(ih);
    outer.finalize().into()
}

impl Nonces {
    /// An issuer with `secret`, nonces valid `expire` seconds, accepted up to `max_drift`
    /// seconds in the future, `replay` protection with room for `capacity` tracked nonces.
    pub fn new(secret: Vec<u8>, expire: u64, max_drift: u64, replay: Replay, capacity: usize) -> Nonces {
        Nonces {
            secret,
            expire,
            max_drift,
            replay,
            capacity: capacity.max(1),
            next: AtomicU64::new(1),
            table: Mutex::new(Table::default()),
        }
    }

    fn sign(&self, head: &[u8; 16]) -> [u8; 16] {
        let mac = hmac_sha256(&self.secret, head);
        let mut out = [0u8; 16];
        out.copy_from_slice(&mac[..16]);
        out
    }

    /// A fresh nonce issued at `now` (seconds).
    pub fn issue(&self, now: u64) -> String {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&now.to_be_bytes());
        raw[8..16].copy_from_slice(&index.to_be_bytes());
        let head: [u8; 16] = raw[..16].try_into().unwrap_or_default();
        raw[16..].copy_from_slice(&self.sign(&head));
        if self.replay.tracked() {
            let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
            // Expired ones leave from the front; a full table forgets its oldest (a client
            // holding one gets a stale challenge, never an unchecked replay).
            while let Some(&old) = t.order.front() {
                let expired = t.entries.get(&old).is_none_or(|e| e.expires < now);
                if !expired && t.order.len() < self.capacity {
                    break;
                }
                t.order.pop_front();
                t.entries.remove(&old);
            }
            t.entries.insert(index, Entry { expires: now + self.expire, last_nc: 0, used: false });
            t.order.push_back(index);
        }
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks `nonce` at `now` without recording a use: its index when it may be used with
    /// `nc` (the credentials' nonce count, `None` without qop).
    pub fn check(&self, nonce: &str, nc: Option<u32>, now: u64) -> Result<u64, NonceError> {
        let raw = URL_SAFE_NO_PAD.decode(nonce).map_err(|_| NonceError::Invalid)?;
        if raw.len() != RAW_LEN {
            return Err(NonceError::Invalid);
        }
        let head: [u8; 16] = raw[..16].try_into().map_err(|_| NonceError::Invalid)?;
        let want = self.sign(&head);
        if want.iter().zip(&raw[16..]).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return Err(NonceError::Invalid);
        }
        let issued = u64::from_be_bytes(raw[..8].try_into().map_err(|_| NonceError::Invalid)?);
        let index = u64::from_be_bytes(raw[8..16].try_into().map_err(|_| NonceError::Invalid)?);
        if issued > now + self.max_drift {
            return Err(NonceError::Invalid);
        }
        if issued + self.expire < now {
            return Err(NonceError::Stale);
        }
        if self.replay.tracked() {
            let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
            let e = t.entries.get(&index).ok_or(NonceError::Stale)?;
            Self::fresh(self.replay, e, nc)?;
        }
        Ok(index)
    }

    fn fresh(replay: Replay, e: &Entry, nc: Option<u32>) -> Result<(), NonceError> {
        if replay.one_time && e.used {
            return Err(NonceError::Reused);
        }
        if replay.nonce_count
            && let Some(nc) = nc
            && nc <= e.last_nc
        {
            return Err(NonceError::Reused);
        }
        Ok(())
    }

    /// Records a successful use of nonce `index` with `nc`; refuses (atomically with the
    /// check) a use that became a replay since [`Nonces::check`].
    pub fn record(&self, index: u64, nc: Option<u32>) -> Result<(), NonceError> {
        if !self.replay.tracked() {
            return Ok(());
        }
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let e = t.entries.get_mut(&index).ok_or(NonceError::Stale)?;
        Self::fresh(self.replay, e, nc)?;
        e.used = true;
        if let Some(nc) = nc {
            e.last_nc = e.last_nc.max(nc);
        }
        Ok(())
    }

    /// Whether `nonce` is signed by us and expired at `now` (a challenge then says
    /// `stale=true`).
    pub fn is_stale(&self, nonce: &str, now: u64) -> bool {
        self.check(nonce, None, now) == Err(NonceError::Stale)
    }

    /// Tracked nonces (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Replay = Replay { nonce_count: true, one_time: false };

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(crate::digest::hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn issued_nonce_checks_until_it_expires() {
        let n = Nonces::new(b"k".to_vec(), 300, 3, Replay::default(), 10);
        let nonce = n.issue(1000);
        assert!(n.check(&nonce, None, 1000).is_ok());
        assert!(n.check(&nonce, None, 1300).is_ok());
        assert_eq!(n.check(&nonce, None, 1301), Err(NonceError::Stale));
        assert!(n.is_stale(&nonce, 1301));
        // Issued "in the future" beyond the drift: not ours.
        assert_eq!(n.check(&nonce, None, 996), Err(NonceError::Invalid));
    }

    #[test]
    fn forged_or_foreign_nonces_are_invalid() {
        let n = Nonces::new(b"k".to_vec(), 300, 3, Replay::default(), 10);
        let other = Nonces::new(b"other".to_vec(), 300, 3, Replay::default(), 10);
        let mut nonce = n.issue(1000);
        assert_eq!(other.check(&nonce, None, 1000), Err(NonceError::Invalid));
        // Move the issue time forward by editing the bytes: the signature no longer matches.
        let mut raw = URL_SAFE_NO_PAD.decode(&nonce).unwrap();
        raw[7] ^= 1;
        let edited = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(n.check(&edited, None, 1000), Err(NonceError::Invalid));
        nonce.push('A');
        assert_eq!(n.check(&nonce, None, 1000), Err(NonceError::Invalid));
        assert_eq!(n.check("", None, 1000), Err(NonceError::Invalid));
        assert_eq!(n.check("***", None, 1000), Err(NonceError::Invalid));
    }

    #[test]
    fn nonce_count_must_increase() {
        let n = Nonces::new(b"k".to_vec(), 300, 3, BOTH, 10);
        let nonce = n.issue(1000);
        let i = n.check(&nonce, Some(1), 1000).unwrap();
        n.record(i, Some(1)).unwrap();
        assert_eq!(n.check(&nonce, Some(1), 1001), Err(NonceError::Reused));
        assert_eq!(n.record(i, Some(1)), Err(NonceError::Reused));
        let i = n.check(&nonce, Some(2), 1001).unwrap();
        n.record(i, Some(2)).unwrap();
        assert_eq!(n.check(&nonce, Some(2), 1002), Err(NonceError::Reused));
    }

    #[test]
    fn one_time_nonce_is_used_once() {
        let n = Nonces::new(b"k".to_vec(), 300, 3, Replay { nonce_count: false, one_time: true }, 10);
        let nonce = n.issue(1000);
        let i = n.check(&nonce, None, 1000).unwrap();
        n.record(i, None).unwrap();
        assert_eq!(n.check(&nonce, None, 1000), Err(NonceError::Reused));
        assert_eq!(n.check(&nonce, Some(5), 1000), Err(NonceError::Reused));
    }

    #[test]
    fn table_is_bounded_and_forgotten_nonces_are_stale() {
        let n = Nonces::new(b"k".to_vec(), 300, 3, BOTH, 3);
        let first = n.issue(1000);
        for _ in 0..5 {
            n.issue(1000);
        }
        assert_eq!(n.tracked(), 3);
        assert_eq!(n.check(&first, Some(1), 1000), Err(NonceError::Stale));
        // Expired entries leave as new ones arrive.
        let n = Nonces::new(b"k".to_vec(), 10, 3, BOTH, 100);
        for t in 0..50 {
            n.issue(1000 + t);
        }
        assert!(n.tracked() <= 12, "{}", n.tracked());
    }
}
