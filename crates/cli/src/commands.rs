//! vigilctl's command line as clap definitions: the global options ([`Cli`])
//! and every command ([`Action`]) with its name, arguments and help, each
//! written once. [`command`] is the whole `clap::Command`, for help, man pages
//! and shell completions; [`parse_words`] reads one command (a shell line or
//! the words after the options) with the same definitions.
//!
//! Arguments are collected as the words were typed, never rejected by clap:
//! each command checks them itself, with supervisorctl's messages and exit
//! statuses (`Error: start requires a process name`, `tail -100 name`, `update
//! --bogus`). A command's help is supervisorctl-style lines, printed alike by
//! `help CMD`, `CMD --help` and after a usage error. Only `--help` asks for
//! help: `-h` stays an ordinary word, as it is to supervisorctl.

use std::io::Write;
use std::path::PathBuf;

use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches, Parser, Subcommand};

/// The global options, before the command.
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(
    name = "vigilctl",
    // The version and the commit it was built from (`unknown` outside git).
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("VIGIL_COMMIT"), ")"),
    about = "Control a running vigild (supervisorctl-compatible)",
    disable_help_subcommand = true,
    after_help = "Run `vigilctl help <command>` or `vigilctl <command> --help` for a command's help.\n\
                  Without a command, vigilctl starts its interactive shell."
)]
pub struct Cli {
    /// Configuration file (searched for like vigild's when absent).
    #[arg(short = 'c', long = "configuration", value_hint = clap::ValueHint::FilePath)]
    pub configuration: Option<PathBuf>,
    /// Where vigild listens: unix:///path or http://host:port.
    #[arg(short = 's', long = "serverurl")]
    pub serverurl: Option<String>,
    /// Username for authentication.
    #[arg(short = 'u', long = "username")]
    pub username: Option<String>,
    /// Password for authentication.
    #[arg(short = 'p', long = "password")]
    pub password: Option<String>,
    /// Start the shell (the default when no command is given).
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,
    /// Keep the shell's readline history in this file.
    #[arg(
        short = 'r',
        long = "history-file",
        alias = "history_file",
        value_hint = clap::ValueHint::FilePath
    )]
    pub history_file: Option<PathBuf>,
    /// Print one JSON document per command instead of supervisorctl's text
    /// (also accepted after the command).
    #[arg(long)]
    pub json: bool,
    /// The command; none starts the shell.
    #[command(subcommand)]
    pub action: Option<Action>,
}

/// One command and its words. The variants are in `help`'s order.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Activate groups from the last-read config.
    #[command(after_help = "add <name> [...]\tActivate the named groups from the last-read config")]
    Add {
        /// Groups to add.
        #[arg(value_name = "GROUP", allow_hyphen_values = true)]
        groups: Vec<String>,
    },
    /// List every process of the last-read config.
    #[command(after_help = "avail\t\t\tList every process of the last-read config")]
    Avail {
        /// None are accepted.
        #[arg(hide = true, allow_hyphen_values = true)]
        extra: Vec<String>,
    },
    /// Empty processes' log files.
    #[command(after_help = "clear <name>\t\tEmpty a process's log files\n\
                            clear <name> <name>\tEmpty the log files of several processes\n\
                            clear all\t\tEmpty the log files of every process")]
    Clear {
        /// Processes (`name`, `group:name`), groups (`group:*`) or `all`.
        #[arg(value_name = "NAME", allow_hyphen_values = true)]
        names: Vec<String>,
    },
    /// Leave the shell.
    #[command(after_help = "exit\tLeave the vigilctl shell.")]
    Exit {
        /// Ignored.
        #[arg(hide = true, allow_hyphen_values = true)]
        extra: Vec<String>,
    },
    /// Attach to a running process.
    #[command(after_help = "fg <process>\tAttach to a running process (stdin, stdout, stderr)\n\
                            \t\tCtrl-C detaches")]
    Fg {
        /// The process (`name` or `group:name`).
        #[arg(value_name = "PROCESS", allow_hyphen_values = true)]
        names: Vec<String>,
    },
    /// The daemon's main log.
    #[command(after_help = "maintail -f \tFollow the daemon's main log (Ctrl-C to stop)\n\
                            maintail -100\tThe last 100 *bytes* of the daemon's main log\n\
                            maintail\tThe last 1600 *bytes* of the daemon's main log")]
    Maintail {
        /// `-f` to follow, or `-BYTES`.
        #[arg(value_name = "-f|-BYTES", allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Talk to another vigild.
    #[command(after_help = "open <url>\tTalk to another vigild\n\
                            \t\t(unix:///socket/path or http://host:port)")]
    Open {
        /// unix:///socket/path or http://host:port.
        #[arg(value_name = "URL", allow_hyphen_values = true)]
        url: Vec<String>,
    },
    /// The pid of the daemon or of processes.
    #[command(after_help = "pid\t\t\tThe daemon's pid\n\
                            pid <name>\t\tThe pid of one process (0 when not running)\n\
                            pid all\t\t\tThe pid of every process, one per line")]
    Pid {
        /// Processes, or `all`; none for the daemon.
        #[arg(value_name = "NAME", allow_hyphen_values = true)]
        names: Vec<String>,
    },
    /// Leave the shell.
    #[command(after_help = "quit\tLeave the vigilctl shell.")]
    Quit {
        /// Ignored.
        #[arg(hide = true, allow_hyphen_values = true)]
        extra: Vec<String>,
    },
    /// Restart the daemon in place.
    #[command(after_help = "reload \t\tRestart the daemon in place (stops every process)")]
    Reload {
        /// None are accepted.
        #[arg(hide = true, allow_hyphen_values = true)]
        extra: Vec<String>,
    },
    /// Deactivate stopped groups.
    #[command(after_help = "remove <name> [...]\tDeactivate stopped groups")]
    Remove {
        /// Groups to remove.
        #[arg(value_name = "GROUP", allow_hyphen_values = true)]
        groups: Vec<String>,
    },
    /// Re-read the config and show what changed.
    #[command(
        after_help = "reread \t\t\tRe-read the config and show what changed, applying nothing"
    )]
    Reread {
        /// None are accepted.
        #[arg(hide = true, allow_hyphen_values = true)]
        extra: Vec<String>,
    },
    /// Restart processes.
    #[command(after_help = "restart <name>\t\tRestart a process\n\
                            restart <gname>:*\tRestart every process of a group\n\
                            restart <name> <name>\tRestart several processes or groups\n\
                            restart all\t\tRestart every process\n\
                            Note: restart does not re-read the config; use reread and update for that.")]
    Restart {
        /// Processes (`name`, `group:name`), groups (`group:*`) or `all`.
        #[arg(value_name = "NAME", allow_hyphen_values = true)]
        names: Vec<String>,
    },
    /// Stop every process and the daemon.
    #[command(after_help = "shutdown \tStop every process and the daemon.")]
    Shutdown {
        /// Ignored.
        #[arg(hide = true, allow_hyphen_values = true)]
        extra: Vec<String>,
    },
    /// Send a signal to processes.
    #[command(after_help = "signal <signal name> <name>\t\tSend a signal to a process\n\
                            signal <signal name> <gname>:*\t\tSend a signal to every process of a group\n\
                            signal <signal name> <name> <name>\tSend a signal to several processes or groups\n\
                            signal <signal name> all\t\tSend a signal to every process")]
    Signal {
        /// A signal name (`HUP`, `SIGHUP`, any case) or number.
        #[arg(value_name = "SIGNAL", allow_hyphen_values = true)]
        signal: Option<String>,
        /// Processes (`name`, `group:name`), groups (`group:*`) or `all`.
        #[arg(value_name = "NAME", allow_hyphen_values = true)]
        names: Vec<String>,
    },
    /// Start processes.
    #[command(after_help = "start <name>\t\tStart a process\n\
                            start <gname>:*\t\tStart every process of a group\n\
                            start <name> <name>\tStart several processes or groups\n\
                            start all\t\tStart every process")]
    Start {
        /// Processes (`name`, `group:name`), groups (`group:*`) or `all`.
        #[arg(value_name = "NAME", allow_hyphen_values = true)]
        names: Vec<String>,
    },
    /// Status of processes.
    #[command(after_help = "status <name>\t\tStatus of one process\n\
                            status <gname>:*\tStatus of every process of a group\n\
                            status <name> <name>\tStatus of several processes\n\
                            status\t\t\tStatus of every process")]
    Status {
        /// Processes (`name`, `group:name`), groups (`group:*`) or `all`.
        #[arg(value_name = "NAME", allow_hyphen_values = true)]
        names: Vec<String>,
    },
    /// Stop processes.
    #[command(after_help = "stop <name>\t\tStop a process\n\
                            stop <gname>:*\t\tStop every process of a group\n\
                            stop <name> <name>\tStop several processes or groups\n\
                            stop all\t\tStop every process")]
    Stop {
        /// Processes (`name`, `group:name`), groups (`group:*`) or `all`.
        #[arg(value_name = "NAME", allow_hyphen_values = true)]
        names: Vec<String>,
    },
    /// A process's log.
    #[command(after_help = "tail [-f] <name> [stdout|stderr] (default stdout)\n\
                            Ex:\n\
                            tail -f <name>\t\tFollow a process's stdout (Ctrl-C to stop)\n\
                            tail -100 <name>\tThe last 100 *bytes* of a process's stdout\n\
                            tail <name> stderr\tThe last 1600 *bytes* of a process's stderr")]
    Tail {
        /// `[-f|-BYTES] NAME [stdout|stderr]`.
        #[arg(value_name = "ARG", allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A live view of every process.
    #[command(after_help = "top\t\t\tA live view of every process: state, health, CPU, memory,\n\
                            \t\t\trestarts, and the selected process's log as it comes.\n\
                            \t\t\tKeys: up/down select, s start, x stop, r restart,\n\
                            \t\t\to sort by the next column, O reverse, / filter,\n\
                            \t\t\te stdout/stderr, q quit.")]
    Top {
        /// None are accepted.
        #[arg(hide = true, allow_hyphen_values = true)]
        extra: Vec<String>,
    },
    /// Re-read the config and apply what changed.
    #[command(
        after_help = "update\t\t\tRe-read the config and apply what changed: start added programs,\n\
                            \t\t\tstop removed ones, restart changed ones; others keep running\n\
                            update all\t\tThe same\n\
                            update <gname> [...]\tApply the changes of the named groups only\n\
                            update --dry-run [...]\tShow what update would do, changing nothing"
    )]
    Update {
        /// `--dry-run` (`-n`), then groups or `all`.
        #[arg(value_name = "GROUP", allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Replace vigild's binary while every process keeps running.
    #[command(after_help = "upgrade			Re-execute vigild from its own path (after a package
                            			upgrade): same pid, every process kept running
                            upgrade --binary PATH	The same with the vigild at PATH")]
    Upgrade {
        /// `--binary PATH`.
        #[arg(value_name = "ARGS", allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The version of the remote vigild.
    #[command(after_help = "version\t\t\tThe version of the remote vigild")]
    Version {
        /// None are accepted.
        #[arg(hide = true, allow_hyphen_values = true)]
        extra: Vec<String>,
    },
    /// Help on the commands.
    #[command(after_help = "help\t\tPrint a list of available actions\n\
                            help <action>\tPrint help for <action>")]
    Help {
        /// The command to explain; none lists them.
        #[arg(value_name = "COMMAND", allow_hyphen_values = true)]
        topic: Vec<String>,
    },
    /// Any other word: supervisorctl's `*** Unknown syntax`.
    #[command(external_subcommand)]
    Unknown(Vec<String>),
}

impl Action {
    /// `name` followed by [`Action::words`]; an unknown command's words
    /// already start with its name.
    fn words_with(&self, name: Option<&str>) -> Vec<String> {
        let words = match self {
            Action::Unknown(words) => words.clone(),
            other => other.words(),
        };
        name.map(str::to_owned).into_iter().chain(words).collect()
    }

    /// The command's words after its name, in the order they were typed.
    pub fn words(&self) -> Vec<String> {
        match self {
            Action::Signal { signal, names } => signal.iter().chain(names).cloned().collect(),
            Action::Unknown(words) => words.iter().skip(1).cloned().collect(),
            Action::Add { groups: words }
            | Action::Avail { extra: words }
            | Action::Clear { names: words }
            | Action::Exit { extra: words }
            | Action::Fg { names: words }
            | Action::Maintail { args: words }
            | Action::Open { url: words }
            | Action::Pid { names: words }
            | Action::Quit { extra: words }
            | Action::Reload { extra: words }
            | Action::Remove { groups: words }
            | Action::Reread { extra: words }
            | Action::Restart { names: words }
            | Action::Shutdown { extra: words }
            | Action::Start { names: words }
            | Action::Status { names: words }
            | Action::Stop { names: words }
            | Action::Tail { args: words }
            | Action::Top { extra: words }
            | Action::Update { args: words }
            | Action::Version { extra: words }
            | Action::Upgrade { args: words }
            | Action::Help { topic: words } => words.clone(),
        }
    }
}

/// Gives every command `--help` and no `-h`: supervisorctl reads `-h` after a
/// command as a word.
fn long_help_only(command: Command) -> Command {
    command.mut_subcommands(|sub| {
        // The help of a command is its lines, as `help CMD` prints them.
        sub.help_template("{after-help}").disable_help_flag(true).arg(
            Arg::new("help").long("help").action(ArgAction::Help).help("Print this command's help"),
        )
    })
}

/// vigilctl's whole command line: the global options and every command.
pub fn command() -> Command {
    long_help_only(Cli::command())
}

/// The commands alone, for a line typed in the shell (no program name).
fn commands() -> Command {
    long_help_only(Action::augment_subcommands(
        Command::new("vigilctl")
            .no_binary_name(true)
            .disable_help_subcommand(true)
            .disable_help_flag(true)
            .disable_version_flag(true)
            .subcommand_required(true),
    ))
}

/// Parses the global options and the command from the process arguments;
/// also gives the command line's words (the command's name first, empty
/// without a command). Help and usage errors are clap's, and end the process
/// (`vigilctl CMD --help` prints the command's help lines and exits 0).
pub fn parse_args() -> (Cli, Vec<String>) {
    let matches = command().try_get_matches().unwrap_or_else(|error| {
        if error.kind() == clap::error::ErrorKind::DisplayHelp {
            // A closed stdout (`vigilctl --help | head -1`) is no error.
            let _ = writeln!(std::io::stdout(), "{}", help_shown(&error));
            std::process::exit(0);
        }
        error.exit()
    });
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let words = match (&cli.action, matches.subcommand_name()) {
        // An unknown command's own word comes first in its words.
        (Some(action @ Action::Unknown(_)), _) => action.words_with(None),
        (Some(action), name) => action.words_with(name),
        (None, _) => Vec::new(),
    };
    (cli, words)
}

/// The text of a `--help`, without the blank line clap puts before a
/// command's after-help lines.
fn help_shown(error: &clap::Error) -> String {
    error.render().to_string().trim_start_matches('\n').trim_end().to_owned()
}

/// What one command line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A command to run.
    Run(Action),
    /// `CMD --help`: these lines.
    Help(String),
    /// Not a command line vigilctl knows.
    Unknown,
}

/// Parses one command line's words (the command name first).
pub fn parse_words(words: &[&str]) -> Parsed {
    match commands().try_get_matches_from(words) {
        Ok(matches) => match Action::from_arg_matches(&matches) {
            Ok(action) => Parsed::Run(action),
            Err(_) => Parsed::Unknown,
        },
        Err(error) if error.kind() == clap::error::ErrorKind::DisplayHelp => {
            Parsed::Help(help_shown(&error))
        }
        Err(_) => Parsed::Unknown,
    }
}

/// The names of the commands `help` lists, in its order (`help` itself is
/// not listed, as supervisorctl does not list it).
pub fn names() -> Vec<String> {
    commands()
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .filter(|name| name != "help")
        .collect()
}

/// A command's help lines, `None` for an unknown command.
pub fn help(name: &str) -> Option<Vec<String>> {
    let command = commands();
    let sub = command.find_subcommand(name)?;
    let text = sub.get_after_help()?.to_string();
    Some(text.lines().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definitions_are_consistent() {
        command().debug_assert();
        commands().debug_assert();
    }

    #[test]
    fn every_command_has_help_and_a_summary() {
        let mut listed = names();
        listed.push("help".to_owned());
        for name in &listed {
            let lines = help(name).unwrap_or_default();
            assert!(lines.first().is_some_and(|l| l.starts_with(name.as_str())), "{name}");
            let command = commands();
            let sub = command.find_subcommand(name).expect(name);
            assert!(sub.get_about().is_some(), "{name}");
        }
        assert_eq!(help("nosuch"), None);
    }

    #[test]
    fn words_come_back_as_typed() {
        let cases: &[&[&str]] = &[
            &["status"],
            &["status", "a", "g:*"],
            &["tail", "-100", "app", "stderr"],
            &["tail", "-f", "app"],
            &["maintail", "-f"],
            &["update", "--dry-run", "g"],
            &["update", "-n", "--bogus"],
            &["signal", "-9", "app", "all"],
            &["signal", "HUP"],
            &["stop", "-h"],
            &["start", "a", "--json"],
            &["help", "start"],
            &["avail", "x"],
        ];
        for words in cases {
            let Parsed::Run(action) = parse_words(words) else { panic!("{words:?}") };
            assert_eq!(action.words(), words[1..], "{words:?}");
        }
    }

    #[test]
    fn help_flags_and_unknown_commands() {
        let start = help("start").expect("start").join("\n");
        assert_eq!(parse_words(&["start", "--help"]), Parsed::Help(start.clone()));
        assert_eq!(
            parse_words(&["signal", "--help"]),
            Parsed::Help(help("signal").unwrap().join("\n"))
        );
        let Parsed::Run(Action::Unknown(words)) = parse_words(&["frobnicate", "x"]) else {
            panic!("external")
        };
        assert_eq!(words, ["frobnicate", "x"]);
        assert_eq!(parse_words(&["-c", "x"]), Parsed::Unknown);
        assert_eq!(parse_words(&["--help"]), Parsed::Unknown);
        let top = command();
        let sub = top.find_subcommand("start").expect("start");
        assert!(sub.get_arguments().any(|a| a.get_long() == Some("help")));
        assert!(!sub.get_arguments().any(|a| a.get_short() == Some('h')));
    }

    #[test]
    fn the_top_level_reads_options_then_the_command() {
        let cli = Cli::from_arg_matches(
            &command()
                .try_get_matches_from(["vigilctl", "-c", "x.conf", "--json", "tail", "-f", "app"])
                .expect("parse"),
        )
        .expect("cli");
        assert_eq!(cli.configuration, Some(PathBuf::from("x.conf")));
        assert!(cli.json);
        assert_eq!(cli.action, Some(Action::Tail { args: vec!["-f".into(), "app".into()] }));
        let bare = Cli::try_parse_from(["vigilctl"]).expect("no command");
        assert_eq!(bare.action, None);
    }
}
