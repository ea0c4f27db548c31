//! Coalescing: identical list requests in flight on one route share one upstream request.
//! The first (the leader) is sent; those that arrive while it is on its way (followers)
//! wait for its answer and each get it with their own id. The table of flights is
//! bounded: past [`MAX_FLIGHTS`] a request is simply sent on its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::shared_answer::SharedAnswer;
use crate::exchange::error::ProxyError;

/// Flights open at once per route (keys are at most [`super::share::MAX_PARAMS_BYTES`]
/// of parameters each, so the table stays within a few MiB).
pub const MAX_FLIGHTS: usize = 1024;

/// What makes two requests identical for sharing: the method and its parameters, the
/// protocol version, the session (so sessions' answers never mix), the caller's identity
/// on passthrough routes (a SHA-256 of its `Authorization`, never the value) and the query.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ShareKey {
    pub method: Box<str>,
    pub params: Box<str>,
    pub protocol: Option<Box<[u8]>>,
    pub session: Option<Box<[u8]>>,
    pub identity: Option<[u8; 32]>,
    pub query: Option<Box<str>>,
}

impl ShareKey {
    /// Bytes the key holds (what the cache counts with the answer).
    pub fn size(&self) -> usize {
        self.method.len()
            + self.params.len()
            + self.protocol.as_ref().map_or(0, |p| p.len())
            + self.session.as_ref().map_or(0, |s| s.len())
            + 32
            + self.query.as_ref().map_or(0, |q| q.len())
    }
}

/// How a flight ended, as its followers see it.
#[derive(Clone)]
pub enum Flight {
    Pending,
    /// The gateway's answer, for every follower.
    Shared(Arc<SharedAnswer>),
    /// No answer came: every follower gets the same failure.
    Failed(ProxyError),
    /// The answer cannot be shared (too large, not a JSON-RPC response) or the leader
    /// went away: each follower sends its own request.
    Alone,
}

#[derive(Default)]
pub struct Flights {
    open: Mutex<HashMap<ShareKey, watch::Receiver<Flight>>>,
}

/// A request's part in a flight.
pub enum Joined {
    Lead(Leader),
    Follow(Follower),
    /// The table is full: sent on its own.
    Alone,
}

pub struct Leader {
    flights: Arc<Flights>,
    key: Option<ShareKey>,
    tx: watch::Sender<Flight>,
}

pub struct Follower {
    rx: watch::Receiver<Flight>,
}

impl Flights {
    pub fn join(self: &Arc<Self>, key: ShareKey) -> Joined {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = open.get(&key) {
            return Joined::Follow(Follower { rx: rx.clone() });
        }
        if open.len() >= MAX_FLIGHTS {
            return Joined::Alone;
        }
        let (tx, rx) = watch::channel(Flight::Pending);
        open.insert(key.clone(), rx);
        Joined::Lead(Leader {
            flights: self.clone(),
            key: Some(key),
            tx,
        })
    }

    /// Flights open now.
    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn close(&self, key: &ShareKey) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

impl Leader {
    /// The flight is over: requests arriving from now on start their own (or find the
    /// answer in the cache); those waiting get `outcome`.
    pub fn land(mut self, outcome: Flight) {
        if let Some(key) = self.key.take() {
            self.flights.close(&key);
        }
        self.tx.send_replace(outcome);
    }

    /// The key of the flight.
    pub fn key(&self) -> Option<&ShareKey> {
        self.key.as_ref()
    }
}

impl Drop for Leader {
    /// The leader went away before an answer (its agent left): the followers send their
    /// own requests.
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.flights.close(&key);
            self.tx.send_replace(Flight::Alone);
        }
    }
}

impl Follower {
    /// Waits for the leader's answer.
    pub async fn outcome(mut self) -> Flight {
        match self.rx.wait_for(|f| !matches!(f, Flight::Pending)).await {
            Ok(flight) => flight.clone(),
            Err(_) => Flight::Alone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(params: &str) -> ShareKey {
        ShareKey {
            method: "tools/list".into(),
            params: params.into(),
            protocol: None,
            session: None,
            identity: None,
            query: None,
        }
    }

    #[tokio::test]
    async fn followers_get_the_leaders_outcome_and_the_flight_closes() {
        let flights = Arc::new(Flights::default());
        let Joined::Lead(leader) = flights.join(key("{}")) else {
            panic!("the first leads")
        };
        let Joined::Follow(follower) = flights.join(key("{}")) else {
            panic!("the second follows")
        };
        assert!(matches!(
            flights.join(key(r#"{"cursor":"2"}"#)),
            Joined::Lead(_)
        ));
        let waiting = tokio::spawn(follower.outcome());
        leader.land(Flight::Failed(ProxyError::Upstream("reset".into())));
        assert!(matches!(waiting.await.unwrap(), Flight::Failed(_)));
        assert!(flights.is_empty(), "landed flights close");
        assert!(matches!(flights.join(key("{}")), Joined::Lead(_)));
    }

    #[tokio::test]
    async fn a_leader_that_goes_away_sends_its_followers_alone() {
        let flights = Arc::new(Flights::default());
        let Joined::Lead(leader) = flights.join(key("{}")) else {
            panic!()
        };
        let Joined::Follow(follower) = flights.join(key("{}")) else {
            panic!()
        };
        drop(leader);
        assert!(matches!(follower.outcome().await, Flight::Alone));
        assert!(flights.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let flights = Arc::new(Flights::default());
        let leaders: Vec<_> = (0..MAX_FLIGHTS)
            .map(|i| flights.join(key(&i.to_string())))
            .collect();
        assert!(matches!(flights.join(key("one more")), Joined::Alone));
        drop(leaders);
        assert!(flights.is_empty());
    }
}
