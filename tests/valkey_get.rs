//! Issue 13: the GET pipeline (`cache::pipelined`), the hot read's own connection on a
//! single node. Every reply reaches the request that sent it, whatever the tasks,
//! values, outages and timeouts around it; on a cluster the same calls go through
//! redis-rs, and these tests check that path the same way.

mod support;

use std::time::{Duration, Instant};

use support::{is_cluster, valkey_connection, valkey_url, PrivateCluster, PrivateValkey, TestPrefix};
use workshop_cli::cache::{CacheError, Valkey};
use workshop_cli::config::{Source, ValkeyTarget};

async fn connect(url: &str, cache_timeout: Duration) -> Valkey {
    let mut target = ValkeyTarget::parse(url, Source::Flag).unwrap();
    target.command_timeout = cache_timeout;
    Valkey::connect(&target, Duration::from_millis(800)).await.unwrap()
}

/// The value task `task` owns: each a different length and content, some binary.
fn value_of(task: usize) -> Vec<u8> {
    match task {
        0 => Vec::new(),
        1 => b"line\r\nbreak\r\n$5\r\n*2\r\n".to_vec(),
        2 => (0..=255u8).collect(),
        3 => vec![b'x'; 1 << 20],
        _ => format!("{{\"task\":{task},\"pad\":\"{}\"}}", "p".repeat(task * 37)).into_bytes(),
    }
}

#[tokio::test]
async fn fifty_tasks_on_one_connection_each_read_their_own_keys_value() {
    let url = valkey_url();
    let prefix = TestPrefix::new("pipeget");
    let valkey = connect(&url, Duration::from_secs(2)).await;
    assert!(valkey.reads_through_get_pipeline());
    if is_cluster(&url) {
        assert_eq!(valkey.directly_mapped_slots(), 16384);
    }
    let mut conn = valkey_connection(&url);
    for task in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("{}k{task}", prefix.prefix))
            .arg(value_of(task))
            .arg("EX")
            .arg(120)
            .query(&mut conn)
            .unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..50usize {
        let valkey = valkey.clone();
        let key = format!("{}k{task}", prefix.prefix);
        let missing = format!("{}missing{task}", prefix.prefix);
        tasks.spawn(async move {
            let want = value_of(task);
            for round in 0..200 {
                let got = valkey.get_bytes(&key).await.unwrap();
                assert_eq!(got.as_deref(), Some(&want[..]), "task {task}, round {round}");
                if round % 50 == 0 {
                    assert_eq!(valkey.get_bytes(&missing).await.unwrap(), None, "task {task}");
                }
            }
            task
        });
    }
    let mut finished = 0;
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
        finished += 1;
    }
    assert_eq!(finished, 50);
    // `get` is the same read as text; a value that is not UTF-8 is refused, not mangled.
    let text = valkey.get(&format!("{}k7", prefix.prefix)).await.unwrap().unwrap();
    assert_eq!(text.as_bytes(), value_of(7));
    assert!(valkey.get(&format!("{}k2", prefix.prefix)).await.is_err());
}

#[tokio::test]
async fn an_error_reply_fails_that_read_only() {
    let url = valkey_url();
    let prefix = TestPrefix::new("pipegeterr");
    let valkey = connect(&url, Duration::from_secs(2)).await;
    let mut conn = valkey_connection(&url);
    let list = format!("{}list", prefix.prefix);
    let plain = format!("{}plain", prefix.prefix);
    let _: () = redis::cmd("RPUSH").arg(&list).arg("a").query(&mut conn).unwrap();
    let _: () = redis::cmd("SET").arg(&plain).arg("v").query(&mut conn).unwrap();
    let (wrong, right) = tokio::join!(valkey.get_bytes(&list), valkey.get_bytes(&plain));
    match wrong {
        Err(CacheError::Command { command: "GET", reason }) => assert!(reason.contains("WRONGTYPE"), "{reason}"),
        other => panic!("GET of a list: {other:?}"),
    }
    assert_eq!(right.unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(
        valkey.breaker_counts().openings,
        0,
        "an error reply is an answer, not an outage"
    );
}

#[tokio::test]
async fn a_paused_server_times_reads_out_and_late_replies_never_reach_later_reads() {
    let server = PrivateValkey::start();
    let valkey = connect(&server.url(), Duration::from_millis(300)).await;
    assert!(valkey.reads_through_get_pipeline());
    let mut conn = valkey_connection(&server.url());
    let _: () = redis::cmd("SET").arg("a").arg("value of a").query(&mut conn).unwrap();
    let _: () = redis::cmd("SET").arg("b").arg("value of b").query(&mut conn).unwrap();
    assert_eq!(valkey.get("a").await.unwrap().as_deref(), Some("value of a"));

    server.pause();
    let started = Instant::now();
    let timed_out = valkey.get("a").await;
    let waited = started.elapsed();
    server.resume();
    assert!(
        matches!(timed_out, Err(CacheError::TimedOut { command: "GET", .. })),
        "{timed_out:?}"
    );
    assert!(
        waited >= Duration::from_millis(290),
        "gave up after {waited:?}, before the 300 ms timeout"
    );
    assert!(
        waited < Duration::from_secs(2),
        "waited {waited:?} for a 300 ms timeout"
    );

    // The reply to the timed-out GET of `a` arrives now; it must be dropped, not
    // handed to the next request.
    let mut read = None;
    for _ in 0..50 {
        match valkey.get("b").await {
            Ok(value) => {
                read = Some(value);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(read.flatten().as_deref(), Some("value of b"));
    for _ in 0..20 {
        assert_eq!(valkey.get("a").await.unwrap().as_deref(), Some("value of a"));
        assert_eq!(valkey.get("b").await.unwrap().as_deref(), Some("value of b"));
    }
}

#[tokio::test]
async fn a_killed_server_fails_reads_at_once_and_a_restarted_one_is_read_again() {
    let mut server = PrivateValkey::start();
    let valkey = connect(&server.url(), Duration::from_secs(1)).await;
    let mut conn = valkey_connection(&server.url());
    let _: () = redis::cmd("SET").arg("k").arg("before").query(&mut conn).unwrap();
    assert_eq!(valkey.get("k").await.unwrap().as_deref(), Some("before"));

    server.kill();
    let started = Instant::now();
    assert!(valkey.get("k").await.is_err());
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "a refused read took {:?}",
        started.elapsed()
    );

    server.restart();
    let mut conn = valkey_connection(&server.url());
    let _: () = redis::cmd("SET").arg("k").arg("after").query(&mut conn).unwrap();
    // The breaker may hold reads back for its cool-down (up to 4 s) after the failures.
    let mut read = None;
    for _ in 0..80 {
        if let Ok(value) = valkey.get("k").await {
            read = value;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(read.as_deref(), Some("after"));
}

#[tokio::test]
async fn the_get_connection_logs_in_and_reads_the_urls_database() {
    let server = PrivateValkey::start();
    let mut admin = valkey_connection(&server.url());
    let _: () = redis::cmd("SELECT").arg(3).query(&mut admin).unwrap();
    let _: () = redis::cmd("SET")
        .arg("where")
        .arg("database 3")
        .query(&mut admin)
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("reader")
        .arg("on")
        .arg(">s3cret-pw")
        .arg("~*")
        .arg("+@all")
        .query(&mut admin)
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("default-pw")
        .query(&mut admin)
        .unwrap();

    let url = format!("redis://reader:s3cret-pw@127.0.0.1:{}/3", server.port);
    let valkey = connect(&url, Duration::from_secs(1)).await;
    assert!(valkey.reads_through_get_pipeline());
    assert_eq!(valkey.get("where").await.unwrap().as_deref(), Some("database 3"));
    let default_user = format!("redis://:default-pw@127.0.0.1:{}/3", server.port);
    let valkey = connect(&default_user, Duration::from_secs(1)).await;
    assert_eq!(valkey.get("where").await.unwrap().as_deref(), Some("database 3"));

    let mut target = ValkeyTarget::parse(
        &format!("redis://reader:wrong@127.0.0.1:{}/3", server.port),
        Source::Flag,
    )
    .unwrap();
    target.command_timeout = Duration::from_secs(1);
    let refused = Valkey::connect(&target, Duration::from_millis(800)).await;
    assert!(
        matches!(refused, Err(CacheError::LoginRefused { .. })),
        "{:?}",
        refused.err()
    );
}

/// `CLUSTER NODES` of the node on `port`, parsed.
fn cluster_nodes(port: u16) -> Vec<workshop_cli::cache::cluster::ClusterNode> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut conn = client.get_connection().unwrap();
    let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).unwrap();
    workshop_cli::cache::cluster::parse_cluster_nodes(&text)
}

#[tokio::test]
async fn on_a_cluster_reads_go_to_the_keys_primary_and_follow_a_failover_without_an_error() {
    let cluster = PrivateCluster::start();
    let valkey = connect(&cluster.url(), Duration::from_secs(2)).await;
    assert!(valkey.reads_through_get_pipeline());
    assert_eq!(valkey.directly_mapped_slots(), 16384);
    let keys: Vec<String> = (0..300).map(|n| format!("pipeget:{n}")).collect();
    for key in &keys {
        valkey
            .set_with_ttl(key, &format!("value of {key}"), Duration::from_secs(120))
            .await
            .unwrap();
    }
    for key in &keys {
        assert_eq!(valkey.get(key).await.unwrap(), Some(format!("value of {key}")));
    }
    let nodes = cluster_nodes(cluster.ports[0]);
    let (host, port) = valkey.direct_node_of(&keys[0]).expect("a node for the key");
    let primary = nodes.iter().find(|n| n.host == host && n.port == port).unwrap();
    assert!(
        primary.role == workshop_cli::cache::cluster::NodeRole::Primary,
        "{primary:?}"
    );
    let replica = nodes
        .iter()
        .find(|n| n.replica_of.as_deref() == Some(primary.id.as_str()))
        .expect("the primary's replica");

    // A manual failover: the replica takes the slots over, the old primary answers MOVED.
    // (A plain connection to that one node: the tests' helper would route it anywhere.)
    let client = redis::Client::open(format!("redis://127.0.0.1:{}", replica.port)).unwrap();
    let mut conn = client.get_connection().unwrap();
    let _: () = redis::cmd("CLUSTER").arg("FAILOVER").query(&mut conn).unwrap();
    assert!(support::wait_until(Duration::from_secs(20), || cluster
        .role(replica.port)
        == "master"));
    assert!(support::wait_until(Duration::from_secs(20), || cluster.role(port) == "slave"));
    for round in 0..3 {
        for key in &keys {
            let read = valkey.get(key).await;
            assert_eq!(read.unwrap(), Some(format!("value of {key}")), "round {round}, {key}");
        }
    }
    assert_eq!(valkey.breaker_counts().openings, 0);
    // The slot map followed: the key's GETs go to the new primary.
    // (Waited for on the runtime: the refresh is a task of its own.)
    let new_primary = Some((replica.host.clone(), replica.port));
    let mut moved = false;
    for _ in 0..100 {
        moved = valkey.direct_node_of(&keys[0]) == new_primary;
        if moved {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(moved, "the map still says {:?}", valkey.direct_node_of(&keys[0]));
    assert_eq!(valkey.directly_mapped_slots(), 16384);
    assert_eq!(
        valkey.get(&keys[0]).await.unwrap(),
        Some(format!("value of {}", keys[0]))
    );
}

#[test]
fn a_connection_kept_past_the_runtime_that_opened_it_still_reads() {
    let url = valkey_url();
    let prefix = TestPrefix::new("pipegetrt");
    let key = format!("{}k", prefix.prefix);
    let mut conn = valkey_connection(&url);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("kept")
        .arg("EX")
        .arg(60)
        .query(&mut conn)
        .unwrap();
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let valkey = first.block_on(connect(&url, Duration::from_millis(500)));
    assert_eq!(first.block_on(valkey.get(&key)).unwrap().as_deref(), Some("kept"));
    drop(first); // its tasks (the GET pipeline's reader, writer and watchdog) end with it
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let read = second.block_on(async { tokio::time::timeout(Duration::from_secs(5), valkey.get(&key)).await });
    assert_eq!(read.expect("the read ended").unwrap().as_deref(), Some("kept"));
}
