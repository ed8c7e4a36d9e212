//! Checks that come with the crate: a circuit breaker's state, a TCP
//! connect, and an HTTP GET through any tower service. Closures are
//! [`check_fn`](super::check_fn).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use tokio::time::Instant;

use http::{Request, Response, Uri};
use tower_service::Service;

use super::check::{CheckFuture, CheckResult, HealthCheck};

/// Connects to `address` (`host:port`); passes when the connection is made,
/// reporting how long it took in ms.
///
/// ```
/// use std::time::Duration;
/// use tower_armor::health::{Check, checks};
///
/// let broker = Check::new("broker", checks::tcp("queue.internal:5672"))
///     .timeout(Duration::from_millis(300));
/// # let _ = broker;
/// ```
pub fn tcp(address: impl Into<Cow<'static, str>>) -> TcpCheck {
    TcpCheck {
        address: address.into(),
    }
}

/// The check [`tcp`] makes.
#[derive(Debug, Clone)]
pub struct TcpCheck {
    address: Cow<'static, str>,
}

impl HealthCheck for TcpCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let started = Instant::now();
            match tokio::net::TcpStream::connect(&*self.address).await {
                Ok(_) => CheckResult::pass().observed(elapsed_ms(started), "ms"),
                Err(error) => CheckResult::fail(format!("connect to {}: {error}", self.address)),
            }
        })
    }
}

/// Sends `GET uri` through `service` (a hyper-util client, a tonic
/// channel's HTTP stack, an axum router...); passes on a 2xx or 3xx answer,
/// fails on any other status or an error. The answer's body is not read.
///
/// ```
/// use std::time::Duration;
/// use http_body_util::Empty;
/// use bytes::Bytes;
/// use tower_armor::health::{Check, checks};
///
/// # fn client() -> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>> {
/// #     hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
/// # }
/// let upstream = Check::new(
///     "inventory",
///     checks::http_get(client(), "http://inventory.internal/livez".parse().unwrap()),
/// )
/// .timeout(Duration::from_secs(1));
/// # let _ = upstream;
/// ```
pub fn http_get<S, ReqBody, ResBody>(service: S, uri: Uri) -> HttpGetCheck<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    HttpGetCheck {
        service,
        uri,
        bodies: PhantomData,
    }
}

/// The check [`http_get`] makes; `ReqBody` and `ResBody` are the
/// service's body types.
pub struct HttpGetCheck<S, ReqBody, ResBody> {
    service: S,
    uri: Uri,
    bodies: PhantomData<fn(ReqBody) -> ResBody>,
}

impl<S: Clone, ReqBody, ResBody> Clone for HttpGetCheck<S, ReqBody, ResBody> {
    fn clone(&self) -> Self {
        HttpGetCheck {
            service: self.service.clone(),
            uri: self.uri.clone(),
            bodies: PhantomData,
        }
    }
}

impl<S, ReqBody, ResBody> fmt::Debug for HttpGetCheck<S, ReqBody, ResBody> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpGetCheck")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> HealthCheck for HttpGetCheck<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: fmt::Display + Send,
    ReqBody: Default + Send + 'static,
    ResBody: Send + 'static,
{
    fn check(&self) -> CheckFuture<'_> {
        let request = Request::get(self.uri.clone()).body(ReqBody::default());
        let mut service = self.service.clone();
        Box::pin(async move {
            let request = match request {
                Ok(request) => request,
                Err(error) => return CheckResult::fail(format!("GET {}: {error}", self.uri)),
            };
            let started = Instant::now();
            let answer = match std::future::poll_fn(|cx| service.poll_ready(cx)).await {
                Ok(()) => service.call(request).await,
                Err(error) => Err(error),
            };
            match answer {
                Ok(response)
                    if response.status().is_success() || response.status().is_redirection() =>
                {
                    CheckResult::pass().observed(elapsed_ms(started), "ms")
                }
                Ok(response) => {
                    CheckResult::fail(format!("GET {} answered {}", self.uri, response.status()))
                }
                Err(error) => CheckResult::fail(format!("GET {}: {error}", self.uri)),
            }
        })
    }
}

/// Milliseconds since `started`, on tokio's clock (so paused in tests).
fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

#[cfg(feature = "circuit-breaker")]
pub use breaker::{BreakerCheck, breaker};

#[cfg(feature = "circuit-breaker")]
mod breaker {
    use std::hash::Hash;

    use super::*;
    use crate::circuit_breaker::{CircuitHandle, CircuitState};
    use crate::health::Status;

    /// A circuit breaker's state as a check: closed passes, half-open warns,
    /// open warns by default ([`open_is`](BreakerCheck::open_is) makes it
    /// fail). For a keyed breaker, any open key warns, and the open status
    /// applies once [`open_share`](BreakerCheck::open_share) of the keys are
    /// open.
    ///
    /// Warning rather than failing is the safe default: every instance sees
    /// the same broken upstream, and failing readiness everywhere would take
    /// the whole fleet out of the load balancer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_armor::circuit_breaker::CircuitBreakerLayer;
    /// use tower_armor::health::{Check, checks};
    ///
    /// let breaker = CircuitBreakerLayer::default();
    /// let upstream = Check::new("payments", checks::breaker(breaker.handle()))
    ///     .timeout(Duration::from_millis(10));
    /// # let _ = upstream;
    /// ```
    pub fn breaker<K>(handle: CircuitHandle<K>) -> BreakerCheck<K> {
        BreakerCheck {
            handle,
            open_is: Status::Warn,
            open_share: 1.0,
        }
    }

    /// The check [`breaker`] makes.
    #[derive(Clone)]
    pub struct BreakerCheck<K> {
        handle: CircuitHandle<K>,
        open_is: Status,
        open_share: f64,
    }

    impl<K> fmt::Debug for BreakerCheck<K> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("BreakerCheck")
                .field("open_is", &self.open_is)
                .field("open_share", &self.open_share)
                .finish_non_exhaustive()
        }
    }

    impl<K> BreakerCheck<K> {
        /// The status of an open breaker (default `Warn`).
        pub fn open_is(mut self, status: Status) -> Self {
            self.open_is = status;
            self
        }

        /// For a keyed breaker: the share of keys (0 to 1) that must be open
        /// for the open status to apply (default 1: all of them); below it,
        /// any open key warns.
        pub fn open_share(mut self, share: f64) -> Self {
            self.open_share = if share.is_nan() {
                1.0
            } else {
                share.clamp(0.0, 1.0)
            };
            self
        }
    }

    fn status_of(state: CircuitState, open_is: Status) -> Status {
        match state {
            CircuitState::Closed | CircuitState::Disabled | CircuitState::MetricsOnly => {
                Status::Pass
            }
            CircuitState::HalfOpen => Status::Warn,
            CircuitState::Open | CircuitState::ForcedOpen => open_is,
        }
    }

    impl<K> HealthCheck for BreakerCheck<K>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
    {
        fn check(&self) -> CheckFuture<'_> {
            let keyed = self.handle.states();
            let result = if keyed.is_empty() {
                let state = self.handle.state();
                match status_of(state, self.open_is) {
                    Status::Pass => CheckResult::pass(),
                    status => CheckResult {
                        status,
                        output: Some(Cow::Owned(format!("the breaker is {}", state.as_str()))),
                        observed: None,
                    },
                }
            } else {
                let open = keyed
                    .iter()
                    .filter(|(_, state)| {
                        matches!(state, CircuitState::Open | CircuitState::ForcedOpen)
                    })
                    .count();
                let half_open = keyed
                    .iter()
                    .filter(|(_, state)| *state == CircuitState::HalfOpen)
                    .count();
                let share = open as f64 / keyed.len() as f64;
                let status = if open > 0 && share >= self.open_share {
                    self.open_is
                } else if open > 0 || half_open > 0 {
                    Status::Warn
                } else {
                    Status::Pass
                };
                CheckResult {
                    status,
                    output: (status != Status::Pass).then(|| {
                        Cow::Owned(format!(
                            "{open} of {} breakers open, {half_open} half-open",
                            keyed.len()
                        ))
                    }),
                    observed: Some((open as f64, Cow::Borrowed("open breakers"))),
                }
            };
            Box::pin(std::future::ready(result))
        }
    }
}
