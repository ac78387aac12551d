//! An attendee's progress: which exercises are done, kept in a git-ignored
//! JSON file in the project. A missing file is a fresh start; a corrupt or
//! unreadable one is a warning and a fresh start, never a crash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const STATE_FILE_NAME: &str = ".workshop-state.json";
const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub version: u32,
    /// Exercise id → when it was marked done (RFC 3339).
    pub done: BTreeMap<String, String>,
}

/// Progress as loaded, with a warning when the file could not be used.
#[derive(Debug)]
pub struct Loaded {
    pub progress: Progress,
    pub warning: Option<String>,
}

/// Where the state file lives: `WORKSHOP_STATE_FILE`, else the project folder
/// (the nearest folder up from `start` holding `.env`, `.env.example` or
/// `justfile`), else `start`.
pub fn state_file(start: &Path) -> PathBuf {
    if let Some(path) = std::env::var_os("WORKSHOP_STATE_FILE").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let project = start
        .ancestors()
        .find(|dir| {
            [".env", ".env.example", "justfile"]
                .iter()
                .any(|f| dir.join(f).is_file())
        })
        .unwrap_or(start);
    project.join(STATE_FILE_NAME)
}

impl Progress {
    pub fn load(path: &Path) -> Loaded {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Loaded {
                    progress: Progress::fresh(),
                    warning: None,
                }
            }
            Err(e) => {
                return Loaded {
                    progress: Progress::fresh(),
                    warning: Some(format!(
                        "cannot read {} ({e}); starting with no exercise done",
                        path.display()
                    )),
                }
            }
        };
        match serde_json::from_str::<Progress>(&text) {
            Ok(progress) if progress.version == STATE_VERSION => Loaded {
                progress,
                warning: None,
            },
            Ok(progress) => Loaded {
                progress: Progress::fresh(),
                warning: Some(format!(
                    "{} has state version {}, expected {STATE_VERSION}; starting with no exercise done",
                    path.display(),
                    progress.version
                )),
            },
            Err(_) => Loaded {
                progress: Progress::fresh(),
                warning: Some(format!(
                    "{} is corrupt; starting with no exercise done (it is replaced when you mark one)",
                    path.display()
                )),
            },
        }
    }

    pub fn fresh() -> Progress {
        Progress {
            version: STATE_VERSION,
            done: BTreeMap::new(),
        }
    }

    /// Writes the file whole (a temporary file renamed over it), so a crash
    /// never leaves half a file.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, text + "\n")?;
        std::fs::rename(&temporary, path)
    }

    pub fn is_done(&self, id: &str) -> bool {
        self.done.contains_key(id)
    }

    pub fn mark_done(&mut self, id: &str) {
        self.done.insert(
            id.to_string(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    }

    /// Clears one exercise, or all of them with `None`.
    pub fn reset(&mut self, id: Option<&str>) {
        match id {
            Some(id) => {
                self.done.remove(id);
            }
            None => self.done.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_a_fresh_start_without_warning() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = Progress::load(&dir.path().join(STATE_FILE_NAME));
        assert_eq!(loaded.progress, Progress::fresh());
        assert!(loaded.warning.is_none());
    }

    #[test]
    fn a_corrupt_file_is_a_warning_and_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE_NAME);
        std::fs::write(&path, "{ not json").unwrap();
        let loaded = Progress::load(&path);
        assert_eq!(loaded.progress, Progress::fresh());
        assert!(loaded
            .warning
            .unwrap()
            .ends_with("is corrupt; starting with no exercise done (it is replaced when you mark one)"));
    }

    #[test]
    fn progress_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE_NAME);
        let mut progress = Progress::fresh();
        progress.mark_done("cache-aside");
        progress.save(&path).unwrap();
        let loaded = Progress::load(&path);
        assert!(loaded.progress.is_done("cache-aside"));
        assert!(!loaded.progress.is_done("write-through"));
        let mut progress = loaded.progress;
        progress.reset(Some("cache-aside"));
        assert!(progress.done.is_empty());
    }

    #[test]
    fn the_state_file_lives_in_the_project_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("justfile"), "").unwrap();
        let deep = dir.path().join("src").join("x");
        std::fs::create_dir_all(&deep).unwrap();
        if std::env::var_os("WORKSHOP_STATE_FILE").is_none() {
            assert_eq!(state_file(&deep), dir.path().join(STATE_FILE_NAME));
        }
    }
}
