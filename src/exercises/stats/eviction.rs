//! Eviction under a memory limit: the same skewed workload once per
//! eviction policy, with `maxmemory` set for the run only.
//!
//! The server's settings are read first (`CONFIG GET`), changed only for the
//! runs (`CONFIG SET`) and put back afterwards: when the runs finish, when
//! one fails, and when the process is interrupted (SIGINT / Ctrl-C or
//! SIGTERM; the signal handlers are installed before anything is changed).

use std::cell::RefCell;

use crate::cache::{CacheError, KeyScheme};
use crate::error::{Result, WorkshopError};

use super::server::{ServerAdmin, ServerView};
use super::workload::RunStats;

/// The eviction policies Valkey knows.
pub const POLICIES: [&str; 8] = [
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];
pub const DEFAULT_POLICIES: [&str; 2] = ["allkeys-lru", "allkeys-lfu"];
/// Larger limits are not a workshop exercise (and overflow nothing below).
const MAX_MAXMEMORY: u64 = 1 << 40;

pub const MAXMEMORY_FORMAT_HINT: &str = "use bytes or a whole number with kb, mb or gb (e.g. 2mb, 512kb, 1048576)";

/// A validated `--maxmemory` and `--policy` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvictionPlan {
    pub maxmemory: u64,
    pub policies: Vec<String>,
}

/// Parses a size as Valkey's configuration does: a number of bytes, or a
/// number with `k`/`m`/`g` (powers of 1000) or `kb`/`mb`/`gb` (powers of
/// 1024), in any letter case. `None` when it is not one.
pub fn parse_size(raw: &str) -> Option<u64> {
    let text = raw.trim().to_ascii_lowercase();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return None;
    }
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// Checks `--maxmemory` and `--policy` before anything touches the server.
pub fn plan(maxmemory: &str, policies: &[String]) -> Result<EvictionPlan> {
    let Some(bytes) = parse_size(maxmemory) else {
        return Err(WorkshopError::invalid(format!(
            "--maxmemory '{maxmemory}' is not a size; {MAXMEMORY_FORMAT_HINT}"
        )));
    };
    if bytes == 0 || bytes > MAX_MAXMEMORY {
        return Err(WorkshopError::invalid(format!(
            "--maxmemory must be more than 0 and at most 1024gb (got '{maxmemory}'); 0 would mean no limit, so nothing is evicted"
        )));
    }
    let mut chosen: Vec<String> = Vec::new();
    for raw in policies {
        let name = raw.trim().to_ascii_lowercase();
        if !POLICIES.contains(&name.as_str()) {
            return Err(WorkshopError::invalid(format!(
                "unknown eviction policy '{raw}'; use one of: {}",
                POLICIES.join(", ")
            )));
        }
        if chosen.contains(&name) {
            return Err(WorkshopError::invalid(format!("--policy {name} is given twice")));
        }
        chosen.push(name);
    }
    if chosen.is_empty() {
        chosen = DEFAULT_POLICIES.iter().map(|p| p.to_string()).collect();
    }
    Ok(EvictionPlan {
        maxmemory: bytes,
        policies: chosen,
    })
}

/// One policy's run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyRun {
    pub policy: String,
    /// Product keys of this prefix deleted before the run (a cold start for each policy).
    pub keys_cleared: u64,
    pub run: RunStats,
    pub valkey: Option<ServerView>,
}

/// The settings found before the runs, and whether they were put back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedSettings {
    pub maxmemory: String,
    pub maxmemory_policy: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EvictionOutcome {
    pub maxmemory_bytes: u64,
    pub policies: Vec<String>,
    /// `maxmemory` and `maxmemory-policy` before the runs; restored after them.
    pub previous: SavedSettings,
    pub restored: bool,
    pub runs: Vec<PolicyRun>,
}

impl SavedSettings {
    pub async fn read(admin: &ServerAdmin) -> Result<SavedSettings, CacheError> {
        Ok(SavedSettings {
            maxmemory: admin.config_get("maxmemory").await?,
            maxmemory_policy: admin.config_get("maxmemory-policy").await?,
        })
    }

    /// Puts the settings back; the error says what to type to do it by hand.
    pub async fn restore(&self, admin: &ServerAdmin) -> Result<(), CacheError> {
        let policy = admin.config_set("maxmemory-policy", &self.maxmemory_policy).await;
        let limit = admin.config_set("maxmemory", &self.maxmemory).await;
        policy.and(limit).map_err(|error| CacheError::Command {
            command: "CONFIG SET",
            reason: format!(
                "{error}; the previous settings were not restored: run `CONFIG SET maxmemory {} maxmemory-policy {}` on the server",
                self.maxmemory, self.maxmemory_policy
            ),
        })
    }

    pub async fn apply(admin: &ServerAdmin, maxmemory: u64, policy: &str) -> Result<(), CacheError> {
        admin.config_set("maxmemory-policy", policy).await?;
        admin.config_set("maxmemory", &maxmemory.to_string()).await
    }
}

/// `maxmemory` with an `allkeys-*` policy applies to the whole server: before
/// any setting changes, refuses (exit 6) when eviction could remove data that
/// is not a cached copy: acknowledged writes still waiting in the
/// write-behind stream, or keys outside the workshop's prefix.
pub async fn check_only_cache_at_risk(admin: &ServerAdmin, keys: &KeyScheme) -> Result<()> {
    let stream = keys.write_behind_stream();
    let waiting = admin.stream_length(&stream).await?;
    if waiting > 0 {
        return Err(WorkshopError::invalid(format!(
            "{waiting} acknowledged writes wait in the write-behind stream {stream}; flush them first (`workshop-cli write-behind --flush-only`) — eviction could remove them"
        )));
    }
    let total = admin.dbsize().await?;
    // Keys of another database under the same prefix count as foreign: its
    // write-behind stream is no cached copy either.
    let ours = admin.count_prefixed(keys.source_prefix()).await?;
    let foreign = total.saturating_sub(ours);
    if foreign > 0 {
        return Err(WorkshopError::invalid(format!(
            "Valkey holds {foreign} keys outside the prefix '{}'; eviction under --maxmemory would remove them too: add --private-valkey (a valkey-server of its own, for this run only) or point VALKEY_URL at a Valkey of its own",
            keys.source_prefix()
        )));
    }
    Ok(())
}

/// Where the comparison got to, readable after its future was dropped.
#[derive(Debug, Default)]
pub struct Progress {
    pub current: Option<String>,
    pub done: Vec<PolicyRun>,
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM. Created before the server's
/// settings change, so a signal can never skip the restore.
pub struct Interruption {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Interruption {
    pub fn listen() -> Result<Interruption> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let failed = |e: std::io::Error| WorkshopError::Other(anyhow::anyhow!("cannot watch for Ctrl-C: {e}"));
            Ok(Interruption {
                interrupt: signal(SignalKind::interrupt()).map_err(failed)?,
                terminate: signal(SignalKind::terminate()).map_err(failed)?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Interruption {})
        }
    }

    /// Resolves with the signal's name when one arrives.
    pub async fn wait(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "Ctrl-C (SIGINT)",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// How the comparison ended, before the settings are restored.
pub enum Ending {
    Finished(Result<()>),
    Interrupted(&'static str),
}

/// Runs `runs` (the comparison, which records into `progress`) until it
/// finishes or a signal arrives, then restores `saved` in every case.
/// `Ok(Some(error))`: interrupted, settings restored; the runs in
/// `progress.done` finished and can still be shown.
pub async fn guarded<F>(
    admin: &ServerAdmin,
    saved: &SavedSettings,
    progress: &RefCell<Progress>,
    runs: F,
) -> Result<Option<WorkshopError>>
where
    F: std::future::Future<Output = Result<()>>,
{
    let mut interruption = Interruption::listen()?;
    let ending = tokio::select! {
        biased;
        signal = interruption.wait() => Ending::Interrupted(signal),
        result = runs => Ending::Finished(result),
    };
    let restored = saved.restore(admin).await;
    let previous = format!(
        "maxmemory {} and maxmemory-policy {}",
        saved.maxmemory, saved.maxmemory_policy
    );
    match (ending, restored) {
        (_, Err(error)) => Err(error.into()),
        (Ending::Finished(result), Ok(())) => result.map(|()| None),
        (Ending::Interrupted(signal), Ok(())) => {
            let during = progress
                .borrow()
                .current
                .as_ref()
                .map_or_else(String::new, |policy| format!(" during the {policy} run"));
            Ok(Some(WorkshopError::incomplete(format!(
                "interrupted by {signal}{during}; Valkey's {previous} were restored"
            ))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_valkey_config() {
        assert_eq!(parse_size("1048576"), Some(1_048_576));
        assert_eq!(parse_size("2mb"), Some(2 * 1024 * 1024));
        assert_eq!(parse_size("2MB"), Some(2 * 1024 * 1024));
        assert_eq!(parse_size("512kb"), Some(512 * 1024));
        assert_eq!(parse_size("512k"), Some(512_000));
        assert_eq!(parse_size("1gb"), Some(1 << 30));
        assert_eq!(parse_size("3m"), Some(3_000_000));
        assert_eq!(parse_size(" 64 kb "), Some(64 * 1024));
    }

    #[test]
    fn malformed_sizes_are_not_sizes() {
        for bad in [
            "",
            "mb",
            "2 megs",
            "-1mb",
            "1.5mb",
            "2tb",
            "99999999999999999999",
            "0x10",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_plan_names_the_problem_and_the_fix() {
        let err = plan("2 megs", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--maxmemory '2 megs' is not a size; use bytes or a whole number with kb, mb or gb (e.g. 2mb, 512kb, 1048576)"
        );
        assert_eq!(err.exit_code(), crate::error::exit::INPUT);
        let err = plan("0", &[]).unwrap_err();
        assert!(err.to_string().starts_with("--maxmemory must be more than 0"), "{err}");
        let err = plan("2mb", &["allkeys-lru".into(), "lru".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown eviction policy 'lru'; use one of: noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu, volatile-random, volatile-ttl"
        );
        let err = plan("2mb", &["allkeys-lru".into(), "ALLKEYS-LRU".into()]).unwrap_err();
        assert_eq!(err.to_string(), "--policy allkeys-lru is given twice");
    }

    #[test]
    fn without_policies_lru_and_lfu_are_compared() {
        let plan = plan("2mb", &[]).unwrap();
        assert_eq!(plan.maxmemory, 2 * 1024 * 1024);
        assert_eq!(plan.policies, vec!["allkeys-lru", "allkeys-lfu"]);
        let one = super::plan("512kb", &["volatile-ttl".into()]).unwrap();
        assert_eq!(one.policies, vec!["volatile-ttl"]);
    }
}
