//! Shared by the integration tests: a database per test, a key prefix per
//! test, and the built binary with a clean environment. Everything a test
//! creates is removed when its guard drops, also when the test fails.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;
use sqlx::Connection;
use workshop_cli::config::{DatabaseKind, DatabaseTarget, Source};

pub const DEFAULT_MYSQL_URL: &str = "mysql://workshop:workshop@127.0.0.1:3306/workshop";
pub const DEFAULT_POSTGRES_URL: &str = "postgres://workshop:workshop@127.0.0.1:5432/workshop";
pub const DEFAULT_VALKEY_URL: &str = "redis://127.0.0.1:6379";

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn admin_url(kind: DatabaseKind) -> String {
    match kind {
        DatabaseKind::MySql => std::env::var("WORKSHOP_TEST_MYSQL_URL").unwrap_or_else(|_| DEFAULT_MYSQL_URL.into()),
        DatabaseKind::Postgres => {
            std::env::var("WORKSHOP_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into())
        }
    }
}

pub fn valkey_url() -> String {
    std::env::var("WORKSHOP_TEST_VALKEY_URL").unwrap_or_else(|_| DEFAULT_VALKEY_URL.into())
}

/// The first node of a Valkey URL that may name several (`redis://a:7001,b:7002`).
fn first_node(url: &str) -> &str {
    url.split(',').next().unwrap_or(url)
}

/// A test's own connection to the Valkey at `url`, a single node or a cluster
/// (asked: `cluster_enabled:1`); commands on a key go to the key's node.
pub enum TestValkey {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

/// Whether the node at `url` belongs to a cluster.
pub fn is_cluster(url: &str) -> bool {
    let Ok(client) = redis::Client::open(first_node(url)) else {
        return false;
    };
    let Ok(mut conn) = client.get_connection() else {
        return false;
    };
    let info: String = redis::cmd("INFO").arg("cluster").query(&mut conn).unwrap_or_default();
    info.lines().any(|line| line.trim() == "cluster_enabled:1")
}

pub fn valkey_connection(url: &str) -> TestValkey {
    if is_cluster(url) {
        let client = redis::cluster::ClusterClient::new(vec![first_node(url)]).expect("cluster url");
        TestValkey::Cluster(Box::new(
            client.get_connection().expect("connect to the Valkey cluster"),
        ))
    } else {
        let client = redis::Client::open(first_node(url)).expect("valkey url");
        TestValkey::Single(client.get_connection().expect("connect to Valkey"))
    }
}

/// The URLs of the nodes that hold keys: every primary of a cluster, or the one node.
pub fn primaries(url: &str) -> Vec<String> {
    let first = first_node(url).to_string();
    if !is_cluster(url) {
        return vec![first];
    }
    let Ok(client) = redis::Client::open(first.as_str()) else {
        return vec![first];
    };
    let Ok(mut conn) = client.get_connection() else {
        return vec![first];
    };
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).unwrap_or_default();
    workshop_cli::cache::cluster::parse_cluster_nodes(&nodes)
        .into_iter()
        .filter(|node| node.role == workshop_cli::cache::cluster::NodeRole::Primary && !node.slots.is_empty())
        .map(|node| format!("redis://{}:{}", node.host, node.port))
        .collect()
}

impl redis::ConnectionLike for TestValkey {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<redis::Value> {
        match self {
            TestValkey::Single(c) => c.req_packed_command(cmd),
            TestValkey::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        match self {
            TestValkey::Single(c) => c.req_packed_commands(cmd, offset, count),
            TestValkey::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        match self {
            TestValkey::Single(c) => c.req_command(cmd),
            TestValkey::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            TestValkey::Single(c) => c.get_db(),
            TestValkey::Cluster(c) => c.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            TestValkey::Single(c) => c.check_connection(),
            TestValkey::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            TestValkey::Single(c) => c.is_open(),
            TestValkey::Cluster(c) => c.is_open(),
        }
    }
}

/// A name unique to this test run: `wt_{label}_{pid}_{n}`.
pub fn unique_name(label: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    format!("wt_{label}_{}_{n}", std::process::id())
}

/// A database of its own for one test; dropped with the guard.
pub struct TestDatabase {
    pub kind: DatabaseKind,
    pub name: String,
    pub target: DatabaseTarget,
}

impl TestDatabase {
    pub async fn create(kind: DatabaseKind, label: &str) -> TestDatabase {
        let admin = DatabaseTarget::parse(&admin_url(kind), Source::Flag).expect("test database URL");
        let name = unique_name(label);
        execute_admin(kind, &admin.connect_url(), &format!("CREATE DATABASE {name}")).await;
        TestDatabase {
            kind,
            target: admin.with_database(&name),
            name,
        }
    }

    /// The URL with password, for `DATABASE_URL` of a spawned binary.
    pub fn url(&self) -> String {
        self.target.connect_url()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let kind = self.kind;
        let admin = admin_url(kind);
        let statement = match kind {
            DatabaseKind::MySql => format!("DROP DATABASE IF EXISTS {}", self.name),
            DatabaseKind::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        };
        // Drop runs inside or outside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(execute_admin(kind, &normalise(&admin), &statement));
            Ok::<(), std::io::Error>(())
        })
        .join();
    }
}

fn normalise(url: &str) -> String {
    DatabaseTarget::parse(url, Source::Flag)
        .map(|t| t.connect_url())
        .unwrap_or_else(|_| url.to_string())
}

async fn execute_admin(kind: DatabaseKind, url: &str, statement: &str) {
    match kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(url)
                .await
                .expect("connect to MariaDB (is `just up` done?)");
            sqlx::raw_sql(statement).execute(&mut conn).await.expect(statement);
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .expect("connect to PostgreSQL (is `just up` done?)");
            sqlx::raw_sql(statement).execute(&mut conn).await.expect(statement);
        }
    }
}

/// A Valkey key prefix of its own for one test; its keys are deleted with the guard.
pub struct TestPrefix {
    pub prefix: String,
    url: String,
}

impl TestPrefix {
    pub fn new(label: &str) -> TestPrefix {
        TestPrefix::on(label, &valkey_url())
    }

    pub fn on(label: &str, url: &str) -> TestPrefix {
        TestPrefix {
            prefix: format!("{}:", unique_name(label)),
            url: url.to_string(),
        }
    }

    /// `{prefix}{engine}-{hash}:`: where the binary keeps `db`'s keys under this prefix.
    pub fn source(&self, db: &TestDatabase) -> String {
        workshop_cli::cache::KeyScheme::new(&self.prefix, &db.target)
            .source_prefix()
            .to_string()
    }

    /// Every key under this prefix (SCAN on every primary of a cluster).
    pub fn keys(&self) -> Vec<String> {
        primaries(&self.url)
            .iter()
            .flat_map(|node| self.keys_on(node))
            .collect()
    }

    fn keys_on(&self, node: &str) -> Vec<String> {
        let Ok(client) = redis::Client::open(node) else {
            return Vec::new();
        };
        let Ok(mut conn) = client.get_connection() else {
            return Vec::new();
        };
        let pattern = format!("{}*", self.prefix);
        redis::Commands::scan_match::<_, String>(&mut conn, pattern)
            .map(|iter| iter.filter_map(Result::ok).collect())
            .unwrap_or_default()
    }
}

impl Drop for TestPrefix {
    fn drop(&mut self) {
        // Each node deletes the keys it holds (a cluster node refuses others').
        for node in primaries(&self.url) {
            let keys = self.keys_on(&node);
            if keys.is_empty() {
                continue;
            }
            if let Ok(client) = redis::Client::open(node.as_str()) {
                if let Ok(mut conn) = client.get_connection() {
                    for key in keys {
                        let _: redis::RedisResult<u64> = redis::Commands::del(&mut conn, key);
                    }
                }
            }
        }
    }
}

/// The built binary, run in `dir` (no `.env` there unless the test writes
/// one) with every workshop variable removed from its environment.
pub fn workshop_cli(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_workshop-cli"));
    command.current_dir(dir).env("NO_COLOR", "1");
    for var in [
        "DATABASE_URL",
        "VALKEY_URL",
        "CACHE_TTL",
        "CACHE_TTL_JITTER",
        "WORKSHOP_KEY_PREFIX",
        "WORKSHOP_QUERY_TIMEOUT",
        "WORKSHOP_CACHE_TIMEOUT",
        "DB_ENGINE",
        "DB_HOST",
        "DB_PORT",
        "DB_USER",
        "DB_PASSWORD",
        "DB_NAME",
        "CACHE_HOST",
        "CACHE_PORT",
    ] {
        command.env_remove(var);
    }
    command
}

/// The built binary in `dir`, pointed at a database, a Valkey and a key
/// prefix (by environment, as a user would), with `args`.
pub fn cli_against(dir: &Path, database_url: &str, prefix: &TestPrefix, valkey_url: &str, args: &[&str]) -> Command {
    let mut command = workshop_cli(dir);
    command
        .env("DATABASE_URL", database_url)
        .env("VALKEY_URL", valkey_url)
        .env("WORKSHOP_KEY_PREFIX", &prefix.prefix)
        .args(args);
    command
}

/// What a run of the binary left: the exit code, stdout parsed as JSON
/// (`Null` when it is not JSON) and both streams as text.
pub struct JsonRun {
    pub code: Option<i32>,
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl JsonRun {
    pub fn from_output(output: &Output) -> JsonRun {
        let text = stdout(output);
        JsonRun {
            code: output.status.code(),
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            stdout: text,
            stderr: stderr(output),
        }
    }
}

/// Runs `args` (the subcommand first) with `--json` after them, in an empty folder.
pub fn run_json(db: &TestDatabase, prefix: &TestPrefix, valkey_url: &str, args: &[&str]) -> JsonRun {
    let dir = tempfile::tempdir().expect("temporary folder");
    let output = cli_against(dir.path(), &db.url(), prefix, valkey_url, args)
        .arg("--json")
        .output()
        .expect("run workshop-cli");
    JsonRun::from_output(&output)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Both databases, for tests that must pass on each.
pub const BOTH: [DatabaseKind; 2] = [DatabaseKind::MySql, DatabaseKind::Postgres];

/// Seeds a fresh per-test database at a small scale through the binary.
pub async fn seeded_database(kind: DatabaseKind, label: &str) -> TestDatabase {
    let db = TestDatabase::create(kind, label).await;
    seed(&db);
    db
}

/// Seeds `db` (created empty) at a small scale through the binary.
pub fn seed(db: &TestDatabase) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let output = workshop_cli(dir.path())
        .env("DATABASE_URL", db.url())
        .args(["seed", "--scale", "0.02"])
        .output()
        .expect("run workshop-cli seed");
    assert!(output.status.success(), "seed failed: {}", stderr(&output));
}

/// A `valkey-server` of the test's own on a free port, to stop and restart.
pub struct PrivateValkey {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateValkey {
    pub fn start() -> PrivateValkey {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut server = PrivateValkey {
            port,
            dir: tempfile::tempdir().expect("temporary folder"),
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn binary() -> String {
        std::env::var("WORKSHOP_VALKEY_SERVER").unwrap_or_else(|_| {
            let local = concat!(env!("CARGO_MANIFEST_DIR"), "/.services/bin/valkey-server");
            if Path::new(local).exists() {
                local.to_string()
            } else {
                "valkey-server".to_string()
            }
        })
    }

    /// Starts (again) on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new(Self::binary())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start valkey-server (set WORKSHOP_VALKEY_SERVER or run `just up`)");
        self.child = Some(child);
        for _ in 0..200 {
            if let Ok(client) = redis::Client::open(self.url()) {
                if let Ok(mut conn) = client.get_connection() {
                    if redis::cmd("PING").query::<String>(&mut conn).is_ok() {
                        return;
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("valkey-server on port {} did not answer", self.port);
    }

    /// The server's process id, to pause it (SIGSTOP) like a hung host.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Kills the server at once (no shutdown courtesy), like a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server hangs (connections stay open, nothing answers),
    /// as a frozen VM or a stuck disk would make it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`PrivateValkey::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let pid = self.child.as_ref().expect("the server runs").id().to_string();
        let status = Command::new("kill").args([which, &pid]).status().expect("run kill");
        assert!(status.success(), "kill {which} {pid}");
    }

    /// Bytes clients have sent that the server has not read yet (the receive
    /// queues of its connections, from /proc/net/tcp): while it is paused,
    /// every command a client sends shows here.
    pub fn unread_bytes(&self) -> u64 {
        let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let port = format!(":{:04X}", self.port);
        text.lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // local_address ends with the server's port; st 01 = established.
                let ours = fields.get(1)?.ends_with(&port) && *fields.get(3)? == "01";
                let rx = fields.get(4)?.split(':').nth(1)?;
                ours.then(|| u64::from_str_radix(rx, 16).ok()).flatten()
            })
            .sum()
    }

    /// After [`PrivateValkey::kill`]: listens on the server's port until a
    /// client tries to reconnect (so it has seen the outage), then hangs up
    /// on it. False when nobody knocked within `limit`.
    pub fn wait_for_a_reconnect(&self, limit: std::time::Duration) -> bool {
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).expect("bind the dead server's port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        wait_until(limit, || listener.accept().is_ok())
    }

    /// `keyspace_hits` from INFO stats: GETs that found their key.
    pub fn keyspace_hits(&self) -> u64 {
        let Ok(client) = redis::Client::open(self.url()) else {
            return 0;
        };
        let Ok(mut conn) = client.get_connection() else {
            return 0;
        };
        let info: String = redis::cmd("INFO").arg("stats").query(&mut conn).unwrap_or_default();
        info.lines()
            .find_map(|line| line.strip_prefix("keyspace_hits:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Runs one command on the server, e.g. CONFIG SET.
    pub fn command(&self, args: &[&str]) {
        let client = redis::Client::open(self.url()).expect("url");
        let mut conn = client.get_connection().expect("connect to the private valkey");
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        let _: redis::Value = cmd.query(&mut conn).expect("valkey command");
    }
}

impl Drop for PrivateValkey {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `condition` every 10 ms until it holds (true) or `limit` passes (false).
pub fn wait_until(limit: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Waits until `bytes()` has stayed the same (and above zero) for `quiet`:
/// a paused server's client has stopped sending. Returns that value.
pub fn wait_until_quiet(
    limit: std::time::Duration,
    quiet: std::time::Duration,
    bytes: impl Fn() -> u64,
) -> Option<u64> {
    let deadline = std::time::Instant::now() + limit;
    let mut last = bytes();
    let mut since = std::time::Instant::now();
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        let now = bytes();
        if now != last {
            last = now;
            since = std::time::Instant::now();
        } else if now > 0 && since.elapsed() >= quiet {
            return Some(now);
        }
    }
    None
}

/// The workshop's connections to `db`, as the server lists them.
pub async fn connections_to(db: &TestDatabase) -> Vec<i64> {
    let admin = DatabaseTarget::parse(&admin_url(db.kind), Source::Flag)
        .unwrap()
        .connect_url();
    match db.kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&admin).await.unwrap();
            sqlx::query_scalar("SELECT CAST(id AS SIGNED) FROM information_schema.processlist WHERE db = ?")
                .bind(&db.name)
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::query_scalar("SELECT pid::bigint FROM pg_stat_activity WHERE datname = $1 AND usename = current_user AND pid <> pg_backend_pid()")
                .bind(&db.name)
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
    }
}

/// Takes the database away from its clients: on PostgreSQL it stops taking
/// connections and its sessions are ended; on MariaDB the sessions are
/// killed. Returns how many sessions were ended.
pub async fn take_away(db: &TestDatabase) -> usize {
    let admin = DatabaseTarget::parse(&admin_url(db.kind), Source::Flag)
        .unwrap()
        .connect_url();
    let sessions = connections_to(db).await;
    match db.kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&admin).await.unwrap();
            for id in &sessions {
                // KILL takes no placeholder; the id is a number the server gave.
                let _ = sqlx::raw_sql(&format!("KILL CONNECTION {id}")).execute(&mut conn).await;
            }
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::raw_sql(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", db.name))
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND usename = current_user AND pid <> pg_backend_pid()")
                .bind(&db.name)
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
    sessions.len()
}

/// Undoes [`take_away`]: PostgreSQL takes connections to `db` again (on
/// MariaDB the killed sessions are simply gone, new ones may connect).
pub async fn give_back(db: &TestDatabase) {
    if db.kind == DatabaseKind::Postgres {
        let admin = DatabaseTarget::parse(&admin_url(db.kind), Source::Flag)
            .unwrap()
            .connect_url();
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::raw_sql(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", db.name))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// A Valkey Cluster of its own for one test: 3 primaries + 3 replicas on
/// free ports (and free cluster-bus ports), created with `redis-cli --cluster
/// create`, a 1 s node timeout so a failover takes a few seconds, DEBUG
/// allowed on loopback; every node is killed when it drops.
pub struct PrivateCluster {
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
    children: Vec<std::process::Child>,
}

impl PrivateCluster {
    pub fn start() -> PrivateCluster {
        // Held open together so no two of the twelve are the same port.
        let listeners: Vec<std::net::TcpListener> = (0..12)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        let free: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
        drop(listeners);
        let dir = tempfile::tempdir().expect("temporary folder");
        let mut cluster = PrivateCluster {
            ports: free[..6].to_vec(),
            _dir: dir,
            children: Vec::new(),
        };
        for (i, port) in free[..6].iter().enumerate() {
            let node_dir = cluster._dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let child = Command::new(PrivateValkey::binary())
                .args(["--port", &port.to_string(), "--cluster-port", &free[6 + i].to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                // A replica may take over however long ago it last heard from its primary:
                // right after creation Valkey 9 otherwise refuses ("disconnected for longer than allowed").
                .args(["--cluster-replica-validity-factor", "0"])
                .args(["--enable-debug-command", "local"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start valkey-server (set WORKSHOP_VALKEY_SERVER or run `just up`)");
            cluster.children.push(child);
        }
        for port in &cluster.ports {
            wait_for(|| valkey_info(*port, "server").is_some(), "a cluster node to answer");
        }
        let nodes: Vec<String> = cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("run redis-cli (redis-tools; scripts/services.sh up installs it)");
        assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stdout));
        cluster.wait_until_ok();
        cluster
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.ports[0])
    }

    /// Every node says `cluster_state:ok` and knows all six.
    pub fn wait_until_ok(&self) {
        wait_for(
            || {
                self.ports.iter().all(|port| {
                    cluster_info(*port)
                        .is_some_and(|info| info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:6"))
                })
            },
            "cluster_state:ok on every node",
        );
    }

    /// `role` from INFO replication of the node on `port` ("master" or "slave").
    pub fn role(&self, port: u16) -> String {
        valkey_info(port, "replication")
            .and_then(|info| {
                info.lines()
                    .find_map(|line| line.trim().strip_prefix("role:").map(str::to_string))
            })
            .unwrap_or_default()
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn valkey_info(port: u16, section: &str) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(std::time::Duration::from_secs(1))
        .ok()?;
    redis::cmd("INFO").arg(section).query(&mut conn).ok()
}

fn cluster_info(port: u16) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(std::time::Duration::from_secs(1))
        .ok()?;
    redis::cmd("CLUSTER").arg("INFO").query(&mut conn).ok()
}

/// Polls `condition` every 50 ms for up to 30 s; panics naming `what`.
fn wait_for(condition: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "waited 30 s for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
