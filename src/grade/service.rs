//! `grade service`: a product API of exercise 7's shape (`GET/PUT
//! /products/{id}`, `/metrics`), judged by the database queries and Valkey
//! keys its requests caused.
//!
//! With a command after `--` the grader starts the service itself, `--instances`
//! times (2), in its own world: a seeded database and a private Valkey, which it
//! stops for the last check. With `--url` it grades services already running
//! against the configured database and Valkey: statement counts are then
//! scoped to that database's name (other clients of it count too) and the
//! "Valkey stopped" check is skipped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::observe::{self, KeyInfo, StatementCounter};
use super::prometheus_text;
use super::world::{self, GradeDatabase, PrivateValkey};
use super::{tail, Check, GradeOutcome, Step};
use crate::cache::Valkey;
use crate::config::Config;
use crate::db::{Database, PoolSettings};
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::RunProgress;

#[derive(Debug, Clone)]
pub struct ServiceGradeOptions {
    /// Services already running (`--url`, repeatable).
    pub urls: Vec<String>,
    /// Or the command that starts one (after `--`); `{port}` in it becomes the port, also in `PORT`.
    pub command: Vec<String>,
    pub instances: u64,
    /// How long an instance may take to answer after it starts.
    pub timeout: Duration,
    pub scale: f64,
    /// `--url` mode: the prefix of the service's keys (default: the configured key prefix).
    pub key_prefix: Option<String>,
    pub start: PathBuf,
}

const BRIEFING: &str = "07-serve.md";
const STAMPEDE_BRIEFING: &str = "06-stampede.md";
const MULTI_LEVEL_BRIEFING: &str = "04-multi-level.md";
const STATS_BRIEFING: &str = "03-stats.md";
/// A PUT on one instance must be seen on the other within this.
pub const INVALIDATION_BOUND: Duration = Duration::from_secs(2);
/// Concurrent GETs of one cold id.
pub const STAMPEDE_REQUESTS: usize = 100;

/// The grader's own world, when it started the service.
struct Owned {
    server: PrivateValkey,
    _db: GradeDatabase,
    _children: Vec<tokio::process::Child>,
}

struct Session<'a> {
    urls: Vec<String>,
    http: reqwest::Client,
    counter: StatementCounter,
    valkey: Option<Valkey>,
    key_prefix: String,
    owned: Option<Owned>,
    progress: &'a dyn RunProgress,
}

pub async fn grade(config: &Config, options: ServiceGradeOptions, progress: &dyn RunProgress) -> Result<GradeOutcome> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(STAMPEDE_REQUESTS)
        .build()
        .map_err(|e| WorkshopError::Other(e.into()))?;
    if options.command.is_empty() == options.urls.is_empty() {
        return Err(WorkshopError::invalid(
            "give either --url (a running service, repeatable) or the command that starts one after `--`, e.g. `workshop-cli grade service -- python3 app.py`",
        ));
    }
    if !options.command.is_empty() && !(1..=8).contains(&options.instances) {
        return Err(WorkshopError::invalid(format!(
            "--instances must be 1 to 8 (got {}); 2 lets the grader check invalidation",
            options.instances
        )));
    }
    let (mut outcome, session) = if options.command.is_empty() {
        for url in &options.urls {
            reqwest::Url::parse(url).map_err(|e| {
                WorkshopError::invalid(format!(
                    "--url {url} is not a URL ({e}); give e.g. http://127.0.0.1:8000"
                ))
            })?;
        }
        let name = config.database.database_name();
        let counter = StatementCounter::connect(config, &name).await?;
        let valkey = Valkey::connect(&config.valkey, world::patient(config)).await?;
        let mut outcome = GradeOutcome::new(
            "service",
            options.urls.join(" "),
            format!("{} {name}", config.database.kind.label()),
            format!("{}; Valkey {} (SCAN, TTL)", counter.source(), config.valkey.masked()),
        );
        outcome.warnings.extend(counter.notes().iter().cloned());
        outcome.warnings.push(format!(
            "--url mode counts every statement run in database {name}, also by other clients; the grader's own world (`grade service -- COMMAND`) is exact"
        ));
        let session = Session {
            urls: options
                .urls
                .iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            http,
            counter,
            valkey: Some(valkey),
            key_prefix: options.key_prefix.clone().unwrap_or_else(|| config.key_prefix.clone()),
            owned: None,
            progress,
        };
        (outcome, session)
    } else {
        progress.phase("starting a private valkey-server", None);
        let server = PrivateValkey::start(config, &options.start).await?;
        let valkey = server.connect().await?;
        let db = GradeDatabase::create(config, options.scale, progress).await?;
        let counter = StatementCounter::connect(config, &db.name).await?;
        let mut outcome = GradeOutcome::new(
            "service",
            options.command.join(" "),
            format!("{} {} (dropped at the end)", config.database.kind.label(), db.name),
            format!(
                "{}; a private valkey-server on port {} (SCAN, TTL)",
                counter.source(),
                server.port
            ),
        );
        outcome.warnings.extend(counter.notes().iter().cloned());
        let mut children = Vec::new();
        let mut urls = Vec::new();
        for instance in 1..=options.instances {
            progress.phase(&format!("starting instance {instance}"), None);
            let port = free_port()?;
            let command: Vec<String> = options
                .command
                .iter()
                .map(|arg| arg.replace("{port}", &port.to_string()))
                .collect();
            let mut child = world::program_command(&command, &db, &server, config.ttl, &[("PORT", port.to_string())])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| {
                    WorkshopError::invalid(format!("cannot start the service: {e}; check the command after `--`"))
                })?;
            let url = format!("http://127.0.0.1:{port}");
            if let Err(why) = wait_until_answers(&http, &url, &mut child, options.timeout).await {
                outcome.push(
                    Check::new(
                        "service-starts",
                        "the service starts and answers",
                        "it must listen on the port in PORT (or {port} in its arguments) on 127.0.0.1",
                        BRIEFING,
                    )
                    .judged(false, format!("instance {instance}: {why}")),
                );
                return Ok(outcome);
            }
            children.push(child);
            urls.push(url);
        }
        let session = Session {
            urls,
            http,
            counter,
            valkey: Some(valkey),
            key_prefix: String::new(),
            owned: Some(Owned {
                server,
                _db: db,
                _children: children,
            }),
            progress,
        };
        (outcome, session)
    };
    let ids = product_ids(config, &session).await?;
    run_checks(session, &ids, &mut outcome).await?;
    Ok(outcome)
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| WorkshopError::Other(anyhow::anyhow!("no free port for the service: {e}")))
}

/// Polls until the service answers any HTTP request; fails when it exits first.
async fn wait_until_answers(
    http: &reqwest::Client,
    url: &str,
    child: &mut tokio::process::Child,
    limit: Duration,
) -> std::result::Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = tokio::time::timeout(Duration::from_secs(1), err.read_to_string(&mut stderr)).await;
            }
            return Err(format!("exited ({status}) before it answered: {}", tail(&stderr, 120)));
        }
        if http
            .get(format!("{url}/products/1"))
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .is_ok()
        {
            // Nobody reads its stderr from here on; a full pipe must not block it.
            if let Some(err) = child.stderr.take() {
                tokio::spawn(async move {
                    let mut err = err;
                    let _ = tokio::io::copy(&mut err, &mut tokio::io::sink()).await;
                });
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "did not answer on {url} within {} s (--timeout)",
                limit.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Product ids for the checks, each used by one check only, so each starts cold.
struct Ids {
    repeated: i64,
    stampede: i64,
    invalidated: i64,
    after_stop: i64,
    missing: i64,
}

async fn product_ids(config: &Config, session: &Session<'_>) -> Result<Ids> {
    let db = match &session.owned {
        Some(owned) => owned._db.db.clone(),
        None => {
            Database::connect(
                &config.database,
                PoolSettings {
                    max_connections: 1,
                    connect_timeout: world::patient(config),
                },
            )
            .await?
        }
    };
    let (low, high) = db.product_id_range().await?.ok_or_else(|| {
        WorkshopError::invalid("the products table is empty; run `workshop-cli seed` on the service's database")
    })?;
    if high - low < 50 {
        return Err(WorkshopError::invalid(
            "the grader needs at least 50 products; run `workshop-cli seed`",
        ));
    }
    Ok(Ids {
        repeated: low + 10,
        stampede: low + 20,
        invalidated: low + 30,
        after_stop: low + 40,
        missing: high + 1_000_000,
    })
}

impl Session<'_> {
    async fn get(&self, instance: usize, path: &str) -> (Option<u16>, Option<Value>, Duration) {
        let started = Instant::now();
        match self.http.get(format!("{}{path}", self.urls[instance])).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.json::<Value>().await.ok();
                (Some(status), body, started.elapsed())
            }
            Err(_) => (None, None, started.elapsed()),
        }
    }

    /// Runs `requests` while counting the statements they caused.
    async fn counted<F: std::future::Future<Output = T>, T>(&self, name: &str, requests: F) -> Result<(T, Step)> {
        self.progress.phase(name, None);
        let before = self.counter.snapshot().await?;
        let started = Instant::now();
        let result = requests.await;
        let duration = started.elapsed();
        let statements = observe::delta(&before, &self.counter.snapshot().await?);
        let step = Step {
            name: name.to_string(),
            duration,
            queries: observe::queries(&statements),
            statements,
            ..Step::default()
        };
        self.progress.finish_phase();
        Ok((result, step))
    }

    fn host(&self, instance: usize) -> String {
        self.urls[instance]
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string()
    }
}

fn statuses(list: &[Option<u16>]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for status in list {
        *counts
            .entry(status.map_or("no answer".to_string(), |s| s.to_string()))
            .or_default() += 1;
    }
    counts
        .iter()
        .map(|(status, n)| format!("{status}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn plural(n: u64, one: &str) -> String {
    match (n, one) {
        (1, _) => format!("1 {one}"),
        (_, "query") => format!("{n} queries"),
        _ => format!("{n} {one}s"),
    }
}

async fn run_checks(mut session: Session<'_>, ids: &Ids, outcome: &mut GradeOutcome) -> Result<()> {
    let instances = session.urls.len();
    let mut steps = Vec::new();

    // 1. Repeated GETs stop reaching the database.
    let path = format!("/products/{}", ids.repeated);
    let (first, _, _) = session.get(0, &path).await;
    let (list, step) = session
        .counted("20 repeated GETs", async {
            let mut list = Vec::new();
            for _ in 0..20 {
                list.push(session.get(0, &path).await.0);
            }
            list
        })
        .await?;
    steps.push(step.clone());
    outcome.push(
        Check::new(
            "repeated-gets-cached",
            "repeated GETs stop reaching the database",
            "cache each product on its first read (L1 in the process and/or Valkey) and answer later reads from there",
            BRIEFING,
        )
        .judged(
            first == Some(200) && list.iter().all(|s| *s == Some(200)) && step.queries == 0,
            format!(
                "GET {path} once ({}), then 20 more ({}): {}",
                first.map_or("no answer".into(), |s| s.to_string()),
                statuses(&list),
                plural(step.queries, "query")
            ),
        ),
    );

    // 2. 100 concurrent GETs of a cold id.
    let path = format!("/products/{}", ids.stampede);
    let (list, step) = session
        .counted("100 concurrent GETs of a cold id", async {
            let requests = (0..STAMPEDE_REQUESTS).map(|i| session.get(i % instances, &path));
            futures_util::future::join_all(requests)
                .await
                .into_iter()
                .map(|(status, _, _)| status)
                .collect::<Vec<_>>()
        })
        .await?;
    steps.push(step.clone());
    let allowed = instances as u64;
    outcome.push(
        Check::new(
            "cold-stampede-coalesced",
            "100 concurrent GETs of a cold id: ≤ 1 query per instance",
            "let one request load a missing key while the others wait for it: single flight in the process, or a Valkey lock (SET NX PX) across processes",
            STAMPEDE_BRIEFING,
        )
        .judged(
            list.iter().all(|s| *s == Some(200)) && step.queries <= allowed,
            format!(
                "{STAMPEDE_REQUESTS} at once on {}: {} (at most {allowed} allowed); {}",
                plural(instances as u64, "instance"),
                plural(step.queries, "query"),
                statuses(&list)
            ),
        ),
    );

    // 3. A PUT on one instance is seen by the other.
    let check = Check::new(
        "invalidation-reaches-other-instance",
        "a PUT on one instance is seen by the other",
        "after the write, delete or rewrite the Valkey key and tell every instance to drop its L1 copy (PUBLISH the key; each instance SUBSCRIBEs)",
        MULTI_LEVEL_BRIEFING,
    );
    if instances < 2 {
        outcome.push(check.skipped("needs two instances: --url twice, or --instances 2"));
    } else {
        outcome.push(check_invalidation(&session, ids.invalidated, check).await);
    }

    // 4. Negative caching.
    let path = format!("/products/{}", ids.missing);
    let (list, step) = session
        .counted("10 GETs of a missing id", async {
            let mut list = Vec::new();
            for _ in 0..10 {
                list.push(session.get(0, &path).await.0);
            }
            list
        })
        .await?;
    steps.push(step.clone());
    outcome.push(
        Check::new(
            "missing-ids-cached",
            "missing ids are cached too (negative caching)",
            "remember \"no such product\" for a short TTL (e.g. a product-missing:{id} key with EX 10) so a flood of bad ids stays off the database",
            BRIEFING,
        )
        .judged(
            list.iter().all(|s| *s == Some(404)) && step.queries <= 1,
            format!("10 GETs of {path} ({}): {}", statuses(&list), plural(step.queries, "query")),
        ),
    );

    // 5. /metrics parses and counts the requests.
    outcome.push(check_metrics(&session, ids.repeated).await);

    // 6. Every key has a TTL.
    let check = Check::new(
        "ttl-on-every-key",
        "every key has a TTL",
        "write every key with SET … EX/PX (or EXPIRE it at once); a key without a TTL lives until memory runs out",
        BRIEFING,
    );
    let keys = match &session.valkey {
        Some(valkey) => observe::keys(valkey, &session.key_prefix).await?,
        None => Vec::new(),
    };
    outcome.push(check.judged_keys(&keys));

    // 7. Valkey stopped: the API still answers.
    let check = Check::new(
        "valkey-stopped-still-answers",
        "with Valkey stopped, the API still answers",
        "treat a Valkey error or timeout as a miss and read the database; bound each command (a timeout, a circuit breaker)",
        BRIEFING,
    );
    match session.owned.as_mut() {
        None => outcome.push(check.optional().skipped(
            "--url mode: the grader did not start this Valkey, so it cannot stop it (run `grade service -- COMMAND`)",
        )),
        Some(owned) => {
            session.progress.phase("stopping the private Valkey", None);
            owned.server.stop().await;
            session.valkey = None;
            let mut answers = Vec::new();
            let mut ok = true;
            for instance in 0..instances {
                for id in [ids.repeated, ids.after_stop] {
                    let (status, body, took) = session.get(instance, &format!("/products/{id}")).await;
                    let right = status == Some(200)
                        && body.as_ref().and_then(|b| b.get("id")).and_then(Value::as_i64) == Some(id);
                    ok &= right;
                    answers.push(format!(
                        "{} /products/{id} {} in {} ms",
                        session.host(instance),
                        status.map_or("no answer".into(), |s| s.to_string()),
                        took.as_millis()
                    ));
                }
            }
            outcome.push(check.judged(ok, format!("Valkey killed; {}", answers.join(", "))));
        }
    }
    outcome.steps = steps;
    Ok(())
}

impl Check {
    fn judged_keys(self, keys: &[KeyInfo]) -> Check {
        if keys.is_empty() {
            return self.judged(false, "no keys in Valkey: the service caches nothing there");
        }
        let forever: Vec<&str> = keys
            .iter()
            .filter(|k| k.ttl_ms.is_none())
            .map(|k| k.key.as_str())
            .collect();
        if forever.is_empty() {
            let shortest = keys.iter().filter_map(|k| k.ttl_ms).min().unwrap_or(0);
            let longest = keys.iter().filter_map(|k| k.ttl_ms).max().unwrap_or(0);
            self.judged(
                true,
                format!(
                    "{}, all with a TTL ({}–{} s left)",
                    plural(keys.len() as u64, "key"),
                    shortest.div_ceil(1000),
                    longest.div_ceil(1000)
                ),
            )
        } else {
            self.judged(
                false,
                format!(
                    "{} of {} without a TTL: {}",
                    forever.len(),
                    plural(keys.len() as u64, "key"),
                    forever.iter().take(3).copied().collect::<Vec<_>>().join(", ")
                ),
            )
        }
    }
}

fn price_of(body: &Option<Value>) -> Option<f64> {
    match body.as_ref()?.get("price")? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

async fn check_invalidation(session: &Session<'_>, id: i64, check: Check) -> Check {
    let path = format!("/products/{id}");
    // Instance 2 reads first, so a stale copy would sit in its L1.
    let (_, body, _) = session.get(1, &path).await;
    let _ = session.get(1, &path).await;
    let Some(old) = price_of(&body) else {
        return check.judged(false, format!("GET {path} on {} gave no price", session.host(1)));
    };
    let new = format!("{:.2}", old + 1.11);
    let put = session
        .http
        .put(format!("{}{path}", session.urls[0]))
        .json(&serde_json::json!({ "price": new }))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok();
    if put != Some(200) {
        return check.judged(
            false,
            format!("PUT {path} on {} answered {:?}, not 200", session.host(0), put),
        );
    }
    let started = Instant::now();
    let wanted: f64 = new.parse().unwrap_or(old);
    let mut seen = None;
    while started.elapsed() < INVALIDATION_BOUND {
        let (_, body, _) = session.get(1, &path).await;
        seen = price_of(&body);
        if seen.is_some_and(|p| (p - wanted).abs() < 0.001) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    // A service the grader did not start gets its old price back.
    if session.owned.is_none() {
        let _ = session
            .http
            .put(format!("{}{path}", session.urls[0]))
            .json(&serde_json::json!({ "price": format!("{old:.2}") }))
            .send()
            .await;
    }
    let fresh = seen.is_some_and(|p| (p - wanted).abs() < 0.001);
    check.judged(
        fresh,
        if fresh {
            format!(
                "PUT price {new} on {}; {} served it after {} ms (bound {} s)",
                session.host(0),
                session.host(1),
                took.as_millis(),
                INVALIDATION_BOUND.as_secs()
            )
        } else {
            format!(
                "PUT price {new} on {}; {} still served {} after {} s",
                session.host(0),
                session.host(1),
                seen.map_or("nothing".into(), |p| format!("{p:.2}")),
                INVALIDATION_BOUND.as_secs()
            )
        },
    )
}

async fn check_metrics(session: &Session<'_>, id: i64) -> Check {
    const REQUESTS: u64 = 10;
    let check = Check::new(
        "metrics-count-requests",
        "/metrics is Prometheus text and counts the requests",
        "serve /metrics in the Prometheus text format (a client library's encoder) with counters such as requests_total or cache_hits_total",
        STATS_BRIEFING,
    );
    let before = match metrics(session).await {
        Ok(exposition) => exposition,
        Err(why) => return check.judged(false, why),
    };
    for _ in 0..REQUESTS {
        let _ = session.get(0, &format!("/products/{id}")).await;
    }
    let after = match metrics(session).await {
        Ok(exposition) => exposition,
        Err(why) => return check.judged(false, why),
    };
    let (b, a) = (before.counter_sums("metrics"), after.counter_sums("metrics"));
    let rose: Vec<(String, f64)> = a
        .iter()
        .map(|(name, value)| (name.clone(), value - b.get(name).copied().unwrap_or(0.0)))
        .filter(|(_, delta)| *delta > 0.0)
        .collect();
    let exact: Vec<&str> = rose
        .iter()
        .filter(|(_, d)| (*d - REQUESTS as f64).abs() < 0.5)
        .map(|(n, _)| n.as_str())
        .collect();
    if exact.is_empty() {
        let seen: Vec<String> = rose.iter().take(3).map(|(n, d)| format!("{n} +{d}")).collect();
        check.judged(
            false,
            format!(
                "parses ({} samples), but no counter rose by {REQUESTS} for {REQUESTS} GETs ({})",
                after.samples.len(),
                if seen.is_empty() {
                    "none rose".to_string()
                } else {
                    seen.join(", ")
                }
            ),
        )
    } else {
        check.judged(
            true,
            format!(
                "parses ({} samples); +{REQUESTS} for {REQUESTS} GETs: {}",
                after.samples.len(),
                exact.iter().take(3).copied().collect::<Vec<_>>().join(", ")
            ),
        )
    }
}

async fn metrics(session: &Session<'_>) -> std::result::Result<prometheus_text::Exposition, String> {
    let response = session
        .http
        .get(format!("{}/metrics", session.urls[0]))
        .send()
        .await
        .map_err(|e| format!("GET /metrics failed: {e}"))?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| format!("GET /metrics: {e}"))?;
    if status != 200 {
        return Err(format!("GET /metrics answered {status}"));
    }
    prometheus_text::parse(&text).map_err(|why| format!("/metrics does not parse as Prometheus text: {why}"))
}
