//! Request coalescing: while one request (the leader) fetches a URL,
//! others for it wait for the result instead of going upstream too.
//!
//! The leader holds a [`Flight`] for as long as its response may still be
//! stored: dropping it (stored, found uncacheable, failed, cancelled)
//! wakes the waiters, who look again and go upstream themselves if
//! nothing usable was stored. A leader that vanishes can never leave a
//! waiter stuck, and a waiter gives up after the lock timeout.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::policy::Millis;
use super::store::CacheStore;
use crate::sync::lock;

/// How many URLs at most are remembered as uncacheable at once; past it, a
/// new one is not remembered (its misses are coalesced as usual).
const MAX_PASSES: usize = 4096;

/// The URLs being fetched now, and those whose last answer could not be
/// stored.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    slots: Mutex<Slots>,
    /// How long a URL whose answer could not be stored skips coalescing.
    pass_for: Millis,
}

#[derive(Debug, Default)]
struct Slots {
    by_url: hashbrown::HashMap<Arc<str>, Slot>,
    passes: usize,
}

#[derive(Debug)]
enum Slot {
    /// A fetch in flight; waiters watch it.
    Flying(watch::Receiver<()>),
    /// The last answer could not be stored: until then, requests go
    /// upstream without waiting for one another (a URL that is never
    /// cacheable would otherwise make its concurrent requests queue behind
    /// a leader each time).
    Pass { until: Millis },
}

/// What a request for a URL does about a fetch in flight.
pub(crate) enum Join {
    /// No fetch in flight: this request leads one.
    Lead(Flight),
    /// Another request is fetching: wait on this.
    Wait(watch::Receiver<()>),
    /// The URL's last answer could not be stored: go upstream alone.
    Pass,
}

impl Flights {
    /// Remembers a URL whose answer could not be stored for `pass_for`.
    pub(crate) fn new(pass_for: Millis) -> Flights {
        Flights {
            slots: Mutex::default(),
            pass_for,
        }
    }

    pub(crate) fn join(self: &Arc<Self>, key: &Arc<str>, now: Millis) -> Join {
        let mut slots = lock(&self.slots);
        match slots.by_url.get(key) {
            Some(Slot::Flying(receiver)) => return Join::Wait(receiver.clone()),
            Some(Slot::Pass { until }) if *until > now => return Join::Pass,
            _ => {}
        }
        Join::Lead(slots.lead(self, key))
    }

    /// A flight for `key` only if none is in flight (background work
    /// never waits, and leads even where requests pass).
    pub(crate) fn try_lead(self: &Arc<Self>, key: &Arc<str>) -> Option<Flight> {
        let mut slots = lock(&self.slots);
        if let Some(Slot::Flying(_)) = slots.by_url.get(key) {
            return None;
        }
        Some(slots.lead(self, key))
    }

    /// Whether requests for `key` go upstream alone at `now`.
    pub(crate) fn passing(&self, key: &str, now: Millis) -> bool {
        matches!(lock(&self.slots).by_url.get(key), Some(Slot::Pass { until }) if *until > now)
    }

    /// Ends `key`'s pass: its answer may be stored again.
    pub(crate) fn end_pass(&self, key: &str) {
        let mut slots = lock(&self.slots);
        if let Some(Slot::Pass { .. }) = slots.by_url.get(key) {
            slots.by_url.remove(key);
            slots.passes -= 1;
        }
    }

    /// Fetches in flight now.
    pub(crate) fn len(&self) -> usize {
        let slots = lock(&self.slots);
        slots.by_url.len() - slots.passes
    }

    /// URLs remembered as uncacheable now.
    #[cfg(test)]
    pub(crate) fn passes(&self) -> usize {
        lock(&self.slots).passes
    }
}

impl Slots {
    /// A flight for `key`, in place of the pass it may have had.
    fn lead(&mut self, flights: &Arc<Flights>, key: &Arc<str>) -> Flight {
        let (sender, receiver) = watch::channel(());
        if let Some(Slot::Pass { .. }) = self.by_url.insert(key.clone(), Slot::Flying(receiver)) {
            self.passes -= 1;
        }
        Flight {
            flights: flights.clone(),
            key: key.clone(),
            sender,
            store: None,
            passed_at: None,
        }
    }

    /// Ends `flight`'s slot: removed, or remembered as uncacheable.
    fn land(&mut self, flight: &Flight) {
        let ours = self
            .by_url
            .get(&flight.key)
            .is_some_and(|slot| matches!(slot, Slot::Flying(receiver) if receiver.same_channel(&flight.sender.subscribe())));
        if !ours {
            return;
        }
        match flight.passed_at {
            Some(now) if self.room_for_a_pass(now) => {
                self.passes += 1;
                let until = now + flight.flights.pass_for;
                self.by_url.insert(flight.key.clone(), Slot::Pass { until });
            }
            _ => {
                self.by_url.remove(&flight.key);
            }
        }
    }

    /// Whether one more pass fits, forgetting those over at `now` if not.
    fn room_for_a_pass(&mut self, now: Millis) -> bool {
        if self.passes < MAX_PASSES {
            return true;
        }
        let before = self.by_url.len();
        self.by_url
            .retain(|_, slot| !matches!(slot, Slot::Pass { until } if *until <= now));
        self.passes -= before - self.by_url.len();
        self.passes < MAX_PASSES
    }
}

/// A leader's claim on a URL; dropping it ends the flight.
pub(crate) struct Flight {
    flights: Arc<Flights>,
    key: Arc<str>,
    sender: watch::Sender<()>,
    /// A shared store that made this instance the leader of every
    /// instance: told when the flight ends.
    store: Option<Arc<dyn CacheStore>>,
    /// When the answer was found not storable: the URL passes from then.
    passed_at: Option<Millis>,
}

impl std::fmt::Debug for Flight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flight")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Flight {
    /// Tells `store` when this flight ends (it made this instance lead).
    pub(crate) fn land_in(&mut self, store: Arc<dyn CacheStore>) {
        self.store = Some(store);
    }

    /// The answer (at `now`) could not be stored: ends the flight, and its
    /// URL's requests skip coalescing for a while (none if `pass_for` is 0).
    pub(crate) fn pass(mut self, now: Millis) {
        if self.flights.pass_for > 0 {
            self.passed_at = Some(now);
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        lock(&self.flights.slots).land(self);
        if let Some(store) = self.store.take() {
            store.landed(&self.key).run_detached(());
        }
        // The sender is dropped after this: every waiter wakes.
    }
}

/// Waits until the flight ends (its leader's [`Flight`] dropped).
pub(crate) async fn landed(mut receiver: watch::Receiver<()>) {
    while receiver.changed().await.is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flight_shows_its_url() {
        let flights = Arc::new(Flights::new(30_000));
        let Join::Lead(leader) = flights.join(&Arc::from("https://a.example/x"), 0) else {
            panic!("first request leads")
        };
        assert!(format!("{leader:?}").contains("https://a.example/x"));
    }

    #[tokio::test]
    async fn one_leader_and_waiters_woken_when_it_ends() {
        let flights = Arc::new(Flights::new(30_000));
        let key: Arc<str> = Arc::from("k");
        let Join::Lead(leader) = flights.join(&key, 0) else {
            panic!("first request leads")
        };
        let Join::Wait(waiter) = flights.join(&key, 0) else {
            panic!("second request waits")
        };
        assert!(flights.try_lead(&key).is_none());
        assert_eq!(flights.len(), 1);
        let waiting = tokio::spawn(landed(waiter));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(leader);
        waiting.await.unwrap();
        assert_eq!(flights.len(), 0);
        assert!(flights.try_lead(&key).is_some());
    }

    fn lead(flights: &Arc<Flights>, key: &str, now: Millis) -> Flight {
        match flights.join(&Arc::from(key), now) {
            Join::Lead(flight) => flight,
            _ => panic!("{key} should lead at {now}"),
        }
    }

    #[test]
    fn an_uncacheable_url_passes_until_its_window_ends() {
        let flights = Arc::new(Flights::new(1_000));
        lead(&flights, "u", 0).pass(10);
        assert!(matches!(flights.join(&Arc::from("u"), 1_009), Join::Pass));
        assert_eq!((flights.passes(), flights.len()), (1, 0));
        // Background work still leads it.
        let background = flights.try_lead(&Arc::from("u")).expect("leads");
        assert_eq!((flights.passes(), flights.len()), (0, 1));
        drop(background);
        lead(&flights, "u", 1_009).pass(1_009);
        // Over at 2_009: the next request leads, and a stored answer
        // (a flight simply dropped) leaves nothing behind.
        drop(lead(&flights, "u", 2_009));
        assert_eq!((flights.passes(), flights.len()), (0, 0));
        // No window: nothing remembered.
        let flights = Arc::new(Flights::new(0));
        lead(&flights, "u", 0).pass(0);
        assert_eq!(flights.passes(), 0);
        drop(lead(&flights, "u", 0));
    }

    #[test]
    fn at_most_max_passes_are_remembered_and_the_expired_make_room() {
        let flights = Arc::new(Flights::new(1_000));
        for i in 0..MAX_PASSES {
            lead(&flights, &format!("u{i}"), 0).pass(0);
        }
        assert_eq!(flights.passes(), MAX_PASSES);
        lead(&flights, "one-more", 0).pass(0);
        assert_eq!(flights.passes(), MAX_PASSES);
        assert!(matches!(
            flights.join(&Arc::from("one-more"), 1),
            Join::Lead(_)
        ));
        // Once they are over, the next one sweeps them out.
        lead(&flights, "late", 1_000).pass(1_000);
        assert_eq!(flights.passes(), 1);
        assert!(matches!(
            flights.join(&Arc::from("late"), 1_001),
            Join::Pass
        ));
    }
}
