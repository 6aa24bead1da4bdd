//! Transaction storage: a slab indexed by [`TxId`], with a generation per slot so that a
//! stale id never reaches a newer transaction in the same slot.

use crate::TxId;

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// A vector of slots with a free list: O(1) insert, lookup and removal.
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab { slots: Vec::new(), free: Vec::new() }
    }

    pub(crate) fn insert(&mut self, value: T) -> TxId {
        if let Some(index) = self.free.pop()
            && let Some(slot) = self.slots.get_mut(index as usize)
        {
            slot.value = Some(value);
            return TxId::new(index, slot.generation);
        }
        // More than 2^32 live transactions cannot happen (memory runs out first); the index
        // saturates rather than wrapping onto a live slot's id.
        let index = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot { generation: 0, value: Some(value) });
        TxId::new(index, 0)
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
        self.free.push(id.index());
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
}
