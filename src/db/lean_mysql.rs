//! A lean MariaDB/MySQL connection for the timed read (issue 13).
//!
//! The exercises time "query + row conversion". Over sqlx, a point select on
//! MariaDB cost about 4 µs more client time than sysbench running the very
//! same query (`just bench`, client on the server's CPU): sqlx receives and
//! parses every column definition on every execute, and runs each query
//! through a boxed stream. This connection speaks the binary protocol for
//! exactly that read: a prepared statement per SQL text, executed with bound
//! values, its binary rows decoded straight into the JSON values
//! [`super::rows::from_mysql`] makes, and MariaDB's metadata caching
//! (`MARIADB_CLIENT_CACHE_METADATA`), so the column definitions travel once
//! per statement, as libmariadb (sysbench's client) asks for.
//!
//! It opens only where it can do what sqlx would: plain TCP to a server that
//! offers no TLS (sqlx's default `ssl-mode=preferred` would use it), a login
//! by `mysql_native_password`, a URL without options. Anything else is
//! [`Open::Declined`] and the session stays on sqlx. A statement whose result
//! has a column type outside the ones decoded here (TIME, BIT, JSON,
//! GEOMETRY, ...) is [`Fetched::Declined`], and that statement reads through
//! sqlx. The session is set up as sqlx sets up its own (`sql_mode`,
//! `time_zone`, `NAMES`), with the query timeout, and its connection id is
//! registered for cancelling, like every pooled connection's.

use std::collections::HashMap;
use std::io;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::rows::{self, ResultSet};
use super::SqlValue;

// Capability flags (the low 32 bits as MySQL defines them; MariaDB's own in the next 32).
const CLIENT_MYSQL: u32 = 1;
const CLIENT_FOUND_ROWS: u32 = 2;
const CLIENT_LONG_FLAG: u32 = 4;
const CLIENT_CONNECT_WITH_DB: u32 = 8;
const CLIENT_IGNORE_SPACE: u32 = 256;
const CLIENT_PROTOCOL_41: u32 = 512;
const CLIENT_SSL: u32 = 2048;
const CLIENT_TRANSACTIONS: u32 = 8192;
const CLIENT_SECURE_CONNECTION: u32 = 32768;
const CLIENT_PLUGIN_AUTH: u32 = 1 << 19;
/// MariaDB: column definitions sent once per prepared statement, not on every execute.
const MARIADB_CLIENT_CACHE_METADATA: u32 = 1 << 4;

const COM_QUIT: u8 = 0x01;
const COM_QUERY: u8 = 0x03;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_CLOSE: u8 = 0x19;

const NATIVE_PASSWORD: &str = "mysql_native_password";
/// utf8mb4_unicode_ci: the collation sqlx asks for (and sets again with `SET NAMES`).
const UTF8MB4_UNICODE_CI: u8 = 224;
/// Statements kept prepared on one connection (sqlx keeps 100 as well).
const STATEMENT_CACHE: usize = 100;

/// How sqlx's own connections are set up, so a query gives the same answer on both.
const SESSION_SETUP: &str = "SET sql_mode=(SELECT CONCAT(@@sql_mode, ',PIPES_AS_CONCAT,NO_ENGINE_SUBSTITUTION')),\
time_zone='+00:00',NAMES utf8mb4 COLLATE utf8mb4_unicode_ci;";

/// Where to connect and as whom.
#[derive(Clone)]
pub(crate) struct LeanTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl std::fmt::Debug for LeanTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(
            f,
            "LeanTarget({}@{}:{}/{})",
            self.user, self.host, self.port, self.database
        )
    }
}

/// What opening a lean connection gave.
pub(crate) enum Open {
    Ready(Box<LeanConnection>),
    /// This server or login needs what only sqlx does (TLS, another auth plugin, ...): why.
    Declined(String),
    /// The server could not be reached or refused the login: sqlx's connection will say why.
    Failed,
}

/// What one read gave.
pub(crate) enum Fetched {
    Rows(ResultSet),
    /// A column type this connection does not decode: read this statement through sqlx.
    Declined,
}

/// A failure of one read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The server answered with an error packet.
    Server {
        number: u16,
        sql_state: String,
        message: String,
    },
    /// The connection broke (or spoke nonsense); it is not used again.
    Io(io::Error),
    /// A value could not be turned into JSON (the same message sqlx's path gives).
    Decode(String),
}

impl From<io::Error> for ReadError {
    fn from(error: io::Error) -> Self {
        ReadError::Io(error)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ColumnType(u8);

#[derive(Clone, Debug)]
struct Column {
    name: String,
    kind: ColumnType,
    flags: u16,
    max_size: u32,
}

const FLAG_UNSIGNED: u16 = 32;

struct Prepared {
    id: u32,
    params: u16,
    /// The result's columns, as the server last described them.
    columns: Vec<Column>,
    /// A column type outside those decoded here: read through sqlx.
    declined: bool,
}

pub(crate) struct LeanConnection {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// Unread bytes start here in `buffer`.
    start: usize,
    sequence: u8,
    capabilities: u32,
    cache_metadata: bool,
    statements: HashMap<String, Prepared>,
    connection_id: u32,
    broken: bool,
    /// A read was started and not finished (its future was dropped): the stream is out of step.
    in_flight: bool,
}

impl LeanConnection {
    /// Connects, logs in and sets the session up like sqlx's; `set_timeout` is the
    /// query-timeout statement every pooled connection runs too.
    pub(crate) async fn open(target: &LeanTarget, set_timeout: Option<&str>) -> Open {
        let stream = match TcpStream::connect((target.host.as_str(), target.port)).await {
            Ok(stream) => stream,
            Err(_) => return Open::Failed,
        };
        let _ = stream.set_nodelay(true);
        let mut connection = LeanConnection {
            stream,
            buffer: Vec::with_capacity(16 * 1024),
            start: 0,
            sequence: 0,
            capabilities: 0,
            cache_metadata: false,
            statements: HashMap::new(),
            connection_id: 0,
            broken: false,
            in_flight: false,
        };
        match connection.handshake(target).await {
            Ok(None) => {}
            Ok(Some(declined)) => return Open::Declined(declined),
            Err(_) => return Open::Failed,
        }
        for sql in std::iter::once(SESSION_SETUP).chain(set_timeout) {
            match connection.simple_query(sql).await {
                Ok(()) => {}
                Err(ReadError::Io(_)) => return Open::Failed,
                Err(other) => return Open::Declined(format!("session set-up failed: {other:?}")),
            }
        }
        Open::Ready(Box::new(connection))
    }

    /// The server's id of this connection (for `KILL QUERY`).
    pub(crate) fn connection_id(&self) -> u32 {
        self.connection_id
    }

    /// Runs `sql` with `args` as a prepared statement and converts the rows.
    pub(crate) async fn fetch(&mut self, sql: &str, args: &[SqlValue]) -> Result<Fetched, ReadError> {
        if self.in_flight {
            self.broken = true;
        }
        if self.broken {
            return Err(ReadError::Io(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection to the database was lost",
            )));
        }
        self.in_flight = true;
        let result = self.fetch_inner(sql, args).await;
        self.in_flight = false;
        match &result {
            Err(ReadError::Io(_)) => self.broken = true,
            // A CALL that returns rows needs multiple results, which only sqlx asks for.
            Err(ReadError::Server { number: 1312, .. }) => {
                if let Some(prepared) = self.statements.get_mut(sql) {
                    prepared.declined = true;
                }
                return Ok(Fetched::Declined);
            }
            _ => {}
        }
        result
    }

    /// Whether the connection can serve another session (nothing half read, nothing lost).
    pub(crate) fn is_reusable(&self) -> bool {
        !self.broken && !self.in_flight
    }

    async fn fetch_inner(&mut self, sql: &str, args: &[SqlValue]) -> Result<Fetched, ReadError> {
        if !self.statements.contains_key(sql) {
            if self.statements.len() >= STATEMENT_CACHE {
                self.close_statements().await?;
            }
            let prepared = self.prepare(sql).await?;
            self.statements.insert(sql.to_string(), prepared);
        }
        let Some(prepared) = self.statements.get(sql) else {
            return Err(ReadError::Io(io::Error::other("prepared statement vanished")));
        };
        if prepared.declined {
            return Ok(Fetched::Declined);
        }
        if usize::from(prepared.params) != args.len() {
            return Err(ReadError::Decode(format!(
                "the query has {} placeholders but {} values were given",
                prepared.params,
                args.len()
            )));
        }
        let packet = execute_packet(prepared.id, args);
        self.write_command(&packet).await?;
        self.read_result(sql).await
    }

    async fn read_result(&mut self, sql: &str) -> Result<Fetched, ReadError> {
        let first = self.read_packet().await?;
        match first.first() {
            Some(0xff) => return Err(server_error(&first)),
            Some(0x00) => {
                return Ok(Fetched::Rows(ResultSet {
                    columns: Vec::new(),
                    rows: Vec::new(),
                }))
            }
            _ => {}
        }
        let mut reader = Reader::new(&first);
        let count = usize::try_from(reader.lenenc()?).unwrap_or(usize::MAX);
        // MariaDB and MySQL allow 4,096 columns at most.
        if count > 4096 {
            return Err(ReadError::Io(io::Error::other(
                "a result with more columns than a server sends",
            )));
        }
        let metadata_follows = if self.cache_metadata { reader.u8()? == 1 } else { true };
        if metadata_follows {
            let mut columns = Vec::with_capacity(count);
            for _ in 0..count {
                let packet = self.read_packet().await?;
                columns.push(parse_column(&packet)?);
            }
            let declined = columns.iter().any(|c| !decodable(c));
            if let Some(prepared) = self.statements.get_mut(sql) {
                prepared.columns = columns;
                prepared.declined |= declined;
            }
        }
        let Some(prepared) = self.statements.get(sql) else {
            return Err(ReadError::Io(io::Error::other("prepared statement vanished")));
        };
        if prepared.columns.len() != count {
            return Err(ReadError::Io(io::Error::other(
                "column count differs from the statement's",
            )));
        }
        let declined = prepared.declined;
        let columns = prepared.columns.clone();
        // Without CLIENT_DEPRECATE_EOF an EOF ends the metadata, sent or not.
        let eof = self.read_packet().await?;
        if !is_eof(&eof) {
            return Err(ReadError::Io(io::Error::other("no EOF after the column definitions")));
        }
        let mut out = Vec::new();
        let mut failure = None;
        loop {
            let packet = self.read_packet().await?;
            match packet.first() {
                _ if is_eof(&packet) => break,
                Some(0xff) => return Err(server_error(&packet)),
                Some(0x00) => {
                    // Every row is read to stay in step; only the first failure is kept.
                    if failure.is_none() && !declined {
                        match decode_row(&packet, &columns) {
                            Ok(row) => out.push(row),
                            Err(e) => failure = Some(e),
                        }
                    }
                }
                _ => return Err(ReadError::Io(io::Error::other("unexpected packet in a result set"))),
            }
        }
        if declined {
            return Ok(Fetched::Declined);
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let names = if out.is_empty() {
            Vec::new()
        } else {
            columns.iter().map(|c| c.name.clone()).collect()
        };
        Ok(Fetched::Rows(ResultSet {
            columns: names,
            rows: out,
        }))
    }
}

impl LeanConnection {
    /// Reads the server's greeting and logs in. `Ok(Some(why))`: this needs sqlx.
    async fn handshake(&mut self, target: &LeanTarget) -> io::Result<Option<String>> {
        let greeting = self.read_packet_io().await?;
        if greeting.first() == Some(&0xff) {
            return Err(io::Error::other(server_error_text(&greeting)));
        }
        let mut r = Reader::new(&greeting);
        let protocol = r.u8_io()?;
        if protocol != 10 {
            return Ok(Some(format!("handshake protocol {protocol}")));
        }
        let _version = r.nul_string_io()?;
        self.connection_id = r.u32_io()?;
        let mut scramble = r.bytes_io(8)?.to_vec();
        r.skip_io(1)?;
        let low = u32::from(r.u16_io()?);
        let _charset = r.u8_io()?;
        let _status = r.u16_io()?;
        let high = u32::from(r.u16_io()?);
        let server = low | (high << 16);
        let auth_length = r.u8_io()?;
        r.skip_io(6)?;
        let mariadb = r.u32_io()?;
        let mariadb = if server & CLIENT_MYSQL == 0 { mariadb } else { 0 };
        if server & CLIENT_SSL != 0 {
            // sqlx's default (ssl-mode=preferred) would encrypt: so must we, and we do not.
            return Ok(Some("the server offers TLS".to_string()));
        }
        let needed = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH;
        if server & needed != needed {
            return Ok(Some("the server lacks protocol 4.1 authentication".to_string()));
        }
        let part2 = usize::from(auth_length).saturating_sub(8).max(13);
        let rest = r.bytes_io(part2)?;
        // The second part ends in a NUL that is not part of the scramble.
        scramble.extend_from_slice(rest.strip_suffix(&[0]).unwrap_or(rest));
        let plugin = r.nul_string_io().unwrap_or_default();
        if plugin != NATIVE_PASSWORD {
            return Ok(Some(format!("the server asks for {plugin}")));
        }
        if server & CLIENT_CONNECT_WITH_DB == 0 {
            return Ok(Some("the server cannot take a database at login".to_string()));
        }
        // As sqlx asks (IGNORE_SPACE also puts IGNORE_SPACE into the session's sql_mode),
        // but no multiple results: a CALL that returns rows is refused (1312) and goes to sqlx.
        let client = needed
            | CLIENT_LONG_FLAG
            | CLIENT_CONNECT_WITH_DB
            | CLIENT_TRANSACTIONS
            | CLIENT_IGNORE_SPACE
            | CLIENT_FOUND_ROWS;
        self.capabilities = client & server;
        self.cache_metadata = mariadb & MARIADB_CLIENT_CACHE_METADATA != 0;
        let extended = if self.cache_metadata {
            MARIADB_CLIENT_CACHE_METADATA
        } else {
            0
        };

        let mut response = Vec::with_capacity(128);
        response.extend_from_slice(&self.capabilities.to_le_bytes());
        response.extend_from_slice(&(16u32 * 1024 * 1024).to_le_bytes());
        response.push(UTF8MB4_UNICODE_CI);
        response.extend_from_slice(&[0; 19]);
        response.extend_from_slice(&extended.to_le_bytes());
        response.extend_from_slice(target.user.as_bytes());
        response.push(0);
        let token = native_password(target.password.as_bytes(), &scramble);
        response.push(token.len() as u8);
        response.extend_from_slice(&token);
        response.extend_from_slice(target.database.as_bytes());
        response.push(0);
        response.extend_from_slice(NATIVE_PASSWORD.as_bytes());
        response.push(0);
        self.write_packet(&response).await?;

        let answer = self.read_packet_io().await?;
        let answer = match answer.first() {
            // An auth switch: the same plugin with a new scramble is fine, another is not.
            Some(0xfe) if answer.len() > 1 => {
                let mut r = Reader::new(&answer[1..]);
                let plugin = r.nul_string_io()?;
                if plugin != NATIVE_PASSWORD {
                    return Ok(Some(format!("the account uses {plugin}")));
                }
                let data = &answer[1 + plugin.len() + 1..];
                let seed = data.strip_suffix(&[0]).unwrap_or(data);
                let token = native_password(target.password.as_bytes(), seed);
                self.write_packet(&token).await?;
                self.read_packet_io().await?
            }
            _ => answer,
        };
        match answer.first() {
            Some(0x00) => Ok(None),
            // A refused login: sqlx's connection gives the message the user sees.
            Some(0xff) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                server_error_text(&answer),
            )),
            _ => Ok(Some("an authentication step only sqlx speaks".to_string())),
        }
    }

    /// A statement in the text protocol whose answer is OK (a `SET`).
    async fn simple_query(&mut self, sql: &str) -> Result<(), ReadError> {
        self.write_command(&text_command(COM_QUERY, sql)).await?;
        let answer = self.read_packet().await?;
        match answer.first() {
            Some(0x00) => Ok(()),
            Some(0xff) => Err(server_error(&answer)),
            _ => Err(ReadError::Io(io::Error::other("a SET answered with rows"))),
        }
    }

    async fn prepare(&mut self, sql: &str) -> Result<Prepared, ReadError> {
        self.write_command(&text_command(COM_STMT_PREPARE, sql)).await?;
        let ok = self.read_packet().await?;
        match ok.first() {
            Some(0x00) => {}
            Some(0xff) => return Err(server_error(&ok)),
            _ => return Err(ReadError::Io(io::Error::other("unexpected answer to a prepare"))),
        }
        let mut r = Reader::new(&ok[1..]);
        let id = r.u32()?;
        let column_count = r.u16()?;
        let params = r.u16()?;
        if params > 0 {
            for _ in 0..params {
                self.read_packet().await?;
            }
            self.expect_eof().await?;
        }
        let mut columns = Vec::with_capacity(usize::from(column_count));
        if column_count > 0 {
            for _ in 0..column_count {
                let packet = self.read_packet().await?;
                columns.push(parse_column(&packet)?);
            }
            self.expect_eof().await?;
        }
        let declined = columns.iter().any(|c| !decodable(c));
        Ok(Prepared {
            id,
            params,
            columns,
            declined,
        })
    }

    async fn expect_eof(&mut self) -> Result<(), ReadError> {
        let packet = self.read_packet().await?;
        if is_eof(&packet) {
            Ok(())
        } else {
            Err(ReadError::Io(io::Error::other("expected an EOF packet")))
        }
    }

    /// Forgets every prepared statement (COM_STMT_CLOSE has no answer).
    async fn close_statements(&mut self) -> Result<(), ReadError> {
        let ids: Vec<u32> = self.statements.drain().map(|(_, p)| p.id).collect();
        for id in ids {
            let mut packet = vec![COM_STMT_CLOSE];
            packet.extend_from_slice(&id.to_le_bytes());
            self.write_command(&packet).await?;
        }
        Ok(())
    }

    /// A command starts a new packet sequence.
    async fn write_command(&mut self, payload: &[u8]) -> io::Result<()> {
        self.sequence = 0;
        self.write_packet(payload).await
    }

    async fn write_packet(&mut self, payload: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 4 * (payload.len() / 0xff_ffff + 1));
        let mut chunks = payload.chunks(0xff_ffff).peekable();
        if payload.is_empty() {
            out.extend_from_slice(&[0, 0, 0, self.sequence]);
            self.sequence = self.sequence.wrapping_add(1);
        }
        while let Some(chunk) = chunks.next() {
            let length = chunk.len() as u32;
            out.extend_from_slice(&length.to_le_bytes()[..3]);
            out.push(self.sequence);
            self.sequence = self.sequence.wrapping_add(1);
            out.extend_from_slice(chunk);
            // A payload of a multiple of the largest packet ends with an empty one.
            if chunks.peek().is_none() && chunk.len() == 0xff_ffff {
                out.extend_from_slice(&[0, 0, 0, self.sequence]);
                self.sequence = self.sequence.wrapping_add(1);
            }
        }
        self.stream.write_all(&out).await
    }

    async fn read_packet(&mut self) -> Result<Vec<u8>, ReadError> {
        Ok(self.read_packet_io().await?)
    }

    /// One whole packet (joined when split at 16 MiB).
    async fn read_packet_io(&mut self) -> io::Result<Vec<u8>> {
        let mut payload = Vec::new();
        loop {
            self.fill(4).await?;
            let header = &self.buffer[self.start..self.start + 4];
            let length = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
            self.sequence = header[3].wrapping_add(1);
            self.start += 4;
            self.fill(length).await?;
            payload.extend_from_slice(&self.buffer[self.start..self.start + length]);
            self.start += length;
            if length < 0xff_ffff {
                return Ok(payload);
            }
        }
    }

    /// Makes `n` unread bytes available in `buffer[start..]`.
    async fn fill(&mut self, n: usize) -> io::Result<()> {
        if self.buffer.len() - self.start >= n {
            return Ok(());
        }
        self.buffer.drain(..self.start);
        self.start = 0;
        let mut chunk = [0u8; 16 * 1024];
        while self.buffer.len() < n {
            let read = self.stream.read(&mut chunk).await?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the database server closed the connection",
                ));
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
        Ok(())
    }
}

impl Drop for LeanConnection {
    /// Says goodbye (COM_QUIT) without waiting, so the server does not log an aborted connection.
    fn drop(&mut self) {
        if !self.broken {
            let _ = self.stream.try_write(&[1, 0, 0, 0, COM_QUIT]);
        }
    }
}

/// `mysql_native_password`: SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))).
fn native_password(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let once = Sha1::digest(password);
    let twice = Sha1::digest(once);
    let mut hasher = Sha1::new();
    hasher.update(scramble);
    hasher.update(twice);
    let mixed = hasher.finalize();
    once.iter().zip(mixed.iter()).map(|(a, b)| a ^ b).collect()
}

fn is_eof(packet: &[u8]) -> bool {
    packet.first() == Some(&0xfe) && packet.len() < 9
}

fn server_error(packet: &[u8]) -> ReadError {
    let number = packet.get(1..3).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    let (sql_state, message) = match packet.get(3) {
        Some(b'#') if packet.len() >= 9 => (
            String::from_utf8_lossy(&packet[4..9]).into_owned(),
            String::from_utf8_lossy(&packet[9..]).into_owned(),
        ),
        _ => (
            String::new(),
            String::from_utf8_lossy(packet.get(3..).unwrap_or_default()).into_owned(),
        ),
    };
    ReadError::Server {
        number,
        sql_state,
        message,
    }
}

fn server_error_text(packet: &[u8]) -> String {
    match server_error(packet) {
        ReadError::Server { number, message, .. } => format!("error {number}: {message}"),
        other => format!("{other:?}"),
    }
}

/// A command whose argument is SQL text (COM_QUERY, COM_STMT_PREPARE).
fn text_command(command: u8, sql: &str) -> Vec<u8> {
    let mut packet = Vec::with_capacity(sql.len() + 1);
    packet.push(command);
    packet.extend_from_slice(sql.as_bytes());
    packet
}

/// COM_STMT_EXECUTE: no cursor, one iteration, the values' types sent along.
fn execute_packet(id: u32, args: &[SqlValue]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(32 + args.len() * 16);
    packet.push(COM_STMT_EXECUTE);
    packet.extend_from_slice(&id.to_le_bytes());
    packet.push(0);
    packet.extend_from_slice(&1u32.to_le_bytes());
    if args.is_empty() {
        return packet;
    }
    packet.extend(std::iter::repeat_n(0u8, args.len().div_ceil(8)));
    packet.push(1);
    for arg in args {
        let kind: u8 = match arg {
            SqlValue::Int(_) => 0x08,     // LONGLONG
            SqlValue::Decimal(_) => 0xf6, // NEWDECIMAL
            SqlValue::Text(_) => 0xfd,    // VAR_STRING
        };
        packet.extend_from_slice(&[kind, 0]);
    }
    for arg in args {
        match arg {
            SqlValue::Int(v) => packet.extend_from_slice(&v.to_le_bytes()),
            SqlValue::Decimal(v) => put_lenenc_bytes(&mut packet, v.to_string().as_bytes()),
            SqlValue::Text(v) => put_lenenc_bytes(&mut packet, v.as_bytes()),
        }
    }
    packet
}

fn put_lenenc_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len() as u64;
    if n < 251 {
        out.push(n as u8);
    } else if n < 1 << 16 {
        out.push(0xfc);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else if n < 1 << 24 {
        out.push(0xfd);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
    } else {
        out.push(0xfe);
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(bytes);
}

fn parse_column(packet: &[u8]) -> Result<Column, ReadError> {
    let mut r = Reader::new(packet);
    let _catalog = r.lenenc_bytes()?;
    let _schema = r.lenenc_bytes()?;
    let _table = r.lenenc_bytes()?;
    let _org_table = r.lenenc_bytes()?;
    let name = r.lenenc_bytes()?;
    let org_name = r.lenenc_bytes()?;
    let _fixed = r.lenenc()?;
    let _charset = r.u16()?;
    let max_size = r.u32()?;
    let kind = ColumnType(r.u8()?);
    let flags = r.u16()?;
    // As sqlx names a column: its alias, or else its name.
    let shown = if name.is_empty() { org_name } else { name };
    let name = std::str::from_utf8(shown)
        .map_err(|_| ReadError::Io(io::Error::other("a column name that is not UTF-8")))?
        .to_string();
    Ok(Column {
        name,
        kind,
        flags,
        max_size,
    })
}

// Column types (the protocol's numbers).
const T_DECIMAL: u8 = 0x00;
const T_TINY: u8 = 0x01;
const T_SHORT: u8 = 0x02;
const T_LONG: u8 = 0x03;
const T_FLOAT: u8 = 0x04;
const T_DOUBLE: u8 = 0x05;
const T_NULL: u8 = 0x06;
const T_TIMESTAMP: u8 = 0x07;
const T_LONGLONG: u8 = 0x08;
const T_INT24: u8 = 0x09;
const T_DATE: u8 = 0x0a;
const T_DATETIME: u8 = 0x0c;
const T_YEAR: u8 = 0x0d;
const T_VARCHAR: u8 = 0x0f;
const T_NEWDECIMAL: u8 = 0xf6;
const T_ENUM: u8 = 0xf7;
const T_SET: u8 = 0xf8;
const T_TINY_BLOB: u8 = 0xf9;
const T_MEDIUM_BLOB: u8 = 0xfa;
const T_LONG_BLOB: u8 = 0xfb;
const T_BLOB: u8 = 0xfc;
const T_VAR_STRING: u8 = 0xfd;
const T_STRING: u8 = 0xfe;

/// The column types decoded here; the others (TIME, BIT, JSON, GEOMETRY, ...) read through sqlx.
fn decodable(column: &Column) -> bool {
    matches!(
        column.kind.0,
        T_DECIMAL
            | T_TINY
            | T_SHORT
            | T_LONG
            | T_FLOAT
            | T_DOUBLE
            | T_NULL
            | T_TIMESTAMP
            | T_LONGLONG
            | T_INT24
            | T_DATE
            | T_DATETIME
            | T_YEAR
            | T_VARCHAR
            | T_NEWDECIMAL
            | T_ENUM
            | T_SET
            | T_TINY_BLOB
            | T_MEDIUM_BLOB
            | T_LONG_BLOB
            | T_BLOB
            | T_VAR_STRING
            | T_STRING
    )
}

/// One binary-protocol row into the values `rows::from_mysql` gives for it. A row
/// that does not match its columns is a failed read, not a lost connection: the
/// packet was read whole, so the stream is still in step.
fn decode_row(packet: &[u8], columns: &[Column]) -> Result<Vec<Value>, ReadError> {
    decode_row_packet(packet, columns).map_err(|e| match e {
        ReadError::Io(io) => ReadError::Decode(format!("cannot read a row: {io}")),
        other => other,
    })
}

fn decode_row_packet(packet: &[u8], columns: &[Column]) -> Result<Vec<Value>, ReadError> {
    let nulls_length = (columns.len() + 7 + 2) / 8;
    let nulls = packet
        .get(1..1 + nulls_length)
        .ok_or_else(|| ReadError::Io(io::Error::other("a row shorter than its NULL bitmap")))?;
    let mut r = Reader::new(&packet[1 + nulls_length..]);
    let mut values = Vec::with_capacity(columns.len());
    for (i, column) in columns.iter().enumerate() {
        let bit = i + 2;
        if nulls[bit / 8] & (1 << (bit % 8)) != 0 {
            values.push(Value::Null);
            continue;
        }
        values.push(decode_value(&mut r, column)?);
    }
    Ok(values)
}

fn decode_value(r: &mut Reader<'_>, column: &Column) -> Result<Value, ReadError> {
    let unsigned = column.flags & FLAG_UNSIGNED != 0;
    let bad = |what: &str| ReadError::Decode(format!("cannot read column '{}': {what}", column.name));
    Ok(match column.kind.0 {
        // sqlx calls TINYINT(1) BOOLEAN, signed or not.
        T_TINY if column.max_size == 1 => Value::Bool(r.u8()? != 0),
        T_TINY if unsigned => Value::from(r.u8()?),
        T_TINY => Value::from(r.u8()? as i8),
        T_SHORT if unsigned => Value::from(r.u16()?),
        T_SHORT => Value::from(r.u16()? as i16),
        T_YEAR => Value::from(r.u16()?),
        T_LONG | T_INT24 if unsigned => Value::from(r.u32()?),
        T_LONG | T_INT24 => Value::from(r.u32()? as i32),
        T_LONGLONG if unsigned => Value::from(r.u64()?),
        T_LONGLONG => Value::from(r.u64()? as i64),
        T_FLOAT => rows::float(f64::from(f32::from_le_bytes(r.array()?))),
        T_DOUBLE => rows::float(f64::from_le_bytes(r.array()?)),
        T_NULL => Value::Null,
        T_DECIMAL | T_NEWDECIMAL => {
            let text = std::str::from_utf8(r.lenenc_bytes()?).map_err(|_| bad("a DECIMAL that is not text"))?;
            let value: Decimal = text.parse().map_err(|e| bad(&format!("{e}")))?;
            rows::decimal(value)
        }
        // A zero date ('0000-00-00') comes as length 0, and sqlx reads it as NULL.
        T_DATE | T_DATETIME | T_TIMESTAMP => match binary_datetime(r)? {
            BinaryDate::Zero => Value::Null,
            BinaryDate::Impossible => return Err(bad("a date that does not exist")),
            BinaryDate::At(at) if column.kind.0 == T_DATE => rows::date(at.date()),
            BinaryDate::At(at) if column.kind.0 == T_DATETIME => rows::datetime(at),
            // TIMESTAMP comes in the session's time zone, +00:00 (as sqlx sets it).
            BinaryDate::At(at) => rows::timestamp(Utc.from_utc_datetime(&at)),
        },
        // Text and bytes alike: UTF-8 becomes a string, anything else hex (as rows::bytes).
        _ => rows::bytes(r.lenenc_bytes()?.to_vec()),
    })
}

#[derive(Debug, PartialEq)]
enum BinaryDate {
    /// '0000-00-00 00:00:00', sent as no bytes at all.
    Zero,
    /// Fields that make no calendar date (a zero month or day, the 30th of February).
    Impossible,
    At(NaiveDateTime),
}

/// A binary DATE/DATETIME/TIMESTAMP: a length, then year..microseconds as far as it goes.
fn binary_datetime(r: &mut Reader<'_>) -> Result<BinaryDate, ReadError> {
    let length = r.u8()?;
    if length == 0 {
        return Ok(BinaryDate::Zero);
    }
    if !matches!(length, 4 | 7 | 11) {
        return Err(ReadError::Io(io::Error::other("a date of an unknown length")));
    }
    let year = i32::from(r.u16()?);
    let month = u32::from(r.u8()?);
    let day = u32::from(r.u8()?);
    let (hour, minute, second) = if length >= 7 {
        (u32::from(r.u8()?), u32::from(r.u8()?), u32::from(r.u8()?))
    } else {
        (0, 0, 0)
    };
    let micros = if length == 11 { r.u32()? } else { 0 };
    let date = NaiveDate::from_ymd_opt(year, month, day);
    let time = NaiveTime::from_hms_micro_opt(hour, minute, second, micros);
    Ok(date
        .zip(time)
        .map_or(BinaryDate::Impossible, |(d, t)| BinaryDate::At(d.and_time(t))))
}

/// Reads the protocol's little-endian integers and strings from a packet.
struct Reader<'a> {
    bytes: &'a [u8],
}

fn short() -> ReadError {
    ReadError::Io(io::Error::other("a packet shorter than its contents"))
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        if self.bytes.len() < n {
            return Err(short());
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, ReadError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, ReadError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn lenenc(&mut self) -> Result<u64, ReadError> {
        Ok(match self.u8()? {
            0xfc => u64::from(self.u16()?),
            0xfd => {
                let b = self.take(3)?;
                u64::from(u32::from_le_bytes([b[0], b[1], b[2], 0]))
            }
            0xfe => self.u64()?,
            0xfb | 0xff => return Err(ReadError::Io(io::Error::other("a length that is NULL or an error"))),
            n => u64::from(n),
        })
    }

    fn lenenc_bytes(&mut self) -> Result<&'a [u8], ReadError> {
        let n = usize::try_from(self.lenenc()?).map_err(|_| short())?;
        self.take(n)
    }

    // The handshake's io::Result flavour.
    fn u8_io(&mut self) -> io::Result<u8> {
        self.u8().map_err(into_io)
    }
    fn u16_io(&mut self) -> io::Result<u16> {
        self.u16().map_err(into_io)
    }
    fn u32_io(&mut self) -> io::Result<u32> {
        self.u32().map_err(into_io)
    }
    fn bytes_io(&mut self, n: usize) -> io::Result<&'a [u8]> {
        self.take(n).map_err(into_io)
    }
    fn skip_io(&mut self, n: usize) -> io::Result<()> {
        self.take(n).map(|_| ()).map_err(into_io)
    }
    fn nul_string_io(&mut self) -> io::Result<String> {
        let end = self
            .bytes
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| into_io(short()))?;
        let text = String::from_utf8_lossy(&self.bytes[..end]).into_owned();
        self.bytes = &self.bytes[end + 1..];
        Ok(text)
    }
}

fn into_io(error: ReadError) -> io::Error {
    match error {
        ReadError::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// Whether `url` can be read by a lean connection (plain TCP, no options), and as whom.
pub(crate) fn lean_target(url: &url::Url) -> Option<LeanTarget> {
    if url.query().is_some() || url.username().contains('%') || url.password().is_some_and(|p| p.contains('%')) {
        return None;
    }
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let database = url.path().trim_start_matches('/').to_string();
    if database.is_empty() || database.contains('%') {
        return None;
    }
    Some(LeanTarget {
        host,
        port: url.port().unwrap_or(3306),
        // sqlx logs in as root when the URL names nobody.
        user: if url.username().is_empty() {
            "root".to_string()
        } else {
            url.username().to_string()
        },
        password: url.password().unwrap_or_default().to_string(),
        database,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_execute_packet_binds_each_value_with_its_type() {
        let packet = execute_packet(
            7,
            &[
                SqlValue::Int(-2),
                SqlValue::Text("ü".into()),
                SqlValue::Decimal("1.50".parse().unwrap()),
            ],
        );
        let mut expected = vec![COM_STMT_EXECUTE, 7, 0, 0, 0, 0, 1, 0, 0, 0];
        expected.extend_from_slice(&[0, 1]); // NULL bitmap, types follow
        expected.extend_from_slice(&[0x08, 0, 0xfd, 0, 0xf6, 0]);
        expected.extend_from_slice(&(-2i64).to_le_bytes());
        expected.extend_from_slice(&[2, 0xc3, 0xbc]);
        expected.extend_from_slice(&[4, b'1', b'.', b'5', b'0']);
        assert_eq!(packet, expected);
        assert_eq!(
            execute_packet(1, &[]),
            vec![COM_STMT_EXECUTE, 1, 0, 0, 0, 0, 1, 0, 0, 0]
        );
    }

    #[test]
    fn length_encoded_integers_round_trip() {
        for n in [0usize, 250, 251, 65_535, 65_536, 16_777_216] {
            let mut out = Vec::new();
            put_lenenc_bytes(&mut out, &vec![b'x'; n]);
            let mut r = Reader::new(&out);
            assert_eq!(r.lenenc_bytes().unwrap().len(), n, "{n}");
            assert!(r.bytes.is_empty());
        }
        assert!(Reader::new(&[0xfb]).lenenc().is_err(), "NULL is no length");
        assert!(Reader::new(&[0xfc, 1]).lenenc().is_err(), "a cut length");
    }

    #[test]
    fn binary_dates_of_every_length() {
        let at = |bytes: &[u8]| binary_datetime(&mut Reader::new(bytes)).unwrap();
        assert_eq!(at(&[0]), BinaryDate::Zero);
        let day = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        assert_eq!(
            at(&[4, 0xe8, 0x07, 2, 29]),
            BinaryDate::At(day.and_hms_opt(0, 0, 0).unwrap())
        );
        assert_eq!(
            at(&[7, 0xe8, 0x07, 2, 29, 7, 30, 1]),
            BinaryDate::At(day.and_hms_opt(7, 30, 1).unwrap())
        );
        assert_eq!(
            at(&[11, 0xe8, 0x07, 2, 29, 7, 30, 1, 0x7b, 0, 0, 0]),
            BinaryDate::At(day.and_hms_micro_opt(7, 30, 1, 123).unwrap())
        );
        assert!(binary_datetime(&mut Reader::new(&[5, 0, 0, 0, 0, 0])).is_err());
        assert_eq!(at(&[4, 0xe8, 0x07, 2, 30]), BinaryDate::Impossible, "no such day");
    }

    #[test]
    fn a_row_honours_its_null_bitmap() {
        let column = |kind: u8, flags: u16, max_size: u32| Column {
            name: "c".into(),
            kind: ColumnType(kind),
            flags,
            max_size,
        };
        let columns = [
            column(T_LONG, 0, 11),
            column(T_VAR_STRING, 0, 40),
            column(T_TINY, 0, 1),
            column(T_LONGLONG, FLAG_UNSIGNED, 20),
        ];
        // Column 1 is NULL: bit 1 + 2 of the bitmap.
        let mut packet = vec![0x00, 0b0000_1000];
        packet.extend_from_slice(&(-5i32).to_le_bytes());
        packet.push(1);
        packet.extend_from_slice(&u64::MAX.to_le_bytes());
        let row = decode_row(&packet, &columns).unwrap();
        assert_eq!(
            row,
            vec![Value::from(-5), Value::Null, Value::Bool(true), Value::from(u64::MAX)]
        );
        assert!(
            matches!(decode_row(&packet[..6], &columns), Err(ReadError::Decode(_))),
            "a cut row is a failed read, not a lost connection"
        );
    }

    #[test]
    fn only_a_plain_url_gets_a_lean_connection() {
        let target = |url: &str| lean_target(&url::Url::parse(url).unwrap());
        let plain = target("mysql://u:p@db.example:3307/workshop").unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.user.as_str()),
            ("db.example", 3307, "u")
        );
        assert_eq!((plain.password.as_str(), plain.database.as_str()), ("p", "workshop"));
        assert_eq!(target("mysql://u@[::1]/w").unwrap().host, "::1");
        assert!(target("mysql://u:p@h/w?ssl-mode=required").is_none());
        assert!(
            target("mysql://u:p%40x@h/w").is_none(),
            "percent-encoded logins stay on sqlx"
        );
        assert!(target("mysql://u:p@h").is_none(), "no database");
        let shown = format!("{:?}", target("mysql://u:hunter2@h/w").unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn an_empty_password_sends_no_token() {
        assert!(native_password(b"", &[1; 20]).is_empty());
        assert_eq!(native_password(b"secret", &[1; 20]).len(), 20);
        assert_ne!(
            native_password(b"secret", &[1; 20]),
            native_password(b"secret", &[2; 20])
        );
    }
}
