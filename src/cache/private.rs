//! A private `valkey-server` on a free loopback port, started from the
//! binary `just up` installs (or `WORKSHOP_VALKEY_SERVER`, or the PATH).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::cache::Valkey;
use crate::config::{Config, Source, ValkeyTarget};
use crate::error::{Result, WorkshopError};

/// How long a caller that measures nothing waits on the private server.
const PATIENCE: Duration = Duration::from_secs(10);

const NO_VALKEY_SERVER: &str = "no valkey-server found for a private Valkey; set WORKSHOP_VALKEY_SERVER to its path, or run `just up` (it installs one in .services/bin)";

/// A `valkey-server` of this process's own on a free port, killed (and its
/// folder removed) when the guard drops: the grader's counts are the graded
/// program's alone, and `stats --private-valkey` can change its memory limit
/// without touching a shared Valkey.
pub struct PrivateValkey {
    pub port: u16,
    pub target: ValkeyTarget,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

impl PrivateValkey {
    pub async fn start(config: &Config, start: &Path) -> Result<PrivateValkey> {
        let binary = valkey_server(start).ok_or_else(|| WorkshopError::invalid(NO_VALKEY_SERVER))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| WorkshopError::Other(anyhow::anyhow!("no free port for the private Valkey: {e}")))?;
        let dir = std::env::temp_dir().join(format!("workshop-private-valkey-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| WorkshopError::Other(anyhow::anyhow!("cannot create {}: {e}", dir.display())))?;
        let child = std::process::Command::new(&binary)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                WorkshopError::invalid(format!("cannot start {}: {e}; {NO_VALKEY_SERVER}", binary.display()))
            })?;
        let mut target = ValkeyTarget::parse(&format!("redis://127.0.0.1:{port}"), Source::Flag)?;
        target.command_timeout = config.valkey.command_timeout;
        let server = PrivateValkey {
            port,
            target,
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(WorkshopError::Other(anyhow::anyhow!(
                    "the private valkey-server ({}) did not answer on port {port} within 10 s",
                    binary.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }

    /// The server's working folder, removed with it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A patient connection, for a caller that measures nothing on it.
    pub async fn connect(&self) -> Result<Valkey> {
        let mut target = self.target.clone();
        target.command_timeout = PATIENCE;
        Ok(Valkey::connect(&target, PATIENCE).await?)
    }

    pub fn program_env(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("VALKEY_URL", self.target.connect_url()),
            ("CACHE_HOST", "127.0.0.1".to_string()),
            ("CACHE_PORT", self.port.to_string()),
        ])
    }

    /// Kills the server and waits until its port refuses connections (the fault happened).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for PrivateValkey {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// As the tests find it: `WORKSHOP_VALKEY_SERVER`, `.services/bin/valkey-server`
/// in the working folder or a parent, then `valkey-server` on the PATH.
fn valkey_server(start: &Path) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WORKSHOP_VALKEY_SERVER") {
        return Some(PathBuf::from(path));
    }
    for dir in start.ancestors() {
        let local = dir.join(".services/bin/valkey-server");
        if local.is_file() {
            return Some(local);
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("valkey-server"))
            .find(|candidate| candidate.is_file())
    })
}
