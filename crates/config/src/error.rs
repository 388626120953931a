//! Diagnostics: one error or warning tied to a file, line, section and key, and
//! [`ConfigErrors`], the whole list a failed load returns.
//!
//! Loading never stops at the first problem: every reader and validator pushes into
//! a [`Diagnostics`] sink so that a user fixes a config in one round trip.

use std::fmt;
use std::path::PathBuf;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// The file as the user named it (or as an include glob produced it).
    pub file: PathBuf,
    /// 1-based line, when the problem has one.
    pub line: Option<u32>,
    /// The section name without brackets (`program:web`).
    pub section: Option<String>,
    /// The key inside the section (`startsecs`).
    pub key: Option<String>,
    /// What is wrong, in one line.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `file:line: [section] key: message`, leaving out the parts that are unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(section) = &self.section {
            write!(f, "[{section}] ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every error of a failed load, in file order then line order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// At least one diagnostic.
    pub errors: Vec<Diagnostic>,
}

impl fmt::Display for ConfigErrors {
    /// One diagnostic per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Where a value or section was written; the pieces of a [`Diagnostic`] minus the message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Place {
    pub(crate) file: PathBuf,
    pub(crate) line: Option<u32>,
    pub(crate) section: Option<String>,
    pub(crate) key: Option<String>,
}

impl Place {
    pub(crate) fn diag(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line: self.line,
            section: self.section.clone(),
            key: self.key.clone(),
            message: message.into(),
        }
    }
}

/// Anything that can say where a diagnostic belongs. Building a [`Place`] clones
/// a path and two strings, so hot paths carry a borrowed locator and only turn it
/// into a `Place` when there is something to report.
pub(crate) trait Locate {
    fn place(&self) -> Place;
}

impl Locate for Place {
    fn place(&self) -> Place {
        self.clone()
    }
}

/// The sink every stage of loading reports into.
#[derive(Debug, Default)]
pub(crate) struct Diagnostics {
    pub(crate) errors: Vec<Diagnostic>,
    pub(crate) warnings: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(crate) fn error(&mut self, at: &impl Locate, message: impl Into<String>) {
        self.errors.push(at.place().diag(message));
    }

    pub(crate) fn warn(&mut self, at: &impl Locate, message: impl Into<String>) {
        self.warnings.push(at.place().diag(message));
    }

    /// Orders diagnostics by the order files were read, then by line, so the
    /// output reads top to bottom whatever order the validators ran in.
    pub(crate) fn sort(&mut self, files: &[PathBuf]) {
        let rank = |d: &Diagnostic| {
            let file = files.iter().position(|f| *f == d.file).unwrap_or(usize::MAX);
            (file, d.line.unwrap_or(0))
        };
        self.errors.sort_by_key(rank);
        self.warnings.sort_by_key(rank);
        self.errors.dedup();
        self.warnings.dedup();
    }
}
