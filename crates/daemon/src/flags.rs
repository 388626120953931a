//! vigild's command line: supervisord's flags plus `--check`.
//!
//! Parsing is clap's, but the error behaviour is supervisord's: every usage error
//! prints `Error: <message>` and `For help, use vigild -h` on stderr and exits 2,
//! and positional arguments are refused. The parsed [`Flags`] do not touch the
//! file system; [`Flags::overlay`] applies them onto the loaded
//! [`Supervisord`] settings (CLI beats config, as in supervisord's `Options._set`)
//! and is where paths are made absolute and directories are checked to exist.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{ArgAction, Parser};
use vigil_config::{LogLevel, LogTarget, Supervisord, UserSpec};

/// The program name used in messages (`For help, use vigild -h`).
pub const PROGRAM: &str = "vigild";

/// What `-v` prints: the version first, as supervisord prints its bare version
/// for scripts to parse, then the commit it was built from (`unknown` outside a
/// git checkout).
pub const LONG_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("VIGIL_COMMIT"), ")");

/// Exit status of every usage or configuration error (supervisord's).
pub const USAGE_EXIT: i32 = 2;

/// The parsed command line. Options are `None`/`false` when not given, so that only
/// what the user typed overrides the configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Parser)]
#[command(
    name = "vigild",
    version,
    about = "vigild: the Vigil process supervisor (reads supervisord.conf)",
    disable_help_flag = true,
    disable_version_flag = true,
    // getopt, which supervisord uses, accepts any unambiguous long-option prefix.
    infer_long_args = true
)]
pub struct Flags {
    /// Configuration file path (searched in the default places when absent).
    #[arg(short = 'c', long = "configuration", value_name = "FILENAME")]
    pub configuration: Option<PathBuf>,
    /// Run in the foreground.
    #[arg(short = 'n', long = "nodaemon")]
    pub nodaemon: bool,
    /// No logs to stdout (only meaningful with nodaemon).
    #[arg(short = 's', long = "silent")]
    pub silent: bool,
    /// Run as this user (or numeric uid); only root may switch.
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// umask for the daemon (octal, e.g. 022).
    #[arg(short = 'm', long = "umask", value_name = "UMASK", value_parser = parse_octal)]
    pub umask: Option<u32>,
    /// Directory to chdir to when daemonized.
    #[arg(short = 'd', long = "directory", value_name = "DIRECTORY")]
    pub directory: Option<PathBuf>,
    /// Activity log path (`syslog` for syslog, `NONE` for no log).
    #[arg(short = 'l', long = "logfile", value_name = "FILENAME")]
    pub logfile: Option<String>,
    /// Rotate the activity log at this size (e.g. 50MB; 0 never rotates).
    #[arg(short = 'y', long = "logfile_maxbytes", value_name = "BYTES", value_parser = parse_byte_size)]
    pub logfile_maxbytes: Option<u64>,
    /// Number of rotated activity logs to keep.
    #[arg(short = 'z', long = "logfile_backups", value_name = "NUM")]
    pub logfile_backups: Option<u32>,
    /// Activity log level: critical, error, warn, info, debug, trace or blather.
    #[arg(short = 'e', long = "loglevel", value_name = "LEVEL", value_parser = parse_log_level)]
    pub loglevel: Option<LogLevel>,
    /// Write the daemon's pid to this file.
    #[arg(short = 'j', long = "pidfile", value_name = "FILENAME")]
    pub pidfile: Option<PathBuf>,
    /// Identifier returned by the control API and used in AUTO log names.
    #[arg(short = 'i', long = "identifier", value_name = "STR")]
    pub identifier: Option<String>,
    /// Directory for AUTO child logs.
    #[arg(short = 'q', long = "childlogdir", value_name = "DIRECTORY")]
    pub childlogdir: Option<PathBuf>,
    /// Keep old AUTO child logs at startup.
    #[arg(short = 'k', long = "nocleanup")]
    pub nocleanup: bool,
    /// Minimum number of file descriptors required to start.
    #[arg(short = 'a', long = "minfds", value_name = "NUM")]
    pub minfds: Option<u64>,
    /// Minimum number of processes available to start.
    #[arg(long = "minprocs", value_name = "NUM")]
    pub minprocs: Option<u64>,
    /// Strip ANSI escape sequences from child output.
    #[arg(short = 't', long = "strip_ansi")]
    pub strip_ansi: bool,
    /// Accepted for supervisord compatibility; profiling is not supported.
    #[arg(long = "profile_options", value_name = "OPTIONS")]
    pub profile_options: Option<String>,
    /// Validate the configuration, print a summary and exit (0 valid, 2 invalid).
    #[arg(long = "check")]
    pub check: bool,
    /// Live upgrade pre-flight: load the configuration, then exit 0 if this
    /// vigild reads the handover format VERSION, 1 if it does not.
    #[arg(long = "handover-check", value_name = "VERSION")]
    pub handover_check: Option<u32>,
    /// Print this help and exit.
    #[arg(short = 'h', short_alias = '?', long = "help", action = ArgAction::Help)]
    help: Option<bool>,
    /// Print the version and exit.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    version: Option<bool>,
    /// Collected only to be refused with supervisord's message.
    #[arg(hide = true, num_args = 0.., value_name = "ARGS")]
    positional: Vec<OsString>,
}

/// What to do instead of running, when the command line says so or is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EarlyExit {
    /// `-h`/`-v`: print this text on stdout and exit 0.
    Print(String),
    /// A usage error: print [`usage_error`] on stderr and exit 2.
    Usage(String),
}

impl EarlyExit {
    /// The process exit status for this outcome.
    pub fn code(&self) -> i32 {
        match self {
            EarlyExit::Print(_) => 0,
            EarlyExit::Usage(_) => USAGE_EXIT,
        }
    }
}

/// supervisord's two-line usage error text (without the trailing newline).
pub fn usage_error(message: &str) -> String {
    format!("Error: {message}\nFor help, use {PROGRAM} -h")
}

impl Flags {
    /// Parses `args` (including `argv[0]`) with supervisord's error behaviour.
    pub fn parse_from<I, T>(args: I) -> Result<Flags, EarlyExit>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let flags = match Flags::try_parse_from(args) {
            Ok(flags) => flags,
            Err(err) => {
                use clap::error::ErrorKind;
                return Err(match err.kind() {
                    ErrorKind::DisplayHelp => EarlyExit::Print(err.render().to_string()),
                    ErrorKind::DisplayVersion => EarlyExit::Print(format!("{LONG_VERSION}\n")),
                    _ => EarlyExit::Usage(clap_message(&err)),
                });
            }
        };
        if !flags.positional.is_empty() {
            let listed: Vec<String> =
                flags.positional.iter().map(|arg| format!("'{}'", arg.to_string_lossy())).collect();
            return Err(EarlyExit::Usage(format!(
                "positional arguments are not supported: [{}]",
                listed.join(", ")
            )));
        }
        Ok(flags)
    }

    /// Applies every flag that was given onto `settings`. Relative paths are made
    /// absolute against `cwd` (as supervisord does), directories must exist, and a
    /// user name is resolved to its uid and primary gid. On error nothing is changed.
    pub fn overlay(&self, settings: &mut Supervisord, cwd: &Path) -> Result<(), String> {
        let mut next = settings.clone();
        if self.nodaemon {
            next.nodaemon = true;
        }
        if self.silent {
            next.silent = true;
        }
        if let Some(user) = &self.user {
            next.user = Some(resolve_user(user)?);
        }
        if let Some(umask) = self.umask {
            next.umask = umask;
        }
        if let Some(directory) = &self.directory {
            next.directory = Some(existing_directory(directory, cwd)?);
        }
        if let Some(logfile) = &self.logfile {
            next.logfile = log_target(logfile, cwd);
        }
        if let Some(maxbytes) = self.logfile_maxbytes {
            next.logfile_maxbytes = maxbytes;
        }
        if let Some(backups) = self.logfile_backups {
            next.logfile_backups = backups;
        }
        if let Some(level) = self.loglevel {
            next.loglevel = level;
        }
        if let Some(pidfile) = &self.pidfile {
            next.pidfile = Some(cwd.join(pidfile));
        }
        if let Some(identifier) = &self.identifier {
            next.identifier = identifier.clone();
        }
        if let Some(childlogdir) = &self.childlogdir {
            next.childlogdir = existing_directory(childlogdir, cwd)?;
        }
        if self.nocleanup {
            next.nocleanup = true;
        }
        if let Some(minfds) = self.minfds {
            next.minfds = minfds;
        }
        if let Some(minprocs) = self.minprocs {
            next.minprocs = minprocs;
        }
        if self.strip_ansi {
            next.strip_ansi = true;
        }
        *settings = next;
        Ok(())
    }
}

/// supervisord's wording for a clap error: `option --x not recognized`,
/// `invalid value for --x 'v': <why>`, else clap's own first line without its
/// `error: ` prefix and usage/tip lines.
fn clap_message(err: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let context = |kind| match err.get(kind) {
        Some(ContextValue::String(text)) => Some(text.clone()),
        _ => None,
    };
    // clap shows the argument as `--umask <UMASK>`; keep the option itself.
    let option = context(ContextKind::InvalidArg)
        .map(|arg| arg.split_whitespace().next().unwrap_or_default().to_owned());
    match (err.kind(), option) {
        (ErrorKind::UnknownArgument, Some(option)) => {
            return format!("option {option} not recognized");
        }
        (ErrorKind::ValueValidation, Some(option)) => {
            let value = context(ContextKind::InvalidValue).unwrap_or_default();
            let why = std::error::Error::source(err).map(ToString::to_string).unwrap_or_default();
            return format!("invalid value for {option} '{value}': {why}");
        }
        _ => {}
    }
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).trim().to_owned()
}

fn parse_octal(value: &str) -> Result<u32, String> {
    u32::from_str_radix(value, 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("{value} can not be converted to an octal type"))
}

/// supervisord's `byte_size`: an integer with an optional KB/MB/GB suffix (any
/// case, powers of 1024).
pub fn parse_byte_size(value: &str) -> Result<u64, String> {
    let trimmed = value.trim();
    let upper = trimmed.to_ascii_uppercase();
    let (digits, multiplier) = if let Some(d) = upper.strip_suffix("KB") {
        (d, 1024)
    } else if let Some(d) = upper.strip_suffix("MB") {
        (d, 1024 * 1024)
    } else if let Some(d) = upper.strip_suffix("GB") {
        (d, 1024 * 1024 * 1024)
    } else {
        (upper.as_str(), 1)
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("value {value:?} is not a valid byte size"))
}

/// supervisord's `logging_level`: a level name in any case.
pub fn parse_log_level(value: &str) -> Result<LogLevel, String> {
    match value.to_ascii_lowercase().as_str() {
        "critical" => Ok(LogLevel::Critical),
        "error" => Ok(LogLevel::Error),
        "warn" => Ok(LogLevel::Warn),
        "info" => Ok(LogLevel::Info),
        "debug" => Ok(LogLevel::Debug),
        "trace" => Ok(LogLevel::Trace),
        "blather" => Ok(LogLevel::Blather),
        _ => Err(format!("bad logging level name '{value}'")),
    }
}

fn log_target(value: &str, cwd: &Path) -> LogTarget {
    if value.eq_ignore_ascii_case("syslog") {
        LogTarget::Syslog
    } else if value.eq_ignore_ascii_case("none") || value.eq_ignore_ascii_case("off") {
        LogTarget::None
    } else {
        LogTarget::Path(cwd.join(value))
    }
}

fn existing_directory(path: &Path, cwd: &Path) -> Result<PathBuf, String> {
    let absolute = cwd.join(path);
    if absolute.is_dir() {
        Ok(absolute)
    } else {
        Err(format!("{} is not an existing directory", path.display()))
    }
}

/// Resolves `-u` (a name or a numeric uid) to a [`UserSpec`].
pub fn resolve_user(user: &str) -> Result<UserSpec, String> {
    use nix::unistd::{Uid, User};
    let found = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(user),
    };
    match found {
        Ok(Some(entry)) => {
            Ok(UserSpec { name: user.to_owned(), uid: entry.uid.as_raw(), gid: entry.gid.as_raw() })
        }
        Ok(None) => Err(format!("Invalid user name {user}")),
        Err(errno) => Err(format!("could not look up user {user}: {errno}")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use vigil_config::OnFatal;

    use super::*;

    fn parse(args: &[&str]) -> Result<Flags, EarlyExit> {
        Flags::parse_from(std::iter::once("vigild").chain(args.iter().copied()))
    }

    fn settings() -> Supervisord {
        Supervisord {
            logfile: LogTarget::Path("/var/log/supervisord.log".into()),
            logfile_maxbytes: 50 * 1024 * 1024,
            logfile_backups: 10,
            loglevel: LogLevel::Info,
            pidfile: Some("/run/supervisord.pid".into()),
            umask: 0o022,
            nodaemon: false,
            silent: false,
            minfds: 1024,
            minprocs: 200,
            nocleanup: false,
            childlogdir: "/tmp".into(),
            user: None,
            directory: None,
            strip_ansi: false,
            environment: BTreeMap::new(),
            identifier: "supervisor".into(),
            on_fatal: OnFatal::Ignore,
            env_file: Vec::new(),
            cgroup_root: None,
            logfile_format: Default::default(),
        }
    }

    #[test]
    fn no_flags_parse_to_defaults() {
        assert_eq!(parse(&[]).unwrap(), Flags::default());
    }

    #[test]
    fn short_and_long_forms_parse() {
        let short = parse(&[
            "-c", "a.conf", "-n", "-s", "-m", "027", "-l", "x.log", "-y", "1KB", "-z", "3", "-e",
            "DEBUG", "-j", "p.pid", "-i", "ident", "-k", "-a", "2048", "-t",
        ])
        .unwrap();
        let long = parse(&[
            "--configuration=a.conf",
            "--nodaemon",
            "--silent",
            "--umask",
            "027",
            "--logfile",
            "x.log",
            "--logfile_maxbytes",
            "1kb",
            "--logfile_backups=3",
            "--loglevel",
            "debug",
            "--pidfile",
            "p.pid",
            "--identifier",
            "ident",
            "--nocleanup",
            "--minfds",
            "2048",
            "--strip_ansi",
        ])
        .unwrap();
        assert_eq!(short, long);
        assert_eq!(short.configuration, Some(PathBuf::from("a.conf")));
        assert_eq!(short.umask, Some(0o027));
        assert_eq!(short.logfile_maxbytes, Some(1024));
        assert_eq!(short.loglevel, Some(LogLevel::Debug));
        assert_eq!(short.minfds, Some(2048));
        assert!(short.nodaemon && short.silent && short.nocleanup && short.strip_ansi);
    }

    #[test]
    fn check_minprocs_and_profile_options_parse() {
        let flags =
            parse(&["--check", "--minprocs", "50", "--profile_options", "cumulative"]).unwrap();
        assert!(flags.check);
        assert_eq!(flags.minprocs, Some(50));
        assert_eq!(flags.profile_options.as_deref(), Some("cumulative"));
    }

    #[test]
    fn unambiguous_long_prefixes_work_like_getopt() {
        let flags = parse(&["--config=a.conf", "--nodae", "--minp", "7"]).unwrap();
        assert_eq!(flags.configuration, Some(PathBuf::from("a.conf")));
        assert!(flags.nodaemon);
        assert_eq!(flags.minprocs, Some(7));
        // `--c` could be --configuration, --childlogdir or --check.
        assert!(matches!(parse(&["--c", "x"]), Err(EarlyExit::Usage(_))));
        // Attached short values.
        assert_eq!(parse(&["-ca.conf"]).unwrap().configuration, Some(PathBuf::from("a.conf")));
    }

    #[test]
    fn positional_arguments_are_refused() {
        assert_eq!(
            parse(&["-n", "extra", "more"]),
            Err(EarlyExit::Usage(
                "positional arguments are not supported: ['extra', 'more']".into()
            ))
        );
    }

    #[test]
    fn help_and_version_exit_zero() {
        for args in [&["-h"][..], &["-?"], &["--help"]] {
            let outcome = parse(args).unwrap_err();
            assert_eq!(outcome.code(), 0);
            match outcome {
                EarlyExit::Print(text) => assert!(text.contains("--configuration"), "{text}"),
                other => panic!("{other:?}"),
            }
        }
        let version = parse(&["-v"]).unwrap_err();
        assert_eq!(version.code(), 0);
        let commit = env!("VIGIL_COMMIT");
        assert!(
            commit == "unknown"
                || (commit.len() >= 4 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
            "{commit}"
        );
        assert_eq!(
            version,
            EarlyExit::Print(format!("{} (commit {commit})\n", env!("CARGO_PKG_VERSION")))
        );
    }

    #[test]
    fn bad_values_are_usage_errors_with_supervisord_text() {
        let err = parse(&["-m", "9x"]).unwrap_err();
        assert_eq!(err.code(), 2);
        let EarlyExit::Usage(message) = err else { panic!() };
        assert_eq!(
            message,
            "invalid value for --umask '9x': 9x can not be converted to an octal type"
        );
        let EarlyExit::Usage(message) = parse(&["-e", "loud"]).unwrap_err() else { panic!() };
        assert_eq!(message, "invalid value for --loglevel 'loud': bad logging level name 'loud'");
        let EarlyExit::Usage(message) = parse(&["--bogus"]).unwrap_err() else { panic!() };
        assert_eq!(message, "option --bogus not recognized");
        assert!(matches!(parse(&["-a", "-1"]), Err(EarlyExit::Usage(_))));
    }

    #[test]
    fn usage_error_has_two_lines() {
        assert_eq!(
            usage_error("could not find config file x.conf"),
            "Error: could not find config file x.conf\nFor help, use vigild -h"
        );
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("0"), Ok(0));
        assert_eq!(parse_byte_size("50MB"), Ok(50 * 1024 * 1024));
        assert_eq!(parse_byte_size("2gb"), Ok(2 * 1024 * 1024 * 1024));
        assert!(parse_byte_size("MB").is_err());
        assert!(parse_byte_size("-1").is_err());
    }

    #[test]
    fn overlay_changes_only_given_values_and_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        let flags = parse(&[
            "-n",
            "-l",
            "main.log",
            "-j",
            "run/d.pid",
            "-q",
            "logs",
            "-y",
            "0",
            "-e",
            "blather",
            "-i",
            "box",
            "-m",
            "077",
        ])
        .unwrap();
        let mut s = settings();
        flags.overlay(&mut s, dir.path()).unwrap();
        let mut expected = settings();
        expected.nodaemon = true;
        expected.logfile = LogTarget::Path(dir.path().join("main.log"));
        expected.pidfile = Some(dir.path().join("run/d.pid"));
        expected.childlogdir = dir.path().join("logs");
        expected.logfile_maxbytes = 0;
        expected.loglevel = LogLevel::Blather;
        expected.identifier = "box".into();
        expected.umask = 0o077;
        assert_eq!(s, expected);
    }

    #[test]
    fn overlay_maps_special_log_targets() {
        let mut s = settings();
        parse(&["-l", "SYSLOG"]).unwrap().overlay(&mut s, Path::new("/")).unwrap();
        assert_eq!(s.logfile, LogTarget::Syslog);
        parse(&["-l", "NONE"]).unwrap().overlay(&mut s, Path::new("/")).unwrap();
        assert_eq!(s.logfile, LogTarget::None);
    }

    #[test]
    fn overlay_error_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let flags = parse(&["-n", "-d", "missing"]).unwrap();
        let mut s = settings();
        let err = flags.overlay(&mut s, dir.path()).unwrap_err();
        assert_eq!(err, "missing is not an existing directory");
        assert_eq!(s, settings());
    }

    #[test]
    fn overlay_resolves_user_by_uid() {
        let uid = nix::unistd::getuid().as_raw();
        let mut s = settings();
        parse(&["-u", &uid.to_string()]).unwrap().overlay(&mut s, Path::new("/")).unwrap();
        let user = s.user.unwrap();
        assert_eq!(user.uid, uid);
        let err = resolve_user("no-such-user-vigil-test").unwrap_err();
        assert_eq!(err, "Invalid user name no-such-user-vigil-test");
    }
}
