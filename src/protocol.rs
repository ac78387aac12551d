//! Who answers at an address? Asked only after a connection failed, so the
//! error can say "that port speaks PostgreSQL" instead of "start Valkey".
//!
//! Each of the three servers gives itself away in its first bytes:
//! MySQL/MariaDB greets a new connection unasked (a handshake packet,
//! protocol version 10); PostgreSQL answers an SSLRequest with one byte, `S`
//! or `N`; Valkey answers an inline `PING` with a RESP reply (`+PONG`, or an
//! error starting with `-`). Every step has a short deadline, so a host that
//! never answers costs under a second.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long each step waits for the first bytes.
const STEP_WAIT: Duration = Duration::from_millis(300);

/// PostgreSQL's SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    MySql,
    Postgres,
    Valkey,
}

impl Speaker {
    /// As a message names it: "127.0.0.1:5432 answered like {server}".
    pub fn server(self) -> &'static str {
        match self {
            Speaker::MySql => "a MySQL/MariaDB server",
            Speaker::Postgres => "a PostgreSQL server",
            Speaker::Valkey => "Valkey (or Redis)",
        }
    }

    /// "the PostgreSQL protocol".
    pub fn protocol(self) -> &'static str {
        match self {
            Speaker::MySql => "the MySQL/MariaDB protocol",
            Speaker::Postgres => "the PostgreSQL protocol",
            Speaker::Valkey => "the Valkey protocol",
        }
    }
}

/// Which of the three answers at `host:port`, if any of them does.
pub async fn identify(host: &str, port: u16) -> Option<Speaker> {
    if let Some(greeting) = exchange(host, port, None).await {
        return is_mysql_greeting(&greeting).then_some(Speaker::MySql);
    }
    if let Some(reply) = exchange(host, port, Some(&SSL_REQUEST)).await {
        if matches!(reply.first(), Some(b'S' | b'N' | b'E')) {
            return Some(Speaker::Postgres);
        }
    }
    let reply = exchange(host, port, Some(b"PING\r\n")).await?;
    matches!(reply.first(), Some(b'+' | b'-')).then_some(Speaker::Valkey)
}

/// Connects, sends `request` (if any), and returns the first bytes that
/// arrive within [`STEP_WAIT`]; None when nothing does.
async fn exchange(host: &str, port: u16, request: Option<&[u8]>) -> Option<Vec<u8>> {
    let talk = async {
        let mut stream = TcpStream::connect((host, port)).await.ok()?;
        if let Some(request) = request {
            stream.write_all(request).await.ok()?;
        }
        let mut buffer = vec![0u8; 64];
        let read = stream.read(&mut buffer).await.ok()?;
        (read > 0).then(|| {
            buffer.truncate(read);
            buffer
        })
    };
    tokio::time::timeout(STEP_WAIT, talk).await.ok().flatten()
}

/// A MySQL packet header (3 bytes length, sequence 0) followed by protocol
/// version 10, or by an error packet (0xff: "host is not allowed", "too many
/// connections"), which only a MySQL server sends unasked.
fn is_mysql_greeting(bytes: &[u8]) -> bool {
    bytes.len() >= 5 && bytes[3] == 0 && matches!(bytes[4], 0x0a | 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mysql_handshake_is_recognised_and_resp_is_not() {
        let handshake = [0x5b, 0, 0, 0, 0x0a, b'1', b'0', b'.'];
        assert!(is_mysql_greeting(&handshake));
        assert!(!is_mysql_greeting(b"+PONG\r\n"));
        assert!(!is_mysql_greeting(b"-ERR"));
    }

    #[tokio::test]
    async fn a_closed_port_is_nobody() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        assert_eq!(identify("127.0.0.1", port).await, None);
    }
}
