//! The connection every Redis store shares: one multiplexed connection to a
//! server (reconnecting by itself), or a Cluster connection; both made
//! lazily, so a service starts while Redis is down.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, ScriptInvocation, Value};
use tokio::sync::OnceCell;

use crate::config::ConfigError;

/// How long a connection attempt may take. The stores' own per-call
/// timeout bounds what a request waits; this bounds a reconnect.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A connection to Redis (or Valkey), cheap to clone and shared by every
/// store made from it.
///
/// Made inside a Tokio runtime, without waiting for Redis: the first call
/// connects, and a lost connection is made again in the background. Calls
/// never wait for that longer than the store's per-call timeout.
///
/// ```no_run
/// # async fn run() -> Result<(), tower_armor::ConfigError> {
/// use tower_armor::redis::RedisConnection;
///
/// let single = RedisConnection::open("redis://127.0.0.1:6379/")?;
/// let cluster = RedisConnection::cluster(["redis://10.0.0.1:6379/", "redis://10.0.0.2:6379/"])?;
/// # drop((single, cluster));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisConnection {
    backend: Backend,
    /// A client for one node, for the subscriptions of the cache's two-tier
    /// mode (Cluster pub/sub reaches every node from any node).
    subscriber: redis::Client,
}

#[derive(Clone)]
enum Backend {
    Single(ConnectionManager),
    Cluster(Arc<LazyCluster>),
}

struct LazyCluster {
    client: ClusterClient,
    connection: OnceCell<ClusterConnection>,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backend {
            Backend::Single(_) => "single",
            Backend::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisConnection")
            .field("kind", &kind)
            .field("node", &self.subscriber.get_connection_info().addr())
            .finish()
    }
}

fn config_error(error: impl std::fmt::Display) -> ConfigError {
    ConfigError::new("redis", error.to_string())
}

fn in_runtime() -> Result<(), ConfigError> {
    tokio::runtime::Handle::try_current()
        .map(drop)
        .map_err(|_| config_error("a Redis connection must be made inside a Tokio runtime"))
}

impl RedisConnection {
    /// A connection to one server, e.g. `redis://127.0.0.1:6379/` (or
    /// `rediss://` where the `redis` crate is built with TLS). Fails on a
    /// malformed URL, or outside a Tokio runtime; never waits for Redis.
    pub fn open(url: &str) -> Result<RedisConnection, ConfigError> {
        in_runtime()?;
        let client = redis::Client::open(url).map_err(config_error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // A few quick attempts per reconnect, so a server that is back
            // is found within a fraction of a second.
            .set_number_of_retries(3)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(config_error)?;
        Ok(RedisConnection {
            backend: Backend::Single(manager),
            subscriber: client,
        })
    }

    /// A connection to a Redis Cluster through any of its `nodes` (the
    /// rest are discovered). Fails on a malformed URL, no nodes, or outside
    /// a Tokio runtime; never waits for Redis.
    pub fn cluster<'a>(
        nodes: impl IntoIterator<Item = &'a str>,
    ) -> Result<RedisConnection, ConfigError> {
        in_runtime()?;
        let nodes: Vec<&str> = nodes.into_iter().collect();
        let first = nodes
            .first()
            .ok_or_else(|| config_error("a Redis Cluster connection needs at least one node"))?;
        let subscriber = redis::Client::open(*first).map_err(config_error)?;
        // redis-rs's own retries follow MOVED / ASK / TRYAGAIN while slots
        // move; the store's timeout bounds how long a call may take.
        let client = ClusterClient::builder(nodes)
            .connection_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(config_error)?;
        Ok(RedisConnection {
            backend: Backend::Cluster(Arc::new(LazyCluster {
                client,
                connection: OnceCell::new(),
            })),
            subscriber,
        })
    }

    /// A connection through a [`ConnectionManager`] made with the caller's
    /// own settings; `url` names the same server (for subscriptions).
    pub fn from_manager(
        manager: ConnectionManager,
        url: &str,
    ) -> Result<RedisConnection, ConfigError> {
        Ok(RedisConnection {
            backend: Backend::Single(manager),
            subscriber: redis::Client::open(url).map_err(config_error)?,
        })
    }

    /// Whether this is a Cluster connection.
    #[cfg_attr(not(feature = "rate-limit"), allow(dead_code))]
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster(_))
    }

    /// Runs one command.
    #[cfg_attr(not(any(feature = "rate-limit", feature = "cache")), allow(dead_code))]
    pub(crate) async fn query<T: FromRedisValue>(&self, command: &Cmd) -> RedisResult<T> {
        command.query_async(&mut self.handle().await?).await
    }

    /// Runs a script (`EVALSHA`, loading it again on `NOSCRIPT`).
    #[cfg_attr(not(any(feature = "rate-limit", feature = "cache")), allow(dead_code))]
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        invocation.invoke_async(&mut self.handle().await?).await
    }

    /// A handle to send commands through: connects the Cluster on first use.
    async fn handle(&self) -> RedisResult<Handle> {
        match &self.backend {
            Backend::Single(manager) => Ok(Handle::Single(manager.clone())),
            Backend::Cluster(lazy) => {
                let connection = lazy
                    .connection
                    .get_or_try_init(|| lazy.client.get_async_connection())
                    .await?;
                Ok(Handle::Cluster(connection.clone()))
            }
        }
    }

    /// Every key matching `pattern`, from the server or from each Cluster
    /// primary, by `SCAN` (never `KEYS`, which blocks Redis).
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    pub(crate) async fn scan(&self, pattern: String) -> RedisResult<Vec<Vec<u8>>> {
        let mut found = Vec::new();
        match self.handle().await? {
            Handle::Single(connection) => {
                scan_node(&pattern, &mut found, |command| {
                    let mut connection = connection.clone();
                    async move { command.query_async(&mut connection).await }
                })
                .await?;
            }
            Handle::Cluster(connection) => {
                let slots: Vec<Value> = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async(&mut connection.clone())
                    .await?;
                let mut primaries: Vec<(String, u16)> = slots
                    .iter()
                    .filter_map(|range| match range {
                        // [start, end, [host, port, id, ...], replicas...]
                        Value::Array(parts) => match parts.get(2)? {
                            Value::Array(node) => Some((
                                redis::from_redis_value_ref::<String>(node.first()?).ok()?,
                                redis::from_redis_value_ref::<u16>(node.get(1)?).ok()?,
                            )),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect();
                primaries.sort();
                primaries.dedup();
                for (host, port) in primaries {
                    scan_node(&pattern, &mut found, |command| {
                        let mut connection = connection.clone();
                        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port,
                        });
                        async move {
                            let answer = connection.route_command(command, routing).await?;
                            Ok(redis::from_redis_value(answer)?)
                        }
                    })
                    .await?;
                }
            }
        }
        Ok(found)
    }

    /// A client for subscriptions.
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    pub(crate) fn subscriber(&self) -> &redis::Client {
        &self.subscriber
    }
}

/// Runs `SCAN` on one node until its cursor comes back to 0.
async fn scan_node<F, Fut>(pattern: &str, found: &mut Vec<Vec<u8>>, run: F) -> RedisResult<()>
where
    F: Fn(Cmd) -> Fut,
    Fut: std::future::Future<Output = RedisResult<(u64, Vec<Vec<u8>>)>>,
{
    let mut cursor = 0u64;
    loop {
        let mut command = redis::cmd("SCAN");
        command
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(500);
        let (next, keys) = run(command).await?;
        found.extend(keys);
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// One caller's handle on the shared connection.
enum Handle {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Handle::Single(connection) => connection.req_packed_command(cmd),
            Handle::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Handle::Single(connection) => connection.req_packed_commands(cmd, offset, count),
            Handle::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Handle::Single(connection) => connection.get_db(),
            Handle::Cluster(connection) => connection.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_says_what_it_reaches() {
        let single = RedisConnection::open("redis://127.0.0.1:6390/").unwrap();
        let shown = format!("{single:?}");
        assert!(
            shown.contains("single") && shown.contains("6390"),
            "{shown}"
        );
        assert!(!single.is_cluster());
        let cluster =
            RedisConnection::cluster(["redis://127.0.0.1:7001/", "redis://127.0.0.1:7002/"])
                .unwrap();
        let shown = format!("{cluster:?}");
        assert!(
            shown.contains("cluster") && shown.contains("7001"),
            "{shown}"
        );
        assert!(cluster.is_cluster());
    }
}
