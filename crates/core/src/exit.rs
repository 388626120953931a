//! How a child ended: [`ExitStatus`], decoded once from the raw `waitpid` status.
//!
//! Owns the wording supervisord uses for exits (`exit status 1`, `terminated by
//! SIGTERM`) and its numeric `exitstatus` field (`-1` for a death by signal), so the
//! rest of the crate never handles raw wait statuses or magic numbers.

use std::fmt;

/// The end of one child process, as reported by the reaper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// The child called `exit(code)`; `code` is 0..=255.
    Code(i32),
    /// The child was killed by this signal number.
    Signal(i32),
    /// The child was killed by this signal number and the kernel wrote a core
    /// dump (`WCOREDUMP`); supervisord says so in the exit line.
    Dumped(i32),
}

impl ExitStatus {
    /// Decodes a raw status word as returned by `waitpid(2)`.
    ///
    /// Returns `None` for stop/continue notifications, which are not exits (the reaper
    /// never asks for them, but a raw status may still carry one).
    pub fn from_raw(status: libc::c_int) -> Option<ExitStatus> {
        if libc::WIFEXITED(status) {
            Some(ExitStatus::Code(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            let signal = libc::WTERMSIG(status);
            Some(if libc::WCOREDUMP(status) {
                ExitStatus::Dumped(signal)
            } else {
                ExitStatus::Signal(signal)
            })
        } else {
            None
        }
    }

    /// supervisord's `exitstatus`: the exit code, or -1 for a death by signal.
    pub fn supervisord_code(&self) -> i32 {
        match *self {
            ExitStatus::Code(code) => code,
            ExitStatus::Signal(_) | ExitStatus::Dumped(_) => -1,
        }
    }

    /// supervisord's log wording: `exit status 1`, `terminated by SIGTERM` or
    /// `terminated by SIGSEGV (core dumped)`.
    pub fn describe(&self) -> String {
        match *self {
            ExitStatus::Code(code) => format!("exit status {code}"),
            ExitStatus::Signal(sig) => format!("terminated by {}", signal_name(sig)),
            ExitStatus::Dumped(sig) => {
                format!("terminated by {} (core dumped)", signal_name(sig))
            }
        }
    }

    /// The signal that killed the child, core dump or not.
    pub fn signal(&self) -> Option<i32> {
        match *self {
            ExitStatus::Code(_) => None,
            ExitStatus::Signal(sig) | ExitStatus::Dumped(sig) => Some(sig),
        }
    }

    /// True for `exit(0)`.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The `SIG*` name of a signal number as supervisord prints it (`SIGTERM`), or
/// `signal N` for numbers without a name (real-time signals), like supervisord's
/// `signame`.
pub fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(signal) => signal.as_str().to_owned(),
        Err(_) => format!("signal {sig}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wording_matches_supervisord() {
        assert_eq!(ExitStatus::Code(1).describe(), "exit status 1");
        assert_eq!(ExitStatus::Code(0).describe(), "exit status 0");
        assert_eq!(ExitStatus::Signal(libc::SIGTERM).describe(), "terminated by SIGTERM");
        assert_eq!(ExitStatus::Signal(libc::SIGKILL).to_string(), "terminated by SIGKILL");
        assert_eq!(ExitStatus::Signal(40).describe(), "terminated by signal 40");
        assert_eq!(
            ExitStatus::Dumped(libc::SIGSEGV).describe(),
            "terminated by SIGSEGV (core dumped)"
        );
    }

    #[test]
    fn supervisord_code_is_minus_one_for_signals() {
        assert_eq!(ExitStatus::Code(3).supervisord_code(), 3);
        assert_eq!(ExitStatus::Signal(libc::SIGKILL).supervisord_code(), -1);
        assert!(ExitStatus::Code(0).success());
        assert!(!ExitStatus::Signal(libc::SIGINT).success());
        assert_eq!(ExitStatus::Dumped(libc::SIGABRT).supervisord_code(), -1);
        assert!(!ExitStatus::Dumped(libc::SIGABRT).success());
        assert_eq!(ExitStatus::Dumped(libc::SIGABRT).signal(), Some(libc::SIGABRT));
        assert_eq!(ExitStatus::Signal(libc::SIGKILL).signal(), Some(libc::SIGKILL));
        assert_eq!(ExitStatus::Code(1).signal(), None);
    }

    #[test]
    fn decodes_raw_wait_statuses() {
        // Raw encodings as the Linux kernel builds them: code << 8 for exits, the
        // signal number in the low 7 bits for kills (0x80 = core dumped), 0x7f for stops.
        assert_eq!(ExitStatus::from_raw(3 << 8), Some(ExitStatus::Code(3)));
        assert_eq!(ExitStatus::from_raw(255 << 8), Some(ExitStatus::Code(255)));
        assert_eq!(ExitStatus::from_raw(libc::SIGTERM), Some(ExitStatus::Signal(libc::SIGTERM)));
        assert_eq!(
            ExitStatus::from_raw(0x80 | libc::SIGSEGV),
            Some(ExitStatus::Dumped(libc::SIGSEGV))
        );
        assert_eq!(ExitStatus::from_raw(45), Some(ExitStatus::Signal(45)));
        assert_eq!(ExitStatus::from_raw((libc::SIGSTOP << 8) | 0x7f), None);
    }
}
