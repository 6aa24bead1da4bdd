//! Transaction storage: a slab indexed by [`TxId`], with a generation per slot so that a
//! stale id never reaches a newer transaction in the same slot.
//!
//! The slab gives memory back after a burst: free slots are reused lowest index first, so live
//! transactions gather at the front, and once three quarters of the slots are free the vacant
//! tail is cut off. (A burst of 12,000 requests/s leaves ~384k completed transactions for 32 s;
//! without this their slots stayed allocated for the life of the process.)

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::TxId;

/// Slabs smaller than this are never shrunk.
const SHRINK_ABOVE: usize = 1024;

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// A vector of slots with a free list: O(1) insert, lookup and removal.
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    /// Free indexes, lowest first.
    free: BinaryHeap<Reverse<u32>>,
    live: usize,
    /// Generation of slots created from now on: above every generation a cut-off slot had, so
    /// an id of a cut-off slot never matches the new slot at its index.
    generation_floor: u32,
    removals_since_shrink: usize,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab { slots: Vec::new(), free: BinaryHeap::new(), live: 0, generation_floor: 0, removals_since_shrink: 0 }
    }

    pub(crate) fn insert(&mut self, value: T) -> TxId {
        self.live += 1;
        if let Some(Reverse(index)) = self.free.pop()
            && let Some(slot) = self.slots.get_mut(index as usize)
        {
            slot.value = Some(value);
            return TxId::new(index, slot.generation);
        }
        // More than 2^32 live transactions cannot happen (memory runs out first); the index
        // saturates rather than wrapping onto a live slot's id.
        let index = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        let generation = self.generation_floor;
        self.slots.push(Slot { generation, value: Some(value) });
        TxId::new(index, generation)
    }

    /// Slots allocated (live or free), for tests and stats.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Cuts off the vacant tail when at most a quarter of the slots are live. Looked at when
    /// the last slot was just freed or every eighth of the slab's removals; the tail is cut
    /// only when it is at least an eighth of the slab, so removal stays amortized O(log n).
    fn maybe_shrink(&mut self, removed: u32) {
        self.removals_since_shrink += 1;
        let len = self.slots.len();
        let last_freed = removed as usize + 1 == len;
        if len <= SHRINK_ABOVE || self.live * 4 > len || !(last_freed || self.removals_since_shrink >= len / 8) {
            return;
        }
        self.removals_since_shrink = 0;
        let mut keep = len;
        while keep > 0 && self.slots.get(keep - 1).is_some_and(|s| s.value.is_none()) {
            keep -= 1;
        }
        if len - keep < len / 8 {
            return;
        }
        let cut_max = self.slots.iter().skip(keep).map(|s| s.generation).max().unwrap_or(0);
        self.generation_floor = self.generation_floor.max(cut_max.wrapping_add(1));
        self.slots.truncate(keep);
        self.slots.shrink_to(keep * 2);
        self.free.retain(|Reverse(i)| (*i as usize) < keep);
        self.free.shrink_to(self.free.len() * 2);
    }

    fn slot(&self, id: TxId) -> Option<&Slot<T>> {
        self.slots.get(id.index() as usize).filter(|s| s.generation == id.generation())
    }

    pub(crate) fn get(&self, id: TxId) -> Option<&T> {
        self.slot(id)?.value.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: TxId) -> Option<&mut T> {
        self.slots.get_mut(id.index() as usize).filter(|s| s.generation == id.generation())?.value.as_mut()
    }

    pub(crate) fn remove(&mut self, id: TxId) -> Option<T> {
        let slot = self.slots.get_mut(id.index() as usize).filter(|s| s.generation == id.generation())?;
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(Reverse(id.index()));
        self.live -= 1;
        self.maybe_shrink(id.index());
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_do_not_resolve() {
        let mut s = Slab::new();
        let a = s.insert(1);
        assert_eq!(s.remove(a), Some(1));
        let b = s.insert(2);
        assert_eq!(a.index(), b.index());
        assert_ne!(a, b);
        assert_eq!(s.get(a), None);
        assert_eq!(s.remove(a), None);
        assert_eq!(s.get(b), Some(&2));
    }

    /// After a burst the vacant tail is given back, and ids of cut-off slots stay stale when
    /// the slab grows again.
    #[test]
    fn shrinks_after_a_burst_and_old_ids_stay_stale() {
        let mut s = Slab::new();
        let ids: Vec<TxId> = (0..10_000).map(|i| s.insert(i)).collect();
        let keep: Vec<TxId> = ids[..100].to_vec();
        for id in &ids[100..] {
            assert!(s.remove(*id).is_some());
        }
        assert!(s.capacity() < 1_000, "the tail was cut off: {} slots", s.capacity());
        for (i, id) in keep.iter().enumerate() {
            assert_eq!(s.get(*id), Some(&i), "live transactions keep their ids");
        }
        // Grow again over the cut-off indexes: none of the old ids resolves.
        let fresh: Vec<TxId> = (0..10_000).map(|i| s.insert(100_000 + i)).collect();
        for id in &ids[100..] {
            assert_eq!(s.get(*id), None);
        }
        assert!(fresh.iter().all(|id| s.get(*id).is_some()));
    }
}
