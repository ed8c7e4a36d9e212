//! The rate limiter's state in Redis, against real `redis-server`s each
//! test starts for itself: one limit across instances, atomic multi-quota
//! decisions, refusals answered locally, and what happens when Redis dies,
//! freezes, and comes back.
//!
//! Quotas here refill over a minute or more: "exactly N through" must not
//! depend on how fast the machine runs the test.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_armor::body::ArmorBody;
use tower_armor::key::{Global, KeyExtractor, KeyLimits, PeerIp};
use tower_armor::rate_limit::{
    Check, MakeStore, Overflow, Quota, RateLimitBuilder, RateLimitLayer, RateStore, Verdict,
};
use tower_armor::redis::{Fallback, RedisConnection, RedisRateStore, RedisRateStoreBuilder};

#[path = "support/recording.rs"]
#[allow(dead_code)]
mod recording;
#[path = "support/redis.rs"]
mod redis;

use recording::{Recording, run_real_time as run};

type Body = Full<Bytes>;

fn service<K: KeyExtractor>(
    builder: RateLimitBuilder<K, RedisRateStoreBuilder>,
) -> impl Service<Request<Body>, Response = Response<ArmorBody<Body>>, Error = Infallible> + Clone
where
    K::Key: tower_armor::redis::StoreKey,
{
    ServiceBuilder::new()
        .layer(builder.build().unwrap())
        .service_fn(|_request: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        })
}

fn from(peer: &str) -> Request<Body> {
    let mut request = Request::new(Body::default());
    request
        .extensions_mut()
        .insert(SocketAddr::new(peer.parse().unwrap(), 40000));
    request
}

async fn status<S>(service: &S, request: Request<Body>) -> StatusCode
where
    S: Service<Request<Body>, Response = Response<ArmorBody<Body>>, Error = Infallible> + Clone,
{
    service.clone().oneshot(request).await.unwrap().status()
}

/// One instance of a service limited to 5 a minute per `key`, its state
/// in Redis through `connection`.
fn instance<K: KeyExtractor>(
    connection: RedisConnection,
    key: K,
) -> impl Service<Request<Body>, Response = Response<ArmorBody<Body>>, Error = Infallible> + Clone
where
    K::Key: tower_armor::redis::StoreKey,
{
    service(
        RateLimitLayer::builder(Quota::per_minute(5))
            .key(key)
            .store_with(RedisRateStore::builder(connection).timeout(Duration::from_secs(5))),
    )
}

/// The value of the counter `armor.rate_limit.store{result}`.
fn store_results(recording: &Recording, result: &str) -> u64 {
    recording::count(
        recording,
        "armor.rate_limit.store",
        &[&format!("result={result}")],
    )
}

fn store<K>(builder: RedisRateStoreBuilder, quotas: &[Quota]) -> RedisRateStore<K>
where
    K: tower_armor::redis::StoreKey + std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    builder
        .make_store(quotas, KeyLimits::default(), Overflow::SharedBucket)
        .unwrap()
}

fn check(cost: u32) -> Check {
    Check {
        cost,
        max_wait: Duration::ZERO,
        want_states: true,
    }
}

#[test]
fn two_instances_against_one_redis_let_exactly_the_quota_through() {
    let Some(server) = redis::RedisServer::start() else {
        return;
    };
    let recording = Recording::new();
    let (allowed, refused) = run(&recording, || async {
        // Two "nodes": separate layers, separate connections, one Redis.
        let node = || instance(RedisConnection::open(&server.url()).unwrap(), Global);
        let (first, second) = (node(), node());
        let requests = (0..1000).map(|i| {
            let node = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            async move { status(&node, Request::new(Body::default())).await }
        });
        let statuses = futures::future::join_all(requests).await;
        let allowed = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        let refused = statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count();
        (allowed, refused)
    });
    assert_eq!((allowed, refused), (5, 995));
    // Every decision came from Redis or from a refusal Redis made earlier.
    assert_eq!(
        store_results(&recording, "ok") + store_results(&recording, "cached"),
        1000
    );
    assert_eq!(store_results(&recording, "error"), 0);
}

#[test]
fn every_quota_of_a_key_is_spent_together_or_not_at_all() {
    let Some(server) = redis::RedisServer::start() else {
        return;
    };
    run(&Recording::new(), || async {
        let connection = RedisConnection::open(&server.url()).unwrap();
        let quotas = [Quota::per_minute(3), Quota::per_hour(10)];
        let store = store::<String>(RedisRateStore::builder(connection), &quotas);
        let key = "client-a".to_owned();
        for _ in 0..3 {
            let decision = store.check(&key, check(1)).await;
            assert_eq!(decision.verdict, Verdict::Allowed);
        }
        let decision = store.check(&key, check(1)).await;
        let Verdict::Refused(Some((wait, quota))) = decision.verdict else {
            panic!("refused with a wait, got {decision:?}");
        };
        assert_eq!(quota, 0, "the per-minute quota refuses");
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // The hourly quota spent 3, not 4: the refusal spent nothing.
        let remaining: Vec<u64> = decision.quotas.iter().map(|q| q.remaining).collect();
        assert_eq!(remaining, [0, 7]);
        // Costs weigh: another key, cost 2, leaves 1 of 3.
        let other = "client-b".to_owned();
        let decision = store.check(&other, check(2)).await;
        assert_eq!(decision.verdict, Verdict::Allowed);
        assert_eq!(decision.quotas[0].remaining, 1);
        assert_eq!(decision.quotas[1].remaining, 8);
        // A cost beyond any burst is refused for good, without asking Redis.
        let before = server.calls("evalsha") + server.calls("eval");
        let decision = store.check(&other, check(4)).await;
        assert_eq!(decision.verdict, Verdict::Refused(None));
        assert_eq!(server.calls("evalsha") + server.calls("eval"), before);
    });
}

#[test]
fn a_key_expires_in_redis_when_it_is_whole_again() {
    let Some(server) = redis::RedisServer::start() else {
        return;
    };
    run(&Recording::new(), || async {
        let connection = RedisConnection::open(&server.url()).unwrap();
        let quotas = [
            Quota::per_minute(6),
            Quota::new(10, Duration::from_secs(3600)),
        ];
        let store = store::<String>(RedisRateStore::builder(connection).prefix("t"), &quotas);
        let key = "k".to_owned();
        assert_eq!(store.check(&key, check(1)).await.verdict, Verdict::Allowed);
        // One unit of the hourly quota takes 6 minutes to come back: the
        // key is whole again then, not after the hour.
        let ttl: i64 = server
            .command("PTTL t:{k}")
            .unwrap()
            .trim_start_matches(':')
            .parse()
            .unwrap();
        assert!(ttl > 350_000 && ttl <= 360_000, "PTTL {ttl}");
        assert_eq!(server.command("EXISTS t:{other}").as_deref(), Some(":0"));
    });
}

#[test]
fn a_refused_key_is_refused_locally_until_it_could_pass() {
    let Some(server) = redis::RedisServer::start() else {
        return;
    };
    let recording = Recording::new();
    run(&recording, || async {
        let connection = RedisConnection::open(&server.url()).unwrap();
        let store = store::<String>(RedisRateStore::builder(connection), &[Quota::per_minute(2)]);
        let key = "flood".to_owned();
        for _ in 0..3 {
            store.check(&key, check(1)).await;
        }
        let asked = server.calls("evalsha") + server.calls("eval");
        for _ in 0..500 {
            let decision = store.check(&key, check(1)).await;
            assert!(matches!(decision.verdict, Verdict::Refused(Some(_))));
            assert_eq!(decision.quotas[0].remaining, 0);
        }
        assert_eq!(
            server.calls("evalsha") + server.calls("eval"),
            asked,
            "no round trip"
        );
        assert_eq!(store_results(&recording, "cached"), 500);
        // Another key still goes to Redis.
        let decision = store.check(&"calm".to_owned(), check(1)).await;
        assert_eq!(decision.verdict, Verdict::Allowed);
        assert_eq!(server.calls("evalsha") + server.calls("eval"), asked + 1);
    });
}

/// Requests through a layer whose Redis is killed, then restarted.
fn through_an_outage(fallback: Fallback) -> (Vec<StatusCode>, Recording, bool) {
    let Some(mut server) = redis::RedisServer::start() else {
        return (Vec::new(), Recording::new(), false);
    };
    let recording = Recording::new();
    let statuses = run(&recording, || async {
        let connection = RedisConnection::open(&server.url()).unwrap();
        let limited = service(
            RateLimitLayer::builder(Quota::per_minute(10))
                .key(PeerIp)
                .store_with(RedisRateStore::builder(connection).fallback(fallback)),
        );
        assert_eq!(status(&limited, from("192.0.2.1")).await, StatusCode::OK);
        server.kill();
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(status(&limited, from("192.0.2.2")).await);
        }
        server.restart();
        // Back within a second or so (the breaker probes at most a second
        // apart): the fresh, empty Redis decides again.
        let ok_before = store_results(&recording, "ok");
        let wait = Duration::from_secs(10);
        redis::eventually("the store never recovered", wait, || async {
            status(&limited, from("192.0.2.3")).await;
            match store_results(&recording, "ok") {
                ok if ok > ok_before => Ok(()),
                ok => Err(format!("{ok} decided by Redis")),
            }
        })
        .await;
        statuses
    });
    (statuses, recording, true)
}

#[test]
fn fail_open_lets_every_request_through_while_redis_is_down() {
    let (statuses, recording, ran) = through_an_outage(Fallback::Allow);
    if !ran {
        return;
    }
    assert_eq!(statuses, vec![StatusCode::OK; 20]);
    let failed = store_results(&recording, "error")
        + store_results(&recording, "timeout")
        + store_results(&recording, "fallback");
    assert!(failed >= 20, "{failed}");
    assert!(
        store_results(&recording, "fallback") > 0,
        "the breaker opened"
    );
}

#[test]
fn fail_closed_refuses_with_503_while_redis_is_down() {
    let Some(server) = redis::RedisServer::start() else {
        return;
    };
    let addr = server.url();
    drop(server);
    run(&Recording::new(), || async {
        let connection = RedisConnection::open(&addr).unwrap();
        let limited = service(
            RateLimitLayer::builder(Quota::per_minute(10))
                .key(PeerIp)
                .store_with(RedisRateStore::builder(connection).fallback(Fallback::Refuse)),
        );
        let response = limited.clone().oneshot(from("192.0.2.1")).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().get("retry-after").is_none());
        assert!(
            response.headers().get("ratelimit").is_none(),
            "no made-up numbers"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("store_unavailable"), "{body}");
    });
    let (statuses, _, ran) = through_an_outage(Fallback::Refuse);
    if ran {
        assert_eq!(statuses, vec![StatusCode::SERVICE_UNAVAILABLE; 20]);
    }
}

#[test]
fn local_fallback_limits_each_instance_to_its_share() {
    let (statuses, _, ran) = through_an_outage(Fallback::Local(0.5));
    if !ran {
        return;
    }
    // Half of 10 per minute, in this process.
    let allowed = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(allowed, 5, "{statuses:?}");
    assert!(
        statuses[5..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS)
    );
}

#[test]
fn a_frozen_redis_costs_each_request_at_most_the_timeout_until_the_breaker_opens() {
    let Some(server) = redis::RedisServer::start() else {
        return;
    };
    let recording = Recording::new();
    run(&recording, || async {
        let connection = RedisConnection::open(&server.url()).unwrap();
        let limited = service(
            RateLimitLayer::builder(Quota::per_minute(1000))
                .key(PeerIp)
                .store_with(RedisRateStore::builder(connection)),
        );
        assert_eq!(status(&limited, from("192.0.2.1")).await, StatusCode::OK);
        server.pause();
        // From here on Tokio's clock only moves when every task waits on a
        // timer: a request's wait for a frozen Redis is its timeout exactly.
        tokio::time::pause();
        let started = tokio::time::Instant::now();
        for _ in 0..100 {
            assert_eq!(status(&limited, from("192.0.2.1")).await, StatusCode::OK);
        }
        let waited = started.elapsed();
        tokio::time::resume();
        server.resume();
        let timeouts = store_results(&recording, "timeout");
        assert!((1..=10).contains(&timeouts), "{timeouts} timed out");
        assert_eq!(store_results(&recording, "fallback"), 100 - timeouts);
        // Without the breaker: 100 × 50 ms.
        assert!(waited <= Duration::from_millis(50) * 10, "{waited:?}");
    });
}

#[test]
fn instances_share_one_limit_over_a_three_node_cluster() {
    let Some(cluster) = redis::RedisCluster::start() else {
        return;
    };
    let recording = Recording::new();
    let statuses = run(&recording, || async {
        let urls = cluster.urls();
        let node = || {
            let connection = RedisConnection::cluster(urls.iter().map(String::as_str)).unwrap();
            instance(connection, PeerIp)
        };
        let (first, second) = (node(), node());
        // 20 clients, 50 requests each, split across the two instances.
        let requests = (0..1000).map(|i| {
            let node = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let client = format!("192.0.2.{}", i % 20);
            async move { (i % 20, status(&node, from(&client)).await) }
        });
        futures::future::join_all(requests).await
    });
    for client in 0..20 {
        let allowed = statuses
            .iter()
            .filter(|(who, status)| *who == client && *status == StatusCode::OK)
            .count();
        assert_eq!(allowed, 5, "client {client}");
    }
    assert_eq!(store_results(&recording, "error"), 0);
    // The clients' keys spread over the nodes' slots.
    let holding = cluster
        .nodes
        .iter()
        .filter(|node| node.command("DBSIZE").as_deref() != Some(":0"))
        .count();
    assert!(holding >= 2, "keys on {holding} node(s)");
}

#[test]
fn a_connection_needs_a_runtime_and_a_valid_url() {
    let error = RedisConnection::open("redis://127.0.0.1:1/").unwrap_err();
    assert!(error.to_string().contains("Tokio runtime"), "{error}");
    run(&Recording::new(), || async {
        let error = RedisConnection::open("not a url").unwrap_err();
        assert_eq!(error.layer(), "redis");
        let error = RedisConnection::cluster([]).unwrap_err();
        assert!(error.to_string().contains("at least one node"), "{error}");
        let connection = RedisConnection::open("redis://127.0.0.1:1/").unwrap();
        let build = |fallback: Fallback, timeout: Duration| {
            RateLimitLayer::builder(Quota::per_second(5))
                .store_with(
                    RedisRateStore::builder(connection.clone())
                        .fallback(fallback)
                        .timeout(timeout),
                )
                .build()
                .map(drop)
        };
        for share in [0.0, -1.0, 1.5, f64::NAN] {
            let error = build(Fallback::Local(share), Duration::from_millis(50)).unwrap_err();
            assert!(error.to_string().contains("share"), "{error}");
        }
        assert!(build(Fallback::Local(1.0), Duration::from_millis(50)).is_ok());
        let error = build(Fallback::Allow, Duration::ZERO).unwrap_err();
        assert!(error.to_string().contains("timeout"), "{error}");
    });
}

#[test]
fn redis_killed_while_requests_are_in_flight_loses_none_when_failing_open() {
    let Some(mut server) = redis::RedisServer::start() else {
        return;
    };
    let recording = Recording::new();
    let statuses = run(&recording, || async {
        let connection = RedisConnection::open(&server.url()).unwrap();
        let limited = service(
            RateLimitLayer::builder(Quota::per_minute(100_000))
                .key(PeerIp)
                .store_with(RedisRateStore::builder(connection)),
        );
        assert_eq!(status(&limited, from("192.0.2.1")).await, StatusCode::OK);
        let requests = (0..300).map(|i| {
            let limited = limited.clone();
            async move { status(&limited, from(&format!("192.0.2.{}", i % 250))).await }
        });
        // Every request has started (queued or sent) before the kill.
        let killer = async {
            tokio::task::yield_now().await;
            server.kill();
        };
        let (statuses, ()) = tokio::join!(futures::future::join_all(requests), killer);
        statuses
    });
    assert_eq!(statuses, vec![StatusCode::OK; 300]);
    let failed = store_results(&recording, "error")
        + store_results(&recording, "timeout")
        + store_results(&recording, "fallback");
    assert!(failed > 0, "some requests met the outage");
}

#[test]
fn a_script_flushed_from_redis_is_loaded_again() {
    let Some(server) = redis::RedisServer::start() else {
        return;
    };
    let recording = Recording::new();
    run(&recording, || async {
        let connection = RedisConnection::open(&server.url()).unwrap();
        let store = store::<String>(
            RedisRateStore::builder(connection),
            &[Quota::per_minute(10)],
        );
        let key = "k".to_owned();
        assert_eq!(store.check(&key, check(1)).await.verdict, Verdict::Allowed);
        // A failover or a restart empties Redis's script cache: EVALSHA
        // answers NOSCRIPT, and the script is sent again.
        assert_eq!(server.command("SCRIPT FLUSH").as_deref(), Some("+OK"));
        let decision = store.check(&key, check(1)).await;
        assert_eq!(decision.verdict, Verdict::Allowed);
        assert_eq!(decision.quotas[0].remaining, 8, "the state survived");
    });
    assert_eq!(store_results(&recording, "ok"), 2);
    assert_eq!(store_results(&recording, "error"), 0);
}

/// Warnings logged while `run` runs: each event's fields as `name=value`.
fn warnings_during(run: impl FnOnce()) -> Vec<String> {
    use std::sync::{Arc, Mutex};

    struct Fields<'a>(&'a mut String);
    impl tracing::field::Visit for Fields<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!("{}={:?} ", field.name(), value));
        }
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            self.0.push_str(&format!("{}={} ", field.name(), value));
        }
    }
    struct Warnings(Arc<Mutex<Vec<String>>>);
    impl tracing::Subscriber for Warnings {
        fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
            *metadata.level() == tracing::Level::WARN
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut text = String::new();
            event.record(&mut Fields(&mut text));
            self.0.lock().unwrap().push(text);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::with_default(Warnings(seen.clone()), run);
    let mut warnings = seen.lock().unwrap();
    std::mem::take(&mut *warnings)
}

#[test]
fn failures_are_logged_at_most_once_every_ten_seconds() {
    let warnings = warnings_during(|| {
        run(&Recording::new(), || async {
            // Nothing listens on port 1: every call fails at once.
            let connection = RedisConnection::open("redis://127.0.0.1:1/").unwrap();
            let limited = service(
                RateLimitLayer::builder(Quota::per_minute(10))
                    .key(PeerIp)
                    .store_with(RedisRateStore::builder(connection).name("shared")),
            );
            tokio::time::pause();
            for _ in 0..20 {
                assert_eq!(status(&limited, from("192.0.2.1")).await, StatusCode::OK);
            }
            tokio::time::advance(Duration::from_millis(9_900)).await;
            status(&limited, from("192.0.2.1")).await;
            tokio::time::advance(Duration::from_millis(100)).await;
            status(&limited, from("192.0.2.1")).await;
        })
    });
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(warnings[0].contains("name=shared"), "{}", warnings[0]);
    // Refused connections are retried quickly by the connection, so the
    // call runs out of time first.
    assert!(warnings[0].contains("result=timeout"), "{}", warnings[0]);
    assert!(
        warnings[0].contains("did not answer in time"),
        "{}",
        warnings[0]
    );
    // Ten seconds on, the breaker's probe times out too, and says so.
    assert!(warnings[1].contains("name=shared"), "{}", warnings[1]);
    assert!(warnings[1].contains("result=timeout"), "{}", warnings[1]);
}

#[test]
fn the_stores_task_ends_with_the_store() {
    let Some(server) = redis::RedisServer::start() else {
        return;
    };
    run(&Recording::new(), || async {
        let connection = RedisConnection::open(&server.url()).unwrap();
        let alive = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let settle = || async {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        };
        // The connection's own tasks start with its first use.
        let first = store::<String>(
            RedisRateStore::builder(connection.clone()),
            &[Quota::per_minute(10)],
        );
        first.check(&"k".to_owned(), check(1)).await;
        settle().await;
        let before = alive();
        let store = store::<String>(
            RedisRateStore::builder(connection),
            &[Quota::per_minute(10)],
        );
        assert_eq!(
            store.check(&"k".to_owned(), check(1)).await.verdict,
            Verdict::Allowed
        );
        settle().await;
        assert_eq!(alive(), before + 1, "one sending task per store");
        drop(store);
        settle().await;
        assert_eq!(alive(), before, "and it is gone with the store");
    });
}

#[test]
fn a_decision_may_wait_for_its_turn_which_is_spent_in_advance() {
    let Some(server) = redis::RedisServer::start() else {
        return;
    };
    run(&Recording::new(), || async {
        let connection = RedisConnection::open(&server.url()).unwrap();
        let store = store::<String>(RedisRateStore::builder(connection), &[Quota::per_minute(1)]);
        let key = "patient".to_owned();
        let waiting = |seconds| Check {
            cost: 1,
            max_wait: Duration::from_secs(seconds),
            want_states: false,
        };
        assert_eq!(
            store.check(&key, waiting(90)).await.verdict,
            Verdict::Allowed
        );
        let Verdict::Delayed(wait) = store.check(&key, waiting(90)).await.verdict else {
            panic!("a wait within 90 s");
        };
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        // The next turn is two minutes off: past the 90 s it may wait.
        let Verdict::Refused(Some((wait, 0))) = store.check(&key, waiting(90)).await.verdict else {
            panic!("refused");
        };
        assert!(
            wait > Duration::from_secs(115) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        // A refusal remembered locally is still asked about when the wait
        // allowed reaches its end: 130 s is enough.
        assert!(matches!(
            store.check(&key, waiting(130)).await.verdict,
            Verdict::Delayed(_)
        ));
    });
}

#[test]
fn a_call_dropped_midway_is_reported_to_the_breaker_as_cancelled() {
    let Some(server) = redis::RedisServer::start() else {
        return;
    };
    let recording = Recording::new();
    run(&recording, || async {
        let connection = RedisConnection::open(&server.url()).unwrap();
        let store = store::<String>(
            RedisRateStore::builder(connection).name("dropped"),
            &[Quota::per_minute(10)],
        );
        // Connected and warm.
        store.check(&"warm".to_owned(), check(1)).await;
        server.pause();
        let pending = store.check(&"k".to_owned(), check(1));
        // Polled once: the call is on its way, then the caller goes away.
        let _ = tokio::time::timeout(Duration::from_millis(5), pending).await;
        server.resume();
    });
    let cancelled = recording::count(
        &recording,
        "armor.circuit_breaker.calls",
        &["name=dropped", "outcome=cancelled"],
    );
    assert_eq!(cancelled, 1);
}

#[test]
fn a_reset_key_is_whole_again_everywhere() {
    let Some(server) = redis::RedisServer::start() else {
        return;
    };
    let store = run(&Recording::new(), || async {
        let connection = RedisConnection::open(&server.url()).unwrap();
        let store = store::<String>(RedisRateStore::builder(connection), &[Quota::per_minute(1)]);
        let key = "k".to_owned();
        store.check(&key, check(1)).await;
        assert!(matches!(
            store.check(&key, check(1)).await.verdict,
            Verdict::Refused(_)
        ));
        assert!(store.reset(&key), "reset in the background");
        // Its state in Redis is deleted, and its local refusal forgotten.
        let wait = Duration::from_secs(5);
        redis::eventually("the key's state is still in Redis", wait, || async {
            match server.command("EXISTS armor:rate_limit:{k}").as_deref() {
                Some(":0") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert_eq!(store.check(&key, check(1)).await.verdict, Verdict::Allowed);
        store
    });
    // Outside a runtime nothing can reach Redis: it says so.
    assert!(!store.reset(&"k".to_owned()));
}
