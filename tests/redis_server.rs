//! The `redis-server` every Redis test starts for itself: on a free
//! loopback port, answering, separate per test, and gone when dropped.

#[path = "support/redis.rs"]
mod redis;

#[test]
fn each_test_gets_its_own_server_and_leaves_nothing_behind() {
    let Some(first) = redis::RedisServer::start() else {
        return;
    };
    let Some(second) = redis::RedisServer::start() else {
        return;
    };
    assert_ne!(first.addr(), second.addr());
    assert!(first.addr().ip().is_loopback());
    assert_eq!(first.command("SET k 1").as_deref(), Some("+OK"));
    assert_eq!(first.command("GET k").as_deref(), Some("$1"));
    // Separate servers: the key is only in the first.
    assert_eq!(second.command("GET k").as_deref(), Some("$-1"));
    // Persistence is off.
    assert_eq!(
        first.command("CONFIG GET appendonly").as_deref(),
        Some("*2")
    );
    let addr = first.addr();
    drop(first);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "stopped on drop"
    );
    assert_eq!(second.url(), format!("redis://{}/", second.addr()));
}
