//! [`CoreError`]: why a request to the supervision tree failed.
//!
//! Each variant is one of supervisord's XML-RPC faults (`supervisor/xmlrpc.py`,
//! `Faults`), so the daemon can translate them 1:1 and scripts written against
//! supervisord keep working. `Display` is supervisord's fault string
//! (`BAD_NAME: web`).

/// A failed request. The payload is the fault's detail, usually the namespec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// No such process or group.
    #[error("BAD_NAME: {0}")]
    BadName(String),
    /// The signal number is not a signal of this platform.
    #[error("BAD_SIGNAL: {0}")]
    BadSignal(String),
    /// The command was not found (`startProcess`), or a log/stdin is unavailable.
    #[error("NO_FILE: {0}")]
    NoFile(String),
    /// The command exists but cannot be run.
    #[error("NOT_EXECUTABLE: {0}")]
    NotExecutable(String),
    /// Anything else, e.g. a process in UNKNOWN state.
    #[error("FAILED: {0}")]
    Failed(String),
    /// The process left STARTING/RUNNING while a start waited for it.
    #[error("ABNORMAL_TERMINATION: {0}")]
    AbnormalTermination(String),
    /// The spawn failed or the process exited within `startsecs`.
    #[error("SPAWN_ERROR: {0}")]
    SpawnError(String),
    /// A start of a process that is STARTING, RUNNING or BACKOFF.
    #[error("ALREADY_STARTED: {0}")]
    AlreadyStarted(String),
    /// A stop or signal of a process that is not running.
    #[error("NOT_RUNNING: {0}")]
    NotRunning(String),
    /// `add_group` of a group that exists.
    #[error("ALREADY_ADDED: {0}")]
    AlreadyAdded(String),
    /// `remove_group` of a group with processes not in a stopped state.
    #[error("STILL_RUNNING: {0}")]
    StillRunning(String),
    /// The daemon is shutting down and refuses new work.
    #[error("SHUTDOWN_STATE")]
    ShuttingDown,
}

impl CoreError {
    /// supervisord's fault name.
    pub fn fault_name(&self) -> &'static str {
        match self {
            CoreError::BadName(_) => "BAD_NAME",
            CoreError::BadSignal(_) => "BAD_SIGNAL",
            CoreError::NoFile(_) => "NO_FILE",
            CoreError::NotExecutable(_) => "NOT_EXECUTABLE",
            CoreError::Failed(_) => "FAILED",
            CoreError::AbnormalTermination(_) => "ABNORMAL_TERMINATION",
            CoreError::SpawnError(_) => "SPAWN_ERROR",
            CoreError::AlreadyStarted(_) => "ALREADY_STARTED",
            CoreError::NotRunning(_) => "NOT_RUNNING",
            CoreError::AlreadyAdded(_) => "ALREADY_ADDED",
            CoreError::StillRunning(_) => "STILL_RUNNING",
            CoreError::ShuttingDown => "SHUTDOWN_STATE",
        }
    }

    /// supervisord's numeric fault code.
    pub fn fault_code(&self) -> i32 {
        match self {
            CoreError::BadName(_) => 10,
            CoreError::BadSignal(_) => 11,
            CoreError::NoFile(_) => 20,
            CoreError::NotExecutable(_) => 21,
            CoreError::Failed(_) => 30,
            CoreError::AbnormalTermination(_) => 40,
            CoreError::SpawnError(_) => 50,
            CoreError::AlreadyStarted(_) => 60,
            CoreError::NotRunning(_) => 70,
            CoreError::AlreadyAdded(_) => 90,
            CoreError::StillRunning(_) => 91,
            CoreError::ShuttingDown => 6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_supervisord_fault_string() {
        assert_eq!(CoreError::BadName("web".into()).to_string(), "BAD_NAME: web");
        assert_eq!(CoreError::ShuttingDown.to_string(), "SHUTDOWN_STATE");
        assert_eq!(CoreError::StillRunning("g".into()).fault_code(), 91);
        assert_eq!(CoreError::AlreadyStarted("x".into()).fault_name(), "ALREADY_STARTED");
    }
}
