//! Exercise 14 and cluster mode, against Valkey Clusters of the tests' own
//! (tests/support `PrivateCluster`): the topology, the key layout, hash tags
//! and CROSSSLOT, and a primary frozen under load.

mod support;

use serde_json::Value;
use support::{
    cli_against, run_json, seeded_database, workshop_cli, JsonRun, PrivateCluster, PrivateValkey, TestPrefix, BOTH,
};

fn run_on(cluster_url: &str, db: &support::TestDatabase, prefix: &TestPrefix, args: &[&str]) -> JsonRun {
    run_json(db, prefix, cluster_url, args)
}

#[tokio::test]
async fn check_env_and_the_layout_show_every_primary_its_slots_and_the_crossslot_reply() {
    let cluster = PrivateCluster::start();
    for kind in BOTH {
        let db = seeded_database(kind, "cluster_layout").await;
        let prefix = TestPrefix::on("cluster_layout", &cluster.url());
        // Several nodes in VALKEY_URL select the cluster client.
        let several = format!("redis://127.0.0.1:{},127.0.0.1:{}", cluster.ports[0], cluster.ports[1]);
        let check = run_on(&several, &db, &prefix, &["check-env"]);
        assert_eq!(check.code, Some(0), "{kind:?}: {}", check.stderr);
        let checks = check.json["checks"].as_array().unwrap();
        let detail = |name: &str| -> Vec<String> {
            checks
                .iter()
                .filter(|c| c["name"] == name)
                .map(|c| c["detail"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(detail("Valkey cluster"), ["cluster_state:ok · 3 primaries, 3 replicas"]);
        let primaries = detail("  primary");
        assert_eq!(primaries.len(), 3, "{primaries:?}");
        assert!(
            primaries
                .iter()
                .any(|p| p.contains(" slots 0-5460 · replicas 127.0.0.1:")),
            "{primaries:?}"
        );

        let run = run_on(
            &cluster.url(),
            &db,
            &prefix,
            &["cluster", "--no-failover", "--keys", "200"],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let layout = run.json["layout"].as_array().unwrap();
        assert_eq!(layout.len(), 3);
        let keys: Vec<u64> = layout.iter().map(|n| n["keys"].as_u64().unwrap()).collect();
        // 200 keys spread by their own names: every primary holds some, together all.
        assert_eq!(keys.iter().sum::<u64>(), 200, "{keys:?}");
        assert!(keys.iter().all(|n| *n > 20), "{keys:?}");
        assert!(layout.iter().all(|n| n["memory_bytes"].as_u64().unwrap() > 0));
        let slots: u64 = layout.iter().map(|n| n["slots"].as_u64().unwrap()).sum();
        assert_eq!(slots, 16384);
        // The keys the binary reports are the keys the nodes hold.
        assert_eq!(prefix.keys().len(), 200);

        let demo = &run.json["hash_tag"];
        let slot = |list: &str, i: usize| demo[list][i]["slot"].as_u64().unwrap();
        assert_ne!(slot("plain", 0), slot("plain", 1));
        assert_eq!(slot("tagged", 0), slot("tagged", 1));
        assert!(
            demo["cross_slot_reply"].as_str().unwrap().contains("CROSSSLOT"),
            "{}",
            demo["cross_slot_reply"]
        );
        assert_eq!(demo["tagged_reply"], "OK");
        assert!(run.json["failover"].is_null());

        // stats sums INFO over the primaries and shows each one's share.
        let stats = run_on(&cluster.url(), &db, &prefix, &["stats", "--requests", "300", "--no-l1"]);
        assert_eq!(stats.code, Some(0), "{kind:?}: {}", stats.stderr);
        let view = &stats.json["valkey"];
        let nodes = view["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 3, "{view}");
        let hits: u64 = nodes.iter().map(|n| n["keyspace_hits"].as_u64().unwrap()).sum();
        assert_eq!(Some(hits), view["keyspace_hits"].as_u64(), "{view}");
        assert!(
            nodes
                .iter()
                .filter(|n| n["keyspace_hits"].as_u64().unwrap() > 0)
                .count()
                >= 2,
            "{view}"
        );
    }
}

#[tokio::test]
async fn a_primary_frozen_under_load_fails_over_with_no_failed_reads_and_is_restored() {
    let cluster = PrivateCluster::start();
    for kind in BOTH {
        let db = seeded_database(kind, "cluster_failover").await;
        let prefix = TestPrefix::on("cluster_failover", &cluster.url());
        let run = run_on(
            &cluster.url(),
            &db,
            &prefix,
            &[
                "cluster",
                "--keys",
                "100",
                "--concurrency",
                "10",
                // Eight seconds after the node wakes: a busy machine's clients still
                // settle on the new primary and show a full second of hits again.
                "--duration",
                "16",
                // Well past the 1 s node timeout, so a busy machine still promotes a replica in time.
                "--freeze",
                "6",
            ],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let failover: &Value = &run.json["failover"];
        let totals = &failover["totals"];
        assert_eq!(totals["failed"], 0, "{kind:?}: {failover}");
        // The fault happened: reads of the frozen primary's slots went to the database.
        assert!(totals["database_fallback"].as_u64().unwrap() > 0, "{failover}");
        let stopped = failover["stopped_at_ms"].as_u64().unwrap();
        let promoted = failover["promoted_at_ms"]
            .as_u64()
            .unwrap_or_else(|| panic!("a replica was promoted: {failover}"));
        assert!(promoted > stopped, "{failover}");
        let back = failover["hit_rate_back_at_second"]
            .as_u64()
            .expect("the hit rate came back");
        assert!(back * 1000 + 1000 > promoted, "{failover}");
        let hits_after: u64 = failover["seconds"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["second"].as_u64().unwrap() >= back)
            .map(|s| s["cache"].as_u64().unwrap())
            .sum();
        assert!(hits_after > 0, "{failover}");
        assert_eq!(failover["node_restored"], true, "{failover}");
        // The frozen node is a primary again, and the cluster is whole.
        let node = failover["stopped_node"].as_str().unwrap();
        let port: u16 = node.rsplit_once(':').unwrap().1.parse().unwrap();
        assert_eq!(cluster.role(port), "master");
        cluster.wait_until_ok();
    }
}

#[test]
fn a_single_node_is_refused_with_how_to_start_a_cluster() {
    let valkey = PrivateValkey::start();
    let dir = tempfile::tempdir().unwrap();
    let prefix = TestPrefix::on("cluster_single", &valkey.url());
    let output = cli_against(
        dir.path(),
        support::DEFAULT_POSTGRES_URL,
        &prefix,
        &valkey.url(),
        &["cluster"],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(6));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: exercise 14 needs a Valkey Cluster, and VALKEY_URL points at a single node; start one with `just up-cluster` and set VALKEY_URL=redis://127.0.0.1:7001\n"
    );
}

#[test]
fn a_bad_valkey_cluster_value_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = workshop_cli(dir.path())
        .env("VALKEY_CLUSTER", "maybe")
        .arg("check-env")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: VALKEY_CLUSTER must be true, false or auto (got 'maybe')\n"
    );
}
