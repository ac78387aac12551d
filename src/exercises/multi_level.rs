//! Exercise 4, `workshop-cli multi-level`: the product catalogue through an
//! in-process cache (L1, moka) in front of Valkey (L2) in front of the
//! database; cache warming from request counts; invalidation across processes.
//!
//! One subcommand, four jobs, each in its own module: timed reads
//! ([`reads`]), warming ([`warm`]), watching one product ([`listen`]) and
//! changing one ([`change`]). They share the validated [`Plan`] (here) and
//! the set-up ([`setup`]).

pub mod change;
pub mod layers;
pub mod listen;
pub mod reads;
mod setup;
pub mod warm;
pub mod workload;

pub use setup::{CacheSettings, ProductRange, Setup};

use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;

use crate::config::Config;
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::RunProgress;
use crate::exercises::{Outcome, Verdict};

const MAX_REQUESTS: u64 = 10_000_000;
const MAX_KEYS: u64 = 1_000_000;
const MAX_CONCURRENCY: u64 = 1024;
const MAX_L1_CAPACITY: u64 = 10_000_000;
const MAX_L1_TTL_SECONDS: u64 = 86_400;
const MAX_SKEW: f64 = 5.0;
const MAX_INTERVAL_MS: u64 = 60_000;
const MAX_DURATION_SECONDS: f64 = 86_400.0;
/// The largest price a DECIMAL(10,2) holds.
const MAX_PRICE: Decimal = Decimal::from_parts(1_410_065_407, 2, 0, false, 2); // 9_999_999_999 / 100

pub const DEFAULT_L1_CAPACITY: u64 = 1000;
pub const DEFAULT_L1_TTL_SECONDS: u64 = 30;
pub const DEFAULT_ID_REQUESTS: u64 = 10;
pub const DEFAULT_WORKLOAD_REQUESTS: u64 = 10_000;
pub const DEFAULT_KEYS: u64 = 1000;
pub const DEFAULT_SKEW: f64 = 1.0;
pub const DEFAULT_LISTEN_INTERVAL_MS: u64 = 200;

/// The options as given (counts signed, so a negative one gets a clear message).
#[derive(Debug, Clone)]
pub struct MultiLevelOptions {
    pub id: Option<i64>,
    pub requests: Option<u64>,
    pub keys: Option<u64>,
    pub skew: Option<f64>,
    pub concurrency: u64,
    pub l1_capacity: u64,
    pub l1_ttl: u64,
    pub warm: Option<u64>,
    pub listen: bool,
    pub update: Option<i64>,
    pub price: Option<String>,
    pub invalidate: Option<i64>,
    pub interval: Option<u64>,
    pub duration: Option<f64>,
    pub invalidation: bool,
}

impl Default for MultiLevelOptions {
    fn default() -> Self {
        MultiLevelOptions {
            id: None,
            requests: None,
            keys: None,
            skew: None,
            concurrency: 1,
            l1_capacity: DEFAULT_L1_CAPACITY,
            l1_ttl: DEFAULT_L1_TTL_SECONDS,
            warm: None,
            listen: false,
            update: None,
            price: None,
            invalidate: None,
            interval: None,
            duration: None,
            invalidation: true,
        }
    }
}

/// Validated options: what to do and the cache to do it with.
#[derive(Debug, Clone)]
pub struct Plan {
    pub cache: CacheShape,
    pub task: Task,
}

#[derive(Debug, Clone, Copy)]
pub struct CacheShape {
    pub l1_capacity: u64,
    pub l1_ttl: Duration,
    /// Subscribe to (and publish on) the invalidation channel.
    pub invalidation: bool,
}

#[derive(Debug, Clone)]
pub enum Task {
    /// Warm (when asked), then time reads (when asked).
    Read {
        warm: Option<u64>,
        reads: Option<Reads>,
    },
    Listen {
        id: i64,
        interval: Duration,
        duration: Option<Duration>,
    },
    Update {
        id: i64,
        price: Decimal,
    },
    Invalidate {
        id: i64,
    },
}

#[derive(Debug, Clone)]
pub struct Reads {
    pub target: ReadTarget,
    pub requests: u64,
    pub concurrency: u64,
    /// A pause between one task's reads (not timed).
    pub interval: Duration,
}

#[derive(Debug, Clone, Copy)]
pub enum ReadTarget {
    One(i64),
    /// Ids 1..=keys; `keys` is `None` when not given (the catalogue size, at most the default).
    Workload {
        keys: Option<u64>,
        skew: f64,
    },
}

fn count(flag: &str, value: u64, max: u64) -> Result<u64> {
    Some(value)
        .filter(|v| (1..=max).contains(v))
        .ok_or_else(|| WorkshopError::invalid(format!("--{flag} must be from 1 to {max} (got {value})")))
}

fn product_id(flag: &str, value: i64) -> Result<i64> {
    if value < 1 {
        return Err(WorkshopError::invalid(format!(
            "--{flag} must be a positive whole number (got {value})"
        )));
    }
    Ok(value)
}

fn interval(value: Option<u64>, default_ms: u64) -> Result<Duration> {
    let Some(value) = value else {
        return Ok(Duration::from_millis(default_ms));
    };
    Some(value)
        .filter(|v| *v <= MAX_INTERVAL_MS)
        .map(Duration::from_millis)
        .ok_or_else(|| {
            WorkshopError::invalid(format!(
                "--interval must be from 0 to {MAX_INTERVAL_MS} ms (got {value})"
            ))
        })
}

/// A new price: positive, at most two decimals, fits DECIMAL(10,2).
pub fn parse_price(raw: &str) -> Result<Decimal> {
    let price = Decimal::from_str(raw.trim())
        .map_err(|_| WorkshopError::invalid(format!("--price '{raw}' is not an amount; give one such as 24.99")))?;
    if price <= Decimal::ZERO {
        return Err(WorkshopError::invalid(format!(
            "--price must be more than 0 (got {raw})"
        )));
    }
    if price.normalize().scale() > 2 {
        return Err(WorkshopError::invalid(format!(
            "--price has at most two decimals (got {raw})"
        )));
    }
    if price > MAX_PRICE {
        return Err(WorkshopError::invalid(format!(
            "--price must be at most {MAX_PRICE} (got {raw})"
        )));
    }
    Ok(price)
}

/// Checks every value before anything is connected or written.
pub fn validate(options: &MultiLevelOptions) -> Result<Plan> {
    let cache = CacheShape {
        l1_capacity: count("l1-capacity", options.l1_capacity, MAX_L1_CAPACITY)?,
        l1_ttl: Duration::from_secs(count("l1-ttl", options.l1_ttl, MAX_L1_TTL_SECONDS)?),
        invalidation: options.invalidation,
    };
    let concurrency = count("concurrency", options.concurrency, MAX_CONCURRENCY)?;
    if let Some(skew) = options.skew {
        if !(0.0..=MAX_SKEW).contains(&skew) {
            return Err(WorkshopError::invalid(format!(
                "--skew must be from 0 to {MAX_SKEW} (got {skew})"
            )));
        }
    }
    let keys = options.keys.map(|k| count("keys", k, MAX_KEYS)).transpose()?;
    let requests = options
        .requests
        .map(|r| count("requests", r, MAX_REQUESTS))
        .transpose()?;
    let warm = options.warm.map(|n| count("warm", n, MAX_KEYS)).transpose()?;
    let id = options.id.map(|id| product_id("id", id)).transpose()?;

    let task = if let Some(update) = options.update {
        let raw = options
            .price
            .as_deref()
            .ok_or_else(|| WorkshopError::invalid("--update needs the new price: add --price, e.g. --price 24.99"))?;
        Task::Update {
            id: product_id("update", update)?,
            price: parse_price(raw)?,
        }
    } else if let Some(invalidate) = options.invalidate {
        Task::Invalidate {
            id: product_id("invalidate", invalidate)?,
        }
    } else if options.listen {
        let id = id.ok_or_else(|| WorkshopError::invalid("--listen watches one product: add --id, e.g. --id 42"))?;
        let duration = match options.duration {
            None => None,
            Some(seconds) if seconds > 0.0 && seconds <= MAX_DURATION_SECONDS => Some(Duration::from_secs_f64(seconds)),
            Some(seconds) => {
                return Err(WorkshopError::invalid(format!(
                    "--duration must be more than 0 and at most {MAX_DURATION_SECONDS} seconds (got {seconds})"
                )))
            }
        };
        Task::Listen {
            id,
            interval: interval(options.interval, DEFAULT_LISTEN_INTERVAL_MS)?,
            duration,
        }
    } else {
        let only_warm =
            warm.is_some() && id.is_none() && requests.is_none() && keys.is_none() && options.skew.is_none();
        let reads = if only_warm {
            None
        } else {
            let target = match id {
                Some(id) => ReadTarget::One(id),
                None => ReadTarget::Workload {
                    keys,
                    skew: options.skew.unwrap_or(DEFAULT_SKEW),
                },
            };
            let default_requests = match target {
                ReadTarget::One(_) => DEFAULT_ID_REQUESTS,
                ReadTarget::Workload { .. } => DEFAULT_WORKLOAD_REQUESTS,
            };
            Some(Reads {
                target,
                requests: requests.unwrap_or(default_requests),
                concurrency,
                interval: interval(options.interval, 0)?,
            })
        };
        Task::Read { warm, reads }
    };
    Ok(Plan { cache, task })
}

/// What one `multi-level` run did: reads (and warming), a change, or a
/// `--listen` session (whose changes were reported as they happened).
#[derive(Debug, Clone)]
pub enum MultiLevelOutcome {
    Reads(Box<reads::ReadOutcome>),
    Change(Box<change::ChangeOutcome>),
    Listen(Box<listen::ListenSummary>),
}

impl Outcome for MultiLevelOutcome {
    fn verdict(&mut self) -> Verdict {
        match self {
            MultiLevelOutcome::Reads(outcome) => std::mem::take(&mut outcome.verdict),
            MultiLevelOutcome::Change(outcome) => std::mem::take(&mut outcome.verdict),
            MultiLevelOutcome::Listen(outcome) => std::mem::take(&mut outcome.verdict),
        }
    }
}

pub async fn measure(
    config: &Config,
    options: MultiLevelOptions,
    progress: &dyn RunProgress,
) -> Result<MultiLevelOutcome> {
    let plan = validate(&options)?;
    Ok(match plan.task.clone() {
        Task::Read { warm, reads } => MultiLevelOutcome::Reads(Box::new(
            self::reads::measure(config, &plan, warm, reads, progress).await?,
        )),
        Task::Listen { id, interval, duration } => MultiLevelOutcome::Listen(Box::new(
            listen::measure(config, &plan, id, interval, duration, progress).await?,
        )),
        Task::Update { id, price } => MultiLevelOutcome::Change(Box::new(
            change::measure(config, &plan, id, Some(price), progress).await?,
        )),
        Task::Invalidate { id } => {
            MultiLevelOutcome::Change(Box::new(change::measure(config, &plan, id, None, progress).await?))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(options: MultiLevelOptions) -> String {
        validate(&options).unwrap_err().to_string()
    }

    #[test]
    fn zero_or_too_large_counts_are_rejected_with_the_range() {
        let requests = MultiLevelOptions {
            requests: Some(0),
            ..Default::default()
        };
        assert_eq!(message(requests), "--requests must be from 1 to 10000000 (got 0)");
        let concurrency = MultiLevelOptions {
            concurrency: 0,
            ..Default::default()
        };
        assert_eq!(message(concurrency), "--concurrency must be from 1 to 1024 (got 0)");
        let keys = MultiLevelOptions {
            keys: Some(1_000_001),
            ..Default::default()
        };
        assert_eq!(message(keys), "--keys must be from 1 to 1000000 (got 1000001)");
        let ttl = MultiLevelOptions {
            l1_ttl: 0,
            ..Default::default()
        };
        assert_eq!(message(ttl), "--l1-ttl must be from 1 to 86400 (got 0)");
    }

    #[test]
    fn skew_must_be_from_zero_to_five() {
        for bad in [-0.5, 5.5, f64::NAN] {
            let options = MultiLevelOptions {
                skew: Some(bad),
                ..Default::default()
            };
            assert!(message(options).starts_with("--skew must be from 0 to 5"));
        }
        let options = MultiLevelOptions {
            skew: Some(5.0),
            ..Default::default()
        };
        assert!(validate(&options).is_ok());
    }

    #[test]
    fn prices_are_positive_with_at_most_two_decimals() {
        assert_eq!(parse_price("24.99").unwrap().to_string(), "24.99");
        assert_eq!(parse_price(" 25 ").unwrap().to_string(), "25");
        assert_eq!(parse_price("1.500").unwrap().to_string(), "1.500");
        assert_eq!(
            parse_price("abc").unwrap_err().to_string(),
            "--price 'abc' is not an amount; give one such as 24.99"
        );
        assert_eq!(
            parse_price("0").unwrap_err().to_string(),
            "--price must be more than 0 (got 0)"
        );
        assert_eq!(
            parse_price("1.234").unwrap_err().to_string(),
            "--price has at most two decimals (got 1.234)"
        );
        assert_eq!(
            parse_price("100000000").unwrap_err().to_string(),
            "--price must be at most 99999999.99 (got 100000000)"
        );
    }

    #[test]
    fn the_default_is_a_skewed_workload_and_warm_alone_only_warms() {
        let plan = validate(&MultiLevelOptions::default()).unwrap();
        let Task::Read {
            warm: None,
            reads: Some(reads),
        } = plan.task
        else {
            panic!("{plan:?}")
        };
        assert_eq!(reads.requests, DEFAULT_WORKLOAD_REQUESTS);
        assert!(matches!(reads.target, ReadTarget::Workload { keys: None, skew } if skew == DEFAULT_SKEW));

        let warm_only = MultiLevelOptions {
            warm: Some(5),
            ..Default::default()
        };
        let plan = validate(&warm_only).unwrap();
        assert!(matches!(
            plan.task,
            Task::Read {
                warm: Some(5),
                reads: None
            }
        ));

        let one = MultiLevelOptions {
            id: Some(7),
            ..Default::default()
        };
        let Task::Read { reads: Some(reads), .. } = validate(&one).unwrap().task else {
            panic!()
        };
        assert_eq!(reads.requests, DEFAULT_ID_REQUESTS);
    }

    #[test]
    fn listening_needs_an_id_and_a_sensible_duration() {
        let no_id = MultiLevelOptions {
            listen: true,
            ..Default::default()
        };
        assert_eq!(message(no_id), "--listen watches one product: add --id, e.g. --id 42");
        let zero = MultiLevelOptions {
            listen: true,
            id: Some(1),
            duration: Some(0.0),
            ..Default::default()
        };
        assert!(message(zero).starts_with("--duration must be more than 0"));
        let fine = MultiLevelOptions {
            listen: true,
            id: Some(1),
            ..Default::default()
        };
        let Task::Listen { interval, duration, .. } = validate(&fine).unwrap().task else {
            panic!()
        };
        assert_eq!((interval, duration), (Duration::from_millis(200), None));
    }

    #[test]
    fn ids_must_be_positive() {
        let update = MultiLevelOptions {
            update: Some(0),
            price: Some("1".into()),
            ..Default::default()
        };
        assert_eq!(message(update), "--update must be a positive whole number (got 0)");
        let id = MultiLevelOptions {
            id: Some(-4),
            ..Default::default()
        };
        assert_eq!(message(id), "--id must be a positive whole number (got -4)");
    }
}
