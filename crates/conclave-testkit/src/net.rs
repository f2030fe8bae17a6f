//! Loopback ports for servers started by tests.

use crate::wait::wait_until;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (at most 30 s) until something accepts on loopback `port`; fails the test otherwise.
pub fn wait_port(port: u16) {
    let up = wait_until(Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "nothing listens on port {port}");
}
