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
    /// `steps` more steps of the current phase are done.
    fn advance(&self, _steps: u64) {}
    /// Something worth showing while the run goes on (a warning, an event).
    fn note(&self, _text: &str) {}
    /// The current phase is over.
    fn finish_phase(&self) {}
}

/// For callers that show nothing: tests, `--json`, library use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl RunProgress for Silent {}
