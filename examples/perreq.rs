//! Runs N requests through one named stack, for counting instructions per
//! request under callgrind (see `benches/instructions-per-request.sh` and
//! BENCHMARKS.md):
//!
//! ```text
//! cargo build --release --features full --example perreq
//! benches/instructions-per-request.sh target/release/examples/perreq armor          # a timeout stack
//! benches/instructions-per-request.sh target/release/examples/perreq rl:armor-global
//! benches/instructions-per-request.sh target/release/examples/perreq cb:armor       # a breaker, closed
//! benches/instructions-per-request.sh target/release/examples/perreq retry:armor    # first attempt succeeds
//! benches/instructions-per-request.sh target/release/examples/perreq compression:armor  # a small answer left alone
//! benches/instructions-per-request.sh target/release/examples/perreq metrics:armor  # request metrics, body read to its end
//! benches/instructions-per-request.sh target/release/examples/perreq health:armor   # a request that is not a probe
//! benches/instructions-per-request.sh target/release/examples/perreq cache:hit-1k    # a hit, body read (also bare-1k, miss-1k, anchor-hit-1k, -64k)
//! benches/instructions-per-request.sh target/release/examples/perreq preset:preset  # the server preset (also bare, preset-without-PART)
//! ```

#[path = "../benches/support/common.rs"]
mod common;

#[path = "../benches/support/timeout_stacks.rs"]
#[allow(dead_code)]
mod stacks;

#[path = "../benches/support/rate_limit_stacks.rs"]
#[allow(dead_code)]
mod rate_limit_stacks;

#[path = "../benches/support/circuit_breaker_stacks.rs"]
#[allow(dead_code)]
mod circuit_breaker_stacks;

#[path = "../benches/support/retry_stacks.rs"]
#[allow(dead_code)]
mod retry_stacks;

#[path = "../benches/support/metrics_stacks.rs"]
mod metrics_stacks;

#[path = "../benches/support/health_stacks.rs"]
mod health_stacks;

#[path = "../benches/support/cache_stacks.rs"]
mod cache_stacks;

#[path = "../benches/support/preset_stacks.rs"]
mod preset_stacks;

#[path = "../benches/support/compression_driver.rs"]
mod compression_driver;

#[path = "../benches/support/compression_stacks.rs"]
mod compression_stacks;

/// Compression stacks around a small JSON answer neither layer compresses,
/// read to its end, by name.
fn run_compression(name: &str, n: u64) -> bool {
    use compression_driver as c;
    use compression_stacks as stacks;
    let small = br#"{"ok":true}"#;
    fn go<S, B>(mut service: S, n: u64)
    where
        S: tower::Service<c::Req, Response = http::Response<B>>,
        S::Error: std::fmt::Debug,
        B: http_body::Body,
        B::Error: std::fmt::Debug,
    {
        for _ in 0..n {
            c::compressed_len(&mut service, "gzip, br");
        }
    }
    match name {
        "bare" => go(
            c::handler(bytes::Bytes::from_static(small), "application/json"),
            n,
        ),
        "armor" => go(stacks::armor(small, "application/json"), n),
        "tower-http" => go(stacks::tower_http(small, "application/json"), n),
        _ => return false,
    }
    true
}

/// Retry stacks (the first attempt succeeds), by name.
fn run_retry(name: &str, n: u64) -> bool {
    use retry_stacks as retry;
    fn go<S: tower::Service<retry::Req>>(mut service: S, n: u64)
    where
        S::Error: std::fmt::Debug,
    {
        for _ in 0..n {
            common::serve(&mut service, retry::request());
        }
    }
    match name {
        "bare" => go(retry::handler(), n),
        "armor" => go(retry::armor(), n),
        "tower-retry" => go(retry::tower_retry(), n),
        "tower-retry-budget" => go(retry::tower_retry_budget(), n),
        "tower-resilience" => go(retry::tower_resilience(), n),
        _ => return false,
    }
    true
}

/// Circuit-breaker stacks (closed), by name.
fn run_circuit_breaker(name: &str, n: u64) -> bool {
    use circuit_breaker_stacks as cb;
    fn go<S: tower::Service<cb::Req>>(mut service: S, n: u64)
    where
        S::Error: std::fmt::Debug,
    {
        for _ in 0..n {
            common::serve(&mut service, cb::request());
        }
    }
    match name {
        "bare" => go(cb::handler(), n),
        "armor" => go(cb::armor(), n),
        "tower-resilience" => go(cb::tower_resilience(), n),
        "failsafe" => go(cb::failsafe(), n),
        _ => return false,
    }
    true
}

/// Rate-limit stacks, by name, with the number of distinct peer keys they see.
fn run_rate_limit(name: &str, n: u64) -> bool {
    use rate_limit_stacks as rl;
    fn go<S: tower::Service<rl::Req>>(mut service: S, keys: u64, n: u64)
    where
        S::Error: std::fmt::Debug,
    {
        for i in 0..n {
            rl::serve(&mut service, rl::request(i, keys));
        }
    }
    match name {
        "bare" => go(rl::handler(), 1, n),
        "armor-global" => go(rl::armor_global(), 1, n),
        "armor-global-headers" => go(rl::armor_global_headers(), 1, n),
        "armor-ip-10k" => go(rl::armor_peer_ip(10_000), 10_000, n),
        "tower-governor-global" => go(rl::tower_governor_global(), 1, n),
        "tower-governor-ip-10k" => go(rl::tower_governor_smart_ip(), 10_000, n),
        _ => return false,
    }
    true
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(stack), Some(n)) = (args.next(), args.next().and_then(|n| n.parse().ok())) else {
        eprintln!(
            "usage: perreq STACK N   (timeout stacks: {}; rate-limit stacks: rl:NAME; breakers: cb:NAME; retries: retry:NAME; compression: compression:NAME; metrics: metrics:NAME; health: health:NAME; cache: cache:NAME)",
            stacks::STACKS.join(", ")
        );
        std::process::exit(2);
    };
    let runtime = common::runtime();
    let _context = runtime.enter();
    let found = if let Some(name) = stack.strip_prefix("rl:") {
        run_rate_limit(name, n)
    } else if let Some(name) = stack.strip_prefix("cb:") {
        run_circuit_breaker(name, n)
    } else if let Some(name) = stack.strip_prefix("retry:") {
        run_retry(name, n)
    } else if let Some(name) = stack.strip_prefix("compression:") {
        run_compression(name, n)
    } else if let Some(name) = stack.strip_prefix("health:") {
        health_stacks::run(name, n)
    } else if let Some(name) = stack.strip_prefix("cache:") {
        cache_stacks::run(name, n)
    } else if let Some(name) = stack.strip_prefix("preset:") {
        let _handle = metrics_stacks::install();
        preset_stacks::run(name, n)
    } else if let Some(name) = stack.strip_prefix("metrics:") {
        // One global recorder, as axum-prometheus installs; a subscriber
        // that formats tower-http's DEBUG events and discards them.
        let _handle = metrics_stacks::install();
        metrics_stacks::install_logging();
        metrics_stacks::run(name, n)
    } else {
        stacks::run(&stack, n)
    };
    if !found {
        eprintln!("no stack named {stack:?}");
        std::process::exit(2);
    }
}
