//! The circuit-breaker stacks measured by `benches/circuit_breaker.rs`: ours
//! and the anchors, each closed (every call succeeds), around the same
//! handler that answers at once.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response};
use tower::{Layer, Service, service_fn};

pub type Req = Request<Body>;
type Answer = Result<Response<Body>, Infallible>;

pub fn request() -> Req {
    Request::get("/api/items")
        .body(Body::empty())
        .expect("a valid request")
}

pub fn handler()
-> impl Service<Req, Response = Response<Body>, Error = Infallible, Future = Ready<Answer>> + Clone
{
    service_fn(|_req: Req| ready(Ok(Response::new(Body::empty()))))
}

/// Ours with its defaults: the last 100 calls, failure rate 50%.
pub fn armor() -> impl Service<Req, Response: Send, Error = Infallible, Future: Send> + Clone + Send
{
    tower_armor::circuit_breaker::CircuitBreakerLayer::builder()
        .build()
        .expect("a valid breaker")
        .layer(handler())
}

/// tower-resilience's breaker with the same window and threshold.
pub fn tower_resilience()
-> impl Service<Req, Response: Send, Error: std::fmt::Debug + Send, Future: Send> + Clone + Send {
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .minimum_number_of_calls(20)
        .build()
        .expect("a valid breaker")
        .layer(handler())
}

type FailsafeBreaker = failsafe::StateMachine<
    failsafe::failure_policy::OrElse<
        failsafe::failure_policy::SuccessRateOverTimeWindow<failsafe::backoff::EqualJittered>,
        failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::EqualJittered>,
    >,
    (),
>;

/// failsafe's state machine (its default policy) around the handler's
/// future, as its `futures` integration is meant to be used: failsafe has
/// no tower layer, so this is the thinnest adapter.
#[derive(Clone)]
pub struct Failsafe<S> {
    inner: S,
    breaker: FailsafeBreaker,
}

pub fn failsafe() -> Failsafe<
    impl Service<Req, Response = Response<Body>, Error = Infallible, Future = Ready<Answer>> + Clone,
> {
    Failsafe {
        inner: handler(),
        breaker: failsafe::Config::new().build(),
    }
}

impl<S: Service<Req>> Service<Req> for Failsafe<S> {
    type Response = S::Response;
    type Error = failsafe::Error<S::Error>;
    type Future = failsafe::futures::ResponseFuture<
        S::Future,
        <FailsafeBreaker as failsafe::futures::CircuitBreaker>::FailurePolicy,
        (),
        failsafe::Any,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(failsafe::Error::Inner)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        failsafe::futures::CircuitBreaker::call(&self.breaker, self.inner.call(request))
    }
}
