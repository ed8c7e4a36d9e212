//! A `redis-server` of a test's own: started on a free loopback port with
//! persistence off, stopped (and waited for) when dropped, so no test
//! shares a server or leaves a process behind. `.ci/run` installs
//! Debian's `redis-server`; where no binary can be found, `start` says so
//! loudly and returns `None`, and the test skips.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct RedisServer {
    child: Child,
    addr: SocketAddr,
    binary: String,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free loopback port; `None` (with a message)
    /// when no `redis-server` binary can be found.
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(&[])
    }

    /// The same, with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Option<RedisServer> {
        let Some(binary) = binary() else {
            eprintln!(
                "!!! SKIPPED: no redis-server binary (run scripts/ensure-package redis-server redis-server)"
            );
            return None;
        };
        let port = free_port();
        let extra: Vec<String> = extra
            .iter()
            .map(|arg| arg.replace("{port}", &port.to_string()))
            .collect();
        let child = spawn(&binary, port, &extra);
        let server = RedisServer {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            binary,
            extra,
        };
        server.wait_for_pong();
        Some(server)
    }

    fn wait_for_pong(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command("PING").as_deref() != Some("+PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (as a crash would); `restart` brings it back on
    /// the same port, empty.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on its port, after `kill`.
    pub fn restart(&mut self) {
        self.child = spawn(&self.binary, self.addr.port(), &self.extra);
        self.wait_for_pong();
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        signal(&self.child, "-STOP");
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&self) {
        signal(&self.child, "-CONT");
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL a Redis client connects to.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// The text of `INFO section`.
    pub fn info(&self, section: &str) -> String {
        let mut stream =
            TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        stream
            .write_all(format!("INFO {section}\r\n").as_bytes())
            .unwrap();
        let mut reply = Vec::new();
        let mut chunk = [0u8; 4096];
        // `$<length>\r\n<text>\r\n`
        loop {
            let read = stream.read(&mut chunk).expect("INFO answers");
            assert!(read > 0, "INFO closed early");
            reply.extend_from_slice(&chunk[..read]);
            let text = String::from_utf8_lossy(&reply);
            if let Some((head, rest)) = text.split_once("\r\n") {
                let length: usize = head.trim_start_matches('$').parse().expect("a bulk reply");
                if rest.len() >= length {
                    return rest[..length].to_owned();
                }
            }
        }
    }

    /// How many times `command` (e.g. `evalsha`) has run since start.
    pub fn calls(&self, command: &str) -> u64 {
        let wanted = format!("cmdstat_{command}:calls=");
        self.info("commandstats")
            .lines()
            .find_map(|line| line.strip_prefix(&wanted))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    }

    /// Sends one inline command and returns the first line of the reply,
    /// or `None` when the server cannot be reached.
    pub fn command(&self, command: &str) -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while stream.read(&mut byte).ok()? == 1 {
            if byte[0] == b'\n' {
                break;
            }
            reply.push(byte[0]);
        }
        let line = String::from_utf8(reply).ok()?;
        Some(line.trim_end_matches('\r').to_owned())
    }
}

fn free_port() -> u16 {
    // A port the OS says is free now; the server binds it at once.
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn spawn(binary: &str, port: u16, extra: &[String]) -> Child {
    Command::new(binary)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts")
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} failed");
}

/// Three `redis-server`s joined into a Redis Cluster (no replicas), each
/// with its own config file in a temporary directory removed on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    /// Starts and joins three nodes; `None` (with a message) when
    /// `redis-server` or `redis-cli` is missing.
    pub fn start() -> Option<RedisCluster> {
        let cli_found = Command::new("redis-cli")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !cli_found {
            eprintln!("!!! SKIPPED: no redis-cli to join a cluster (Debian's redis-tools)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "armor-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let config = format!("{}/nodes-{{port}}.conf", dir.display());
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &config,
                "--cluster-node-timeout",
                "5000",
            ])?);
        }
        let addresses: Vec<String> = nodes.iter().map(|node| node.addr().to_string()).collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.nodes.iter().all(|node| node.cluster_ok()) {
            assert!(Instant::now() < deadline, "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(cluster)
    }

    /// URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisServer {
    /// Whether `CLUSTER INFO` says the cluster is ok.
    fn cluster_ok(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        if stream.write_all(b"CLUSTER INFO\r\n").is_err() {
            return false;
        }
        let mut reply = vec![0u8; 4096];
        let read = stream.read(&mut reply).unwrap_or(0);
        String::from_utf8_lossy(&reply[..read]).contains("cluster_state:ok")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `redis-server` on the PATH, or where Debian puts it.
fn binary() -> Option<String> {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if found {
        return Some("redis-server".to_owned());
    }
    let debian = "/usr/bin/redis-server";
    std::path::Path::new(debian)
        .exists()
        .then(|| debian.to_owned())
}

/// Waits until `check` gives a value, asking every 2 ms, for at most
/// `within` (Redis writes made in the background land within
/// milliseconds); panics with `what` and the last value seen otherwise.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "{what} (last seen: {seen})"
            ),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
