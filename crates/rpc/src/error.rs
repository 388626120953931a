//! `ControlError`: every failure a `Control` method can report, one variant per
//! supervisord fault (`Faults` in supervisord's `xmlrpc.py`) plus a structured
//! variant for configuration errors.
//!
//! The XML-RPC adaptor turns a variant into `<fault>` with [`ControlError::code`]
//! and the `Display` text, which is supervisord's fault string (`NAME` or
//! `NAME: detail`). vigilctl matches on the variants, never on the text.

use serde::{Deserialize, Serialize};

/// One configuration problem, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigErrorLine {
    /// The file the problem is in, as the daemon names it.
    pub file: String,
    /// 1-based line; 0 when the problem has no single line (a missing file).
    #[serde(default)]
    pub line: u32,
    /// What is wrong there.
    pub message: String,
}

impl std::fmt::Display for ConfigErrorLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// A fault returned by a `Control` method. The `String` carried by most variants
/// is the detail after `NAME: ` in supervisord's fault string (often the name the
/// fault is about); it may be empty.
///
/// On the wire: `{"fault": "BAD_NAME", "detail": "x"}`. Adding a variant is a
/// protocol change (an older peer cannot read it): bump `PROTOCOL_VERSION`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "fault", content = "detail", rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ControlError {
    /// 1: the method does not exist (only the XML-RPC adaptor produces it).
    #[error("{}", fault_text("UNKNOWN_METHOD", .0))]
    UnknownMethod(String),
    /// 2: wrong number or type of parameters.
    #[error("{}", fault_text("INCORRECT_PARAMETERS", .0))]
    IncorrectParameters(String),
    /// 3: parameters of the right type but an impossible combination
    /// (`read_log` with a negative offset and a non-zero length).
    #[error("{}", fault_text("BAD_ARGUMENTS", .0))]
    BadArguments(String),
    /// 4: `system.methodSignature` of an unknown method (XML-RPC adaptor only).
    #[error("{}", fault_text("SIGNATURE_UNSUPPORTED", .0))]
    SignatureUnsupported(String),
    /// 6: the daemon is shutting down or reloading.
    #[error("SHUTDOWN_STATE")]
    ShutdownState,
    /// 10: no such process, group or configured group.
    #[error("{}", fault_text("BAD_NAME", .0))]
    BadName(String),
    /// 11: the signal name or number is not valid.
    #[error("{}", fault_text("BAD_SIGNAL", .0))]
    BadSignal(String),
    /// 20: a file is missing: the command, a log file, or stdin is closed.
    #[error("{}", fault_text("NO_FILE", .0))]
    NoFile(String),
    /// 21: the command is not executable.
    #[error("{}", fault_text("NOT_EXECUTABLE", .0))]
    NotExecutable(String),
    /// 30: anything else went wrong; the detail says what.
    #[error("{}", fault_text("FAILED", .0))]
    Failed(String),
    /// 40: the process left STARTING/RUNNING while a waited-for start was pending.
    #[error("{}", fault_text("ABNORMAL_TERMINATION", .0))]
    AbnormalTermination(String),
    /// 50: the spawn failed (see the process's `spawnerr`).
    #[error("{}", fault_text("SPAWN_ERROR", .0))]
    SpawnError(String),
    /// 60: start of a process in STARTING, RUNNING or BACKOFF.
    #[error("{}", fault_text("ALREADY_STARTED", .0))]
    AlreadyStarted(String),
    /// 70: stop, signal or stdin for a process that is not running.
    #[error("{}", fault_text("NOT_RUNNING", .0))]
    NotRunning(String),
    /// 80: supervisord's "no fault" code. vigild never returns it as an error; it
    /// exists so that every supervisord code maps onto a variant (results from an
    /// XML-RPC peer carry it).
    #[error("SUCCESS")]
    Success,
    /// 90: `add_group` of a group that is already active.
    #[error("{}", fault_text("ALREADY_ADDED", .0))]
    AlreadyAdded(String),
    /// 91: `remove_group` of a group with processes not in a stopped state.
    #[error("{}", fault_text("STILL_RUNNING", .0))]
    StillRunning(String),
    /// 92: the configuration could not be read (unstructured message).
    #[error("{}", fault_text("CANT_REREAD", .0))]
    CantReread(String),
    /// 92 as well: the configuration has errors, every one with its file and
    /// line. Nothing was applied.
    #[error("CANT_REREAD: {}", join_lines(.0))]
    ConfigErrors(Vec<ConfigErrorLine>),
}

fn fault_text(name: &str, detail: &str) -> String {
    if detail.is_empty() { name.to_owned() } else { format!("{name}: {detail}") }
}

fn join_lines(lines: &[ConfigErrorLine]) -> String {
    lines.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// supervisord's `Faults.SUCCESS`, the status of a successful [`crate::ProcessResult`].
pub const SUCCESS_CODE: i32 = 80;

impl ControlError {
    /// supervisord's numeric fault code.
    pub fn code(&self) -> i32 {
        match self {
            ControlError::UnknownMethod(_) => 1,
            ControlError::IncorrectParameters(_) => 2,
            ControlError::BadArguments(_) => 3,
            ControlError::SignatureUnsupported(_) => 4,
            ControlError::ShutdownState => 6,
            ControlError::BadName(_) => 10,
            ControlError::BadSignal(_) => 11,
            ControlError::NoFile(_) => 20,
            ControlError::NotExecutable(_) => 21,
            ControlError::Failed(_) => 30,
            ControlError::AbnormalTermination(_) => 40,
            ControlError::SpawnError(_) => 50,
            ControlError::AlreadyStarted(_) => 60,
            ControlError::NotRunning(_) => 70,
            ControlError::Success => SUCCESS_CODE,
            ControlError::AlreadyAdded(_) => 90,
            ControlError::StillRunning(_) => 91,
            ControlError::CantReread(_) | ControlError::ConfigErrors(_) => 92,
        }
    }

    /// supervisord's fault name (`BAD_NAME`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            ControlError::UnknownMethod(_) => "UNKNOWN_METHOD",
            ControlError::IncorrectParameters(_) => "INCORRECT_PARAMETERS",
            ControlError::BadArguments(_) => "BAD_ARGUMENTS",
            ControlError::SignatureUnsupported(_) => "SIGNATURE_UNSUPPORTED",
            ControlError::ShutdownState => "SHUTDOWN_STATE",
            ControlError::BadName(_) => "BAD_NAME",
            ControlError::BadSignal(_) => "BAD_SIGNAL",
            ControlError::NoFile(_) => "NO_FILE",
            ControlError::NotExecutable(_) => "NOT_EXECUTABLE",
            ControlError::Failed(_) => "FAILED",
            ControlError::AbnormalTermination(_) => "ABNORMAL_TERMINATION",
            ControlError::SpawnError(_) => "SPAWN_ERROR",
            ControlError::AlreadyStarted(_) => "ALREADY_STARTED",
            ControlError::NotRunning(_) => "NOT_RUNNING",
            ControlError::Success => "SUCCESS",
            ControlError::AlreadyAdded(_) => "ALREADY_ADDED",
            ControlError::StillRunning(_) => "STILL_RUNNING",
            ControlError::CantReread(_) | ControlError::ConfigErrors(_) => "CANT_REREAD",
        }
    }

    /// The inverse of [`code`](Self::code), for faults received from an XML-RPC
    /// peer: `None` for a code supervisord does not define. The detail is the
    /// fault string with a leading `NAME: ` removed.
    pub fn from_fault(code: i32, fault_string: &str) -> Option<ControlError> {
        let detail = |name: &str| -> String {
            fault_string
                .strip_prefix(name)
                .map(|rest| rest.strip_prefix(": ").unwrap_or(rest))
                .unwrap_or(fault_string)
                .to_owned()
        };
        Some(match code {
            1 => ControlError::UnknownMethod(detail("UNKNOWN_METHOD")),
            2 => ControlError::IncorrectParameters(detail("INCORRECT_PARAMETERS")),
            3 => ControlError::BadArguments(detail("BAD_ARGUMENTS")),
            4 => ControlError::SignatureUnsupported(detail("SIGNATURE_UNSUPPORTED")),
            6 => ControlError::ShutdownState,
            10 => ControlError::BadName(detail("BAD_NAME")),
            11 => ControlError::BadSignal(detail("BAD_SIGNAL")),
            20 => ControlError::NoFile(detail("NO_FILE")),
            21 => ControlError::NotExecutable(detail("NOT_EXECUTABLE")),
            30 => ControlError::Failed(detail("FAILED")),
            40 => ControlError::AbnormalTermination(detail("ABNORMAL_TERMINATION")),
            50 => ControlError::SpawnError(detail("SPAWN_ERROR")),
            60 => ControlError::AlreadyStarted(detail("ALREADY_STARTED")),
            70 => ControlError::NotRunning(detail("NOT_RUNNING")),
            80 => ControlError::Success,
            90 => ControlError::AlreadyAdded(detail("ALREADY_ADDED")),
            91 => ControlError::StillRunning(detail("STILL_RUNNING")),
            92 => ControlError::CantReread(detail("CANT_REREAD")),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_names_and_fault_strings_match_supervisord() {
        let cases: &[(ControlError, i32, &str, &str)] = &[
            (ControlError::UnknownMethod(String::new()), 1, "UNKNOWN_METHOD", "UNKNOWN_METHOD"),
            (
                ControlError::IncorrectParameters("x".into()),
                2,
                "INCORRECT_PARAMETERS",
                "INCORRECT_PARAMETERS: x",
            ),
            (ControlError::BadArguments(String::new()), 3, "BAD_ARGUMENTS", "BAD_ARGUMENTS"),
            (
                ControlError::SignatureUnsupported(String::new()),
                4,
                "SIGNATURE_UNSUPPORTED",
                "SIGNATURE_UNSUPPORTED",
            ),
            (ControlError::ShutdownState, 6, "SHUTDOWN_STATE", "SHUTDOWN_STATE"),
            (ControlError::BadName("nosuch".into()), 10, "BAD_NAME", "BAD_NAME: nosuch"),
            (ControlError::BadSignal("FOO".into()), 11, "BAD_SIGNAL", "BAD_SIGNAL: FOO"),
            (ControlError::NoFile("/x".into()), 20, "NO_FILE", "NO_FILE: /x"),
            (ControlError::NotExecutable("/x".into()), 21, "NOT_EXECUTABLE", "NOT_EXECUTABLE: /x"),
            (ControlError::Failed("boom".into()), 30, "FAILED", "FAILED: boom"),
            (
                ControlError::AbnormalTermination("a".into()),
                40,
                "ABNORMAL_TERMINATION",
                "ABNORMAL_TERMINATION: a",
            ),
            (ControlError::SpawnError("a".into()), 50, "SPAWN_ERROR", "SPAWN_ERROR: a"),
            (ControlError::AlreadyStarted("a".into()), 60, "ALREADY_STARTED", "ALREADY_STARTED: a"),
            (ControlError::NotRunning("a".into()), 70, "NOT_RUNNING", "NOT_RUNNING: a"),
            (ControlError::Success, 80, "SUCCESS", "SUCCESS"),
            (ControlError::AlreadyAdded("g".into()), 90, "ALREADY_ADDED", "ALREADY_ADDED: g"),
            (ControlError::StillRunning("g".into()), 91, "STILL_RUNNING", "STILL_RUNNING: g"),
            (ControlError::CantReread("bad".into()), 92, "CANT_REREAD", "CANT_REREAD: bad"),
        ];
        for (error, code, name, text) in cases {
            assert_eq!(error.code(), *code, "{error:?}");
            assert_eq!(error.name(), *name, "{error:?}");
            assert_eq!(error.to_string(), *text, "{error:?}");
            assert_eq!(ControlError::from_fault(*code, text).as_ref(), Some(error), "{error:?}");
        }
        assert_eq!(ControlError::from_fault(5, "X"), None);
    }

    #[test]
    fn config_errors_carry_file_and_line() {
        let error = ControlError::ConfigErrors(vec![
            ConfigErrorLine { file: "/etc/s.conf".into(), line: 12, message: "bad key".into() },
            ConfigErrorLine { file: "/etc/inc.conf".into(), line: 0, message: "missing".into() },
        ]);
        assert_eq!(error.code(), 92);
        assert_eq!(
            error.to_string(),
            "CANT_REREAD: /etc/s.conf:12: bad key; /etc/inc.conf: missing"
        );
        let json = serde_json::to_string(&error).expect("serialize");
        assert_eq!(serde_json::from_str::<ControlError>(&json).expect("deserialize"), error);
    }
}
