//! `stats --maxmemory` killed with SIGKILL cannot restore Valkey's settings
//! itself: the settings it saved on disk beforehand are put back by the next
//! `stats` run or by `check-env`, which say so. On a private Valkey, both databases.

mod support;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{cli_against, seeded_database, JsonRun, PrivateValkey, TestDatabase, TestPrefix, BOTH};

const RECORD: &str = ".workshop-valkey-settings.json";

fn config_get(url: &str, name: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_connection().unwrap();
    let reply: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(&mut conn).unwrap();
    reply[1].clone()
}

/// Starts an eviction run in `dir`, waits until its limit is in force, and
/// kills it with SIGKILL: the limit stays changed.
fn kill_an_eviction_run(dir: &Path, db: &TestDatabase, prefix: &TestPrefix, valkey: &PrivateValkey) {
    let args = [
        "stats",
        "--maxmemory",
        "4mb",
        "--policy",
        "allkeys-lru",
        "--duration",
        "60",
        "--rate",
        "200",
        "--keys",
        "200",
    ];
    let mut child: Child = cli_against(dir, &db.url(), prefix, &valkey.url(), &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while config_get(&valkey.url(), "maxmemory") != "4194304" {
        assert!(started.elapsed() < Duration::from_secs(30), "maxmemory was never set");
        assert!(
            child.try_wait().unwrap().is_none(),
            "stats exited before its run started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        config_get(&valkey.url(), "maxmemory"),
        "4194304",
        "the killed run left its limit"
    );
    assert_eq!(config_get(&valkey.url(), "maxmemory-policy"), "allkeys-lru");
    assert!(
        dir.join(RECORD).exists(),
        "the original settings were saved before they changed"
    );
}

#[tokio::test]
async fn settings_left_by_a_killed_eviction_run_are_restored_by_the_next_stats_and_by_check_env() {
    for kind in BOTH {
        let db = seeded_database(kind, "stats_kill9").await;
        let valkey = PrivateValkey::start();
        valkey.command(&["CONFIG", "SET", "maxmemory-policy", "volatile-lfu"]);
        let prefix = TestPrefix::on("stats_kill9", &valkey.url());
        let dir = tempfile::tempdir().unwrap();
        let restored = format!(
            "an earlier `stats --maxmemory` run ended without restoring Valkey's settings (killed?); restored maxmemory 0 and maxmemory-policy volatile-lfu from {}",
            dir.path().join(RECORD).display()
        );

        kill_an_eviction_run(dir.path(), &db, &prefix, &valkey);
        let next = JsonRun::from_output(
            &cli_against(
                dir.path(),
                &db.url(),
                &prefix,
                &valkey.url(),
                &["stats", "--requests", "200", "--keys", "50", "--json"],
            )
            .output()
            .unwrap(),
        );
        assert_eq!(next.code, Some(0), "{kind:?}: {}", next.stderr);
        assert!(next.stderr.contains(&restored), "{kind:?}: {}", next.stderr);
        assert_eq!(config_get(&valkey.url(), "maxmemory"), "0");
        assert_eq!(config_get(&valkey.url(), "maxmemory-policy"), "volatile-lfu");
        assert!(!dir.path().join(RECORD).exists());

        // A second eviction run after the restore takes the true original as its original.
        kill_an_eviction_run(dir.path(), &db, &prefix, &valkey);
        let check = JsonRun::from_output(
            &cli_against(dir.path(), &db.url(), &prefix, &valkey.url(), &["check-env", "--json"])
                .output()
                .unwrap(),
        );
        let row = check.json["checks"]
            .as_array()
            .and_then(|checks| checks.iter().find(|c| c["name"] == "Valkey settings"))
            .unwrap_or_else(|| panic!("{kind:?}: no Valkey settings row in {}", check.stdout));
        assert_eq!(row["status"], "warn", "{row}");
        assert_eq!(row["detail"], restored.as_str());
        assert_eq!(config_get(&valkey.url(), "maxmemory"), "0");
        assert_eq!(config_get(&valkey.url(), "maxmemory-policy"), "volatile-lfu");
        assert!(!dir.path().join(RECORD).exists());
    }
}
