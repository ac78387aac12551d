//! One keep-alive HTTP/1.1 connection of `load`, spoken directly, the way
//! wrk does: the request's bytes go out in one write, the answer is parsed in
//! place (httparse for the head; a `Content-Length`, chunked or
//! close-delimited body read and dropped), and only the status and one header
//! value come back. A general client (hyper's) keeps a channel, a header map
//! and a body stream per request; measured under `wrk -c 50` load that was
//! 4.4 µs of user CPU per request against wrk's 0.8 µs, on a machine where the
//! generator and the server share two cores.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// An answer's head may be at most this long (wrk and most servers allow 8 to 64 KiB).
const MAX_HEAD: usize = 64 * 1024;
/// Headers per answer parsed; more is an error.
const MAX_HEADERS: usize = 64;
/// The read buffer's size; it grows only for a longer head.
const BUFFER: usize = 16 * 1024;
/// A chunk-size line (hex size, extensions) or a trailer line may be at most this long.
const MAX_LINE: usize = 4096;
/// Unread bytes move to the buffer's front before a read with less room than this after them.
const COMPACT_BELOW: usize = 2048;

/// What came back for one request.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer<T> {
    pub status: u16,
    /// What `header` made of the header asked for, when the answer had it.
    pub header: Option<T>,
    /// `false`: the server closes the connection after this answer.
    pub keep_alive: bool,
}

#[derive(Debug)]
pub enum Failure {
    /// No byte of an answer came: the connection ended (or was reset, or the
    /// request could not be written) before one. On a kept-alive connection
    /// that is the server having closed it between requests (an idle
    /// timeout), and a new connection may send the request again.
    NoAnswer(#[allow(dead_code)] io::Error),
    /// Part of an answer came, then it broke: a reset, a malformed or
    /// truncated answer. (`load` counts it as failed; the tests read which
    /// error it was.)
    Broken(#[allow(dead_code)] io::Error),
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Self {
        Failure::Broken(error)
    }
}

fn invalid(what: impl Into<String>) -> Failure {
    Failure::Broken(io::Error::new(io::ErrorKind::InvalidData, what.into()))
}

fn truncated() -> Failure {
    Failure::Broken(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the connection ended inside an answer",
    ))
}

/// How an answer's body ends.
enum Body {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

pub struct Wire<S> {
    stream: S,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    pub fn new(stream: S) -> Self {
        Wire {
            stream,
            buf: vec![0; BUFFER],
            start: 0,
            end: 0,
        }
    }

    /// Sends `request` (a whole HTTP/1.1 request, head and body) and reads its
    /// whole answer. `name` is a lower-case header name; `header` turns its
    /// value into what the caller keeps.
    pub async fn exchange<T>(
        &mut self,
        request: &[u8],
        name: &str,
        header: impl Fn(&[u8]) -> T,
    ) -> Result<Answer<T>, Failure> {
        if let Err(error) = self.write(request).await {
            return Err(Failure::NoAnswer(error));
        }
        // Whether any byte of the answer came: a failure before the first is no answer at all.
        let mut answered = false;
        loop {
            let (head_len, status, value, body, keep_alive) = loop {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete(head_len)) => {
                        let status = response.code.unwrap_or(0);
                        let http11 = response.version == Some(1);
                        let (value, body, keep_alive) = framing(response.headers, status, http11, name, &header)?;
                        break (head_len, status, value, body, keep_alive);
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.end - self.start >= MAX_HEAD {
                            return Err(invalid(format!("an answer's head is longer than {MAX_HEAD} bytes")));
                        }
                        match self.fill(MAX_HEAD).await {
                            Ok(0) if !answered => {
                                return Err(Failure::NoAnswer(io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    "the connection ended before an answer",
                                )))
                            }
                            Ok(0) => return Err(truncated()),
                            Ok(_) => answered = true,
                            Err(Failure::Broken(error)) if !answered && error.kind() != io::ErrorKind::InvalidData => {
                                // A reset (or TLS's end without close_notify) before any byte.
                                return Err(Failure::NoAnswer(error));
                            }
                            Err(failure) => return Err(failure),
                        }
                    }
                    Err(error) => return Err(invalid(format!("a malformed answer: {error}"))),
                }
            };
            self.start += head_len;
            if (100..200).contains(&status) {
                if status == 101 {
                    return Err(invalid(
                        "the server switched protocols (101), which load does not speak",
                    ));
                }
                // 100 Continue, 103 Early Hints: the real answer follows.
                continue;
            }
            match body {
                Body::Empty => {}
                Body::Length(n) => self.skip(n).await?,
                Body::Chunked => self.skip_chunks().await?,
                Body::UntilClose => loop {
                    self.start = self.end;
                    if self.fill(BUFFER).await? == 0 {
                        break;
                    }
                },
            }
            let keep_alive = keep_alive && !matches!(body, Body::UntilClose);
            return Ok(Answer {
                status,
                header: value,
                keep_alive,
            });
        }
    }

    async fn write(&mut self, request: &[u8]) -> io::Result<()> {
        self.stream.write_all(request).await?;
        self.stream.flush().await
    }

    /// Reads more; `Ok(0)` at the end of the stream. Unread bytes move to the
    /// front first, and the buffer grows (up to `limit`) only when full of them.
    async fn fill(&mut self, limit: usize) -> Result<usize, Failure> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.buf.len() - self.end < COMPACT_BELOW {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= limit {
                return Err(invalid(format!(
                    "the answer needs more than {limit} bytes buffered at once"
                )));
            }
            self.buf.resize((self.buf.len() * 2).min(limit), 0);
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Drops the next `n` bytes of the stream.
    async fn skip(&mut self, mut n: u64) -> Result<(), Failure> {
        loop {
            let take = (self.end - self.start).min(usize::try_from(n).unwrap_or(usize::MAX));
            self.start += take;
            n -= take as u64;
            if n == 0 {
                return Ok(());
            }
            if self.fill(BUFFER).await? == 0 {
                return Err(truncated());
            }
        }
    }

    /// The unread bytes up to the next `\n`, which are consumed; `None` needs a read.
    fn take_line(&mut self) -> Option<(usize, usize)> {
        let unread = &self.buf[self.start..self.end];
        let at = unread.iter().position(|b| *b == b'\n')?;
        let line = (self.start, self.start + at + 1);
        self.start += at + 1;
        Some(line)
    }

    async fn line(&mut self) -> Result<(usize, usize), Failure> {
        loop {
            if let Some(line) = self.take_line() {
                return Ok(line);
            }
            if self.end - self.start >= MAX_LINE {
                return Err(invalid(format!(
                    "a line of a chunked body is longer than {MAX_LINE} bytes"
                )));
            }
            if self.fill(BUFFER.max(MAX_LINE)).await? == 0 {
                return Err(truncated());
            }
        }
    }

    /// A chunked body: sizes, data and its CRLFs, the last chunk and the trailers.
    async fn skip_chunks(&mut self) -> Result<(), Failure> {
        loop {
            let (from, to) = self.line().await?;
            let size =
                chunk_size(&self.buf[from..to]).ok_or_else(|| invalid("a malformed chunk size in a chunked body"))?;
            if size == 0 {
                // Trailers, if any, up to an empty line.
                loop {
                    let (from, to) = self.line().await?;
                    if matches!(&self.buf[from..to], b"\r\n" | b"\n") {
                        return Ok(());
                    }
                }
            }
            self.skip(size).await?;
            let (from, to) = self.line().await?;
            if !matches!(&self.buf[from..to], b"\r\n" | b"\n") {
                return Err(invalid("a chunk of a chunked body is longer than its size"));
            }
        }
    }
}

/// A chunk-size line's size: hex digits, then extensions (`;…`) or the line's end.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return None;
    }
    if !matches!(line.get(digits), Some(b';' | b' ' | b'\t' | b'\r' | b'\n')) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()
}

/// A `Content-Length` value: digits, or a list of the same digits (RFC 9110 §8.6).
fn content_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for part in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = std::str::from_utf8(part).ok()?.parse::<u64>().ok()?;
        if length.is_some_and(|earlier| earlier != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

/// The header asked for, how the body ends and whether the connection stays
/// open (RFC 9112 §6.1, §6.3 and §9.3).
fn framing<T>(
    headers: &[httparse::Header<'_>],
    status: u16,
    http11: bool,
    name: &str,
    header: &impl Fn(&[u8]) -> T,
) -> Result<(Option<T>, Body, bool), Failure> {
    let mut value = None;
    let mut length = None;
    // Some(true): Transfer-Encoding with chunked as its last coding; Some(false): another last coding.
    let mut chunked = None;
    let (mut close, mut keep_alive_asked) = (false, false);
    for h in headers {
        if h.name.eq_ignore_ascii_case(name) {
            value = Some(header(h.value));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value).ok_or_else(|| invalid("a Content-Length that is not one number"))?;
            if length.is_some_and(|earlier| earlier != n) {
                return Err(invalid("two different Content-Length headers"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The codings of several headers form one list: the last one counts.
            if let Some(last) = h
                .value
                .rsplit(|b| *b == b',')
                .map(<[u8]>::trim_ascii)
                .find(|c| !c.is_empty())
            {
                chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_asked |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let mut keep_alive = !close && (http11 || keep_alive_asked);
    if chunked.is_some() && (length.is_some() || !http11) {
        // Both framings, or Transfer-Encoding in HTTP/1.0: read it by the
        // Transfer-Encoding, then close (§6.1, §6.3 rule 3).
        keep_alive = false;
    }
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        Body::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Body::Chunked,
            (Some(false), _) => Body::UntilClose,
            (None, Some(0)) => Body::Empty,
            (None, Some(n)) => Body::Length(n),
            (None, None) => Body::UntilClose,
        }
    };
    Ok((value, body, keep_alive))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

    const GET: &[u8] = b"GET /products/1 HTTP/1.1\r\nHost: x\r\n\r\n";
    const NEXT: &[u8] = b"HTTP/1.1 200 OK\r\nX-Cache: L2\r\nContent-Length: 4\r\n\r\nnext";

    /// A peer that reads one request, then writes `parts` one at a time
    /// (flushed apart, so the answer arrives split where the test says); then
    /// it answers a second request with [`NEXT`] unless `close` is set, in
    /// which case it closes its end.
    fn peer(parts: Vec<Vec<u8>>, close: bool) -> (Wire<DuplexStream>, tokio::task::JoinHandle<Vec<u8>>) {
        let (ours, mut theirs) = duplex(256);
        let task = tokio::spawn(async move {
            let mut request = vec![0u8; GET.len()];
            theirs.read_exact(&mut request).await.unwrap();
            for part in parts {
                if theirs.write_all(&part).await.is_err() {
                    return request;
                }
                theirs.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            if !close {
                let mut second = vec![0u8; GET.len()];
                if theirs.read_exact(&mut second).await.is_ok() {
                    theirs.write_all(NEXT).await.unwrap();
                }
                let mut rest = Vec::new();
                let _ = theirs.read_to_end(&mut rest).await;
            }
            request
        });
        (Wire::new(ours), task)
    }

    fn parts(parts: &[&[u8]]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.to_vec()).collect()
    }

    fn layer(value: &[u8]) -> String {
        String::from_utf8_lossy(value).into_owned()
    }

    /// One exchange, failing the test instead of hanging when framing goes wrong.
    async fn ask(wire: &mut Wire<DuplexStream>) -> Result<Answer<String>, Failure> {
        tokio::time::timeout(Duration::from_secs(5), wire.exchange(GET, "x-cache", layer))
            .await
            .expect("an exchange that ends")
    }

    /// The connection is still usable, and in step: a second request gets [`NEXT`].
    async fn next_answer_is_read(wire: &mut Wire<DuplexStream>) {
        let answer = ask(wire).await.unwrap();
        assert_eq!((answer.status, answer.header.as_deref()), (200, Some("L2")));
    }

    fn broken_kind(result: Result<Answer<String>, Failure>) -> io::ErrorKind {
        match result {
            Err(Failure::Broken(error)) => error.kind(),
            other => panic!("expected a broken answer, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_content_length_answer_split_in_head_and_body_gives_its_status_and_header() {
        let (mut wire, server) = peer(
            parts(&[
                b"HTTP/1.1 200 OK\r\nX-Cache: L",
                b"1\r\nContent-Length: 9\r\n\r\n{\"id\"",
                b":42}",
            ]),
            false,
        );
        let answer = ask(&mut wire).await.unwrap();
        assert_eq!(
            answer,
            Answer {
                status: 200,
                header: Some("L1".to_string()),
                keep_alive: true
            }
        );
        next_answer_is_read(&mut wire).await;
        drop(wire);
        assert_eq!(server.await.unwrap(), GET, "the request went out unchanged");
    }

    #[tokio::test]
    async fn a_chunked_answer_with_extensions_and_trailers_is_read_to_its_end() {
        let (mut wire, _server) = peer(
            parts(&[
                b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                b"5;name=value\r\nhel",
                b"lo\r",
                b"\n6\r\n world\r\n0\r\nExpires: never\r\n",
                b"Via: x\r\n",
                b"\r\n",
            ]),
            false,
        );
        let answer = ask(&mut wire).await.unwrap();
        assert_eq!((answer.status, answer.header, answer.keep_alive), (404, None, true));
        next_answer_is_read(&mut wire).await;
    }

    #[tokio::test]
    async fn malformed_chunks_are_broken_answers() {
        for body in [
            &b"\r\nhello\r\n0\r\n\r\n"[..], // a size line with no digits
            b"zz\r\n",
            b"3\r\nhello\r\n0\r\n\r\n", // data longer than its size
        ] {
            let (mut wire, _server) = peer(
                vec![
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
                    body.to_vec(),
                ],
                false,
            );
            assert_eq!(
                broken_kind(ask(&mut wire).await),
                io::ErrorKind::InvalidData,
                "{body:?}"
            );
        }
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_connection_close_is_honoured() {
        let (mut wire, _server) = peer(
            parts(&[
                b"HTTP/1.1 100 Continue\r\n",
                b"\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 2\r\nX-Cache: DB\r\n\r\n{}",
            ]),
            true,
        );
        let answer = ask(&mut wire).await.unwrap();
        assert_eq!(
            (answer.status, answer.header.as_deref(), answer.keep_alive),
            (201, Some("DB"), false)
        );
        // A switch of protocols is refused; a close after an interim answer is a broken answer.
        let (mut wire, _server) = peer(
            parts(&[b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"]),
            true,
        );
        assert_eq!(broken_kind(ask(&mut wire).await), io::ErrorKind::InvalidData);
        let (mut wire, _server) = peer(parts(&[b"HTTP/1.1 100 Continue\r\n\r\n"]), true);
        assert_eq!(broken_kind(ask(&mut wire).await), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn an_answer_without_a_length_lasts_until_the_server_closes_however_long() {
        let mut answer = b"HTTP/1.1 200 OK\r\nX-Cache: L1\r\n\r\n".to_vec();
        answer.extend(std::iter::repeat_n(b'x', 40_000));
        let (mut wire, server) = peer(vec![answer], true);
        let got = ask(&mut wire).await.unwrap();
        assert_eq!(
            (got.status, got.header.as_deref(), got.keep_alive),
            (200, Some("L1"), false)
        );
        assert!(server.is_finished(), "the answer ended when the server closed");
        assert!(
            wire.buf.len() <= BUFFER,
            "a long body is not kept: {} bytes",
            wire.buf.len()
        );
    }

    #[tokio::test]
    async fn transfer_encoding_decides_the_framing_and_the_connection() {
        // A last coding other than chunked: until close, whatever Content-Length says.
        let (mut wire, _server) = peer(
            parts(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nabcdef"]),
            true,
        );
        assert!(!ask(&mut wire).await.unwrap().keep_alive);
        // Chunked and a Content-Length: read as chunked, then the connection is not reused.
        let (mut wire, _server) = peer(
            parts(&[
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            ]),
            false,
        );
        assert!(!ask(&mut wire).await.unwrap().keep_alive);
        // HTTP/1.0: kept alive only when asked, with close winning.
        for (head, kept) in [
            (&b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"[..], false),
            (
                b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
                true,
            ),
            (
                b"HTTP/1.0 200 OK\r\nConnection: close, keep-alive\r\nContent-Length: 2\r\n\r\nok",
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                false,
            ),
            (b"HTTP/1.1 204 No Content\r\n\r\n", true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", true),
        ] {
            let (mut wire, _server) = peer(vec![head.to_vec()], false);
            let answer = ask(&mut wire).await.unwrap();
            assert_eq!(answer.keep_alive, kept, "{}", String::from_utf8_lossy(head));
            if kept {
                next_answer_is_read(&mut wire).await;
            }
        }
    }

    #[tokio::test]
    async fn a_closed_connection_an_early_end_and_garbage_are_told_apart() {
        let (mut wire, _server) = peer(vec![], true);
        assert!(matches!(ask(&mut wire).await, Err(Failure::NoAnswer(_))));
        let (mut wire, _server) = peer(parts(&[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]), true);
        assert_eq!(broken_kind(ask(&mut wire).await), io::ErrorKind::UnexpectedEof);
        let (mut wire, _server) = peer(parts(&[b"HTTP/1.1 200 OK\r\nContent-Le"]), true);
        assert_eq!(broken_kind(ask(&mut wire).await), io::ErrorKind::UnexpectedEof);
        let (mut wire, _server) = peer(parts(&[b"SSH-2.0-OpenSSH_9.2\r\n\r\n"]), true);
        assert_eq!(broken_kind(ask(&mut wire).await), io::ErrorKind::InvalidData);
        for length in ["x1", "+5", "5, 6", ""] {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n");
            let (mut wire, _server) = peer(vec![head.into_bytes()], true);
            assert_eq!(
                broken_kind(ask(&mut wire).await),
                io::ErrorKind::InvalidData,
                "{length}"
            );
        }
    }

    #[tokio::test]
    async fn a_request_that_cannot_be_written_got_no_answer() {
        let (ours, theirs) = duplex(64);
        drop(theirs);
        let mut wire = Wire::new(ours);
        assert!(matches!(ask(&mut wire).await, Err(Failure::NoAnswer(_))));
    }

    #[tokio::test]
    async fn a_head_longer_than_the_buffer_grows_it_and_one_too_long_is_refused() {
        let long = format!(
            "HTTP/1.1 200 OK\r\nX-Padding: {}\r\nContent-Length: 0\r\n\r\n",
            "p".repeat(40_000)
        );
        let (mut wire, _server) = peer(vec![long.into_bytes()], false);
        assert_eq!(ask(&mut wire).await.unwrap().status, 200);
        next_answer_is_read(&mut wire).await;
        let too_long = format!("HTTP/1.1 200 OK\r\nX-Padding: {}\r\n\r\n", "p".repeat(70_000));
        let (mut wire, _server) = peer(vec![too_long.into_bytes()], false);
        assert_eq!(broken_kind(ask(&mut wire).await), io::ErrorKind::InvalidData);
    }
}
