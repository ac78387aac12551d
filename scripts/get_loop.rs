//! The floor under `just bench`'s cache-hit row: a bare GET loop with no
//! workshop code in it, so the report can show what any client of this shape
//! gets on the machine, next to redis-benchmark and workshop-cli.
//!
//! One connection, one request at a time: write `GET key`, read the one bulk
//! reply, repeat. `tokio` waits for the reply the way workshop-cli does (a
//! current-thread runtime, the socket registered with epoll); `blocking` waits
//! in `read(2)`. Each timed sample is the write plus reading the whole reply,
//! nothing else (no decode, no histogram: samples go into a preallocated vector).
//!
//!   cargo run --release --example get_loop -- tokio 127.0.0.1:6379 KEY 20000 1000
//!
//! Prints one JSON line: mode, count, p50_us, p99_us, mean_us. Exits 1
//! with a message on a refused connection, an error reply or a missing key.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: get_loop tokio|blocking HOST:PORT KEY TIMED_READS WARMUP_READS";

struct Args {
    mode: Mode,
    address: String,
    key: String,
    timed: usize,
    warmup: usize,
}

#[derive(Clone, Copy)]
enum Mode {
    Tokio,
    Blocking,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Tokio => "tokio",
            Mode::Blocking => "blocking",
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, address, key, timed, warmup] = args.as_slice() else {
        return Err(USAGE.to_string());
    };
    let mode = match mode.as_str() {
        "tokio" => Mode::Tokio,
        "blocking" => Mode::Blocking,
        other => return Err(format!("unknown mode '{other}'; {USAGE}")),
    };
    let count = |text: &str, what: &str| {
        text.parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{what} must be a whole number above 0 (got '{text}')"))
    };
    Ok(Args {
        mode,
        address: address.clone(),
        key: key.clone(),
        timed: count(timed, "TIMED_READS")?,
        warmup: count(warmup, "WARMUP_READS")?,
    })
}

/// `GET key` in RESP2.
fn request(key: &str) -> Vec<u8> {
    let mut out = format!("*2\r\n$3\r\nGET\r\n${}\r\n", key.len()).into_bytes();
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// How many bytes the whole reply at the start of `bytes` takes, once they are
/// all there (`Ok(None)`: read more). Only a bulk string is a hit.
fn reply_length(bytes: &[u8]) -> Result<Option<usize>, String> {
    let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    if end == 0 {
        return Err("an empty reply line".to_string());
    }
    let line = String::from_utf8_lossy(&bytes[1..end]);
    match bytes[0] {
        b'$' if line == "-1" => Err("the key is not in Valkey (GET answered nil)".to_string()),
        b'$' => {
            let length: usize = line.parse().map_err(|_| format!("bad bulk length '{line}'"))?;
            let total = end + 2 + length + 2;
            Ok((bytes.len() >= total).then_some(total))
        }
        b'-' => Err(format!("Valkey answered an error: {line}")),
        other => Err(format!("unexpected reply type '{}'", other as char)),
    }
}

/// Reads one whole reply into `buffer` (cleared first) through `read`.
fn read_reply(buffer: &mut Vec<u8>, mut read: impl FnMut(&mut [u8]) -> std::io::Result<usize>) -> Result<(), String> {
    buffer.clear();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = read(&mut chunk).map_err(|e| format!("read failed: {e}"))?;
        if n == 0 {
            return Err("Valkey closed the connection".to_string());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if reply_length(buffer)?.is_some() {
            return Ok(());
        }
    }
}

fn run_blocking(args: &Args, samples: &mut Vec<Duration>) -> Result<(), String> {
    let mut stream =
        std::net::TcpStream::connect(&args.address).map_err(|e| format!("cannot connect to {}: {e}", args.address))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let request = request(&args.key);
    let mut buffer = Vec::with_capacity(16 * 1024);
    for i in 0..args.warmup + args.timed {
        let started = Instant::now();
        stream.write_all(&request).map_err(|e| format!("write failed: {e}"))?;
        read_reply(&mut buffer, |chunk| stream.read(chunk))?;
        if i >= args.warmup {
            samples.push(started.elapsed());
        }
    }
    Ok(())
}

async fn run_tokio(args: &Args, samples: &mut Vec<Duration>) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let stream = tokio::net::TcpStream::connect(&args.address)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.address))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (reader, mut writer) = stream.into_split();
    let request = request(&args.key);
    let mut buffer = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    for i in 0..args.warmup + args.timed {
        let started = Instant::now();
        writer
            .write_all(&request)
            .await
            .map_err(|e| format!("write failed: {e}"))?;
        buffer.clear();
        loop {
            reader.readable().await.map_err(|e| format!("read failed: {e}"))?;
            let n = match reader.try_read(&mut chunk) {
                Ok(0) => return Err("Valkey closed the connection".to_string()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(format!("read failed: {e}")),
            };
            buffer.extend_from_slice(&chunk[..n]);
            if reply_length(&buffer)?.is_some() {
                break;
            }
        }
        if i >= args.warmup {
            samples.push(started.elapsed());
        }
    }
    Ok(())
}

/// Nearest rank: the smallest sample with at least `q` of them at or below it.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("get_loop: {message}");
            return ExitCode::from(2);
        }
    };
    let mut samples = Vec::with_capacity(args.timed);
    let outcome = match args.mode {
        Mode::Blocking => run_blocking(&args, &mut samples),
        Mode::Tokio => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(run_tokio(&args, &mut samples)),
            Err(e) => Err(format!("cannot start the runtime: {e}")),
        },
    };
    if let Err(message) = outcome {
        eprintln!("get_loop: {message}");
        return ExitCode::FAILURE;
    }
    let total: Duration = samples.iter().sum();
    samples.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{{\"mode\": \"{}\", \"count\": {}, \"p50_us\": {:.1}, \"p99_us\": {:.1}, \"mean_us\": {:.1}}}",
        args.mode.name(),
        samples.len(),
        us(percentile(&samples, 0.50)),
        us(percentile(&samples, 0.99)),
        us(total) / samples.len() as f64,
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bulk_reply_is_whole_only_with_its_last_crlf() {
        assert_eq!(reply_length(b"$5\r\nhel").unwrap(), None);
        assert_eq!(reply_length(b"$5\r\nhello\r").unwrap(), None);
        assert_eq!(reply_length(b"$5\r\nhello\r\n").unwrap(), Some(11));
        assert_eq!(reply_length(b"$5").unwrap(), None);
    }

    #[test]
    fn nil_and_errors_are_not_hits() {
        assert!(reply_length(b"$-1\r\n").unwrap_err().contains("not in Valkey"));
        assert!(reply_length(b"-ERR wrong\r\n").unwrap_err().contains("ERR wrong"));
        assert!(reply_length(b"+OK\r\n").is_err());
        assert!(reply_length(b"\r\n").is_err());
    }

    #[test]
    fn the_request_is_resp2_get() {
        assert_eq!(request("k:1"), b"*2\r\n$3\r\nGET\r\n$3\r\nk:1\r\n");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&samples, 0.50), Duration::from_micros(50));
        assert_eq!(percentile(&samples, 0.99), Duration::from_micros(99));
        assert_eq!(percentile(&samples[..1], 0.50), Duration::from_micros(1));
    }
}
