//! Configuration: command-line flags > process environment > `.env` > defaults.
//!
//! The `.env` file (in the working directory or the nearest parent) is loaded
//! into the process environment before the command line is parsed, without
//! overriding variables that are already set, so clap's `env` fallbacks see it
//! with the right precedence. This module remembers which keys came from the
//! file so `check-env` can say where each setting came from.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

pub const DEFAULT_DATABASE_URL: &str = "mysql://workshop:workshop@127.0.0.1:3306/workshop";
pub const DEFAULT_VALKEY_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_TTL_SECONDS: u64 = 300;
pub const DEFAULT_KEY_PREFIX: &str = "workshop:";
pub const MAX_TTL_SECONDS: u64 = 365 * 24 * 3600;

const DATABASE_SCHEMES: &str = "mysql://, mariadb://, postgres://, postgresql://";
const VALKEY_SCHEMES: &str = "redis://, rediss://, valkey://, valkeys://";
const DB_ENGINES: &str = "mysql, mariadb, postgresql";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}:{line}: malformed line (expected KEY=VALUE, with quotes closed); fix or remove that line")]
    MalformedDotEnv { path: String, line: usize },
    #[error("cannot read {path}: {reason}")]
    UnreadableDotEnv { path: String, reason: String },
    #[error("{var} has unknown scheme '{scheme}://'; supported: {supported}")]
    UnknownScheme {
        var: &'static str,
        scheme: String,
        supported: &'static str,
    },
    #[error("{var} is not a valid URL ({reason}); expected e.g. {example}")]
    InvalidUrl {
        var: &'static str,
        reason: String,
        example: &'static str,
    },
    #[error("DB_ENGINE '{0}' is not supported; use one of: {DB_ENGINES}")]
    UnknownEngine(String),
    #[error("{var} must be {expected} (got '{value}')")]
    InvalidValue {
        var: &'static str,
        expected: &'static str,
        value: String,
    },
}

/// Where a setting's value came from, for `check-env`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Flag,
    Environment,
    DotEnv,
    /// Built from the split `DB_*` / `CACHE_*` variables.
    SplitVariables,
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "command-line flag",
            Source::Environment => "environment",
            Source::DotEnv => ".env",
            Source::SplitVariables => "DB_*/CACHE_* variables",
            Source::Default => "built-in default",
        })
    }
}

/// The `.env` file that was found and loaded, if any.
#[derive(Debug, Default, Clone)]
pub struct DotEnv {
    pub path: Option<PathBuf>,
    /// Keys this file put into the environment (ones already set are kept).
    loaded_keys: HashSet<String>,
}

impl DotEnv {
    /// Finds `.env` in `start` or its nearest parent and loads it into the
    /// process environment without overriding variables already set.
    /// Must run before any other thread starts (it sets environment variables).
    pub fn load_from(start: &Path) -> Result<DotEnv, ConfigError> {
        let Some(path) = find_dotenv(start) else {
            return Ok(DotEnv::default());
        };
        let pairs = parse_dotenv(&path)?;
        let mut loaded_keys = HashSet::new();
        for (key, value) in pairs {
            if std::env::var_os(&key).is_none() {
                std::env::set_var(&key, value);
                loaded_keys.insert(key);
            }
        }
        Ok(DotEnv {
            path: Some(path),
            loaded_keys,
        })
    }

    fn provided(&self, key: &str) -> bool {
        self.loaded_keys.contains(key)
    }
}

fn find_dotenv(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(".env"))
        .find(|candidate| candidate.is_file())
}

/// Parses a `.env` file with dotenvy, turning its parse errors into a file and
/// line number. The offending line's text is not printed: it may hold a password.
fn parse_dotenv(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let shown = path.display().to_string();
    let unreadable = |reason: String| ConfigError::UnreadableDotEnv {
        path: shown.clone(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
    let mut pairs = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(pair) => pairs.push(pair),
            Err(dotenvy::Error::LineParse(bad, _)) => {
                return Err(ConfigError::MalformedDotEnv {
                    path: shown,
                    line: line_number_of(&text, &bad),
                })
            }
            Err(other) => return Err(unreadable(other.to_string())),
        }
    }
    Ok(pairs)
}

/// dotenvy reports the text of the bad (possibly multi-line) entry; find where
/// it starts in the file.
fn line_number_of(text: &str, bad_entry: &str) -> usize {
    let first_line = bad_entry.lines().next().unwrap_or("").trim();
    text.lines()
        .position(|line| line.trim() == first_line)
        .or_else(|| {
            text.lines()
                .position(|line| !first_line.is_empty() && line.contains(first_line))
        })
        .map_or(0, |index| index + 1)
}

/// Raw settings from the command line (already merged with the environment by clap).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub database_url: Option<String>,
    pub valkey_url: Option<String>,
    pub ttl: Option<String>,
    /// `--ttl-jitter` / `CACHE_TTL_JITTER`, a percentage as typed.
    pub ttl_jitter: Option<String>,
    pub key_prefix: Option<String>,
    pub connect_timeout: Option<Duration>,
    /// `--query-timeout`: `Some(None)` is `0`, no limit.
    pub query_timeout: Option<Option<Duration>>,
    /// `--cache-timeout` / `WORKSHOP_CACHE_TIMEOUT`, milliseconds as typed.
    pub cache_timeout: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    MySql,
    Postgres,
}

impl DatabaseKind {
    pub fn label(self) -> &'static str {
        match self {
            DatabaseKind::MySql => "MySQL/MariaDB",
            DatabaseKind::Postgres => "PostgreSQL",
        }
    }
}

/// A database location. `url` holds the password; print [`DatabaseTarget::masked`].
#[derive(Clone)]
pub struct DatabaseTarget {
    pub kind: DatabaseKind,
    url: Url,
    pub source: Source,
    /// The server-side limit on every statement (`--query-timeout`); `None`: no limit of ours.
    pub query_timeout: Option<Duration>,
}

impl fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseTarget({})", self.masked())
    }
}

impl DatabaseTarget {
    pub fn parse(raw: &str, source: Source) -> Result<Self, ConfigError> {
        let url = parse_url(
            "DATABASE_URL",
            raw,
            DATABASE_SCHEMES,
            "mysql://user:password@127.0.0.1:3306/workshop",
        )?;
        let kind = match url.scheme() {
            "mysql" | "mariadb" => DatabaseKind::MySql,
            "postgres" | "postgresql" => DatabaseKind::Postgres,
            other => {
                return Err(ConfigError::UnknownScheme {
                    var: "DATABASE_URL",
                    scheme: other.to_string(),
                    supported: DATABASE_SCHEMES,
                })
            }
        };
        Ok(DatabaseTarget {
            kind,
            url,
            source,
            query_timeout: Some(DEFAULT_QUERY_TIMEOUT),
        })
    }

    /// The URL for the driver: `mariadb://` and `postgresql://` normalised.
    pub fn connect_url(&self) -> String {
        let mut url = self.url.clone();
        let scheme = match self.kind {
            DatabaseKind::MySql => "mysql",
            DatabaseKind::Postgres => "postgres",
        };
        // Both are "special-less" schemes, so set_scheme cannot fail here.
        let _ = url.set_scheme(scheme);
        url.to_string()
    }

    pub fn masked(&self) -> String {
        mask(&self.url)
    }

    pub fn database_name(&self) -> String {
        self.url.path().trim_start_matches('/').to_string()
    }

    /// Host and port, the port defaulting to the engine's own (3306, 5432).
    pub fn address(&self) -> (String, u16) {
        let default = match self.kind {
            DatabaseKind::MySql => 3306,
            DatabaseKind::Postgres => 5432,
        };
        address_of(&self.url, default)
    }

    pub fn user(&self) -> String {
        self.url.username().to_string()
    }

    /// The host as written in the URL, lower-cased (hosts are case-insensitive).
    pub fn host(&self) -> String {
        self.url.host_str().unwrap_or_default().to_ascii_lowercase()
    }

    /// The port, or the engine's default when the URL has none.
    pub fn port(&self) -> u16 {
        self.url.port().unwrap_or(match self.kind {
            DatabaseKind::MySql => 3306,
            DatabaseKind::Postgres => 5432,
        })
    }

    /// The same server, another database: used by tests and `seed` helpers.
    pub fn with_database(&self, name: &str) -> DatabaseTarget {
        let mut url = self.url.clone();
        url.set_path(&format!("/{name}"));
        DatabaseTarget {
            kind: self.kind,
            url,
            source: self.source.clone(),
            query_timeout: self.query_timeout,
        }
    }

    /// The same target with another statement timeout (`None`: no limit).
    pub fn with_query_timeout(&self, timeout: Option<Duration>) -> DatabaseTarget {
        DatabaseTarget {
            query_timeout: timeout,
            ..self.clone()
        }
    }

    pub fn password(&self) -> Option<String> {
        self.url.password().map(decode_percent)
    }
}

/// A Valkey location. Printed masked, like the database.
#[derive(Clone)]
pub struct ValkeyTarget {
    /// The first node named (the only one on a single node).
    url: Url,
    /// Further cluster nodes after commas (`redis://a:7001,b:7002`), host and port.
    more_nodes: Vec<(String, u16)>,
    /// Cluster or single node: `VALKEY_CLUSTER`, several nodes, or asked of the server.
    pub mode: ClusterMode,
    pub source: Source,
    /// How long one command may wait for an answer (`--cache-timeout`):
    /// part of the target so every `Valkey::connect` applies it.
    pub command_timeout: Duration,
}

impl fmt::Debug for ValkeyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ValkeyTarget({})", self.masked())
    }
}

impl ValkeyTarget {
    /// One URL, or a cluster's nodes: `redis://127.0.0.1:7001,127.0.0.1:7002`
    /// (the scheme and login of the first apply to all).
    pub fn parse(raw: &str, source: Source) -> Result<Self, ConfigError> {
        let mut parts = raw.split(',').map(str::trim).filter(|part| !part.is_empty());
        let first = parts.next().unwrap_or(raw);
        let url = parse_url("VALKEY_URL", first, VALKEY_SCHEMES, "redis://127.0.0.1:6379")?;
        let mut more_nodes = Vec::new();
        for part in parts {
            let with_scheme = if part.contains("://") {
                part.to_string()
            } else {
                format!("{}://{part}", url.scheme())
            };
            let node = parse_url(
                "VALKEY_URL",
                &with_scheme,
                VALKEY_SCHEMES,
                "redis://127.0.0.1:7001,127.0.0.1:7002",
            )?;
            more_nodes.push(address_of(&node, 6379));
        }
        let mode = if more_nodes.is_empty() {
            ClusterMode::Detect
        } else {
            ClusterMode::Cluster
        };
        Ok(ValkeyTarget {
            url,
            more_nodes,
            mode,
            source,
            command_timeout: DEFAULT_CACHE_TIMEOUT,
        })
    }

    /// The first node's URL (the only one on a single node).
    pub fn connect_url(&self) -> String {
        self.url.to_string()
    }

    /// Every node named, as URLs with the first one's scheme and login.
    pub fn node_urls(&self) -> Vec<String> {
        let mut urls = vec![self.url.to_string()];
        for (host, port) in &self.more_nodes {
            let mut url = self.url.clone();
            if url.set_host(Some(host)).is_ok() && url.set_port(Some(*port)).is_ok() {
                urls.push(url.to_string());
            }
        }
        urls
    }

    /// The URL of the node at `host:port`, with this target's scheme and login.
    pub fn node_url(&self, host: &str, port: u16) -> String {
        let mut url = self.url.clone();
        let _ = url.set_host(Some(host));
        let _ = url.set_port(Some(port));
        url.to_string()
    }

    /// Host and port (6379 unless the URL says otherwise).
    pub fn address(&self) -> (String, u16) {
        address_of(&self.url, 6379)
    }

    pub fn masked(&self) -> String {
        let mut shown = mask(&self.url);
        for (host, port) in &self.more_nodes {
            shown.push_str(&format!(",{host}:{port}"));
        }
        shown
    }

    pub fn password(&self) -> Option<String> {
        self.url.password().map(decode_percent)
    }
}

fn address_of(url: &Url, default_port: u16) -> (String, u16) {
    let host = url.host_str().unwrap_or("localhost");
    // `[::1]` is how a URL writes it; a socket address wants `::1`.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host.to_string(), url.port().unwrap_or(default_port))
}

fn parse_url(var: &'static str, raw: &str, supported: &'static str, example: &'static str) -> Result<Url, ConfigError> {
    let raw = raw.trim();
    let scheme = raw.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
    let Some(scheme) = scheme else {
        return Err(ConfigError::InvalidUrl {
            var,
            reason: "no scheme".into(),
            example,
        });
    };
    let known: Vec<&str> = supported.split(", ").map(|s| s.trim_end_matches("://")).collect();
    if !known.contains(&scheme.as_str()) {
        return Err(ConfigError::UnknownScheme { var, scheme, supported });
    }
    let url = Url::parse(raw).map_err(|e| ConfigError::InvalidUrl {
        var,
        reason: e.to_string(),
        example,
    })?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::InvalidUrl {
            var,
            reason: "no host".into(),
            example,
        });
    }
    Ok(url)
}

/// The URL as text with its password replaced by `***`.
pub fn mask(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

fn decode_percent(text: &str) -> String {
    url::form_urlencoded::parse(format!("p={text}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| text.to_string())
}

/// Whether Valkey is spoken to as a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterMode {
    /// Asked of the server at connect time (`cluster_enabled:1` in `INFO cluster`).
    Detect,
    /// `VALKEY_CLUSTER=true`, or several nodes in `VALKEY_URL`.
    Cluster,
    /// `VALKEY_CLUSTER=false`: one node, even if it is a cluster's.
    Single,
}

/// Everything a command needs to reach the services, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseTarget,
    pub valkey: ValkeyTarget,
    pub ttl: Duration,
    pub ttl_source: Source,
    /// `--ttl-jitter`: every cache write lives `ttl` ± this many percent.
    pub ttl_jitter_percent: u8,
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub dotenv_path: Option<PathBuf>,
}

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Every statement the workshop runs stops after this long unless `--query-timeout` says otherwise.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

impl Config {
    /// Resolves flags, environment (which already holds `.env`) and defaults.
    pub fn resolve(overrides: &Overrides, dotenv: &DotEnv) -> Result<Config, ConfigError> {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
        let source_of = |key: &str, value: &str| -> Source {
            match env(key) {
                Some(from_env) if from_env == value => {
                    if dotenv.provided(key) {
                        Source::DotEnv
                    } else {
                        Source::Environment
                    }
                }
                _ => Source::Flag,
            }
        };

        let database = match overrides.database_url.as_deref().filter(|v| !v.trim().is_empty()) {
            Some(raw) => DatabaseTarget::parse(raw, source_of("DATABASE_URL", raw))?,
            None => match split_database_url(&env)? {
                Some(raw) => DatabaseTarget::parse(&raw, Source::SplitVariables)?,
                None => DatabaseTarget::parse(DEFAULT_DATABASE_URL, Source::Default)?,
            },
        };
        let database = match overrides.query_timeout {
            Some(timeout) => database.with_query_timeout(timeout),
            None => database,
        };

        let valkey = match overrides.valkey_url.as_deref().filter(|v| !v.trim().is_empty()) {
            Some(raw) => ValkeyTarget::parse(raw, source_of("VALKEY_URL", raw))?,
            None => match split_valkey_url(&env)? {
                Some(raw) => ValkeyTarget::parse(&raw, Source::SplitVariables)?,
                None => ValkeyTarget::parse(DEFAULT_VALKEY_URL, Source::Default)?,
            },
        };

        let mut valkey = valkey;
        if let Some(raw) = env("VALKEY_CLUSTER") {
            valkey.mode = match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => ClusterMode::Cluster,
                "false" | "0" | "no" => ClusterMode::Single,
                "auto" => valkey.mode,
                _ => {
                    return Err(ConfigError::InvalidValue {
                        var: "VALKEY_CLUSTER",
                        expected: "true, false or auto",
                        value: raw,
                    })
                }
            };
        }
        if let Some(raw) = overrides.cache_timeout.as_deref() {
            valkey.command_timeout = parse_cache_timeout(raw)?;
        }

        let (ttl_seconds, ttl_source) = match overrides.ttl.as_deref() {
            Some(raw) => (parse_ttl(raw)?, source_of("CACHE_TTL", raw)),
            None => (DEFAULT_TTL_SECONDS, Source::Default),
        };
        let ttl_jitter_percent = match overrides.ttl_jitter.as_deref() {
            Some(raw) => parse_ttl_jitter(raw)?,
            None => 0,
        };

        let key_prefix = overrides
            .key_prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_string());
        validate_key_prefix(&key_prefix)?;

        Ok(Config {
            database,
            valkey,
            ttl: Duration::from_secs(ttl_seconds),
            ttl_source,
            ttl_jitter_percent,
            key_prefix,
            connect_timeout: overrides.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            dotenv_path: dotenv.path.clone(),
        })
    }
}

/// A cache command's answer normally takes well under a millisecond on a
/// LAN; 250 ms is hundreds of times that, so only a hung or overloaded
/// Valkey trips it, and a stopped one costs a read a quarter second (then
/// the circuit breaker skips it) instead of the 2 s connect timeout.
pub const DEFAULT_CACHE_TIMEOUT: Duration = Duration::from_millis(250);

pub fn parse_cache_timeout(raw: &str) -> Result<Duration, ConfigError> {
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|ms| (1..=60_000).contains(ms))
        .map(Duration::from_millis)
        .ok_or_else(|| ConfigError::InvalidValue {
            var: "WORKSHOP_CACHE_TIMEOUT",
            expected: "a whole number of milliseconds from 1 to 60000",
            value: raw.to_string(),
        })
}

pub fn parse_ttl(raw: &str) -> Result<u64, ConfigError> {
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|s| (1..=MAX_TTL_SECONDS).contains(s))
        .ok_or_else(|| ConfigError::InvalidValue {
            var: "CACHE_TTL",
            expected: "a whole number of seconds from 1 to 31536000",
            value: raw.to_string(),
        })
}

/// `--ttl-jitter PCT`: a whole percentage from 0 (no jitter) to 100.
pub fn parse_ttl_jitter(raw: &str) -> Result<u8, ConfigError> {
    raw.trim()
        .trim_end_matches('%')
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= crate::cache::ttl::MAX_JITTER_PERCENT)
        .ok_or_else(|| ConfigError::InvalidValue {
            var: "CACHE_TTL_JITTER",
            expected: "a whole percentage from 0 to 100, e.g. --ttl-jitter 20",
            value: raw.to_string(),
        })
}

impl Config {
    /// The lifetime of every cache write: `--ttl` ± `--ttl-jitter` %.
    pub fn ttl_policy(&self) -> crate::cache::TtlPolicy {
        crate::cache::TtlPolicy::jittered(self.ttl, self.ttl_jitter_percent)
    }
}

fn validate_key_prefix(prefix: &str) -> Result<(), ConfigError> {
    let ok = !prefix.is_empty() && prefix.len() <= 64 && !prefix.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidValue {
            var: "WORKSHOP_KEY_PREFIX",
            expected: "1 to 64 characters without spaces, e.g. 'workshop:'",
            value: prefix.to_string(),
        })
    }
}

/// Builds a database URL from the split `DB_*` variables of the Python
/// workshops, if any of them is set.
fn split_database_url(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    let keys = ["DB_ENGINE", "DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME"];
    if keys.iter().all(|k| env(k).is_none()) {
        return Ok(None);
    }
    let engine = env("DB_ENGINE").unwrap_or_else(|| "mysql".into()).to_ascii_lowercase();
    let (scheme, default_port) = match engine.as_str() {
        "mysql" | "mariadb" => ("mysql", 3306),
        "postgresql" | "postgres" => ("postgres", 5432),
        _ => return Err(ConfigError::UnknownEngine(engine)),
    };
    let host = env("DB_HOST").unwrap_or_else(|| "127.0.0.1".into());
    let port = match env("DB_PORT") {
        Some(raw) => parse_port("DB_PORT", &raw)?,
        None => default_port,
    };
    let mut url = Url::parse(&format!("{scheme}://placeholder/")).map_err(|e| ConfigError::InvalidUrl {
        var: "DB_HOST",
        reason: e.to_string(),
        example: "127.0.0.1",
    })?;
    url.set_host(Some(&host)).map_err(|e| ConfigError::InvalidUrl {
        var: "DB_HOST",
        reason: e.to_string(),
        example: "127.0.0.1",
    })?;
    let _ = url.set_port(Some(port));
    let _ = url.set_username(&env("DB_USER").unwrap_or_else(|| "workshop".into()));
    if let Some(password) = env("DB_PASSWORD") {
        let _ = url.set_password(Some(&password));
    }
    url.set_path(&format!("/{}", env("DB_NAME").unwrap_or_else(|| "workshop".into())));
    Ok(Some(url.to_string()))
}

fn split_valkey_url(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    if env("CACHE_HOST").is_none() && env("CACHE_PORT").is_none() {
        return Ok(None);
    }
    let host = env("CACHE_HOST").unwrap_or_else(|| "127.0.0.1".into());
    let port = match env("CACHE_PORT") {
        Some(raw) => parse_port("CACHE_PORT", &raw)?,
        None => 6379,
    };
    Ok(Some(format!("redis://{host}:{port}")))
}

fn parse_port(var: &'static str, raw: &str) -> Result<u16, ConfigError> {
    raw.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ConfigError::InvalidValue {
            var,
            expected: "a port number from 1 to 65535",
            value: raw.to_string(),
        })
}

/// Masks the password of any `scheme://user:password@host` in a message,
/// in case a library ever puts a connection URL into an error text.
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || c == '/')
            .unwrap_or(after.len());
        let authority = &after[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at_sign), Some(colon)) if colon < at_sign => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[at_sign..]);
            }
            _ => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_masked_in_database_url() {
        let target = DatabaseTarget::parse("mysql://bob:s3cr%40t@db.example:3306/shop", Source::Flag).unwrap();
        assert_eq!(target.masked(), "mysql://bob:***@db.example:3306/shop");
        assert_eq!(target.password().as_deref(), Some("s3cr@t"));
    }

    #[test]
    fn mariadb_and_postgresql_schemes_are_normalised_for_the_driver() {
        let maria = DatabaseTarget::parse("mariadb://u:p@h/db", Source::Flag).unwrap();
        assert_eq!(maria.kind, DatabaseKind::MySql);
        assert!(maria.connect_url().starts_with("mysql://"));
        let pg = DatabaseTarget::parse("postgresql://u:p@h/db", Source::Flag).unwrap();
        assert_eq!(pg.kind, DatabaseKind::Postgres);
        assert!(pg.connect_url().starts_with("postgres://"));
    }

    #[test]
    fn unknown_scheme_lists_the_supported_ones() {
        let err = DatabaseTarget::parse("oracle://u:p@h/db", Source::Flag).unwrap_err();
        assert_eq!(
            err.to_string(),
            "DATABASE_URL has unknown scheme 'oracle://'; supported: mysql://, mariadb://, postgres://, postgresql://"
        );
        let err = ValkeyTarget::parse("memcached://h:11211", Source::Flag).unwrap_err();
        assert!(err.to_string().contains("redis://, rediss://, valkey://, valkeys://"));
    }

    #[test]
    fn valkey_schemes_are_accepted() {
        for url in ["redis://h:1", "rediss://h:1", "valkey://h:1", "valkeys://:pw@h:1"] {
            assert!(ValkeyTarget::parse(url, Source::Flag).is_ok(), "{url}");
        }
        let t = ValkeyTarget::parse("valkeys://:hunter22@h:1", Source::Flag).unwrap();
        assert!(!t.masked().contains("hunter22"));
    }

    #[test]
    fn several_valkey_nodes_select_the_cluster_with_one_login() {
        let t = ValkeyTarget::parse("redis://:pw@127.0.0.1:7001, 127.0.0.1:7002", Source::Flag).unwrap();
        assert_eq!(t.mode, ClusterMode::Cluster);
        assert_eq!(t.masked(), "redis://:***@127.0.0.1:7001,127.0.0.1:7002");
        assert_eq!(
            t.node_urls(),
            ["redis://:pw@127.0.0.1:7001", "redis://:pw@127.0.0.1:7002"]
        );
        assert_eq!(t.node_url("127.0.0.1", 7005), "redis://:pw@127.0.0.1:7005");
        let one = ValkeyTarget::parse("redis://127.0.0.1:7001", Source::Flag).unwrap();
        assert_eq!(one.mode, ClusterMode::Detect);
        assert!(ValkeyTarget::parse("redis://127.0.0.1:7001,:x", Source::Flag).is_err());
    }

    #[test]
    fn split_variables_build_a_url_with_an_encoded_password() {
        let vars = |k: &str| match k {
            "DB_ENGINE" => Some("postgresql".to_string()),
            "DB_HOST" => Some("db.local".to_string()),
            "DB_USER" => Some("ann".to_string()),
            "DB_PASSWORD" => Some("p@ss word".to_string()),
            "DB_NAME" => Some("flughafendb".to_string()),
            _ => None,
        };
        let url = split_database_url(&vars).unwrap().unwrap();
        let target = DatabaseTarget::parse(&url, Source::SplitVariables).unwrap();
        assert_eq!(target.kind, DatabaseKind::Postgres);
        assert_eq!(target.password().as_deref(), Some("p@ss word"));
        assert_eq!(target.masked(), "postgres://ann:***@db.local:5432/flughafendb");
    }

    #[test]
    fn unknown_engine_is_rejected() {
        let vars = |k: &str| (k == "DB_ENGINE").then(|| "sqlite".to_string());
        let err = split_database_url(&vars).unwrap_err();
        assert_eq!(
            err.to_string(),
            "DB_ENGINE 'sqlite' is not supported; use one of: mysql, mariadb, postgresql"
        );
    }

    #[test]
    fn ttl_jitter_is_a_whole_percentage_up_to_one_hundred() {
        assert_eq!(parse_ttl_jitter("20").unwrap(), 20);
        assert_eq!(parse_ttl_jitter("35%").unwrap(), 35);
        assert_eq!(parse_ttl_jitter("0").unwrap(), 0);
        assert!(parse_ttl_jitter("101").is_err());
        assert!(parse_ttl_jitter("-5").is_err());
        assert!(parse_ttl_jitter("2.5").is_err());
    }

    #[test]
    fn ttl_must_be_positive_whole_seconds() {
        assert_eq!(parse_ttl("60").unwrap(), 60);
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("-5").is_err());
        assert!(parse_ttl("1.5").is_err());
    }

    #[test]
    fn malformed_dotenv_line_is_reported_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "A=1\n# comment\nB='unclosed\nC=3\n").unwrap();
        let err = parse_dotenv(&path).unwrap_err();
        let text = err.to_string();
        assert!(
            text.ends_with(".env:3: malformed line (expected KEY=VALUE, with quotes closed); fix or remove that line"),
            "{text}"
        );
    }

    #[test]
    fn redact_masks_passwords_in_urls_and_leaves_other_text() {
        assert_eq!(
            redact("cannot open mysql://bob:s3cr@t@db:3306/x for workshop-cli"),
            "cannot open mysql://bob:***@db:3306/x for workshop-cli"
        );
        assert_eq!(
            redact("redis://127.0.0.1:6379 is down"),
            "redis://127.0.0.1:6379 is down"
        );
        assert_eq!(
            redact("valkey://:pw@h:1 and postgres://u@h/db"),
            "valkey://:***@h:1 and postgres://u@h/db"
        );
    }
}
