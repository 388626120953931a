//! The command interpreter: one supervisorctl command line in, output lines and
//! an exit status out. Used by both the one-shot CLI and the shell.
//!
//! Each command follows supervisorctl's `do_*` logic (which calls are made, in
//! what order, what is printed, which exit status is set), but multi-name
//! commands make one RPC for all names. With `--json` the human lines are
//! collected instead of printed, and one JSON document per command is written:
//! `{"command", "result", "messages", "exit_code"}`.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tarpc::client::RpcError;
use vigil_rpc::transport::is_disconnect;
use vigil_rpc::{
    CallError, ConnectError, ControlClient, ControlError, LogChannel, LogTarget, NameSpec,
    ProcessState, StatusRow, context_with_timeout, flatten, read_log_all,
};

use crate::commands::{self, Action, Parsed};
use crate::render::{self, exit};

pub use crate::limits::{FOLLOW_BACKLOG, FOLLOW_WAIT, QUERY_TIMEOUT, TAIL_BYTES, WAIT_TIMEOUT};

/// Connection settings (from the config file and the command line).
#[derive(Debug, Clone)]
pub struct Options {
    /// Where vigild listens: `unix:///path` or `http://host:port`.
    pub serverurl: String,
    /// Username for authentication.
    pub username: Option<String>,
    /// Password for authentication.
    pub password: Option<String>,
    /// Interactive: ask before `shutdown`/`reload`.
    pub interactive: bool,
    /// One JSON document per command instead of supervisorctl's text.
    pub json: bool,
}

/// Asks the user for a username and password.
type CredentialsPrompt = Box<dyn FnMut() -> Option<(String, String)> + Send>;

/// What the shell should do after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next line.
    Continue,
    /// Leave the shell (`quit`, `exit`, end of input).
    Quit,
}

/// The interpreter. Keeps one connection open across commands and reconnects
/// when it is lost.
pub struct Ctl {
    /// The connection settings; `open` changes the URL.
    pub options: Options,
    /// The exit status so far: supervisorctl's `exitstatus`, which the last
    /// failing command sets and nothing resets.
    pub exitstatus: i32,
    client: Option<ControlClient>,
    out: Box<dyn Write + Send>,
    /// In JSON mode: the human lines of the current command.
    messages: Vec<String>,
    result: Option<Value>,
    /// Answers to `Really ...? y/N` prompts (interactive mode).
    confirm: Box<dyn FnMut(&str) -> bool + Send>,
    /// Resolves when the user asks to stop following (Ctrl-C).
    interrupt: Box<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send>,
    /// Asks for a username and password (interactive mode, after the daemon
    /// refused the current ones); `None` gives up.
    credentials: Option<CredentialsPrompt>,
    /// Set when the last connection attempt was refused for credentials.
    auth_refused: bool,
    /// The optional calls the daemon answers, from the last upcheck.
    extensions: Vec<String>,
}

impl Ctl {
    /// An interpreter writing to `out`; it connects at the first command.
    pub fn new(options: Options, out: Box<dyn Write + Send>) -> Ctl {
        Ctl {
            options,
            exitstatus: exit::OK,
            client: None,
            out,
            messages: Vec::new(),
            result: None,
            confirm: Box::new(|_| false),
            credentials: None,
            auth_refused: false,
            extensions: Vec::new(),
            interrupt: Box::new(|| {
                Box::pin(async {
                    // An error here means no signal handler could be set up;
                    // then only the end of the stream stops following.
                    if tokio::signal::ctrl_c().await.is_err() {
                        futures::future::pending::<()>().await;
                    }
                })
            }),
        }
    }

    /// Sets how `Really ...? y/N` questions are answered.
    pub fn set_confirm(&mut self, confirm: impl FnMut(&str) -> bool + Send + 'static) {
        self.confirm = Box::new(confirm);
    }

    /// Sets how to ask for credentials when the daemon refuses the current ones
    /// (used in interactive mode, as supervisorctl prompts `Username:`/`Password:`).
    pub fn set_credentials_prompt(
        &mut self,
        prompt: impl FnMut() -> Option<(String, String)> + Send + 'static,
    ) {
        self.credentials = Some(Box::new(prompt));
    }

    /// Sets what stops `tail -f` / `maintail -f` / `fg` (Ctrl-C by default).
    pub fn set_interrupt(
        &mut self,
        interrupt: impl Fn() -> futures::future::BoxFuture<'static, ()> + Send + 'static,
    ) {
        self.interrupt = Box::new(interrupt);
    }

    fn line(&mut self, text: impl Into<String>) {
        let text = text.into();
        if self.options.json {
            self.messages.push(text);
        } else {
            // A closed stdout (`vigilctl status | head -1`) is not an error worth
            // more than stopping output.
            let _ = writeln!(self.out, "{text}");
        }
    }

    /// Writes bytes as they are. The error matters only to followers, which
    /// must stop once their reader is gone (`vigilctl tail -f x | head -1`).
    fn raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.out.flush()
    }

    /// Keeps the command's result for `--json`; without it, nothing reads it
    /// (and `status` of thousands of processes would build it for nothing).
    fn set_result(&mut self, value: impl Serialize) {
        if self.options.json {
            self.result = Some(serde_json::to_value(value).unwrap_or(Value::Null));
        }
    }

    fn fail(&mut self, status: i32) {
        self.exitstatus = status;
    }

    /// Runs one command line (supervisorctl's `onecmd`).
    pub async fn onecmd(&mut self, line: &str) -> Flow {
        let line = line.trim();
        if line.is_empty() {
            return Flow::Continue;
        }
        self.messages.clear();
        self.result = None;
        let words: Vec<&str> = line.split_whitespace().collect();
        let command = if words[0] == "?" { "help" } else { words[0] };
        let parsed = match command {
            // The end of the shell's input, not a command one can type.
            "EOF" => Parsed::Run(Action::Quit { extra: Vec::new() }),
            _ => commands::parse_words(&[&[command], &words[1..]].concat()),
        };
        let flow = loop {
            self.auth_refused = false;
            let flow = match &parsed {
                Parsed::Run(action) => self.dispatch(action.clone(), line).await,
                Parsed::Help(text) => {
                    for help_line in text.lines() {
                        self.line(help_line.to_owned());
                    }
                    Flow::Continue
                }
                Parsed::Unknown => self.dispatch(Action::Unknown(Vec::new()), line).await,
            };
            // Interactive mode asks for credentials and runs the command again.
            if !(self.auth_refused && self.options.interactive) {
                break flow;
            }
            let Some(prompt) = self.credentials.as_mut() else { break flow };
            let Some((username, password)) = prompt() else { break flow };
            self.options.username = Some(username);
            self.options.password = Some(password);
            self.exitstatus = exit::OK;
        };
        if command == "EOF" {
            self.line("");
        }
        if self.options.json {
            let document = json!({
                "command": command,
                "result": self.result.take(),
                "messages": std::mem::take(&mut self.messages),
                "exit_code": self.exitstatus,
            });
            let _ = writeln!(self.out, "{document}");
        }
        let _ = self.out.flush();
        flow
    }

    async fn dispatch(&mut self, action: Action, line: &str) -> Flow {
        let words = action.words();
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        let args = args.as_slice();
        match action {
            Action::Status { .. } => self.status(args, false).await,
            Action::Start { .. } => self.start(args).await,
            Action::Stop { .. } => self.stop(args).await,
            Action::Restart { .. } => self.restart(args).await,
            Action::Signal { .. } => self.signal(args).await,
            Action::Pid { .. } => self.pid(args).await,
            Action::Tail { .. } => self.tail(args).await,
            Action::Maintail { .. } => self.maintail(args).await,
            Action::Fg { .. } => self.fg(args).await,
            Action::Clear { .. } => self.clear(args).await,
            Action::Avail { .. } => self.avail(args).await,
            Action::Reread { .. } => self.reread(args).await,
            Action::Add { .. } => self.add(args).await,
            Action::Remove { .. } => self.remove(args).await,
            Action::Update { .. } => self.update(args).await,
            Action::Reload { .. } => self.reload(args).await,
            Action::Shutdown { .. } => self.shutdown().await,
            Action::Version { .. } => self.version(args).await,
            Action::Upgrade { .. } => self.upgrade(args).await,
            Action::Top { .. } => self.top(args).await,
            Action::Open { .. } => self.open(&args.join(" ")).await,
            Action::Help { .. } => self.help(&args.join(" ")),
            Action::Quit { .. } | Action::Exit { .. } => return Flow::Quit,
            Action::Unknown(_) => {
                self.line(format!("*** Unknown syntax: {line}"));
                self.fail(exit::GENERIC);
            }
        }
        Flow::Continue
    }

    /// The open connection, connecting first if needed.
    async fn client(&mut self) -> Result<ControlClient, ConnectError> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let auth = match (&self.options.username, &self.options.password) {
            (Some(user), pass) => Some((user.as_str(), pass.as_deref().unwrap_or_default())),
            (None, _) => None,
        };
        let client =
            vigil_rpc::connect(&self.options.serverurl, auth).await.inspect_err(|error| {
                self.auth_refused = matches!(error, ConnectError::Unauthorized { .. });
            })?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Reports a failed connection for commands that do not run an upcheck
    /// (supervisorctl lets the socket error escape: exit 1).
    async fn client_or_report(&mut self) -> Option<ControlClient> {
        match self.client().await {
            Ok(client) => Some(client),
            Err(error) => {
                self.line(error.to_string());
                self.fail(exit::GENERIC);
                None
            }
        }
    }

    /// supervisorctl's `upcheck`: connect and check the API version. Exit codes:
    /// refused 4, no such file 7, wrong API 5, auth 1.
    async fn upcheck(&mut self) -> Option<ControlClient> {
        let client = match self.client().await {
            Ok(client) => client,
            Err(error) => {
                let status = match error {
                    ConnectError::Refused { .. } => exit::INSUFFICIENT_PRIVILEGES,
                    ConnectError::NoSuchFile { .. } => exit::NOT_RUNNING,
                    _ => exit::GENERIC,
                };
                self.line(error.to_string());
                self.fail(status);
                return None;
            }
        };
        match flatten(client.daemon_info(context_with_timeout(QUERY_TIMEOUT)).await) {
            Ok(info) if info.api_version == vigil_rpc::API_VERSION => {
                self.extensions = info.extensions;
                Some(client)
            }
            Ok(info) => {
                self.line(format!(
                    "Sorry, this version of vigilctl expects to talk to a server with API version {}, but the remote version is {}.",
                    vigil_rpc::API_VERSION,
                    info.api_version
                ));
                self.fail(exit::NOT_INSTALLED);
                None
            }
            Err(error) => {
                self.call_failed(error);
                None
            }
        }
    }

    /// An RPC failed in a way the command has no specific wording for:
    /// supervisorctl prints `error: ...` and exits 1.
    fn call_failed(&mut self, error: CallError) {
        if let CallError::Rpc(rpc) = &error {
            self.forget_if_disconnected(rpc);
        }
        self.line(format!("error: {error}"));
        self.fail(exit::GENERIC);
    }

    fn forget_if_disconnected(&mut self, error: &RpcError) {
        if is_disconnect(error) {
            self.client = None;
        }
    }

    async fn status(&mut self, args: &[&str], suppress_exitstatus: bool) {
        let Some(client) = self.upcheck().await else {
            // supervisorctl turns a failed upcheck into LSB "unknown" (4), except
            // a 401: that escapes upcheck as an exception and exits 1.
            if self.exitstatus != exit::OK && !self.auth_refused {
                self.fail(exit::STATUS_UNKNOWN);
            }
            return;
        };
        // The table needs each process's row only; an older daemon, without
        // the call, sends whole infos.
        let context = context_with_timeout(QUERY_TIMEOUT);
        let all = if self.extensions.iter().any(|name| name == vigil_rpc::EXTENSION_STATUS_ROWS) {
            flatten(client.status_rows(context).await)
        } else {
            flatten(client.all_process_info(context).await)
                .map(|all| all.into_iter().map(StatusRow::from).collect())
        };
        let all = match all {
            Ok(all) => all,
            Err(error) => return self.call_failed(error),
        };
        let matching: Vec<StatusRow> = if args.is_empty() || args.contains(&"all") {
            all
        } else {
            let mut matching = Vec::new();
            for name in args {
                let spec = NameSpec::parse(name);
                let found: Vec<_> = all
                    .iter()
                    .filter(|row| match &spec {
                        NameSpec::All => true,
                        NameSpec::Group(group) => row.group == group,
                        NameSpec::Process { group, name } => row.group == group && row.name == name,
                    })
                    .cloned()
                    .collect();
                if found.is_empty() {
                    let message = match &spec {
                        NameSpec::Group(group) => format!("{group}: ERROR (no such group)"),
                        _ => format!("{name}: ERROR (no such process)"),
                    };
                    self.line(message);
                    self.fail(exit::STATUS_UNKNOWN);
                }
                matching.extend(found);
            }
            matching
        };
        for line in render::status_lines(&matching) {
            self.line(line);
        }
        if !suppress_exitstatus && matching.iter().any(|row| row.state.is_stopped()) {
            self.fail(exit::STATUS_NOT_RUNNING);
        }
        if !self.options.json {
            return;
        }
        // JSON carries each process's facts (CPU, memory, restarts, last exit) too:
        // one more call, made only here, that reads /proc once per process.
        match flatten(client.facts(context_with_timeout(QUERY_TIMEOUT), true).await) {
            Ok(facts) => {
                // By name, not a scan per row: thousands of processes each way.
                let by_name: std::collections::HashMap<_, _> = facts
                    .processes
                    .iter()
                    .map(|fact| ((&fact.info.group, &fact.info.name), fact))
                    .collect();
                let selected: Vec<_> = matching
                    .iter()
                    .filter_map(|row| by_name.get(&(&row.group, &row.name)))
                    .collect();
                self.set_result(&selected);
            }
            Err(error) => self.call_failed(error),
        }
    }

    /// The specs to send for a name list: `all` anywhere means everything.
    fn specs(args: &[&str]) -> Vec<NameSpec> {
        if args.contains(&"all") {
            vec![NameSpec::All]
        } else {
            args.iter().map(|a| NameSpec::parse(a)).collect()
        }
    }

    fn show_results(&mut self, action: render::Action, results: &[vigil_rpc::ProcessResult]) {
        for result in results {
            let (line, status) = render::result_line(action, result);
            self.line(line);
            if let Some(status) = status {
                self.fail(status);
            }
        }
    }

    /// The opening of the commands that act on a name list (`start`, `stop`,
    /// `restart`, `clear`): the upcheck, then the command's usage error (with
    /// `status`, which differs between them as in supervisorctl) when no name
    /// was given. `None` once the command has reported why it cannot go on.
    async fn upcheck_names(
        &mut self,
        command: &str,
        args: &[&str],
        status: i32,
    ) -> Option<(ControlClient, Vec<NameSpec>)> {
        let client = self.upcheck().await?;
        if args.is_empty() {
            self.line(format!("Error: {command} requires a process name"));
            self.fail(status);
            self.help_lines(command);
            return None;
        }
        Some((client, Self::specs(args)))
    }

    /// Shows a call's reply with `show` and makes it the JSON result, or
    /// reports the failure.
    fn finish<T: Serialize>(
        &mut self,
        reply: Result<T, CallError>,
        show: impl FnOnce(&mut Self, &T),
    ) {
        match reply {
            Ok(reply) => {
                show(self, &reply);
                self.set_result(&reply);
            }
            Err(error) => self.call_failed(error),
        }
    }

    async fn start(&mut self, args: &[&str]) {
        let Some((client, specs)) = self.upcheck_names("start", args, exit::INVALID_ARGS).await
        else {
            return;
        };
        let reply = client.start(context_with_timeout(WAIT_TIMEOUT), specs, true).await;
        self.finish(flatten(reply), |ctl, results| {
            ctl.show_results(render::Action::Start, results)
        });
    }

    async fn stop(&mut self, args: &[&str]) {
        let Some((client, specs)) = self.upcheck_names("stop", args, exit::GENERIC).await else {
            return;
        };
        let reply = client.stop(context_with_timeout(WAIT_TIMEOUT), specs, true).await;
        self.finish(flatten(reply), |ctl, results| ctl.show_results(render::Action::Stop, results));
    }

    async fn restart(&mut self, args: &[&str]) {
        let Some((client, specs)) = self.upcheck_names("restart", args, exit::GENERIC).await else {
            return;
        };
        let reply = client.restart(context_with_timeout(WAIT_TIMEOUT), specs, true).await;
        self.finish(flatten(reply), |ctl, report| {
            ctl.show_results(render::Action::Stop, &report.stopped);
            ctl.show_results(render::Action::Start, &report.started);
        });
    }

    async fn signal(&mut self, args: &[&str]) {
        let Some(client) = self.upcheck().await else { return };
        let [signal, names @ ..] = args else {
            return self.signal_usage();
        };
        if names.is_empty() {
            return self.signal_usage();
        }
        let call = client.signal(
            context_with_timeout(QUERY_TIMEOUT),
            Self::specs(names),
            (*signal).to_owned(),
        );
        self.finish(flatten(call.await), |ctl, results| {
            ctl.show_results(render::Action::Signal, results)
        });
    }

    fn signal_usage(&mut self) {
        self.line("Error: signal requires a signal name and a process name");
        self.help_lines("signal");
        self.fail(exit::GENERIC);
    }

    async fn pid(&mut self, args: &[&str]) {
        let Some(client) = self.upcheck().await else { return };
        if args.is_empty() {
            match flatten(client.daemon_info(context_with_timeout(QUERY_TIMEOUT)).await) {
                Ok(info) => {
                    self.line(info.pid.to_string());
                    self.set_result(json!({ "pid": info.pid }));
                }
                Err(error) => self.call_failed(error),
            }
            return;
        }
        if args.contains(&"all") {
            match flatten(client.all_process_info(context_with_timeout(QUERY_TIMEOUT)).await) {
                Ok(all) => {
                    let pids: Vec<_> =
                        all.iter().map(|i| json!({ "name": i.namespec(), "pid": i.pid })).collect();
                    for info in &all {
                        self.line(info.pid.to_string());
                    }
                    self.set_result(pids);
                }
                Err(error) => self.call_failed(error),
            }
            return;
        }
        let mut pids = Vec::new();
        for name in args {
            match flatten(
                client.process_info(context_with_timeout(QUERY_TIMEOUT), (*name).to_owned()).await,
            ) {
                Ok(info) => {
                    self.line(info.pid.to_string());
                    if info.pid == 0 {
                        self.fail(exit::NOT_RUNNING);
                    }
                    pids.push(json!({ "name": name, "pid": info.pid }));
                }
                Err(CallError::Fault(ControlError::BadName(_))) => {
                    self.line(format!("No such process {name}"));
                    self.fail(exit::GENERIC);
                }
                Err(error) => return self.call_failed(error),
            }
        }
        self.set_result(pids);
    }

    async fn tail(&mut self, args: &[&str]) {
        let Some(client) = self.upcheck().await else { return };
        if args.is_empty() {
            self.line("Error: too few arguments");
            self.fail(exit::GENERIC);
            return self.help_lines("tail");
        }
        if args.len() > 3 {
            self.line("Error: too many arguments");
            self.fail(exit::GENERIC);
            return self.help_lines("tail");
        }
        let mut args = args.to_vec();
        let modifier = if args[0].starts_with('-') { Some(args.remove(0)) } else { None };
        let (name, channel) = match args.as_slice() {
            [name] => (*name, "stdout".to_owned()),
            [name, .., channel] => (*name, channel.to_lowercase()),
            [] => {
                self.line("Error: tail requires process name");
                return self.fail(exit::GENERIC);
            }
        };
        let channel = match channel.as_str() {
            "stdout" => LogChannel::Stdout,
            "stderr" => LogChannel::Stderr,
            other => {
                self.line(format!("Error: bad channel '{other}'"));
                return self.fail(exit::GENERIC);
            }
        };
        let target = LogTarget::Process { name: name.to_owned(), channel };
        let bytes = match modifier.map(|m| &m[1..]) {
            None => TAIL_BYTES,
            Some("f") => return self.follow(client, target, name).await,
            Some(count) => match count.parse::<i64>() {
                Ok(count) => count,
                Err(_) => {
                    self.line(format!("Error: bad argument {}", modifier.unwrap_or_default()));
                    return self.fail(exit::GENERIC);
                }
            },
        };
        self.read_tail(client, target, name, bytes).await;
    }

    async fn maintail(&mut self, args: &[&str]) {
        let Some(client) = self.upcheck().await else { return };
        let bytes = match args {
            [] => TAIL_BYTES,
            [arg] if *arg == "-f" => {
                return self.follow(client, LogTarget::Main, "supervisord").await;
            }
            [arg] => match arg.strip_prefix('-').map(str::parse::<i64>) {
                Some(Ok(bytes)) => bytes,
                _ => {
                    self.line(format!("Error: bad argument {arg}"));
                    return self.fail(exit::GENERIC);
                }
            },
            _ => {
                self.line("Error: too many arguments");
                self.fail(exit::GENERIC);
                return self.help_lines("maintail");
            }
        };
        self.read_tail(client, LogTarget::Main, "supervisord", bytes).await;
    }

    /// `tail -N` / `maintail -N`: the last N bytes, then a newline (supervisorctl
    /// prints the log as one "line").
    async fn read_tail(
        &mut self,
        client: ControlClient,
        target: LogTarget,
        label: &str,
        bytes: i64,
    ) {
        // supervisorctl passes -N even for a negative N; readLog then rejects it.
        let offset = bytes.checked_neg().unwrap_or(i64::MIN);
        match read_log_all(&client, &target, offset, 0, QUERY_TIMEOUT).await {
            Ok(log) => {
                if self.options.json {
                    self.set_result(json!({ "text": String::from_utf8_lossy(&log) }));
                } else {
                    // A one-shot read has nothing left to do when its reader is
                    // gone, so a closed stdout is not worth an error.
                    let _ = self.raw(&log).and_then(|()| self.raw(b"\n"));
                }
            }
            Err(error) => self.log_error(label, error),
        }
    }

    fn log_error(&mut self, label: &str, error: CallError) {
        let reason = match &error {
            CallError::Fault(ControlError::NoFile(_)) => "no log file",
            CallError::Fault(ControlError::Failed(_)) => "unknown error reading log",
            CallError::Fault(ControlError::BadName(_)) => "no such process name",
            _ => return self.call_failed(error),
        };
        self.line(format!("{label}: ERROR ({reason})"));
        self.fail(exit::GENERIC);
    }

    /// `tail -f` / `maintail -f`: long-polls from 1024 bytes before the end until
    /// interrupted, following each reply's `next` offset so a rotation neither
    /// loses nor repeats bytes. A lost connection (vigild's live upgrade ends
    /// every connection; its offsets carry on) is made again once and the
    /// follow goes on from the same offset.
    async fn follow(&mut self, mut client: ControlClient, target: LogTarget, label: &str) {
        self.line("==> Press Ctrl-C to exit <==");
        let interrupted = (self.interrupt)();
        tokio::pin!(interrupted);
        let mut offset = -FOLLOW_BACKLOG;
        let mut reconnected = false;
        loop {
            let poll = client.tail_follow(
                context_with_timeout(FOLLOW_WAIT + QUERY_TIMEOUT),
                target.clone(),
                offset,
                vigil_rpc::MAX_LOG_CHUNK,
                u64::try_from(FOLLOW_WAIT.as_millis()).unwrap_or(u64::MAX),
            );
            let reply = tokio::select! {
                _ = &mut interrupted => {
                    self.line("");
                    return;
                }
                reply = poll => flatten(reply),
            };
            match reply {
                Ok(chunk) => {
                    let requested = u64::try_from(offset).unwrap_or(0);
                    // Bytes cleared or rotated away before we read them: say so,
                    // as supervisord's logtail does for truncation.
                    let skipped = if offset >= 0 { chunk.skipped(requested) } else { 0 };
                    if self.options.json {
                        let text = String::from_utf8_lossy(&chunk.bytes.0).into_owned();
                        let document = json!({
                            "offset": chunk.offset,
                            "next": chunk.next,
                            "skipped": skipped,
                            "text": text,
                        });
                        if self.raw(format!("{document}\n").as_bytes()).is_err() {
                            return;
                        }
                    } else {
                        let marker: &[u8] =
                            if skipped > 0 { b"\n==> File truncated <==\n" } else { b"" };
                        if self.raw(marker).and_then(|()| self.raw(&chunk.bytes.0)).is_err() {
                            return;
                        }
                    }
                    offset = i64::try_from(chunk.next).unwrap_or(i64::MAX);
                    reconnected = false;
                }
                Err(CallError::Rpc(_)) if !reconnected => {
                    reconnected = true;
                    self.client = None;
                    match self.client_or_report().await {
                        Some(again) => client = again,
                        None => return,
                    }
                }
                Err(error) => return self.log_error(label, error),
            }
        }
    }

    async fn fg(&mut self, args: &[&str]) {
        let Some(client) = self.upcheck().await else { return };
        let name = match args {
            [] => {
                self.line("ERROR: no process name supplied");
                self.fail(exit::GENERIC);
                return self.help_lines("fg");
            }
            [name] => (*name).to_owned(),
            _ => {
                self.line("ERROR: too many process names supplied");
                return self.fail(exit::GENERIC);
            }
        };
        match flatten(client.process_info(context_with_timeout(QUERY_TIMEOUT), name.clone()).await)
        {
            Ok(info) if info.state == ProcessState::Running => {}
            Ok(_) => {
                self.line("ERROR: process not running");
                return self.fail(exit::GENERIC);
            }
            Err(CallError::Fault(ControlError::BadName(_))) => {
                self.line("ERROR: bad process name supplied");
                return self.fail(exit::GENERIC);
            }
            Err(error) => {
                self.line(format!("ERROR: {error}"));
                return;
            }
        }
        self.line("==> Press Ctrl-C to exit <==");
        let message = crate::fg::run(&client, &name, &mut self.out, (self.interrupt)()).await;
        for line in message {
            self.line(line);
        }
    }

    /// `top`: the live view, on a terminal only. A closed connection ends it
    /// with the reason, after the terminal is restored.
    async fn top(&mut self, args: &[&str]) {
        use std::io::IsTerminal;
        if !self.no_arguments("top", args) {
            return;
        }
        if self.options.json || !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal()
        {
            self.line("Error: top needs a terminal (and has no --json form)");
            return self.fail(exit::GENERIC);
        }
        let Some(client) = self.upcheck().await else { return };
        let _ = self.out.flush();
        let server = crate::top::Server {
            url: self.options.serverurl.clone(),
            auth: self
                .options
                .username
                .clone()
                .map(|user| (user, self.options.password.clone().unwrap_or_default())),
        };
        match crate::top::run(client, server).await {
            Ok(()) => {}
            Err(ended) => {
                if matches!(ended, crate::top::Ended::Lost(_)) {
                    self.client = None;
                }
                self.line(ended.to_string());
                self.fail(exit::GENERIC);
            }
        }
    }

    async fn clear(&mut self, args: &[&str]) {
        let Some((client, specs)) = self.upcheck_names("clear", args, exit::GENERIC).await else {
            return;
        };
        let reply = client.clear_logs(context_with_timeout(QUERY_TIMEOUT), specs).await;
        self.finish(flatten(reply), |ctl, results| {
            ctl.show_results(render::Action::Clear, results)
        });
    }

    fn no_arguments(&mut self, command: &str, args: &[&str]) -> bool {
        if args.is_empty() {
            return true;
        }
        self.line(format!("Error: {command} accepts no arguments"));
        self.fail(exit::GENERIC);
        self.help_lines(command);
        false
    }

    async fn avail(&mut self, args: &[&str]) {
        if !self.no_arguments("avail", args) {
            return;
        }
        let Some(client) = self.client_or_report().await else { return };
        match flatten(client.avail(context_with_timeout(QUERY_TIMEOUT)).await) {
            Ok(infos) => {
                for info in &infos {
                    self.line(render::avail_line(info));
                }
                self.set_result(&infos);
            }
            Err(CallError::Fault(ControlError::ShutdownState)) => {
                self.line("ERROR: supervisor shutting down");
                self.fail(exit::GENERIC);
            }
            Err(error) => self.call_failed(error),
        }
    }

    async fn reread(&mut self, args: &[&str]) {
        if !self.no_arguments("reread", args) {
            return;
        }
        let Some(client) = self.client_or_report().await else { return };
        match flatten(client.reread(context_with_timeout(QUERY_TIMEOUT)).await) {
            Ok(reread) => {
                for line in render::reread_lines(&reread) {
                    self.line(line);
                }
                self.set_result(&reread);
            }
            Err(CallError::Fault(ControlError::ShutdownState)) => {
                self.line("ERROR: supervisor shutting down");
                self.fail(exit::GENERIC);
            }
            Err(CallError::Fault(
                error @ (ControlError::CantReread(_) | ControlError::ConfigErrors(_)),
            )) => self.cant_reread(error),
            Err(error) => self.call_failed(error),
        }
    }

    /// `reread` and `update` when the daemon cannot read its config: every
    /// error it found, exit 1.
    fn cant_reread(&mut self, error: ControlError) {
        for line in render::cant_reread_lines(&error) {
            self.line(line);
        }
        self.set_result(json!({ "error": error }));
        self.fail(exit::GENERIC);
    }

    async fn add(&mut self, args: &[&str]) {
        let call = async |client: &ControlClient, name: String| {
            client.add_group(context_with_timeout(WAIT_TIMEOUT), name).await
        };
        let fault = |_: &str, fault: &ControlError| match fault {
            ControlError::ShutdownState => Some(("ERROR: shutting down".to_owned(), true)),
            ControlError::AlreadyAdded(_) => {
                Some(("ERROR: process group already active".to_owned(), false))
            }
            _ => None,
        };
        self.change_groups(args, call, "added process group", fault).await;
    }

    async fn remove(&mut self, args: &[&str]) {
        let call = async |client: &ControlClient, name: String| {
            client.remove_group(context_with_timeout(QUERY_TIMEOUT), name).await
        };
        let fault = |name: &str, fault: &ControlError| match fault {
            ControlError::StillRunning(_) => {
                Some((format!("ERROR: process/group still running: {name}"), true))
            }
            _ => None,
        };
        self.change_groups(args, call, "removed process group", fault).await;
    }

    /// `add` and `remove`: one call per group, in order, and a line for each.
    /// `fault` words the faults particular to the command (the line, and
    /// whether it fails the command); the rest are worded here.
    async fn change_groups(
        &mut self,
        args: &[&str],
        call: impl AsyncFn(&ControlClient, String) -> Result<Result<(), ControlError>, RpcError>,
        done: &str,
        fault: impl Fn(&str, &ControlError) -> Option<(String, bool)>,
    ) {
        let Some(client) = self.client_or_report().await else { return };
        let mut results = Vec::new();
        for name in args {
            let outcome = match flatten(call(&client, (*name).to_owned()).await) {
                Err(CallError::Rpc(error)) => return self.call_failed(CallError::Rpc(error)),
                Err(CallError::Fault(fault)) => Err(fault),
                Ok(()) => Ok(()),
            };
            let (line, failed) = match &outcome {
                Ok(()) => (format!("{name}: {done}"), false),
                Err(error) => fault(name, error).unwrap_or_else(|| match error {
                    ControlError::BadName(_) => {
                        (format!("ERROR: no such process/group: {name}"), true)
                    }
                    other => (format!("ERROR: {other}"), true),
                }),
            };
            self.line(line);
            if failed {
                self.fail(exit::GENERIC);
            }
            results.push(group_outcome(name, outcome));
        }
        self.set_result(results);
    }

    async fn update(&mut self, args: &[&str]) {
        let mut dry_run = false;
        let mut groups = Vec::new();
        for arg in args {
            match *arg {
                "--dry-run" | "-n" => dry_run = true,
                "all" => groups.push("all".to_owned()),
                other if other.starts_with('-') => {
                    self.line(format!("Error: bad argument {other}"));
                    self.fail(exit::GENERIC);
                    return self.help_lines("update");
                }
                other => groups.push(other.to_owned()),
            }
        }
        // "all" anywhere means every group, as in supervisorctl.
        if groups.iter().any(|g| g == "all") {
            groups.clear();
        }
        let Some(client) = self.client_or_report().await else { return };
        // A dry run also says why: `reread` reads the file without applying it.
        let details = match dry_run {
            true => flatten(client.reread(context_with_timeout(QUERY_TIMEOUT)).await).ok(),
            false => None,
        };
        match flatten(client.update(context_with_timeout(WAIT_TIMEOUT), groups, dry_run).await) {
            Ok(report) => {
                let (lines, status) = render::update_lines_with_reasons(&report, details.as_ref());
                for line in lines {
                    self.line(line);
                }
                if status != exit::OK {
                    self.fail(status);
                }
                self.set_result(&report);
            }
            Err(CallError::Fault(ControlError::ShutdownState)) => {
                self.line("ERROR: already shutting down");
                self.fail(exit::GENERIC);
            }
            Err(CallError::Fault(
                error @ (ControlError::CantReread(_) | ControlError::ConfigErrors(_)),
            )) => self.cant_reread(error),
            Err(error) => self.call_failed(error),
        }
    }

    async fn reload(&mut self, args: &[&str]) {
        if !args.is_empty() {
            self.line("Error: reload accepts no arguments");
            self.fail(exit::GENERIC);
            return self.help_lines("reload");
        }
        if self.options.interactive
            && !(self.confirm)("Really restart the remote supervisord process y/N? ")
        {
            return;
        }
        let Some(client) = self.client_or_report().await else { return };
        match flatten(client.reload(context_with_timeout(QUERY_TIMEOUT)).await) {
            Ok(()) => {
                self.line("Restarted supervisord");
                // The daemon drops connections while it reloads.
                self.client = None;
            }
            Err(CallError::Fault(ControlError::ShutdownState)) => {
                self.line("ERROR: already shutting down");
                self.fail(exit::GENERIC);
            }
            Err(error) => self.call_failed(error),
        }
    }

    async fn shutdown(&mut self) {
        if self.options.interactive
            && !(self.confirm)("Really shut the remote supervisord process down y/N? ")
        {
            return;
        }
        let client = match self.client().await {
            Ok(client) => client,
            Err(error) => {
                let url = &self.options.serverurl;
                let message = match error {
                    ConnectError::Refused { .. } => {
                        format!("ERROR: {url} refused connection (already shut down?)")
                    }
                    ConnectError::NoSuchFile { .. } => {
                        format!("ERROR: {url} no such file (already shut down?)")
                    }
                    other => other.to_string(),
                };
                self.line(message);
                return self.fail(exit::GENERIC);
            }
        };
        match flatten(client.shutdown(context_with_timeout(QUERY_TIMEOUT)).await) {
            Ok(()) => {
                self.line("Shut down");
                self.client = None;
            }
            Err(CallError::Fault(ControlError::ShutdownState)) => {
                self.line("ERROR: already shutting down")
            }
            Err(error) => self.call_failed(error),
        }
    }

    async fn version(&mut self, args: &[&str]) {
        if !self.no_arguments("version", args) {
            return;
        }
        let Some(client) = self.upcheck().await else { return };
        let reply = client.daemon_info(context_with_timeout(QUERY_TIMEOUT)).await;
        self.finish(flatten(reply), |ctl, info| ctl.line(info.version.clone()));
    }

    /// `upgrade [--binary PATH]`: the daemon checks the binary and answers,
    /// then hands over; the next connection waits for the new image, whose
    /// version and pid are printed.
    async fn upgrade(&mut self, args: &[&str]) {
        let binary = match args {
            [] => None,
            ["--binary", path] => Some((*path).to_owned()),
            [one] if one.starts_with("--binary=") => {
                Some(one.trim_start_matches("--binary=").to_owned())
            }
            _ => {
                self.line("Error: upgrade accepts only --binary PATH");
                self.fail(exit::GENERIC);
                return self.help_lines("upgrade");
            }
        };
        let Some(client) = self.client_or_report().await else { return };
        let reply = client.upgrade(context_with_timeout(QUERY_TIMEOUT), binary).await;
        match flatten(reply) {
            Ok(checked) => {
                self.line(checked);
                // This connection ends with the old image, which waits for
                // its open connections to close before it hands over.
                drop(client);
                self.client = None;
                let Some(client) = self.client_or_report().await else {
                    // The new image may have moved the socket (an upgrade
                    // applies changed socket settings).
                    self.line(format!(
                        "The upgrade was handed over, but no vigild answers at {} now; \
                         if the configuration moved the control socket, vigild listens \
                         where it says.",
                        self.options.serverurl
                    ));
                    return;
                };
                let info = client.daemon_info(context_with_timeout(QUERY_TIMEOUT)).await;
                self.finish(flatten(info), |ctl, info| {
                    ctl.line(format!("Upgraded: vigild {} (pid {})", info.version, info.pid));
                });
            }
            Err(CallError::Fault(ControlError::Failed(why))) => {
                self.line(format!("ERROR: upgrade refused: {why}"));
                self.fail(exit::GENERIC);
            }
            Err(CallError::Fault(ControlError::ShutdownState)) => {
                self.line("ERROR: already shutting down");
                self.fail(exit::GENERIC);
            }
            Err(error) => self.call_failed(error),
        }
    }

    async fn open(&mut self, url: &str) {
        if !(url.starts_with("unix://") || url.starts_with("http://")) {
            self.line("ERROR: url must be http:// or unix://");
            return self.fail(exit::GENERIC);
        }
        self.options.serverurl = url.to_owned();
        self.client = None;
        self.status(&[], true).await;
    }

    fn help(&mut self, topic: &str) {
        let topic = topic.trim();
        if topic.is_empty() {
            self.line("");
            let header = "default commands (type help <topic>):";
            self.line(header);
            self.line("=".repeat(header.len()));
            let names = commands::names();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            for row in render::columnize(&names, 79) {
                self.line(row);
            }
            self.line("");
        } else if commands::help(topic).is_some() {
            self.help_lines(topic);
        } else {
            self.line(format!("*** No help on {topic}"));
        }
    }

    fn help_lines(&mut self, command: &str) {
        for line in commands::help(command).unwrap_or_default() {
            self.line(line);
        }
    }

    /// Process and group names for shell completion (empty when unreachable).
    pub async fn completion_names(&mut self) -> Vec<vigil_rpc::ProcessInfo> {
        let Ok(client) = self.client().await else { return Vec::new() };
        match client.all_process_info(context_with_timeout(Duration::from_secs(5))).await {
            Ok(Ok(all)) => all,
            Ok(Err(_)) => Vec::new(),
            Err(error) => {
                self.forget_if_disconnected(&error);
                Vec::new()
            }
        }
    }
}

fn group_outcome(name: &str, outcome: Result<(), ControlError>) -> Value {
    json!({ "group": name, "error": outcome.err() })
}
