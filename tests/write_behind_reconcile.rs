//! write-behind when a MULTI/EXEC times out after it was sent: Valkey may
//! apply it anyway. On a private Valkey paused with SIGSTOP mid-run, the
//! producer asks Valkey afterwards, so the count it reports equals what the
//! stream received; and entries delivered twice are stored once.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{cli_against, seeded_database, JsonRun, PrivateValkey, TestPrefix, BOTH};

fn stream_length(url: &str, prefix: &TestPrefix) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_connection().unwrap();
    redis::cmd("XLEN")
        .arg(format!("{}write-behind", prefix.prefix))
        .query(&mut conn)
        .unwrap()
}

fn signal(pid: u32, name: &str) {
    let sent = Command::new("kill").args([name, &pid.to_string()]).status().unwrap();
    assert!(sent.success(), "kill {name} {pid}");
}

#[tokio::test]
async fn a_write_whose_exec_timed_out_is_counted_when_valkey_applied_it() {
    for kind in BOTH {
        let db = seeded_database(kind, "wbreconcile").await;
        let valkey = PrivateValkey::start();
        let prefix = TestPrefix::on("wbreconcile", &valkey.url());
        let pid = valkey.pid().unwrap();
        let child = cli_against(
            &std::env::temp_dir(),
            &db.url(),
            &prefix,
            &valkey.url(),
            &[
                "write-behind",
                "--produce-only",
                "--writes",
                "100000",
                "--compare",
                "0",
                "--connect-timeout",
                "1",
                "--json",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

        // Under way: writes are reaching the stream.
        let started = Instant::now();
        while stream_length(&valkey.url(), &prefix) < 200 {
            assert!(started.elapsed() < Duration::from_secs(30), "the producer never wrote");
        }
        // Paused, the server cannot answer the MULTI/EXEC in flight: the
        // client's 1 s response timeout passes (the run cannot progress
        // meanwhile), then the server runs what it had received.
        signal(pid, "-STOP");
        std::thread::sleep(Duration::from_millis(2500));
        signal(pid, "-CONT");
        let output = child.wait_with_output().unwrap();
        let run = JsonRun::from_output(&output);
        assert_eq!(run.code, Some(5), "{kind:?}: the pause stopped the run: {}", run.stderr);
        assert!(run.stderr.contains("timed out"), "{kind:?}: {}", run.stderr);
        let produced = &run.json["produced"];
        let reported = produced["writes"].as_u64().unwrap();
        assert_eq!(
            reported,
            stream_length(&valkey.url(), &prefix),
            "{kind:?}: reported {reported}, reconciled {}, unconfirmed {}",
            produced["reconciled"],
            produced["unconfirmed"]
        );
        // The write in flight at the pause was applied after its timeout: the fault landed.
        assert_eq!(produced["reconciled"], 1, "{kind:?}: {produced}");
        assert_eq!(produced["unconfirmed"], serde_json::json!([]));
        assert_eq!(produced["passports"].as_array().unwrap().len() as u64, reported);
    }
}
