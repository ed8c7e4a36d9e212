//! The retry stacks measured by `benches/retry.rs`: ours and the anchors, each
//! around a handler that answers at once, so the first attempt succeeds.
//!
//! `http::Request` is not `Clone`, so both anchors work on a request whose
//! body is already buffered: tower's `retry` with the smallest policy that
//! copies the request, tower-resilience's `retry` through a `Clone` wrapper.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, ServiceBuilder, service_fn};

pub type Req = Request<Full<Bytes>>;
type Answer = Result<Response<Full<Bytes>>, Infallible>;

/// A client's GET: an absolute URI and two headers, no body.
pub fn request() -> Req {
    Request::get("http://inventory.internal/api/items?page=2")
        .header("accept", "application/json")
        .header("user-agent", "bench/1.0")
        .body(Full::new(Bytes::new()))
        .expect("a valid request")
}

/// Answers at once, whatever the request body type.
pub fn handler<B>()
-> impl Service<Request<B>, Response = Response<Full<Bytes>>, Error = Infallible, Future = Ready<Answer>>
+ Clone {
    service_fn(|_req: Request<B>| ready(Ok(Response::new(Full::new(Bytes::new())))))
}

/// Ours with its defaults: 3 attempts, budget, idempotent requests.
pub fn armor() -> impl Service<Req, Error = Infallible> + Clone {
    tower_armor::retry::RetryLayer::builder()
        .build()
        .expect("a valid retry layer")
        .layer(handler())
}

/// The copy a retry needs, made field by field as users write it.
fn copy(request: &Req) -> Req {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    copy
}

/// What both tower policies retry: an error or a 5xx answer.
fn failed<E>(result: &Result<Response<Full<Bytes>>, E>) -> bool {
    result
        .as_ref()
        .map_or(true, |response| response.status().is_server_error())
}

/// tower's retry with a minimal policy: up to 2 retries of 5xx answers.
#[derive(Clone)]
pub struct MinimalPolicy {
    retries_left: u32,
}

impl<E> tower::retry::Policy<Req, Response<Full<Bytes>>, E> for MinimalPolicy {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _request: &mut Req,
        result: &mut Result<Response<Full<Bytes>>, E>,
    ) -> Option<Self::Future> {
        (failed(result) && self.retries_left > 0).then(|| {
            self.retries_left -= 1;
            ready(())
        })
    }

    fn clone_request(&mut self, request: &Req) -> Option<Req> {
        Some(copy(request))
    }
}

pub fn tower_retry() -> impl Service<Req, Error = Infallible> + Clone {
    tower::retry::RetryLayer::new(MinimalPolicy { retries_left: 2 }).layer(handler())
}

/// tower's retry with a budget, as tower's budget docs show it: the same
/// ratio, reserve and window as ours (`TpsBudget::default()`); a success
/// deposits, a retry withdraws. Closer to what ours does than the minimal
/// policy, so it is measured too.
#[derive(Clone)]
pub struct BudgetPolicy {
    budget: std::sync::Arc<tower::retry::budget::TpsBudget>,
    retries_left: u32,
}

impl<E> tower::retry::Policy<Req, Response<Full<Bytes>>, E> for BudgetPolicy {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _request: &mut Req,
        result: &mut Result<Response<Full<Bytes>>, E>,
    ) -> Option<Self::Future> {
        use tower::retry::budget::Budget;
        if !failed(result) {
            self.budget.deposit();
            return None;
        }
        (self.retries_left > 0 && self.budget.withdraw()).then(|| {
            self.retries_left -= 1;
            ready(())
        })
    }

    fn clone_request(&mut self, request: &Req) -> Option<Req> {
        Some(copy(request))
    }
}

pub fn tower_retry_budget() -> impl Service<Req, Error = Infallible> + Clone {
    tower::retry::RetryLayer::new(BudgetPolicy {
        budget: std::sync::Arc::default(),
        retries_left: 2,
    })
    .layer(handler())
}

/// The `Clone` request tower-resilience's retry needs.
pub struct Cloneable(pub Req);

impl Clone for Cloneable {
    fn clone(&self) -> Self {
        Cloneable(copy(&self.0))
    }
}

pub fn tower_resilience() -> impl Service<Req, Error = Infallible> + Clone {
    let retry = tower_resilience::retry::RetryLayer::<Cloneable, Response<Full<Bytes>>, Infallible>::builder()
        .max_attempts(3)
        .exponential_backoff(Duration::from_millis(25))
        .build();
    ServiceBuilder::new()
        .map_request(Cloneable)
        .layer(retry)
        .service(service_fn(|_req: Cloneable| {
            ready(Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))))
        }))
}
