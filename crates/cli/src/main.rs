//! vigilctl: control a running vigild, with supervisorctl's options, commands,
//! output and exit codes. With a command it runs it and exits with its status;
//! without one it starts the interactive shell.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vigil_cli::ctl::{Ctl, Options};
use vigil_cli::{settings, shell};

#[derive(Parser, Debug)]
#[command(
    name = "vigilctl",
    // The version and the commit it was built from (`unknown` outside git).
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("VIGIL_COMMIT"), ")"),
    about = "Control a running vigild (supervisorctl-compatible)",
    after_help = "Commands: add avail clear fg help maintail open pid quit reload remove reread restart \
                  shutdown signal start status stop tail update version.\nRun `vigilctl help <command>` for details."
)]
struct Args {
    /// Configuration file (searched for like supervisorctl when absent).
    #[arg(short = 'c', long = "configuration")]
    configuration: Option<PathBuf>,
    /// Where vigild listens: unix:///path or http://host:port.
    #[arg(short = 's', long = "serverurl")]
    serverurl: Option<String>,
    /// Username for authentication.
    #[arg(short = 'u', long = "username")]
    username: Option<String>,
    /// Password for authentication.
    #[arg(short = 'p', long = "password")]
    password: Option<String>,
    /// Start the shell (the default when no command is given).
    #[arg(short = 'i', long = "interactive")]
    interactive: bool,
    /// Keep the shell's readline history in this file.
    #[arg(short = 'r', long = "history-file", alias = "history_file")]
    history_file: Option<PathBuf>,
    /// Print one JSON document per command instead of supervisorctl's text.
    #[arg(long)]
    json: bool,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    action: Vec<String>,
}

fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("Error: {message}");
    eprintln!("For help, use vigilctl -h");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    // `--json` is accepted after the command too (`vigilctl status --json`).
    let before = args.action.len();
    args.action.retain(|word| word != "--json");
    args.json |= args.action.len() != before;

    let argv0 = std::env::args_os().next().map(PathBuf::from).unwrap_or_default();
    let config = match settings::find_config(args.configuration.as_deref(), &argv0) {
        Ok(config) => config,
        Err(error) => return usage_error(error),
    };
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let file_settings = match &config {
        Some(path) => match settings::read_supervisorctl(path, &env) {
            Ok(found) => found,
            Err(error) => return usage_error(error),
        },
        None => settings::defaults(),
    };

    let shell_mode = args.action.is_empty();
    let options = Options {
        serverurl: args.serverurl.unwrap_or(file_settings.serverurl),
        username: args.username.or(file_settings.username),
        password: args.password.or(file_settings.password),
        interactive: shell_mode,
        json: args.json,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    // Every command flushes its output when it ends (and followers after each
    // chunk), so a buffer is safe; it spares `status` one write per process,
    // which std's line-buffered stdout would make.
    let mut ctl = Ctl::new(options, Box::new(std::io::BufWriter::new(std::io::stdout())));
    ctl.set_confirm(|question| {
        print!("{question}");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).is_ok()
            && answer.trim_start().to_lowercase().starts_with('y')
    });

    ctl.set_credentials_prompt(|| {
        print!("Username:");
        let _ = std::io::stdout().flush();
        let mut username = String::new();
        std::io::stdin().read_line(&mut username).ok()?;
        let password = rpassword::prompt_password("Password:").ok()?;
        println!();
        Some((username.trim_end_matches(['\r', '\n']).to_owned(), password))
    });

    if !shell_mode {
        // With a command, supervisorctl runs it and exits even with -i.
        runtime.block_on(ctl.onecmd(&args.action.join(" ")));
        return ExitCode::from(u8::try_from(ctl.exitstatus).unwrap_or(1));
    }
    let history = args.history_file.or(file_settings.history_file);
    shell::run(&mut ctl, &runtime, &file_settings.prompt, history);
    // The shell's exit status is always 0, as supervisorctl's.
    ExitCode::SUCCESS
}
