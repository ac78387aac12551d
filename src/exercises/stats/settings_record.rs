//! The Valkey settings `stats --maxmemory` changes, saved on disk before it
//! changes them: a run killed with SIGKILL cannot restore them itself, and
//! the next run would otherwise take the changed limit for the original.
//! The record sits beside the workshop state file, keyed by the Valkey
//! target (its masked URL), and is removed once the settings are restored.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::eviction::SavedSettings;
use crate::cache::{CacheError, Valkey};

pub const RECORD_FILE_NAME: &str = ".workshop-valkey-settings.json";
const RECORD_VERSION: u32 = 1;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct RecordFile {
    version: u32,
    /// Valkey target → the settings before a `stats --maxmemory` run changed them.
    saved: BTreeMap<String, SavedSettings>,
}

/// The on-disk record of settings to put back.
#[derive(Debug, Clone)]
pub struct SettingsRecord {
    path: PathBuf,
}

impl SettingsRecord {
    /// Beside the state file (`WORKSHOP_STATE_FILE`, or the project folder's).
    pub fn beside_state_file() -> SettingsRecord {
        let start = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let state = crate::workshop::progress::state_file(&start);
        SettingsRecord {
            path: state.with_file_name(RECORD_FILE_NAME),
        }
    }

    pub fn at(path: impl Into<PathBuf>) -> SettingsRecord {
        SettingsRecord { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<RecordFile, String> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| format!("{} is not a settings record ({e})", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RecordFile::default()),
            Err(e) => Err(format!("cannot read {} ({e})", self.path.display())),
        }
    }

    /// Writes the whole file through a temporary one, fsynced, then renamed:
    /// a crash leaves the old record or the new one, never half of one.
    fn write(&self, file: &RecordFile) -> Result<(), String> {
        let failed = |e: std::io::Error| format!("cannot write {} ({e})", self.path.display());
        if file.saved.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(failed(e)),
                _ => Ok(()),
            };
        }
        let text =
            serde_json::to_string_pretty(file).map_err(|e| format!("cannot encode the settings record ({e})"))?;
        let temporary = self.path.with_extension("json.tmp");
        let mut out = std::fs::File::create(&temporary).map_err(failed)?;
        out.write_all(text.as_bytes()).map_err(failed)?;
        out.sync_all().map_err(failed)?;
        std::fs::rename(&temporary, &self.path).map_err(failed)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The rename itself is durable once the folder is synced.
            if let Ok(dir) = std::fs::File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }

    /// The settings saved for `target`, if a run left them behind.
    pub fn load(&self, target: &str) -> Result<Option<SavedSettings>, String> {
        Ok(self.read()?.saved.remove(target))
    }

    /// Saves `settings` for `target`, on disk (fsynced) before this returns.
    pub fn save(&self, target: &str, settings: &SavedSettings) -> Result<(), String> {
        let mut file = self.read().unwrap_or_default();
        file.version = RECORD_VERSION;
        file.saved.insert(target.to_string(), settings.clone());
        self.write(&file)
    }

    pub fn remove(&self, target: &str) -> Result<(), String> {
        let mut file = self.read()?;
        if file.saved.remove(target).is_some() {
            self.write(&file)?;
        }
        Ok(())
    }
}

/// Why a leftover record could not be dealt with.
#[derive(Debug)]
pub enum LeftoverError {
    Record(String),
    Valkey(CacheError),
}

impl std::fmt::Display for LeftoverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeftoverError::Record(reason) => f.write_str(reason),
            LeftoverError::Valkey(error) => write!(f, "{error}"),
        }
    }
}

/// Puts back the settings a killed `stats --maxmemory` run left in the
/// record for this Valkey, and removes them from the record. `Ok(None)`:
/// there was nothing to restore; `Ok(Some(message))` says what was restored.
pub async fn restore_leftover(valkey: &Valkey, record: &SettingsRecord) -> Result<Option<String>, LeftoverError> {
    let Some(saved) = record.load(valkey.target()).map_err(LeftoverError::Record)? else {
        return Ok(None);
    };
    valkey
        .config_set("maxmemory-policy", &saved.maxmemory_policy)
        .await
        .map_err(LeftoverError::Valkey)?;
    valkey
        .config_set("maxmemory", &saved.maxmemory)
        .await
        .map_err(LeftoverError::Valkey)?;
    record.remove(valkey.target()).map_err(LeftoverError::Record)?;
    Ok(Some(format!(
        "an earlier `stats --maxmemory` run ended without restoring Valkey's settings (killed?); restored maxmemory {} and maxmemory-policy {} from {}",
        saved.maxmemory,
        saved.maxmemory_policy,
        record.path().display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(limit: &str) -> SavedSettings {
        SavedSettings {
            maxmemory: limit.into(),
            maxmemory_policy: "noeviction".into(),
        }
    }

    #[test]
    fn a_record_is_kept_per_target_and_the_file_goes_with_the_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let record = SettingsRecord::at(dir.path().join(RECORD_FILE_NAME));
        assert_eq!(record.load("redis://a").unwrap(), None);
        record.save("redis://a", &settings("0")).unwrap();
        record.save("redis://b", &settings("100")).unwrap();
        assert_eq!(record.load("redis://a").unwrap(), Some(settings("0")));
        record.remove("redis://a").unwrap();
        assert_eq!(record.load("redis://a").unwrap(), None);
        assert_eq!(record.load("redis://b").unwrap(), Some(settings("100")));
        record.remove("redis://b").unwrap();
        assert!(!record.path().exists());
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECORD_FILE_NAME);
        std::fs::write(&path, "{ not json").unwrap();
        let error = SettingsRecord::at(&path).load("redis://a").unwrap_err();
        assert!(error.contains("is not a settings record"), "{error}");
    }
}
