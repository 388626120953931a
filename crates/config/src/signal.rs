//! supervisord's signal names: the one table that turns `TERM`, `sigterm`,
//! `SIGTERM` or `15` into a signal (`stopsignal=`, `signal` commands, the
//! XML-RPC `signalProcess*` methods) and a signal back into its name.
//!
//! The accepted names are those of Python's `signal` module on Linux, which is
//! what supervisord's `signal_number` looks up, including its aliases (`IOT`,
//! `CLD`, `POLL`); numbers must be signals this platform defines.

use std::fmt;
use std::str::FromStr;

use nix::sys::signal::Signal as Sys;

use crate::expand::py_repr;
use crate::model::Signal;
use crate::values::python_int;

/// Every name a signal may be given by (without `SIG`), with its signal.
/// The first name of each signal is the one it is shown by.
const TABLE: &[(&str, Sys)] = &[
    ("HUP", Sys::SIGHUP),
    ("INT", Sys::SIGINT),
    ("QUIT", Sys::SIGQUIT),
    ("ILL", Sys::SIGILL),
    ("TRAP", Sys::SIGTRAP),
    ("ABRT", Sys::SIGABRT),
    ("IOT", Sys::SIGABRT),
    ("BUS", Sys::SIGBUS),
    ("FPE", Sys::SIGFPE),
    ("KILL", Sys::SIGKILL),
    ("USR1", Sys::SIGUSR1),
    ("SEGV", Sys::SIGSEGV),
    ("USR2", Sys::SIGUSR2),
    ("PIPE", Sys::SIGPIPE),
    ("ALRM", Sys::SIGALRM),
    ("TERM", Sys::SIGTERM),
    ("STKFLT", Sys::SIGSTKFLT),
    ("CHLD", Sys::SIGCHLD),
    ("CLD", Sys::SIGCHLD),
    ("CONT", Sys::SIGCONT),
    ("STOP", Sys::SIGSTOP),
    ("TSTP", Sys::SIGTSTP),
    ("TTIN", Sys::SIGTTIN),
    ("TTOU", Sys::SIGTTOU),
    ("URG", Sys::SIGURG),
    ("XCPU", Sys::SIGXCPU),
    ("XFSZ", Sys::SIGXFSZ),
    ("VTALRM", Sys::SIGVTALRM),
    ("PROF", Sys::SIGPROF),
    ("WINCH", Sys::SIGWINCH),
    ("IO", Sys::SIGIO),
    ("POLL", Sys::SIGIO),
    ("PWR", Sys::SIGPWR),
    ("SYS", Sys::SIGSYS),
];

/// Why a text is not a signal; its message is supervisord's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSignal {
    /// The text as given.
    pub text: String,
    /// True when the text was a number (no such signal number), false when it
    /// was a name.
    pub numeric: bool,
}

impl fmt::Display for BadSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.numeric { "number" } else { "name" };
        write!(f, "value {} is not a valid signal {what}", py_repr(&self.text))
    }
}

impl std::error::Error for BadSignal {}

impl Signal {
    /// supervisord's `signal_number`: a number as Python's `int()` reads it
    /// (`15`, ` +15 `), or a name in any case, with or without `SIG`.
    pub fn parse(text: &str) -> Result<Signal, BadSignal> {
        let bad = |numeric| BadSignal { text: text.to_owned(), numeric };
        let trimmed = text.trim();
        if let Some(number) = python_int(trimmed) {
            return i32::try_from(number)
                .ok()
                .and_then(|number| Sys::try_from(number).ok())
                .map(|sig| Signal(sig as i32))
                .ok_or_else(|| bad(true));
        }
        let upper = trimmed.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        TABLE
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, sig)| Signal(*sig as i32))
            .ok_or_else(|| bad(false))
    }

    /// The signal's number.
    pub fn number(self) -> i32 {
        self.0
    }

    /// The signal's name without `SIG` (`TERM`), `None` for a number this
    /// platform has no signal for.
    pub fn name(self) -> Option<&'static str> {
        TABLE.iter().find(|(_, sig)| *sig as i32 == self.0).map(|(name, _)| *name)
    }

    /// Every name [`Signal::parse`] accepts, without `SIG`, in number order
    /// (for completion and help).
    pub fn names() -> impl Iterator<Item = &'static str> {
        TABLE.iter().map(|(name, _)| *name)
    }
}

impl FromStr for Signal {
    type Err = BadSignal;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Signal::parse(text)
    }
}

/// supervisord's name without `SIG` (`TERM`); an unknown number prints as is.
impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_as_supervisord_reads_them() {
        let good = [
            ("TERM", 15),
            ("sigterm", 15),
            ("SIGKILL", 9),
            ("hup", 1),
            (" usr2 ", 12),
            ("9", 9),
            (" +15 ", 15),
            ("IOT", 6),
            ("SIGCLD", 17),
            ("poll", 29),
            ("SIGIO", 29),
        ];
        for (text, number) in good {
            assert_eq!(Signal::parse(text), Ok(Signal(number)), "{text}");
            assert_eq!(text.parse::<Signal>().map(Signal::number), Ok(number), "{text}");
        }
        for (text, numeric) in [("0", true), ("-1", true), ("99999999999", true), ("40", true)] {
            assert_eq!(Signal::parse(text), Err(BadSignal { text: text.into(), numeric }));
        }
        for text in ["BOGUS", "SIG", "", "SIG_DFL", "1.5"] {
            assert_eq!(Signal::parse(text), Err(BadSignal { text: text.into(), numeric: false }));
        }
        assert_eq!(
            Signal::parse("bogus").unwrap_err().to_string(),
            "value 'bogus' is not a valid signal name"
        );
        assert_eq!(
            Signal::parse("99").unwrap_err().to_string(),
            "value '99' is not a valid signal number"
        );
    }

    #[test]
    fn every_signal_is_shown_by_its_first_name() {
        assert_eq!(Signal(15).to_string(), "TERM");
        assert_eq!(Signal(6).to_string(), "ABRT");
        assert_eq!(Signal(17).to_string(), "CHLD");
        assert_eq!(Signal(29).name(), Some("IO"));
        assert_eq!(Signal(99).to_string(), "99");
        for name in Signal::names() {
            let signal = Signal::parse(name).expect(name);
            assert_eq!(Signal::parse(signal.name().expect(name)), Ok(signal), "{name}");
        }
        // The table covers every signal the platform defines.
        for sys in Sys::iterator() {
            assert!(Signal(sys as i32).name().is_some(), "{sys}");
        }
    }
}
