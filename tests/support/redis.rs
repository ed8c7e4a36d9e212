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
}

impl RedisServer {
    /// Starts a server on a free loopback port; `None` (with a message)
    /// when no `redis-server` binary can be found.
    pub fn start() -> Option<RedisServer> {
        let Some(binary) = binary() else {
            eprintln!(
                "!!! SKIPPED: no redis-server binary (run scripts/ensure-package redis-server redis-server)"
            );
            return None;
        };
        // A port the OS says is free now; the server binds it at once.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new(binary)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let server = RedisServer {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.command("PING").as_deref() != Some("+PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on {}",
                server.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL a Redis client connects to.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
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
