//! supervisord's fault codes (`Faults` in `supervisor/xmlrpc.py`) and the fault value every
//! XML-RPC method and every backend operation fails with. A leaf: it imports nothing of
//! this crate.
//!
//! The wire form is fixed by supervisord: the code is the integer below and the string is
//! `NAME` or `NAME: detail` (for example `BAD_NAME: nosuch`). `supervisorctl` matches on the
//! codes, so they must never change.

use std::fmt;

/// A supervisord fault code.
///
/// `Success` only appears as the `status` of a per-process result struct; it is never sent
/// as a `<fault>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum FaultCode {
    UnknownMethod,
    IncorrectParameters,
    BadArguments,
    SignatureUnsupported,
    ShutdownState,
    BadName,
    BadSignal,
    NoFile,
    NotExecutable,
    Failed,
    AbnormalTermination,
    SpawnError,
    AlreadyStarted,
    NotRunning,
    Success,
    AlreadyAdded,
    StillRunning,
    CantReread,
}

impl FaultCode {
    /// The integer supervisord puts on the wire.
    pub(crate) const fn code(self) -> i32 {
        match self {
            FaultCode::UnknownMethod => 1,
            FaultCode::IncorrectParameters => 2,
            FaultCode::BadArguments => 3,
            FaultCode::SignatureUnsupported => 4,
            FaultCode::ShutdownState => 6,
            FaultCode::BadName => 10,
            FaultCode::BadSignal => 11,
            FaultCode::NoFile => 20,
            FaultCode::NotExecutable => 21,
            FaultCode::Failed => 30,
            FaultCode::AbnormalTermination => 40,
            FaultCode::SpawnError => 50,
            FaultCode::AlreadyStarted => 60,
            FaultCode::NotRunning => 70,
            FaultCode::Success => 80,
            FaultCode::AlreadyAdded => 90,
            FaultCode::StillRunning => 91,
            FaultCode::CantReread => 92,
        }
    }

    /// The attribute name in supervisord's `Faults` class, which starts every fault string.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            FaultCode::UnknownMethod => "UNKNOWN_METHOD",
            FaultCode::IncorrectParameters => "INCORRECT_PARAMETERS",
            FaultCode::BadArguments => "BAD_ARGUMENTS",
            FaultCode::SignatureUnsupported => "SIGNATURE_UNSUPPORTED",
            FaultCode::ShutdownState => "SHUTDOWN_STATE",
            FaultCode::BadName => "BAD_NAME",
            FaultCode::BadSignal => "BAD_SIGNAL",
            FaultCode::NoFile => "NO_FILE",
            FaultCode::NotExecutable => "NOT_EXECUTABLE",
            FaultCode::Failed => "FAILED",
            FaultCode::AbnormalTermination => "ABNORMAL_TERMINATION",
            FaultCode::SpawnError => "SPAWN_ERROR",
            FaultCode::AlreadyStarted => "ALREADY_STARTED",
            FaultCode::NotRunning => "NOT_RUNNING",
            FaultCode::Success => "SUCCESS",
            FaultCode::AlreadyAdded => "ALREADY_ADDED",
            FaultCode::StillRunning => "STILL_RUNNING",
            FaultCode::CantReread => "CANT_REREAD",
        }
    }
}

/// A fault: a code plus the optional detail supervisord appends after `NAME: `.
///
/// The detail is what supervisord passes as the second argument of `RPCError`: usually the
/// name the client asked for (`BAD_NAME: web:web_0`), a spawn error, a log path or a
/// config parse error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.fault_string())]
pub(crate) struct Fault {
    pub(crate) code: FaultCode,
    pub(crate) detail: Option<String>,
}

impl Fault {
    /// A fault without detail: its string is the bare name.
    pub(crate) const fn new(code: FaultCode) -> Fault {
        Fault { code, detail: None }
    }

    /// A fault whose string is `NAME: detail`.
    pub(crate) fn with_detail(code: FaultCode, detail: impl Into<String>) -> Fault {
        Fault { code, detail: Some(detail.into()) }
    }

    /// The `faultString` (and the `description` of a failed per-process result).
    pub(crate) fn fault_string(&self) -> String {
        match &self.detail {
            Some(detail) => format!("{}: {}", self.code.name(), detail),
            None => self.code.name().to_owned(),
        }
    }
}

impl fmt::Display for FaultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_strings_follow_supervisord() {
        assert_eq!(Fault::new(FaultCode::UnknownMethod).fault_string(), "UNKNOWN_METHOD");
        assert_eq!(
            Fault::with_detail(FaultCode::BadName, "nosuch").fault_string(),
            "BAD_NAME: nosuch"
        );
        assert_eq!(Fault::with_detail(FaultCode::CantReread, "x").to_string(), "CANT_REREAD: x");
    }

    #[test]
    fn codes_match_supervisord_faults_table() {
        let table = [
            (FaultCode::UnknownMethod, 1),
            (FaultCode::IncorrectParameters, 2),
            (FaultCode::BadArguments, 3),
            (FaultCode::SignatureUnsupported, 4),
            (FaultCode::ShutdownState, 6),
            (FaultCode::BadName, 10),
            (FaultCode::BadSignal, 11),
            (FaultCode::NoFile, 20),
            (FaultCode::NotExecutable, 21),
            (FaultCode::Failed, 30),
            (FaultCode::AbnormalTermination, 40),
            (FaultCode::SpawnError, 50),
            (FaultCode::AlreadyStarted, 60),
            (FaultCode::NotRunning, 70),
            (FaultCode::Success, 80),
            (FaultCode::AlreadyAdded, 90),
            (FaultCode::StillRunning, 91),
            (FaultCode::CantReread, 92),
        ];
        for (code, number) in table {
            assert_eq!(code.code(), number, "{code}");
        }
    }
}
