//! Writes the man pages and shell completions of both binaries, generated from
//! their clap definitions (`vigil_daemon::flags::Flags` for vigild,
//! `vigil_cli::command()` for vigilctl):
//!
//! ```text
//! cargo run -p vigil-daemon --example gen-docs -- OUT_DIR
//! ```
//!
//! makes `OUT_DIR/man/{vigild.8,vigilctl.1,vigil.conf.5}` and
//! `OUT_DIR/completions/{vigild,vigilctl}{.bash,.fish}` and `_vigild`, `_vigilctl`.
//! `scripts/deb` runs it before building the Debian package, which installs
//! them. vigil.conf(5) is rendered from vigil-config's documentation table
//! ([`vigil_config::keydocs`]), which a test there keeps in step with the keys
//! the config readers accept. It lives here rather than in vigil-cli because the package (and its
//! asset list) is vigil-daemon's; vigil-cli is only a dev-dependency.

use std::path::{Path, PathBuf};

use clap::{Command, CommandFactory};
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen-docs OUT_DIR");
        std::process::exit(2);
    };
    let vigild = vigil_daemon::flags::Flags::command()
        .version(vigil_daemon::flags::LONG_VERSION)
        .long_about(
            "vigild supervises programs as supervisord does and reads its configuration \
             dialect (supervisord.conf) or the same model in TOML. It is controlled with \
             vigilctl, or with the stock supervisorctl and XML-RPC clients.",
        );
    let vigilctl = vigil_cli::command().long_about(
        "vigilctl controls a running vigild over its control socket: it starts, stops \
         and restarts programs, shows their status and logs, and rereads and applies the \
         configuration. Without a command it reads commands interactively, as \
         supervisorctl does.",
    );
    write_docs(&out, vigild, "vigild", "8")?;
    write_docs(&out, vigilctl, "vigilctl", "1")?;
    std::fs::write(out.join("man").join("vigil.conf.5"), config_page())
}

/// vigil.conf(5) in roff: one subsection per section type, one tagged
/// paragraph per key with its default.
fn config_page() -> String {
    use vigil_config::keydocs::{KEYS, SECTIONS};
    let mut page = format!(
        ".TH VIGIL.CONF 5 \"\" \"vigil {}\"\n\
         .SH NAME\n\
         vigil.conf \\- configuration file of vigild\n\
         .SH DESCRIPTION\n\
         vigild reads supervisord's INI dialect (supervisord.conf) or the same model in TOML. \
         Every section and key of supervisord keeps its meaning and default; keys marked \
         \\fB(Vigil extension)\\fR are Vigil's own. In INI, keys are case-insensitive, every \
         value goes through %-expansion (%(here)s is the directory of the file, %(ENV_X)s an \
         environment variable, %(program_name)s, %(process_num)d and others), and relative \
         paths resolve against the directory of the file they are written in. Sizes take \
         KB, MB and GB; durations take ms, s, m and h (a bare number is seconds).\n\
         .SH SECTIONS\n",
        env!("CARGO_PKG_VERSION")
    );
    for section in SECTIONS {
        page.push_str(&format!(
            ".SS [{}]\n{}\n",
            roff_text(section.section),
            roff_text(section.meaning)
        ));
        for key in KEYS.iter().filter(|key| key.section == section.section) {
            let default = if key.default.is_empty() {
                "not set".to_owned()
            } else {
                format!("\\fB{}\\fR", roff_text(key.default))
            };
            let extension = if key.extension { " \\fI(Vigil extension)\\fR" } else { "" };
            page.push_str(&format!(
                ".TP\n\\fB{}\\fR (default: {default}){extension}\n{}\n",
                roff_text(key.key),
                roff_text(key.meaning)
            ));
        }
    }
    page.push_str(".SH SEE ALSO\nvigild(8), vigilctl(1)\n");
    page
}

/// `text` as roff running text: backslashes and hyphens escaped, and a
/// leading dot or quote kept from being read as a request.
fn roff_text(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) { format!("\\&{escaped}") } else { escaped }
}

/// `OUT/man/NAME.SECTION` and the bash, zsh and fish completions of `command`.
fn write_docs(out: &Path, command: Command, name: &str, section: &str) -> std::io::Result<()> {
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).section(section).render(&mut page)?;
    std::fs::write(man.join(format!("{name}.{section}")), page)?;
    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command.clone(), name, &completions)?;
    }
    Ok(())
}
