//! Writes vigild's man page and shell completions, generated from the clap
//! definition of its command line (`vigil_daemon::flags::Flags`):
//!
//! ```text
//! cargo run -p vigil-daemon --example gen-docs -- OUT_DIR
//! ```
//!
//! makes `OUT_DIR/man/vigild.8` and `OUT_DIR/completions/{vigild.bash,_vigild,vigild.fish}`.
//! `scripts/deb` runs it before building the Debian package, which installs
//! them. vigilctl's pages join here once its command line is a clap definition
//! in the vigil-cli library.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen-docs OUT_DIR");
        std::process::exit(2);
    };
    let command = vigil_daemon::flags::Flags::command()
        .version(vigil_daemon::flags::LONG_VERSION)
        .long_about(
            "vigild supervises programs as supervisord does and reads its configuration \
             dialect (supervisord.conf) or the same model in TOML. It is controlled with \
             vigilctl, or with the stock supervisorctl and XML-RPC clients.",
        );
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).section("8").render(&mut page)?;
    std::fs::write(man.join("vigild.8"), page)?;
    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command.clone(), "vigild", &completions)?;
    }
    Ok(())
}
