//! Live progress of an exercise run. The exercise reports what it is doing
//! through this trait; the caller decides how to show it (a bar on a
//! terminal, nothing in `--json`, a pane in the guided app). Nothing here
//! prints.

/// What an exercise says while it runs. Every method has a do-nothing
/// default, so a caller implements only what it shows.
pub trait RunProgress: Send + Sync {
    /// A phase begins: `label` says what runs ("database reads"), `total`
    /// how many steps it has when that is known.
    fn phase(&self, _label: &str, _total: Option<u64>) {}
    /// A phase of `total` steps that a view names (`steps`: "requests"),
    /// shown as a count rather than a bar; by default a plain [`phase`](Self::phase).
    fn counted_phase(&self, label: &str, total: u64, _steps: &str) {
        self.phase(label, Some(total));
    }
    /// `steps` more steps of the current phase are done.
    fn advance(&self, _steps: u64) {}
    /// Something worth showing while the run goes on (a warning, an event).
    fn note(&self, _text: &str) {}
    /// The current phase is over.
    fn finish_phase(&self) {}
    /// Something that happened during the run that a view shows at once,
    /// in every mode (a `multi-level --listen` change, a warning).
    fn event(&self, _event: RunEvent<'_>) {}
}

/// What a long-running exercise reports as it happens, before its outcome.
#[derive(Debug, Clone, Copy)]
pub enum RunEvent<'a> {
    /// A warning the learner should see now, not only at the end.
    Warning(&'a str),
    /// `multi-level --listen` is set up and starts reading.
    ListenStarted(&'a crate::exercises::multi_level::listen::ListenStart),
    /// `multi-level --listen` was served a different row.
    ServedChanged(&'a crate::exercises::multi_level::listen::ServedChange),
    /// A `stampede --processes` copy is connected and waits for "go".
    FleetMemberReady,
    /// `session`: one look at the watched session's TTL.
    SessionTick(&'a crate::exercises::session::SessionTick),
}

/// For callers that show nothing: tests, `--json`, library use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl RunProgress for Silent {}

/// Steps counted by spawned tasks, which cannot borrow the run's
/// [`RunProgress`]: they add here, and [`relay`] passes the count on.
#[derive(Debug, Clone, Default)]
pub struct StepCounter(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl StepCounter {
    pub fn add(&self, steps: u64) {
        self.0.fetch_add(steps, std::sync::atomic::Ordering::Relaxed);
    }

    /// At least `steps` are done (a run counted in seconds, not requests).
    pub fn raise_to(&self, steps: u64) {
        self.0.fetch_max(steps, std::sync::atomic::Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// How often [`relay`] passes counted steps on: often enough to look live.
const RELAY_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Awaits `work`, passing the steps `counter` collects on to `progress`
/// every 100 ms and once more at the end.
pub async fn relay<F: std::future::Future>(progress: &dyn RunProgress, counter: &StepCounter, work: F) -> F::Output {
    let mut reported = 0;
    let mut pass_on = || {
        let total = counter.total();
        if total > reported {
            progress.advance(total - reported);
            reported = total;
        }
    };
    let mut tick = tokio::time::interval(RELAY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => {
                pass_on();
                return done;
            }
            _ = tick.tick() => pass_on(),
        }
    }
}
