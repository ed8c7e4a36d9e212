//! Request coalescing: while one request (the leader) fetches a URL,
//! others for it wait for the result instead of going upstream too.
//!
//! The leader holds a [`Flight`] for as long as its response may still be
//! stored: dropping it (stored, found uncacheable, failed, cancelled)
//! wakes the waiters, who look again and go upstream themselves if
//! nothing usable was stored. A leader that vanishes can never leave a
//! waiter stuck, and a waiter gives up after the lock timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::store::CacheStore;
use crate::sync::lock;

/// The URLs being fetched now.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    in_flight: Mutex<HashMap<Arc<str>, watch::Receiver<()>>>,
}

/// What a request for a URL does about a fetch in flight.
pub(crate) enum Join {
    /// No fetch in flight: this request leads one.
    Lead(Flight),
    /// Another request is fetching: wait on this.
    Wait(watch::Receiver<()>),
}

impl Flights {
    pub(crate) fn join(self: &Arc<Self>, key: &Arc<str>) -> Join {
        let mut in_flight = lock(&self.in_flight);
        if let Some(receiver) = in_flight.get(key) {
            return Join::Wait(receiver.clone());
        }
        let (sender, receiver) = watch::channel(());
        in_flight.insert(key.clone(), receiver);
        Join::Lead(Flight {
            flights: self.clone(),
            key: key.clone(),
            sender,
            store: None,
        })
    }

    /// A flight for `key` only if none is in flight (background work
    /// never waits).
    pub(crate) fn try_lead(self: &Arc<Self>, key: &Arc<str>) -> Option<Flight> {
        match self.join(key) {
            Join::Lead(flight) => Some(flight),
            Join::Wait(_) => None,
        }
    }

    /// Fetches in flight now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.in_flight).len()
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
}

impl Drop for Flight {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.flights.in_flight);
        if in_flight
            .get(&self.key)
            .is_some_and(|receiver| receiver.same_channel(&self.sender.subscribe()))
        {
            in_flight.remove(&self.key);
        }
        drop(in_flight);
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
        let flights = Arc::new(Flights::default());
        let Join::Lead(leader) = flights.join(&Arc::from("https://a.example/x")) else {
            panic!("first request leads")
        };
        assert!(format!("{leader:?}").contains("https://a.example/x"));
    }

    #[tokio::test]
    async fn one_leader_and_waiters_woken_when_it_ends() {
        let flights = Arc::new(Flights::default());
        let key: Arc<str> = Arc::from("k");
        let Join::Lead(leader) = flights.join(&key) else {
            panic!("first request leads")
        };
        let Join::Wait(waiter) = flights.join(&key) else {
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
}
