//! The interactive shell: `<prompt>> `, readline editing and history, and tab
//! completion of commands, process names, group names and signal names
//! (rustyline).
//!
//! Readline blocks the thread, so the shell runs on a plain thread and drives
//! each command to completion on the tokio runtime it is given.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use vigil_config::Signal;
use vigil_rpc::{NameSpec, ProcessInfo};

use crate::commands;
use crate::ctl::{Ctl, Flow};

/// Completion data: refreshed before each prompt, as supervisorctl clears its
/// cache after each command.
#[derive(Default)]
struct Completion {
    processes: Arc<Mutex<Vec<ProcessInfo>>>,
}

impl Completion {
    fn candidates(&self, line: &str, word: &str) -> Vec<String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let action = words.first().copied().unwrap_or_default();
        let completing_action = words.is_empty() || (words.len() == 1 && !line.ends_with(' '));
        let processes = self.processes.lock().map(|p| p.clone()).unwrap_or_default();
        // `signal`'s first argument is a signal name, from vigil-config's table.
        let completing_signal = action == "signal"
            && (words.len() == 1 && line.ends_with(' ')
                || words.len() == 2 && !line.ends_with(' '));
        let mut names: Vec<String> = if completing_signal {
            Signal::names().map(str::to_owned).collect()
        } else if completing_action || action == "help" {
            commands::names().into_iter().chain(["help".to_owned()]).collect()
        } else if ["add", "remove", "update"].contains(&action) {
            let mut groups: Vec<String> = Vec::new();
            for info in &processes {
                if !groups.iter().any(|group| *group == info.group) {
                    groups.push(info.group.to_string());
                }
            }
            groups
        } else if ["clear", "fg", "pid", "restart", "signal", "start", "status", "stop", "tail"]
            .contains(&action)
        {
            let mut names = Vec::new();
            for info in &processes {
                if word.contains(':') || info.name != info.group {
                    names.push(format!("{}:{}", info.group, info.name));
                    let whole = NameSpec::Group(info.group.to_string()).to_string();
                    if !names.contains(&whole) {
                        names.push(whole);
                    }
                } else {
                    names.push(info.name.to_string());
                }
            }
            names
        } else {
            Vec::new()
        };
        names.retain(|n| n.starts_with(word));
        names.into_iter().map(|n| n + " ").collect()
    }
}

impl Completer for Completion {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let line = &line[..pos];
        // `group:process`, `group:*` and names with `-` are single words.
        let start = line.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        Ok((start, self.candidates(line, &line[start..])))
    }
}

impl Hinter for Completion {
    type Hint = String;
}
impl Highlighter for Completion {}
impl Validator for Completion {}
impl Helper for Completion {}

/// Runs the shell until `quit`, `exit`, Ctrl-D or Ctrl-C. Starts with `status`,
/// as supervisorctl does.
pub fn run(
    ctl: &mut Ctl,
    runtime: &tokio::runtime::Runtime,
    prompt: &str,
    history: Option<PathBuf>,
) {
    let completion = Completion::default();
    let processes = completion.processes.clone();
    let mut editor: Editor<Completion, FileHistory> = match Editor::new() {
        Ok(editor) => editor,
        Err(error) => {
            eprintln!("error: cannot start the shell: {error}");
            return;
        }
    };
    editor.set_helper(Some(completion));
    if let Some(path) = &history {
        // A missing history file is normal on first use.
        let _ = editor.load_history(path);
    }
    runtime.block_on(ctl.onecmd("status"));
    let prompt = format!("{prompt}> ");
    loop {
        let names = runtime.block_on(ctl.completion_names());
        if let Ok(mut cached) = processes.lock() {
            *cached = names;
        }
        match editor.readline(&prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                if runtime.block_on(ctl.onecmd(&line)) == Flow::Quit {
                    break;
                }
            }
            Err(ReadlineError::Eof) => {
                runtime.block_on(ctl.onecmd("EOF"));
                break;
            }
            Err(ReadlineError::Interrupted) => {
                println!();
                break;
            }
            Err(error) => {
                eprintln!("error: {error}");
                break;
            }
        }
    }
    if let Some(path) = &history
        && let Err(error) = editor.save_history(path)
    {
        eprintln!("error: cannot save history to {}: {error}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(group: &str, name: &str) -> ProcessInfo {
        ProcessInfo {
            name: name.into(),
            group: group.into(),
            start: 0,
            stop: 0,
            now: 0,
            state: vigil_rpc::ProcessState::Running,
            statename: "RUNNING".into(),
            spawnerr: Default::default(),
            exitstatus: 0,
            logfile: Default::default(),
            stdout_logfile: Default::default(),
            stderr_logfile: Default::default(),
            pid: 1,
            description: Default::default(),
            health: None,
            waiting_for: Vec::new(),
        }
    }

    #[test]
    fn completes_commands_processes_and_groups() {
        let completion = Completion::default();
        *completion.processes.lock().expect("lock") =
            vec![info("app1", "app1"), info("grp", "a"), info("grp", "b")];
        assert_eq!(completion.candidates("st", "st"), ["start ", "status ", "stop "]);
        assert_eq!(completion.candidates("", ""), completion.candidates("", "").clone());
        assert!(completion.candidates("", "").contains(&"help ".to_owned()));
        assert_eq!(completion.candidates("start ", ""), ["app1 ", "grp:a ", "grp:* ", "grp:b "]);
        assert_eq!(completion.candidates("stop grp:", "grp:"), ["grp:a ", "grp:* ", "grp:b "]);
        assert_eq!(completion.candidates("update a", "a"), ["app1 "]);
        assert_eq!(completion.candidates("help ta", "ta"), ["tail "]);
        assert!(completion.candidates("version ", "").is_empty());
        assert_eq!(completion.candidates("signal US", "US"), ["USR1 ", "USR2 "]);
        assert_eq!(completion.candidates("signal ", "").len(), Signal::names().count());
        assert_eq!(completion.candidates("signal HUP g", "g"), ["grp:a ", "grp:* ", "grp:b "]);
    }
}
