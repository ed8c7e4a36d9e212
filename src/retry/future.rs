use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::HeaderName;
use http::{Extensions, HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_service::Service;

use super::body::{AttemptBody, Replayer};
use super::budget::{Budget, Budgets};
use super::policy::{Hint, grpc_pushback, retry_after};
use super::shared::{AttemptLabel, RetryCheck, Shared};
use crate::body::ArmorBody;
use crate::classify::{Classification, Classify, Outcome};
use crate::deadline::Deadline;
use crate::grpc::{GrpcCode, Protocol};
use crate::key::KeyExtractor;
use crate::reject::{Reason, Rejection};
use crate::timer::LazySleep;

/// The parts of a request kept to rebuild it for another attempt.
///
/// Headers are kept as a list of pairs rather than a `HeaderMap` clone: a
/// template is only read back in order, so it needs no hash index, and the
/// list takes one allocation where a map clone takes two (its index and its
/// entries) on every request that may be retried.
pub(crate) struct Template {
    method: Method,
    uri: Uri,
    version: Version,
    headers: Vec<(HeaderName, HeaderValue)>,
    extensions: Extensions,
}

impl Template {
    #[inline]
    pub(crate) fn of(parts: &http::request::Parts) -> Self {
        Template {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            // Sized exactly up front: `collect` over a map's iterator cannot.
            headers: {
                let mut headers = Vec::with_capacity(parts.headers.len());
                for (name, value) in &parts.headers {
                    headers.push((name.clone(), value.clone()));
                }
                headers
            },
            extensions: parts.extensions.clone(),
        }
    }

    fn request<T>(&self, body: T) -> Request<T> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        let headers = request.headers_mut();
        headers.reserve(self.headers.len());
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        *request.extensions_mut() = self.extensions.clone();
        request
    }
}

/// What a request that may be retried carries between attempts.
pub(crate) struct Retrying<S, B, A> {
    service: S,
    template: Template,
    replayer: Replayer<B>,
    adapter: A,
    previous_delay: Duration,
}

pin_project! {
    /// The response future of [`Retry`](super::Retry).
    pub struct ResponseFuture<S, B, A, E, C>
    where
        A: AttemptBody<B>,
        S: Service<Request<A::Body>>,
        E: KeyExtractor,
    {
        #[pin]
        state: State<S::Future>,
        // The per-try timeout while calling; the backoff while waiting.
        #[pin]
        timer: Option<LazySleep>,
        retrying: Option<Retrying<S, B, A>>,
        shared: Arc<Shared<E, C>>,
        keyed_budget: Option<Arc<Budget>>,
        attempt: u32,
        protocol: Protocol,
        deadline: Option<Deadline>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] future: F },
        Waiting,
        Readying,
        // Refused before any attempt (a request without a key, refused).
        Refused { response: Option<Response<Bytes>> },
        Done,
    }
}

/// How an attempt ended.
enum Answer<R, E> {
    Response(R),
    Error(E),
    /// The per-try timeout ran out first.
    TimedOut,
}

/// What an answer means for retrying.
enum Verdict {
    Success,
    /// A layer further in refused the call locally.
    Refused,
    Failure {
        retryable: bool,
        hint: Hint,
    },
}

impl<S, B, A, E, C> ResponseFuture<S, B, A, E, C>
where
    A: AttemptBody<B>,
    S: Service<Request<A::Body>>,
    E: KeyExtractor,
    C: Classify,
{
    /// The future of a request that goes through once, as it is.
    #[inline]
    pub(crate) fn once(
        future: S::Future,
        shared: Arc<Shared<E, C>>,
        keyed_budget: Option<Arc<Budget>>,
        protocol: Protocol,
        deadline: Option<Deadline>,
    ) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            timer: per_try_timer(&shared, deadline),
            retrying: None,
            shared,
            keyed_budget,
            attempt: 1,
            protocol,
            deadline,
        }
    }

    /// The future of a request refused before any attempt.
    pub(crate) fn refused(response: Response<Bytes>, shared: Arc<Shared<E, C>>) -> Self {
        ResponseFuture {
            state: State::Refused {
                response: Some(response),
            },
            timer: None,
            retrying: None,
            shared,
            keyed_budget: None,
            attempt: 1,
            protocol: Protocol::Http,
            deadline: None,
        }
    }

    /// The future of a request that may be retried. Built in one expression
    /// so the large parts are written in place rather than moved twice.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn retrying(
        future: S::Future,
        service: S,
        template: Template,
        replayer: Replayer<B>,
        adapter: A,
        shared: Arc<Shared<E, C>>,
        keyed_budget: Option<Arc<Budget>>,
        protocol: Protocol,
        deadline: Option<Deadline>,
    ) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            timer: per_try_timer(&shared, deadline),
            retrying: Some(Retrying {
                service,
                template,
                replayer,
                adapter,
                previous_delay: Duration::ZERO,
            }),
            shared,
            keyed_budget,
            attempt: 1,
            protocol,
            deadline,
        }
    }
}

/// The timer of one attempt: the per-try timeout, cut to the deadline.
#[inline]
fn per_try_timer<E: KeyExtractor, C>(
    shared: &Shared<E, C>,
    deadline: Option<Deadline>,
) -> Option<LazySleep> {
    let per_try = shared.settings.per_try_timeout?;
    let mut at = Instant::now() + per_try;
    if let Some(deadline) = deadline {
        at = at.min(deadline.instant());
    }
    Some(LazySleep::until(at))
}

impl<S, B, A, E, C, ResBody> Future for ResponseFuture<S, B, A, E, C>
where
    A: AttemptBody<B>,
    S: Service<Request<A::Body>, Response = Response<ResBody>>,
    B: http_body::Body,
    E: KeyExtractor,
    C: Classify,
{
    type Output = Result<Response<ArmorBody<ResBody>>, S::Error>;

    /// Polls the attempt in flight. The usual case, an attempt that answers
    /// with a success, is kept small here so it inlines into the caller;
    /// everything else is in `drive`, which comes back here whenever it has
    /// started another attempt.
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let step = {
                let mut this = self.as_mut().project();
                match this.state.as_mut().project() {
                    StateProj::Calling { future } => match future.poll(cx) {
                        Poll::Ready(Ok(response)) => {
                            let shared: &Shared<E, C> = this.shared;
                            let attempt = *this.attempt;
                            let retrying = this.retrying.as_ref();
                            let verdict = judge_response(
                                shared,
                                *this.protocol,
                                attempt,
                                retrying,
                                &response,
                            );
                            if let Verdict::Success = verdict {
                                // Passed on without more moves (the timer goes
                                // when this future is dropped).
                                this.state.set(State::Done);
                                settle(shared, this.keyed_budget.as_deref(), attempt, &verdict);
                                return Poll::Ready(Ok(response.map(ArmorBody::inner)));
                            }
                            Step::Answered(Answer::Response(response), verdict)
                        }
                        Poll::Ready(Err(error)) => {
                            let verdict = judge_error(
                                this.shared,
                                *this.attempt,
                                this.retrying.as_ref(),
                                &error,
                            );
                            Step::Answered(Answer::Error(error), verdict)
                        }
                        Poll::Pending => Step::Pending,
                    },
                    _ => Step::Other,
                }
            };
            if let Some(poll) = self.as_mut().drive(cx, step) {
                return poll;
            }
        }
    }
}

/// Where `poll`'s short path left off.
enum Step<R, E> {
    /// The attempt answered with something other than a success.
    Answered(Answer<R, E>, Verdict),
    /// The attempt has not answered yet.
    Pending,
    /// Not calling: waiting, readying or done.
    Other,
}

impl<S, B, A, E, C, ResBody> ResponseFuture<S, B, A, E, C>
where
    A: AttemptBody<B>,
    S: Service<Request<A::Body>, Response = Response<ResBody>>,
    B: http_body::Body,
    E: KeyExtractor,
    C: Classify,
{
    /// Everything but an attempt that succeeds: failures, per-try timeouts,
    /// backoff waits, and starting the next attempt. `None` when an attempt
    /// has been started, for `poll` to poll it.
    #[inline(never)]
    fn drive(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut step: Step<Response<ResBody>, S::Error>,
    ) -> Option<Poll<<Self as Future>::Output>> {
        let mut this = self.project();
        loop {
            let shared: &Shared<E, C> = this.shared;
            match std::mem::replace(&mut step, Step::Other) {
                Step::Answered(answer, verdict) => {
                    // Drops the attempt (and, on a timeout, cancels it).
                    this.state.set(State::Done);
                    this.timer.set(None);
                    let attempt = *this.attempt;
                    let budget = settle(shared, this.keyed_budget.as_deref(), attempt, &verdict);
                    let delay = match verdict {
                        Verdict::Success | Verdict::Refused => None,
                        Verdict::Failure { retryable, hint } => {
                            let delay = retryable
                                .then(|| {
                                    next_delay(
                                        shared,
                                        budget,
                                        this.retrying.as_mut(),
                                        *this.deadline,
                                        attempt,
                                        hint,
                                    )
                                })
                                .flatten();
                            let label = if delay.is_some() {
                                AttemptLabel::Retried
                            } else {
                                AttemptLabel::Failed
                            };
                            shared.observer.attempt(label);
                            delay
                        }
                    };
                    let Some(delay) = delay else {
                        return Some(Poll::Ready(finish(shared, *this.protocol, attempt, answer)));
                    };
                    tracing::debug!(
                        name = &*shared.observer.name,
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        "retrying"
                    );
                    drop(answer);
                    this.timer
                        .set(Some(LazySleep::until(Instant::now() + delay)));
                    this.state.set(State::Waiting);
                    continue;
                }
                Step::Pending => {
                    let expired = this
                        .timer
                        .as_mut()
                        .as_pin_mut()
                        .is_some_and(|timer| timer.poll(cx).is_ready());
                    if !expired {
                        return Some(Poll::Pending);
                    }
                    let verdict = Verdict::Failure {
                        retryable: true,
                        hint: Hint::None,
                    };
                    step = Step::Answered(Answer::TimedOut, verdict);
                    continue;
                }
                Step::Other => {}
            }
            match this.state.as_mut().project() {
                StateProj::Calling { .. } => return None,
                StateProj::Waiting => {
                    let waiting = this
                        .timer
                        .as_mut()
                        .as_pin_mut()
                        .is_some_and(|timer| timer.poll(cx).is_pending());
                    if waiting {
                        return Some(Poll::Pending);
                    }
                    this.timer.set(None);
                    this.state.set(State::Readying);
                }
                StateProj::Readying => {
                    let retrying = this
                        .retrying
                        .as_mut()
                        .expect("only a request that may be retried waits for another attempt");
                    match retrying.service.poll_ready(cx) {
                        Poll::Pending => return Some(Poll::Pending),
                        Poll::Ready(Err(error)) => {
                            this.state.set(State::Done);
                            return Some(Poll::Ready(Err(error)));
                        }
                        Poll::Ready(Ok(())) => {}
                    }
                    let previous = *this.attempt;
                    *this.attempt += 1;
                    let body = retrying.adapter.attempt_body(retrying.replayer.replay());
                    let mut request = retrying.template.request(body);
                    if this.protocol.is_grpc() {
                        request
                            .headers_mut()
                            .insert("grpc-previous-rpc-attempts", HeaderValue::from(previous));
                    }
                    let future = retrying.service.call(request);
                    this.timer.set(per_try_timer(this.shared, *this.deadline));
                    this.state.set(State::Calling { future });
                    return None;
                }
                StateProj::Refused { response } => {
                    let response = response
                        .take()
                        .expect("retry future polled after completion");
                    this.state.set(State::Done);
                    return Some(Poll::Ready(Ok(response.map(ArmorBody::full))));
                }
                StateProj::Done => panic!("retry future polled after completion"),
            }
        }
    }
}

/// Counts an attempt's answer in the budget (the first attempt's, unless a
/// layer further in refused it) and, for answers passed on as they are, in
/// the metrics; returns the request's budget.
#[inline]
fn settle<'a, E: KeyExtractor, C>(
    shared: &'a Shared<E, C>,
    keyed_budget: Option<&'a Budget>,
    attempt: u32,
    verdict: &Verdict,
) -> Option<&'a Budget> {
    let budget = match &shared.budgets {
        Budgets::Off => None,
        Budgets::Single(budget) => Some(&**budget),
        Budgets::Keyed(_) => keyed_budget,
    };
    if attempt == 1 && !matches!(verdict, Verdict::Refused) {
        if let Some(budget) = budget {
            budget.deposit();
        }
    }
    match verdict {
        Verdict::Success => shared.observer.attempt(AttemptLabel::Success),
        Verdict::Refused => shared.observer.attempt(AttemptLabel::Refused),
        Verdict::Failure { .. } => {}
    }
    budget
}

/// What a service error means, before attempts, budget and time are counted.
fn judge_error<E: KeyExtractor, C: Classify, S, B, A, Err>(
    shared: &Shared<E, C>,
    attempt: u32,
    retrying: Option<&Retrying<S, B, A>>,
    error: &Err,
) -> Verdict {
    let user = ask_user(shared, retrying, attempt, None);
    let failed = matches!(
        shared.classifier.classify_error(error),
        Outcome::Failure(_) | Outcome::TimedOut
    );
    match (user, failed) {
        (Some(retryable), _) => Verdict::Failure {
            retryable,
            hint: Hint::None,
        },
        (None, true) => Verdict::Failure {
            retryable: true,
            hint: Hint::None,
        },
        (None, false) => Verdict::Success,
    }
}

/// What a response means, before attempts, budget and time are counted.
#[inline]
fn judge_response<E: KeyExtractor, C: Classify, S, B, A, R>(
    shared: &Shared<E, C>,
    protocol: Protocol,
    attempt: u32,
    retrying: Option<&Retrying<S, B, A>>,
    response: &Response<R>,
) -> Verdict {
    if let Some(rejection) = response.extensions().get::<Rejection>() {
        // A timeout further in (a per-try timeout layer) is worth another
        // try; other local refusals protect the service and are passed on.
        return match rejection.reason() {
            Reason::TimedOut => Verdict::Failure {
                retryable: true,
                hint: Hint::None,
            },
            _ => Verdict::Refused,
        };
    }
    let headers = response.headers();
    let hint = || {
        if protocol.is_grpc() {
            grpc_pushback(headers)
        } else {
            retry_after(headers, SystemTime::now())
        }
    };
    let failed = matches!(
        shared.classifier.classify_response_to(protocol, response),
        Classification::Done(Outcome::Failure(_) | Outcome::TimedOut)
    );
    let user = ask_user(
        shared,
        retrying,
        attempt,
        Some((response.status(), headers)),
    );
    let retryable = match user {
        Some(retryable) => retryable,
        None if protocol.is_grpc() => {
            // Only a status known at the head can be retried: once a stream
            // has begun, the answer is the caller's.
            let code = GrpcCode::from_headers(headers).or_else(|| {
                (response.status() != http::StatusCode::OK)
                    .then(|| GrpcCode::from_http_status(response.status()))
            });
            code.is_some_and(|code| shared.settings.grpc_codes & (1 << code.as_u8()) != 0)
        }
        None => failed || response.status() == http::StatusCode::TOO_MANY_REQUESTS,
    };
    if retryable {
        Verdict::Failure {
            retryable,
            hint: hint(),
        }
    } else if failed {
        Verdict::Failure {
            retryable,
            hint: Hint::None,
        }
    } else {
        Verdict::Success
    }
}

fn ask_user<E: KeyExtractor, C, S, B, A>(
    shared: &Shared<E, C>,
    retrying: Option<&Retrying<S, B, A>>,
    attempt: u32,
    response: Option<(http::StatusCode, &HeaderMap)>,
) -> Option<bool> {
    let decide = shared.decide.as_ref()?;
    let template = &retrying?.template;
    decide(&RetryCheck {
        method: &template.method,
        uri: &template.uri,
        attempt,
        response,
    })
}

/// The wait before the next attempt, or `None` when there is none: no
/// attempts left, a body that cannot be replayed, a server that said stop or
/// asked too long a wait, too little time before the deadline, or no budget.
fn next_delay<E: KeyExtractor, C, S, B: http_body::Body, A>(
    shared: &Shared<E, C>,
    budget: Option<&Budget>,
    retrying: Option<&mut Retrying<S, B, A>>,
    deadline: Option<Deadline>,
    attempt: u32,
    hint: Hint,
) -> Option<Duration> {
    let retrying = retrying?;
    let settings = &shared.settings;
    if attempt >= settings.max_attempts || !retrying.replayer.can_replay() {
        return None;
    }
    let delay = match hint {
        Hint::Stop => return None,
        Hint::After(wait) if wait > settings.max_server_delay => return None,
        Hint::After(wait) => wait,
        Hint::None => {
            settings
                .backoff
                .delay(attempt, retrying.previous_delay, shared.jitter.next_u64())
        }
    };
    if deadline.is_some_and(|deadline| delay >= deadline.remaining()) {
        return None;
    }
    if budget.is_some_and(|budget| !budget.withdraw()) {
        shared.observer.handles(|h| h.budget_exhausted.increment(1));
        tracing::debug!(name = &*shared.observer.name, "retry budget exhausted");
        return None;
    }
    retrying.previous_delay = delay;
    Some(delay)
}

/// The caller's answer: the last attempt's, or a 504 if it timed out.
fn finish<E: KeyExtractor, C, R, Err>(
    shared: &Shared<E, C>,
    protocol: Protocol,
    attempt: u32,
    answer: Answer<Response<R>, Err>,
) -> Result<Response<ArmorBody<R>>, Err> {
    match answer {
        Answer::Response(response) => Ok(response.map(ArmorBody::inner)),
        Answer::Error(error) => Err(error),
        Answer::TimedOut => {
            let timeout = shared.settings.per_try_timeout.unwrap_or_default();
            let rejection = Rejection::new("retry", Reason::TimedOut).with_detail(format!(
                "attempt {attempt} got no answer within {timeout:?}"
            ));
            Ok(shared.renderer.render(rejection, protocol))
        }
    }
}
