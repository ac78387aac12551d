//! `workshop-cli serve` over HTTP with a real client, on both databases.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Connection;
use support::*;
use workshop_cli::config::DatabaseKind;

/// A `serve` process on a free port; killed when dropped.
struct Server {
    child: Child,
    url: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start(db: &TestDatabase, prefix: &TestPrefix, valkey: &str, args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temporary folder");
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child = cli_against(dir.path(), &db.url(), prefix, valkey, &all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        out.read_line(&mut first).expect("serve's first line");
        std::thread::spawn(move || for _ in out.lines().map_while(Result::ok) {});
        let url = first
            .strip_prefix("serving ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {first:?}; stderr: {}", stderr.lock().unwrap()))
            .to_string();
        Server { child, url, stderr }
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(limit, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("HTTP client")
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String, Value) {
    let response = client.get(url).send().await.expect("GET");
    let status = response.status().as_u16();
    let layer = header(&response, "x-cache");
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, layer, body)
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn put(client: &reqwest::Client, url: &str, body: &str) -> (u16, Value) {
    let response = client
        .put(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("PUT");
    let status = response.status().as_u16();
    (status, response.json::<Value>().await.unwrap_or(Value::Null))
}

/// The name and stock flag as stored, read past every cache.
async fn stored_name_and_stock(db: &TestDatabase, id: i32) -> (String, String) {
    let sql = "SELECT name, CASE WHEN in_stock THEN 'yes' ELSE 'no' END FROM products WHERE id = ";
    match db.kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&db.url()).await.expect("connect");
            sqlx::query_as(&format!("{sql}?"))
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .expect("name")
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.expect("connect");
            sqlx::query_as(&format!("{sql}$1"))
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .expect("name")
        }
    }
}

/// The price as stored, read past every cache.
async fn stored_price(db: &TestDatabase, id: i32) -> String {
    match db.kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&db.url()).await.expect("connect");
            let (price,): (String,) = sqlx::query_as("SELECT CAST(price AS CHAR) FROM products WHERE id = ?")
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .expect("price");
            price
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.expect("connect");
            let (price,): (String,) = sqlx::query_as("SELECT price::text FROM products WHERE id = $1")
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .expect("price");
            price
        }
    }
}

fn other_price(old: &str) -> &'static str {
    if old == "1234.56" {
        "2345.67"
    } else {
        "1234.56"
    }
}

#[tokio::test]
async fn every_endpoint_answers_with_its_status_codes_and_x_cache_goes_db_l2_l1() {
    for kind in BOTH {
        let db = seeded_database(kind, "serve_endpoints").await;
        let prefix = TestPrefix::new("serve_endpoints");
        let first = Server::start(&db, &prefix, &valkey_url(), &[]);
        let second = Server::start(&db, &prefix, &valkey_url(), &[]);
        let http = client();

        let (status, layer, product) = get(&http, &first.at("/products/7")).await;
        assert_eq!((status, layer.as_str()), (200, "DB"), "{kind:?}: {}", first.stderr());
        assert_eq!(product["id"], 7);
        assert!(product["price"].is_string(), "exact decimal");
        let (_, layer, again) = get(&http, &first.at("/products/7")).await;
        assert_eq!(layer, "L1");
        assert_eq!(again, product);
        // A second process has its own, empty L1: Valkey answers first.
        let (_, layer, _) = get(&http, &second.at("/products/7")).await;
        assert_eq!(layer, "L2");
        let (_, layer, _) = get(&http, &second.at("/products/7")).await;
        assert_eq!(layer, "L1");
        let timing = http.get(first.at("/products/7")).send().await.unwrap();
        assert!(
            header(&timing, "server-timing").starts_with("l1;dur="),
            "{:?}",
            timing.headers()
        );

        // A missing id: 404 from the database once, then from the negative cache.
        let (status, layer, body) = get(&http, &first.at("/products/99999999")).await;
        assert_eq!((status, layer.as_str()), (404, "DB"));
        assert_eq!(body["error"], "no product with id 99999999");
        assert!(body["hint"].is_string());
        let (status, layer, _) = get(&http, &first.at("/products/99999999")).await;
        assert_eq!((status, layer.as_str()), (404, "L1"));
        let (status, layer, _) = get(&http, &second.at("/products/99999999")).await;
        assert_eq!(
            (status, layer.as_str()),
            (404, "L2"),
            "the other process knows from Valkey"
        );

        let (status, _, body) = get(&http, &first.at("/products/seven")).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "product id 'seven' is not a whole number");
        let (status, _, body) = get(&http, &first.at("/nothing-here")).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"], "no such endpoint");

        // Pages, cached per query.
        let (status, layer, page) = get(&http, &first.at("/products?limit=3&offset=2")).await;
        assert_eq!((status, layer.as_str()), (200, "DB"));
        let ids: Vec<i64> = page["products"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, [3, 4, 5]);
        let (_, layer, again) = get(&http, &first.at("/products?limit=3&offset=2")).await;
        assert_eq!(layer, "L1");
        assert_eq!(again, page);
        let category = product["category"].as_str().unwrap().to_string();
        let (status, _, page) = get(&http, &first.at(&format!("/products?category={category}&limit=100"))).await;
        assert_eq!(status, 200);
        let products = page["products"].as_array().unwrap();
        assert!(!products.is_empty());
        assert!(products.iter().all(|p| p["category"] == category.as_str()));
        for bad in [
            "/products?limit=0",
            "/products?limit=101",
            "/products?offset=-1",
            "/products?colour=red",
        ] {
            let (status, _, body) = get(&http, &first.at(bad)).await;
            assert_eq!(status, 400, "{bad}");
            assert!(
                body["hint"].as_str().unwrap().contains("limit 1 to 100"),
                "{bad}: {body}"
            );
        }

        // Bad changes: 400 for what is not JSON, 422 for what JSON cannot mean; nothing written.
        let before = stored_price(&db, 7).await;
        for (body, status, error) in [
            ("{\"price\": ", 400, "not valid JSON"),
            ("[1, 2", 400, "not valid JSON"),
            ("{\"price\": -1}", 422, "price -1 is negative"),
            ("{\"price\": \"12.345\"}", 422, "more than 2 decimals"),
            ("{\"price\": \"lots\"}", 422, "is not a decimal number"),
            ("{\"price\": 100000000}", 422, "larger than 99999999.99"),
            ("{\"price\": 5, \"colour\": \"red\"}", 422, "unknown field `colour`"),
            ("{\"description\": \"x\"}", 422, "unknown field `description`"),
            ("{}", 422, "nothing to change"),
            ("{\"name\": \"   \"}", 422, "name is empty"),
            ("{\"name\": 7}", 422, "name must be a string"),
            (
                &format!("{{\"name\": \"{}\"}}", "n".repeat(201)),
                422,
                "201 characters long, more than 200",
            ),
            ("{\"in_stock\": \"yes\"}", 422, "in_stock must be true or false"),
            // One bad field spoils the change: the good price is not written either.
            (
                "{\"price\": \"5.00\", \"in_stock\": 1}",
                422,
                "in_stock must be true or false",
            ),
        ] {
            let (got, answer) = put(&http, &first.at("/products/7"), body).await;
            assert_eq!(got, status, "{body}: {answer}");
            assert!(answer["error"].as_str().unwrap().contains(error), "{body}: {answer}");
            assert!(answer["hint"].as_str().unwrap().contains("price"), "{body}");
        }
        let (status, _) = put(&http, &first.at("/products/7"), &"x".repeat(20_000)).await;
        assert_eq!(status, 413, "the body limit");
        let (status, body) = put(&http, &first.at("/products/99999999"), "{\"price\": 1}").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("no product with id 99999999"))
        );
        assert_eq!(
            stored_price(&db, 7).await,
            before,
            "{kind:?}: a rejected change writes nothing"
        );

        let (status, health) = get(&http, &first.at("/healthz")).await.into_status_body();
        assert_eq!(status, 200);
        assert_eq!(health["status"], "ok");
        assert_eq!(health["database"]["ok"], true);
        assert_eq!(health["valkey"]["ok"], true);
        assert_eq!(health["invalidation"], "subscribed");

        // Reads on the first server: product 7 ×3 (DB, L1, L1), missing ×2 (DB, negative L1),
        // a page ×2 (DB, L1), a category page (DB).
        let (_, _, stats) = get(&http, &first.at("/stats")).await;
        let total = &stats["since_start"];
        assert_eq!(total["total_requests"], 8, "{stats}");
        assert_eq!(total["cache_hits"], 4, "{stats}");
        assert_eq!(total["cache_misses"], 4, "{stats}");
        assert_eq!(total["negative_hits"], 1, "{stats}");
        assert_eq!(total["l1"]["requests"], 4, "{stats}");
        assert_eq!(stats["last_window"]["total_requests"], 8, "{stats}");
        assert_eq!(stats["window_seconds"], 10);
    }
}

trait IntoStatusBody {
    fn into_status_body(self) -> (u16, Value);
}

impl IntoStatusBody for (u16, String, Value) {
    fn into_status_body(self) -> (u16, Value) {
        (self.0, self.2)
    }
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_agree_with_the_requests_made() {
    for kind in BOTH {
        let db = seeded_database(kind, "serve_metrics").await;
        let prefix = TestPrefix::new("serve_metrics");
        let server = Server::start(&db, &prefix, &valkey_url(), &[]);
        let http = client();
        for id in [1, 2, 1, 1, 2] {
            get(&http, &server.at(&format!("/products/{id}"))).await;
        }
        get(&http, &server.at("/products/99999999")).await;
        get(&http, &server.at("/products/99999999")).await;
        let response = http.get(server.at("/metrics")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert!(header(&response, "content-type").contains("openmetrics-text"));
        let text = response.text().await.unwrap();
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .unwrap_or_else(|e| panic!("{kind:?}: not Prometheus text ({e}):\n{text}"));
        let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
            scrape
                .samples
                .iter()
                .filter(|s| s.metric == name)
                .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => 0.0,
                })
                .sum()
        };
        // 1, 2 from the database, then 1, 1, 2 from L1; the missing id: a database miss, then negative.
        assert_eq!(value("cache_hits_total", Some(("cache_type", "l1"))), 3.0, "{text}");
        assert_eq!(value("cache_misses_total", Some(("cache_type", "l1"))), 3.0, "{text}");
        assert_eq!(value("cache_misses_total", Some(("cache_type", "l2"))), 3.0, "{text}");
        assert_eq!(value("cache_negative_hits_total", None), 1.0, "{text}");
        assert_eq!(value("http_responses_total", Some(("status", "200"))), 5.0, "{text}");
        assert_eq!(value("http_responses_total", Some(("status", "404"))), 2.0, "{text}");
        assert_eq!(value("cache_entries", Some(("cache_type", "l1"))), 2.0, "{text}");
        assert!(value("cache_size_bytes", Some(("cache_type", "l2"))) > 0.0, "{text}");
        // Two products in L1: their keys and JSON, some hundreds of bytes.
        let l1_bytes = value("cache_size_bytes", Some(("cache_type", "l1")));
        assert!((200.0..10_000.0).contains(&l1_bytes), "{text}");
        let count = scrape
            .samples
            .iter()
            .find(|s| s.metric == "request_duration_seconds" && s.labels.get("endpoint") == Some("/products/:id"))
            .map(|s| match &s.value {
                prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
                _ => 0.0,
            });
        assert_eq!(count, Some(7.0), "{text}");
    }
}

#[tokio::test]
async fn a_put_on_one_server_is_never_served_stale_by_the_other() {
    for kind in BOTH {
        let db = seeded_database(kind, "serve_put").await;
        let prefix = TestPrefix::new("serve_put");
        let writer = Server::start(&db, &prefix, &valkey_url(), &[]);
        let reader = Server::start(&db, &prefix, &valkey_url(), &[]);
        let http = client();
        let old = get(&http, &reader.at("/products/11")).await.2["price"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(get(&http, &reader.at("/products/11")).await.1, "L1");
        let new = other_price(&old);
        let (status, body) = put(&http, &writer.at("/products/11"), &json!({ "price": new }).to_string()).await;
        assert_eq!(status, 200, "{kind:?}: {body}");
        assert_eq!(body["product"]["price"], new);
        assert_eq!(body["cached"], true);
        assert_eq!(body["invalidation_receivers"], 2, "both servers listen");
        assert_eq!(stored_price(&db, 11).await, new);
        // The PUT has returned: the reader must never show the old price again.
        let (_, layer, product) = get(&http, &reader.at("/products/11")).await;
        assert_eq!(product["price"], new, "{kind:?}: served from {layer}");
        assert_eq!(layer, "L2", "dropped from L1, the new row is in Valkey");
        // The writer hears its own announcement too, so it reads the new row from Valkey or L1.
        assert_eq!(get(&http, &writer.at("/products/11")).await.2["price"], new);
    }
}

#[tokio::test]
async fn with_invalidation_off_the_other_server_serves_the_old_price_from_l1() {
    for kind in BOTH {
        let db = seeded_database(kind, "serve_stale").await;
        let prefix = TestPrefix::new("serve_stale");
        let writer = Server::start(&db, &prefix, &valkey_url(), &["--invalidation", "off"]);
        let reader = Server::start(&db, &prefix, &valkey_url(), &["--invalidation", "off", "--l1-ttl", "2"]);
        let http = client();
        let old = get(&http, &reader.at("/products/12")).await.2["price"]
            .as_str()
            .unwrap()
            .to_string();
        let new = other_price(&old);
        let (status, body) = put(&http, &writer.at("/products/12"), &json!({ "price": new }).to_string()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["invalidation_receivers"], Value::Null, "nothing published");
        let (_, layer, product) = get(&http, &reader.at("/products/12")).await;
        assert_eq!(
            (layer.as_str(), product["price"].as_str()),
            ("L1", Some(old.as_str())),
            "the stale window"
        );
        // Until the reader's L1 TTL (2 s) ends; then it reads the new row from Valkey.
        let mut fresh = Value::Null;
        let mut layer = String::new();
        for _ in 0..100 {
            let (_, l, product) = get(&http, &reader.at("/products/12")).await;
            if product["price"] == new {
                fresh = product;
                layer = l;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(fresh["price"], new, "{kind:?}: the stale window ends with the L1 TTL");
        assert_eq!(layer, "L2");
    }
}

#[tokio::test]
async fn valkey_killed_and_restarted_under_load_fails_no_request_degraded_then_ok() {
    for kind in BOTH {
        let db = seeded_database(kind, "serve_outage").await;
        let mut valkey = PrivateValkey::start();
        let prefix = TestPrefix::on("serve_outage", &valkey.url());
        let server = Server::start(&db, &prefix, &valkey.url(), &["--l1-capacity", "0"]);
        let http = client();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let failed = Arc::new(AtomicU64::new(0));
        let from_db = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for task in 0..4u64 {
            let (http, url, stop, failed, from_db, done) = (
                http.clone(),
                server.url.clone(),
                Arc::clone(&stop),
                Arc::clone(&failed),
                Arc::clone(&from_db),
                Arc::clone(&done),
            );
            tasks.push(tokio::spawn(async move {
                let mut n = task;
                while !stop.load(Ordering::Relaxed) {
                    let id = 1 + n % 20;
                    n += 4;
                    match http.get(format!("{url}/products/{id}")).send().await {
                        Ok(response) if response.status().as_u16() == 200 => {
                            if header(&response, "x-cache") == "DB" {
                                from_db.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let health = |http: reqwest::Client, url: String| async move {
            get(&http, &format!("{url}/healthz")).await.2["status"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        let until = |want: &'static str| {
            let (http, url) = (http.clone(), server.url.clone());
            async move {
                for _ in 0..200 {
                    if health(http.clone(), url.clone()).await == want {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                false
            }
        };
        assert!(until("ok").await);
        let warm = done.load(Ordering::Relaxed);
        valkey.kill();
        assert!(
            until("degraded").await,
            "{kind:?}: healthz says degraded while Valkey is down"
        );
        let db_before = from_db.load(Ordering::Relaxed);
        let served = done.load(Ordering::Relaxed);
        // Requests go on during the outage (waited for, not slept on: a busy machine is slow).
        let mut went_on = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if done.load(Ordering::Relaxed) > served {
                went_on = true;
                break;
            }
        }
        assert!(went_on, "{kind:?}: requests went on during the outage");
        valkey.restart();
        assert!(until("ok").await, "{kind:?}: recovers on its own: {}", server.stderr());
        let after = done.load(Ordering::Relaxed);
        // Reads reach Valkey again: L2 hits come back.
        let (_, layer, _) = get(&http, &server.at("/products/1")).await;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        assert!(after > served && warm <= served);
        assert!(
            from_db.load(Ordering::Relaxed) > db_before,
            "reads were served from the database while Valkey was down"
        );
        assert_eq!(failed.load(Ordering::Relaxed), 0, "{kind:?}: no request failed");
        assert!(layer == "L2" || layer == "DB", "{layer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_requests_in_flight_and_exits_0() {
    for kind in BOTH {
        let db = seeded_database(kind, "serve_shutdown").await;
        let valkey = PrivateValkey::start();
        let prefix = TestPrefix::on("serve_shutdown", &valkey.url());
        // A paused Valkey holds every read for --cache-timeout: requests stay in flight.
        let mut server = Server::start(
            &db,
            &prefix,
            &valkey.url(),
            &["--cache-timeout", "1500", "--l1-capacity", "0", "--log", "info"],
        );
        let http = client();
        assert_eq!(get(&http, &server.at("/products/1")).await.0, 200);
        valkey.pause();
        let requests: Vec<_> = (1..=8)
            .map(|id| {
                let (http, url) = (http.clone(), server.at(&format!("/products/{id}")));
                tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) })
            })
            .collect();
        let started = |text: &str| text.matches("started processing request").count();
        let mut in_flight = false;
        for _ in 0..200 {
            if started(&server.stderr()) >= 9 {
                in_flight = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(in_flight, "{kind:?}: {}", server.stderr());
        server.terminate();
        let mut statuses = Vec::new();
        for request in requests {
            statuses.push(request.await.unwrap().map_err(|e| e.to_string()));
        }
        valkey.resume();
        assert_eq!(
            statuses,
            vec![Ok(200); 8],
            "{kind:?}: every request in flight was answered"
        );
        let status = server.wait(Duration::from_secs(10)).expect("serve exits");
        assert!(status.success(), "{kind:?}: {status:?} {}", server.stderr());
        assert!(
            http.get(server.at("/healthz")).send().await.is_err(),
            "no longer accepting"
        );
    }
}

#[test]
fn a_public_address_is_refused_without_public() {
    let dir = tempfile::tempdir().unwrap();
    let output = workshop_cli(dir.path())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        stderr(&output).trim(),
        "error: --listen must be a loopback address such as 127.0.0.1:8080, or add --public to serve other machines (got '0.0.0.0:0')"
    );
}

#[tokio::test]
async fn load_reports_the_counts_the_server_counted() {
    for kind in BOTH {
        let db = seeded_database(kind, "serve_load").await;
        let prefix = TestPrefix::new("serve_load");
        let server = Server::start(&db, &prefix, &valkey_url(), &[]);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run.json");
        let output = cli_against(
            dir.path(),
            &db.url(),
            &prefix,
            &valkey_url(),
            &[
                "load",
                "--url",
                &server.url,
                "--duration",
                "2",
                "--concurrency",
                "4",
                "--ids",
                "1..30",
                "--read-ratio",
                "90",
                "--json",
                "--out",
                out.to_str().unwrap(),
            ],
        )
        .output()
        .unwrap();
        assert_eq!(output.status.code(), Some(0), "{kind:?}: {}", stderr(&output));
        let run: Value = serde_json::from_str(&stdout(&output)).expect("one JSON document");
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(saved["format"], "workshop-cli saved run");
        assert_eq!(
            (saved["version"].as_u64(), saved["command"].as_str()),
            (Some(1), Some("load"))
        );
        assert_eq!(saved["outcome"]["requests"], run["requests"]);
        let series = &saved["series"][0];
        let saved_requests: f64 = series["requests_per_second"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert_eq!(saved_requests as u64, run["requests"].as_u64().unwrap(), "{series}");
        assert_eq!(
            series["p50_ms"].as_array().unwrap().len(),
            series["second"].as_array().unwrap().len()
        );
        assert_eq!(run["failed"], 0);
        assert!(run["reads"].as_u64().unwrap() > 10, "{run}");
        assert!(run["writes"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(run["statuses"]["200"], run["requests"], "{run}");
        let timeline = run["timeline"].as_array().unwrap();
        assert!(!timeline.is_empty());
        let per_second: u64 = timeline.iter().map(|s| s["requests"].as_u64().unwrap()).sum();
        assert_eq!(per_second, run["requests"].as_u64().unwrap());
        let layer = |name: &str| run["by_layer"][name]["count"].as_u64().unwrap_or(0);
        let http = client();
        let (_, _, stats) = get(&http, &server.at("/stats")).await;
        let total = &stats["since_start"];
        assert_eq!(total["total_requests"], run["reads"], "{kind:?}: {stats}\n{run}");
        assert_eq!(total["l1"]["requests"].as_u64(), Some(layer("L1")), "{stats}\n{run}");
        assert_eq!(total["l2"]["requests"].as_u64(), Some(layer("L2")), "{stats}\n{run}");
        assert_eq!(
            total["database"]["requests"].as_u64(),
            Some(layer("DB")),
            "{stats}\n{run}"
        );
        assert!(layer("L1") > 0, "{run}");
    }
}

#[test]
fn load_refuses_an_empty_id_range_and_a_bad_url() {
    let dir = tempfile::tempdir().unwrap();
    let output = workshop_cli(dir.path())
        .args(["load", "--ids", "9..3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("'9..3' is not FIRST..LAST with FIRST <= LAST"),
        "{}",
        stderr(&output)
    );
    let output = workshop_cli(dir.path())
        .args(["load", "--url", "ftp://x", "--duration", "1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(6));
    assert_eq!(
        stderr(&output).trim(),
        "error: --url ftp://x is not http:// or https://; use e.g. http://127.0.0.1:8080"
    );
}

/// A headless Chromium driven over the DevTools protocol on a pipe
/// (`--remote-debugging-pipe`: requests on fd 3, answers and events on fd 4,
/// each a JSON text ended by NUL). Two FIFOs carry them, so no WebSocket
/// client is needed.
mod browser {
    use std::fs::File;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};

    pub struct Browser {
        child: Child,
        to: File,
        from: mpsc::Receiver<Value>,
        next_id: u64,
        session: Option<String>,
        /// Every event received so far (console messages among them).
        pub events: Vec<Value>,
        _dir: tempfile::TempDir,
    }

    /// Debian's `chromium`, or `WORKSHOP_CHROMIUM`.
    fn binary() -> String {
        if let Ok(path) = std::env::var("WORKSHOP_CHROMIUM") {
            return path;
        }
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .is_ok_and(|o| o.status.success());
            if found {
                return name.to_string();
            }
        }
        panic!("no chromium found: scripts/services.sh up installs Debian's chromium (or set WORKSHOP_CHROMIUM)");
    }

    impl Browser {
        pub fn start() -> Browser {
            let dir = tempfile::tempdir().expect("browser folder");
            let (input, output) = (dir.path().join("in"), dir.path().join("out"));
            for fifo in [&input, &output] {
                let made = Command::new("mkfifo").arg(fifo).status().expect("mkfifo");
                assert!(made.success());
            }
            let profile = dir.path().join("profile");
            let child = Command::new("bash")
                .arg("-c")
                .arg(r#"exec "$0" --headless --no-sandbox --disable-gpu --no-first-run --disable-extensions --window-size=1280,1100 --remote-debugging-pipe --user-data-dir="$3" about:blank 3<"$1" 4>"$2""#)
                .arg(binary())
                .arg(&input)
                .arg(&output)
                .arg(&profile)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromium");
            // Same order as the shell opens them, or both would wait.
            let to = File::options().write(true).open(&input).expect("the browser's input");
            let from = File::open(&output).expect("the browser's output");
            let (sender, receiver) = mpsc::channel();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(from);
                loop {
                    let mut message = Vec::new();
                    match reader.read_until(0, &mut message) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            message.pop();
                            if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                                if sender.send(value).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            });
            Browser {
                child,
                to,
                from: receiver,
                next_id: 1,
                session: None,
                events: Vec::new(),
                _dir: dir,
            }
        }

        /// Sends one command (to the page once [`Self::open`] attached) and waits for its answer.
        pub fn call(&mut self, method: &str, params: Value) -> Value {
            let id = self.next_id;
            self.next_id += 1;
            let mut message = json!({ "id": id, "method": method, "params": params });
            if let Some(session) = &self.session {
                message["sessionId"] = json!(session);
            }
            let mut bytes = serde_json::to_vec(&message).unwrap();
            bytes.push(0);
            self.to.write_all(&bytes).expect("write to the browser");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let answer = self
                    .from
                    .recv_timeout(left)
                    .unwrap_or_else(|_| panic!("the browser did not answer {method}"));
                if answer["id"] == id {
                    assert!(answer["error"].is_null(), "{method}: {answer}");
                    return answer["result"].clone();
                }
                self.events.push(answer);
            }
        }

        /// A new tab with console and log reporting on, at `url`.
        pub fn open(&mut self, url: &str) {
            let target = self.call("Target.createTarget", json!({ "url": "about:blank" }));
            let attached = self.call(
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            );
            self.session = attached["sessionId"].as_str().map(str::to_string);
            for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
                self.call(domain, json!({}));
            }
            self.call("Page.navigate", json!({ "url": url }));
        }

        /// The value of a JavaScript expression in the page.
        pub fn evaluate(&mut self, expression: &str) -> Value {
            let result = self.call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            );
            result["result"]["value"].clone()
        }

        pub fn screenshot_png(&mut self) -> Vec<u8> {
            let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
            super::base64_decode(shot["data"].as_str().expect("screenshot data"))
        }

        /// Console errors, uncaught exceptions and error log entries (a failed load among them).
        pub fn errors(&self) -> Vec<String> {
            self.events
                .iter()
                .filter(|event| match event["method"].as_str() {
                    Some("Runtime.consoleAPICalled") => {
                        matches!(event["params"]["type"].as_str(), Some("error" | "assert"))
                    }
                    Some("Runtime.exceptionThrown") => true,
                    Some("Log.entryAdded") => event["params"]["entry"]["level"] == "error",
                    _ => false,
                })
                .map(|event| event["params"].to_string())
                .collect()
        }
    }

    impl Drop for Browser {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, c)| acc | (value(*c) << (18 - 6 * i)));
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes_what_the_browser_sends() {
    assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
    assert_eq!(base64_decode("TWFu"), b"Man");
    assert_eq!(base64_decode("TWE="), b"Ma");
}

/// What the test reads from the dashboard's DOM.
const DASHBOARD_STATE: &str = r##"JSON.stringify({
    frames: Number(document.body.dataset.frames),
    pageErrors: Number(document.body.dataset.consoleErrors),
    charts: Array.from(document.querySelectorAll("svg[id^=chart-]")).map((s) => [s.id, s.dataset.nonzero, s.querySelectorAll("path").length]),
    rps: document.getElementById("tile-rps").textContent,
    hit: document.getElementById("tile-hit").textContent,
    valkey: document.getElementById("tile-valkey").textContent,
    sent: document.querySelectorAll("#invalidations td.sent").length,
    received: document.querySelectorAll("#invalidations td.received").length
})"##;

#[tokio::test]
async fn the_dashboard_draws_live_charts_in_a_real_browser_without_console_errors() {
    for kind in BOTH {
        let db = seeded_database(kind, "serve_dashboard").await;
        let prefix = TestPrefix::new("serve_dashboard");
        let mut server = Server::start(&db, &prefix, &valkey_url(), &[]);
        let page = reqwest::get(server.at("/")).await.unwrap();
        assert_eq!(page.status().as_u16(), 200);
        assert!(header(&page, "content-type").starts_with("text/html"));
        let html = page.text().await.unwrap();
        assert!(html.contains("EventSource(\"/events\")"));
        assert!(
            !html.contains("<script src") && !html.contains("href=\"http") && !html.contains("src=\"http"),
            "nothing from the network"
        );

        let dir = tempfile::tempdir().unwrap();
        let mut load = cli_against(
            dir.path(),
            &db.url(),
            &prefix,
            &valkey_url(),
            &[
                "load",
                "--url",
                &server.url,
                "--duration",
                "60",
                "--concurrency",
                "4",
                "--ids",
                "1..200",
                "--read-ratio",
                "95",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start load");

        let mut browser = browser::Browser::start();
        browser.open(&server.at("/"));
        let mut state = Value::Null;
        let drawn = |state: &Value| {
            state["frames"].as_u64().unwrap_or(0) >= 3
                && state["charts"]
                    .as_array()
                    .is_some_and(|c| c.len() == 4 && c.iter().all(|chart| chart[1] == "yes"))
                && state["sent"].as_u64().unwrap_or(0) > 0
                && state["received"].as_u64().unwrap_or(0) > 0
        };
        for _ in 0..120 {
            state = serde_json::from_str(browser.evaluate(DASHBOARD_STATE).as_str().unwrap_or("null"))
                .unwrap_or(Value::Null);
            if drawn(&state) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let png = browser.screenshot_png();
        let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join(format!("dashboard-{kind:?}.png").to_lowercase());
        std::fs::write(&shot, &png).unwrap();
        let _ = load.kill();
        let _ = load.wait();
        assert!(drawn(&state), "{kind:?}: the charts never showed data: {state}");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "a real screenshot"
        );
        let rps: f64 = state["rps"].as_str().unwrap().trim_end_matches('k').parse().unwrap();
        assert!(rps > 0.0, "{state}");
        assert!(state["hit"].as_str().unwrap().ends_with('%'), "{state}");
        assert!(state["valkey"].as_str().unwrap().ends_with("B"), "{state}");
        // An open dashboard (an endless /events response) does not keep serve from stopping.
        assert_eq!(state["pageErrors"], 0, "{state}");
        assert_eq!(browser.errors(), Vec::<String>::new(), "{kind:?}: console errors");
        server.terminate();
        let status = server
            .wait(Duration::from_secs(10))
            .expect("serve stops with a dashboard open");
        assert!(status.success(), "{status:?}: {}", server.stderr());
    }
}

#[tokio::test]
async fn a_put_of_name_and_in_stock_is_stored_served_everywhere_and_undone_by_clean() {
    for kind in BOTH {
        let db = seeded_database(kind, "serve_put_fields").await;
        let prefix = TestPrefix::new("serve_put_fields");
        let writer = Server::start(&db, &prefix, &valkey_url(), &[]);
        let reader = Server::start(&db, &prefix, &valkey_url(), &[]);
        let http = client();
        let before = stored_name_and_stock(&db, 13).await;
        let old_price = stored_price(&db, 13).await;
        let old = get(&http, &reader.at("/products/13")).await.2;
        assert_eq!(get(&http, &reader.at("/products/13")).await.1, "L1");
        let new_stock = before.1 != "yes";
        let change = json!({ "name": "  Renamed by the serve test  ", "in_stock": new_stock });
        let (status, body) = put(&http, &writer.at("/products/13"), &change.to_string()).await;
        assert_eq!(status, 200, "{kind:?}: {body}");
        assert_eq!(body["product"]["name"], "Renamed by the serve test", "trimmed");
        assert_eq!(body["product"]["in_stock"], new_stock);
        assert_eq!(body["product"]["price"], old["price"], "the price is left alone");
        let stock = if new_stock { "yes" } else { "no" };
        assert_eq!(
            stored_name_and_stock(&db, 13).await,
            ("Renamed by the serve test".to_string(), stock.to_string())
        );
        assert_eq!(stored_price(&db, 13).await, old_price);
        let (_, layer, product) = get(&http, &reader.at("/products/13")).await;
        assert_eq!(
            (product["name"].as_str(), product["in_stock"].as_bool()),
            (Some("Renamed by the serve test"), Some(new_stock)),
            "{kind:?}: served from {layer}"
        );
        // A second change, of the price, then clean: the row is back as it was before both.
        let (status, _) = put(
            &http,
            &writer.at("/products/13"),
            &json!({ "price": other_price(&old_price) }).to_string(),
        )
        .await;
        assert_eq!(status, 200);
        let dir = tempfile::tempdir().unwrap();
        let output = cli_against(dir.path(), &db.url(), &prefix, &valkey_url(), &["clean"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{kind:?}: {}", stderr(&output));
        assert_eq!(
            stored_name_and_stock(&db, 13).await,
            before,
            "{kind:?}: {}",
            stdout(&output)
        );
        assert_eq!(stored_price(&db, 13).await, old_price);
    }
}

/// Status, headers and the exact body bytes of one GET.
async fn get_bytes(client: &reqwest::Client, url: &str) -> (u16, String, String, String, Vec<u8>) {
    let response = client.get(url).send().await.expect("GET");
    let status = response.status().as_u16();
    let layer = header(&response, "x-cache");
    let timing = header(&response, "server-timing");
    let content_type = header(&response, "content-type");
    let body = response.bytes().await.expect("body").to_vec();
    (status, layer, timing, content_type, body)
}

/// `name;dur=` and milliseconds with exactly three decimals.
fn is_server_timing(value: &str, name: &str) -> bool {
    value
        .strip_prefix(&format!("{name};dur="))
        .and_then(|ms| ms.split_once('.'))
        .is_some_and(|(whole, frac)| {
            !whole.is_empty()
                && whole.bytes().all(|b| b.is_ascii_digit())
                && frac.len() == 3
                && frac.bytes().all(|b| b.is_ascii_digit())
        })
}

#[tokio::test]
async fn l2_and_l1_hits_send_the_database_reads_body_byte_for_byte() {
    for kind in BOTH {
        let db = seeded_database(kind, "serve_bytes").await;
        let prefix = TestPrefix::new("serve_bytes");
        // L1 off: every read after the first is a Valkey GET (the bench's L2 row).
        let l2_only = Server::start(&db, &prefix, &valkey_url(), &["--l1-capacity", "0"]);
        let with_l1 = Server::start(&db, &prefix, &valkey_url(), &[]);
        let http = client();
        let url = l2_only.at("/products/11");

        let (status, layer, timing, content_type, from_db) = get_bytes(&http, &url).await;
        assert_eq!((status, layer.as_str()), (200, "DB"), "{kind:?}: {}", l2_only.stderr());
        assert_eq!(content_type, "application/json");
        assert!(is_server_timing(&timing, "db"), "{kind:?}: {timing}");
        let row: Value = serde_json::from_slice(&from_db).expect("JSON body");
        assert_eq!(row["id"], 11);
        assert!(row["price"].is_string(), "exact decimal");
        // What Valkey holds is the very body the database read sent.
        let key = format!("{}product:11", prefix.source(&db));
        let mut valkey = valkey_connection(&valkey_url());
        let stored: Vec<u8> = redis::cmd("GET")
            .arg(&key)
            .query(&mut valkey)
            .expect("GET the product key");
        assert_eq!(
            String::from_utf8_lossy(&stored),
            String::from_utf8_lossy(&from_db),
            "{kind:?}"
        );

        for _ in 0..3 {
            let (status, layer, timing, content_type, body) = get_bytes(&http, &url).await;
            assert_eq!((status, layer.as_str()), (200, "L2"), "{kind:?}: L1 is off");
            assert_eq!(content_type, "application/json");
            assert!(is_server_timing(&timing, "l2"), "{kind:?}: {timing}");
            assert_eq!(
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(&from_db),
                "{kind:?}: L2 hit"
            );
        }
        let (_, layer, _, _, body) = get_bytes(&http, &with_l1.at("/products/11")).await;
        assert_eq!(layer, "L2");
        assert_eq!(body, from_db, "{kind:?}: L2 hit that fills L1");
        let (_, layer, timing, _, body) = get_bytes(&http, &with_l1.at("/products/11")).await;
        assert_eq!(layer, "L1");
        assert!(is_server_timing(&timing, "l1"), "{kind:?}: {timing}");
        assert_eq!(body, from_db, "{kind:?}: L1 hit");

        // After a PUT, both servers send the new row as the PUT answered it, byte for byte.
        let old = row["price"].as_str().unwrap().to_string();
        let price = other_price(&old);
        let (status, changed) = put(
            &http,
            &with_l1.at("/products/11"),
            &format!(r#"{{"price": "{price}"}}"#),
        )
        .await;
        assert_eq!(status, 200, "{kind:?}: {changed}");
        let expected = serde_json::to_vec(&changed["product"]).unwrap();
        let (_, layer, _, _, body) = get_bytes(&http, &url).await;
        assert_eq!(layer, "L2");
        assert_eq!(
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(&expected),
            "{kind:?}: L2 after PUT"
        );
        // The writer hears its own invalidation too, so its L1 may have dropped the new row.
        let (_, layer, _, _, body) = get_bytes(&http, &with_l1.at("/products/11")).await;
        assert!(layer == "L1" || layer == "L2", "{kind:?}: {layer}");
        assert_eq!(body, expected, "{kind:?}: {layer} after PUT");

        // The counters count each read once, in its layer.
        let metrics = http
            .get(l2_only.at("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let lines: Vec<&str> = metrics.lines().collect();
        for wanted in [
            r#"cache_hits_total{cache_type="l2"} 4"#,
            r#"cache_misses_total{cache_type="l1"} 5"#,
            r#"cache_misses_total{cache_type="l2"} 1"#,
        ] {
            assert!(lines.contains(&wanted), "{kind:?}: no {wanted} in\n{metrics}");
        }
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(r#"http_responses_total{endpoint="/products/:id",status="200"} 5"#)),
            "{kind:?}: {metrics}"
        );
    }
}

// ---------------------------------------------------------------- load: every request accounted for
// `load` counts in each task and merges at the end, and keeps one connection per task: these check
// that nothing is lost or counted twice on the way, at the bench's 50 connections.

fn summed(values: &Value) -> u64 {
    match values {
        Value::Object(map) => map.values().map(|v| v.as_u64().unwrap()).sum(),
        Value::Array(items) => items.iter().map(|v| v["requests"].as_u64().unwrap()).sum(),
        other => panic!("not a map or a list: {other}"),
    }
}

#[tokio::test]
async fn load_at_fifty_connections_accounts_for_every_request_by_status_layer_and_second() {
    for kind in BOTH {
        let db = seeded_database(kind, "serve_load50").await;
        let prefix = TestPrefix::new("serve_load50");
        let server = Server::start(&db, &prefix, &valkey_url(), &[]);
        let dir = tempfile::tempdir().unwrap();
        let args = [
            "load",
            "--url",
            &server.url,
            "--duration",
            "2",
            "--concurrency",
            "50",
            "--ids",
            "1..40",
            "--read-ratio",
            "90",
            "--json",
        ];
        let output = cli_against(dir.path(), &db.url(), &prefix, &valkey_url(), &args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{kind:?}: {}", stderr(&output));
        let run: Value = serde_json::from_str(&stdout(&output)).expect("one JSON document");
        let requests = run["requests"].as_u64().unwrap();
        let reads = run["reads"].as_u64().unwrap();
        assert!(requests > 100 && run["writes"].as_u64().unwrap() > 0, "{kind:?}: {run}");
        assert_eq!(run["failed"], 0, "{kind:?}: {run}");
        assert_eq!(reads + run["writes"].as_u64().unwrap(), requests, "{run}");
        assert_eq!(summed(&run["statuses"]), requests, "{kind:?}: by status: {run}");
        assert_eq!(run["latency"]["count"].as_u64(), Some(requests), "{run}");
        let by_layer: u64 = ["L1", "L2", "DB"]
            .iter()
            .map(|layer| run["by_layer"][layer]["count"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(by_layer, reads, "{kind:?}: every GET is in one layer: {run}");
        let timeline = run["timeline"].as_array().unwrap();
        assert_eq!(
            summed(&run["timeline"]),
            requests,
            "{kind:?}: the seconds add up: {run}"
        );
        let seconds: Vec<u64> = timeline.iter().map(|s| s["second"].as_u64().unwrap()).collect();
        assert!(
            seconds.windows(2).all(|w| w[0] < w[1]),
            "one entry per second: {seconds:?}"
        );
        assert!(seconds.len() >= 2 && seconds.len() <= 3, "{seconds:?}");
        // What the server counted is what was sent: no request lost or counted twice.
        let (_, _, stats) = get(&client(), &server.at("/stats")).await;
        assert_eq!(
            stats["since_start"]["total_requests"], run["reads"],
            "{kind:?}: {stats}\n{run}"
        );
    }
}

/// A hand-written HTTP/1.1 server that answers one request per connection with
/// `Connection: close`, `X-Cache` cycling through L1, L2, DB and an unknown L9,
/// and counts the requests it answered and those that named the right `Host`.
struct OneShotServer {
    url: String,
    answered: Arc<AtomicU64>,
    with_host: Arc<AtomicU64>,
}

impl OneShotServer {
    fn start() -> OneShotServer {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let host = format!("host: {}\r\n", listener.local_addr().unwrap());
        let (answered, with_host) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (counted, hosted) = (Arc::clone(&answered), Arc::clone(&with_host));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (counted, hosted, host) = (Arc::clone(&counted), Arc::clone(&hosted), host.clone());
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_lowercase();
                    let n = counted.load(Ordering::SeqCst);
                    let layer = ["L1", "L2", "DB", "L9"][(n % 4) as usize];
                    let body = "{\"id\":1}";
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nx-cache: {layer}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).is_ok() {
                        if head.contains(&host) {
                            hosted.fetch_add(1, Ordering::SeqCst);
                        }
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        OneShotServer {
            url,
            answered,
            with_host,
        }
    }
}

#[test]
fn load_reconnects_without_failures_when_the_server_closes_each_connection() {
    let server = OneShotServer::start();
    let dir = tempfile::tempdir().unwrap();
    let output = workshop_cli(dir.path())
        .args([
            "load",
            "--url",
            &server.url,
            "--duration",
            "1",
            "--concurrency",
            "3",
            "--read-ratio",
            "100",
            "--ids",
            "1..5",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let run: Value = serde_json::from_str(&stdout(&output)).expect("one JSON document");
    let requests = run["requests"].as_u64().unwrap();
    assert!(requests > 20, "{run}");
    assert_eq!(
        run["failed"], 0,
        "a closed keep-alive connection is replaced, no failure: {run}"
    );
    assert_eq!(server.answered.load(Ordering::SeqCst), requests, "{run}");
    assert_eq!(
        server.with_host.load(Ordering::SeqCst),
        requests,
        "every request names its Host"
    );
    assert_eq!(run["statuses"]["200"].as_u64(), Some(requests), "{run}");
    let layers: Vec<&str> = run["by_layer"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        layers,
        ["DB", "L1", "L2", "L9"],
        "an unknown X-Cache value is kept by name: {run}"
    );
    let by_layer: u64 = run["by_layer"]
        .as_object()
        .unwrap()
        .values()
        .map(|layer| layer["count"].as_u64().unwrap())
        .sum();
    assert_eq!(by_layer, requests, "{run}");
    assert_eq!(summed(&run["timeline"]), requests, "{run}");
}

#[test]
fn load_counts_every_request_to_a_closed_port_as_failed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let output = workshop_cli(dir.path())
        .args(["load", "--url", &url, "--duration", "1", "--concurrency", "2", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let run: Value = serde_json::from_str(&stdout(&output)).expect("one JSON document");
    let requests = run["requests"].as_u64().unwrap();
    assert!(requests > 0, "{run}");
    assert_eq!(run["failed"].as_u64(), Some(requests), "{run}");
    assert_eq!(run["statuses"], json!({}), "{run}");
    assert_eq!(run["by_layer"], json!({}), "{run}");
    assert_eq!(
        summed(&run["timeline"]),
        requests,
        "failures have their seconds too: {run}"
    );
}
