//! Per-key locks, so that within one process at most one loader per key
//! reads the store at a time, and an invalidation never interleaves with a
//! load of the same key.
//!
//! A lock exists only while someone holds or waits for it: the map holds
//! exactly the keys in flight, so it stays small whatever the key space.
//! Across processes nothing is shared: a cold key costs at most one store
//! read per process.
//!
//! The map also keeps an invalidation counter (the epoch). A value read from
//! the store without holding its key's lock may be stored only if no
//! invalidation happened since the read began; see [`Flights::epoch`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// One key's lock.
type Slot = Arc<tokio::sync::Mutex<()>>;

/// The locks of the keys in flight, and the invalidation counter.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    slots: Mutex<HashMap<String, Slot>>,
    epoch: AtomicU64,
}

impl Flights {
    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every change is one insert or remove), so a poisoned lock is usable.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the queue of `key`; lock it with [`Seat::lock`]. Dropping the
    /// seat (after its guard) leaves the queue and, for the last one out,
    /// removes the key from the map.
    pub(crate) fn seat(&self, key: &str) -> Seat<'_> {
        let slot = self.slots().entry(key.to_owned()).or_default().clone();
        Seat {
            flights: self,
            key: key.to_owned(),
            slot,
        }
    }

    /// The number of invalidations so far. Take it before reading the store
    /// without the key's lock, then store the value only if, under the
    /// key's lock, the epoch is unchanged: every invalidation bumps it while
    /// holding the locks of its keys.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Records an invalidation; call while holding the locks of its keys.
    pub(crate) fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.slots().len()
    }
}

/// A place in one key's queue.
pub(crate) struct Seat<'a> {
    flights: &'a Flights,
    key: String,
    slot: Slot,
}

impl Seat<'_> {
    /// Waits for the key's lock. The guard must be dropped before the seat,
    /// which declaring it after the seat ensures.
    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.slot.lock().await
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        let mut slots = self.flights.slots();
        // Every clone of a slot is made and dropped under the map lock, so
        // the count read here is exact: 1 means only the map holds it.
        drop(std::mem::take(&mut self.slot));
        if slots
            .get(&self.key)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            slots.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_and_the_map_empties() {
        let flights = Arc::new(Flights::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks = (0..20).map(|_| {
            let (flights, inside, most) = (flights.clone(), inside.clone(), most.clone());
            tokio::spawn(async move {
                let seat = flights.seat("k");
                let _held = seat.lock().await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
            })
        });
        for t in tasks.collect::<Vec<_>>() {
            t.await.expect("task");
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn distinct_keys_do_not_wait_for_each_other() {
        let flights = Flights::default();
        let a = flights.seat("a");
        let _a = a.lock().await;
        let b = flights.seat("b");
        let _b = b.lock().await;
        assert_eq!(flights.in_flight(), 2);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_no_entry() {
        let flights = Flights::default();
        {
            let holder = flights.seat("k");
            let _held = holder.lock().await;
            let waiter = flights.seat("k");
            let wait = waiter.lock();
            // Give up waiting at once, as a timed-out request would.
            assert!(futures_poll_once(wait).await.is_none());
        }
        assert_eq!(flights.in_flight(), 0);
    }

    /// Polls a future once and drops it.
    async fn futures_poll_once<F: std::future::Future>(f: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            out = f => Some(out),
            () = std::future::ready(()) => None,
        }
    }
}
