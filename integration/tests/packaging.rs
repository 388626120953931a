//! What people install: `--version` of both binaries, the Debian package
//! (scripts/deb, installed with dpkg into a throwaway root, checked and purged)
//! and the container image (built when a Docker daemon is reachable).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vigil_integration::{Output, Sandbox, run, vigilctl_bin, vigild_bin};

/// Building the package compiles the workspace in its own profile: minutes on
/// a small machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(3600);
const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("workspace root")
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

/// Says something on the terminal even when libtest captures the test's output.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[track_caller]
fn succeed(command: &mut Command, timeout: Duration) -> Output {
    let output = run(command, timeout);
    assert_eq!(output.code, 0, "{command:?} failed: {output:#?}");
    output
}

/// The commit `--version` should name: git's, or `unknown` outside a checkout.
fn expected_commit() -> String {
    let output = run(
        Command::new("git").args(["rev-parse", "--short", "HEAD"]).current_dir(workspace()),
        TOOL_TIMEOUT,
    );
    if output.code == 0 { output.stdout.trim().to_owned() } else { "unknown".to_owned() }
}

#[test]
fn version_names_the_commit() {
    let commit = expected_commit();
    let version = env!("CARGO_PKG_VERSION");
    let vigild = succeed(Command::new(vigild_bin()).arg("--version"), TOOL_TIMEOUT);
    assert_eq!(vigild.stdout, format!("{version} (commit {commit})\n"));
    let vigilctl = succeed(Command::new(vigilctl_bin()).arg("--version"), TOOL_TIMEOUT);
    assert_eq!(vigilctl.stdout, format!("vigilctl {version} (commit {commit})\n"));
}

/// Every file under `root`, relative to it, except dpkg's own database.
fn files_under(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable directory") {
            let path = entry.expect("directory entry").path();
            let relative = path.strip_prefix(root).expect("under root").display().to_string();
            if relative.starts_with("var/lib/dpkg") {
                continue;
            }
            if path.is_dir() && !path.is_symlink() {
                pending.push(path);
            } else {
                found.push(relative);
            }
        }
    }
    found.sort();
    found
}

/// An installed man page is valid gzip holding roff with a NAME section, and
/// `man -l` renders it with that section naming `name`.
fn assert_man_page(page: &Path, name: &str) {
    let roff = succeed(Command::new("gzip").arg("-dc").arg(page), TOOL_TIMEOUT);
    assert!(roff.stdout.contains(".SH NAME"), "{} has no NAME section", page.display());
    let rendered = run(
        Command::new("man").arg("-l").arg(page).env("MANPAGER", "cat").env("MANWIDTH", "80"),
        TOOL_TIMEOUT,
    );
    assert_eq!(
        rendered.code,
        0,
        "man -l {} failed (man is missing? `apt-get install man-db groff-base`): {rendered:#?}",
        page.display()
    );
    let after_name = rendered.stdout.split_once("NAME").map(|(_, rest)| rest);
    assert!(
        after_name.is_some_and(|rest| rest.trim_start().starts_with(name)),
        "man -l {} has no NAME section naming {name}:\n{}",
        page.display(),
        rendered.stdout
    );
}

/// Runs the installed vigild inside `root`: chroot as root, else in a user
/// namespace where we are root.
fn in_root(root: &Path, args: &[&str]) -> Command {
    let mut command;
    if nix::unistd::geteuid().is_root() {
        command = Command::new("chroot");
    } else {
        command = Command::new("unshare");
        command.args(["--map-root-user", "chroot"]);
    }
    command.arg(root).args(args);
    command
}

/// Builds the .deb, installs it into a throwaway root with dpkg, runs the
/// installed `vigild --check` on the installed config there, and purges it,
/// leaving nothing behind.
#[test]
fn debian_package_installs_checks_and_purges() {
    let workspace = workspace();
    let deb_version = run(cargo().args(["deb", "--version"]), TOOL_TIMEOUT);
    assert_eq!(
        deb_version.code, 0,
        "cargo-deb is missing: run the tests with `scripts/test`, which installs it, or \
         `cargo install --locked cargo-deb`\n{deb_version:#?}"
    );
    for tool in ["dpkg", "dpkg-deb", "man"] {
        assert!(
            run(Command::new(tool).arg("--version"), TOOL_TIMEOUT).code == 0,
            "{tool} is missing: this test needs a Debian-based machine \
             (`apt-get install dpkg man-db groff-base`)"
        );
    }
    let sandbox = Sandbox::new();
    // Its own target directory: the `cargo test` running this holds the lock
    // on the build directory until the tests end.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from)
        .join("packaging");
    // Packed relocations where this glibc loads them, as a release package's
    // vigild has them: the package must then ask for that glibc.
    let packed = glibc_at_least(2, 36);
    let started = Instant::now();
    succeed(
        cargo()
            .args(["build", "--locked", "--profile", "package-test", "--bins"])
            .args(["-p", "vigil-daemon", "-p", "vigil-cli"])
            .env("CARGO_TARGET_DIR", &target)
            .env("VIGIL_PACK_RELOCATIONS", if packed { "1" } else { "0" })
            .current_dir(&workspace),
        BUILD_TIMEOUT,
    );
    let built = started.elapsed();
    let out = sandbox.join("deb");
    succeed(
        Command::new(workspace.join("scripts/deb"))
            // gzip (--fast): xz takes a minute for the unoptimised binaries.
            .args(["--no-build", "--no-strip", "--fast", "--profile", "package-test", "-o"])
            .arg(&out)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(&workspace),
        BUILD_TIMEOUT,
    );
    report(&format!(
        "packaging: built the binaries in {:.1} s and the .deb in {:.1} s more",
        built.as_secs_f64(),
        (started.elapsed() - built).as_secs_f64()
    ));
    let deb = std::fs::read_dir(&out)
        .expect("cargo deb's output directory")
        .map(|entry| entry.expect("entry").path())
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .expect("a .deb");

    let depends =
        succeed(Command::new("dpkg-deb").args(["--field"]).arg(&deb).arg("Depends"), TOOL_TIMEOUT);
    assert!(depends.stdout.contains("libc6 (>= 2."), "{depends:#?}");
    assert_eq!(
        depends.stdout.contains("libc6 (>= 2.36)"),
        packed,
        "packed relocations: {packed}; {depends:#?}"
    );

    let listing = succeed(Command::new("dpkg-deb").arg("--contents").arg(&deb), TOOL_TIMEOUT);
    for path in [
        "./usr/bin/vigild",
        "./usr/bin/vigilctl",
        "./etc/vigil/vigil.conf",
        "./etc/vigil/conf.d/README",
        "./usr/lib/systemd/system/vigild.service",
        "./usr/share/man/man8/vigild.8.gz",
        "./usr/share/bash-completion/completions/vigild",
        "./usr/share/zsh/vendor-completions/_vigild",
        "./usr/share/fish/vendor_completions.d/vigild.fish",
        "./usr/share/man/man1/vigilctl.1.gz",
        "./usr/share/man/man5/vigil.conf.5.gz",
        "./usr/share/bash-completion/completions/vigilctl",
        "./usr/share/zsh/vendor-completions/_vigilctl",
        "./usr/share/fish/vendor_completions.d/vigilctl.fish",
    ] {
        assert!(
            listing.stdout.lines().any(|line| line.ends_with(path)),
            "{path} is not in the package:\n{}",
            listing.stdout
        );
    }
    // Beside Debian's supervisor package: nothing of ours under its names.
    for theirs in ["supervisord", "supervisorctl", "/etc/supervisor", "supervisor.service"] {
        assert!(!listing.stdout.contains(theirs), "{theirs} in the package:\n{}", listing.stdout);
    }
    let conffiles =
        succeed(Command::new("dpkg-deb").arg("--info").arg(&deb).arg("conffiles"), TOOL_TIMEOUT);
    // Files under /etc are the administrator's: an upgrade keeps their edits.
    let mut conffiles: Vec<&str> = conffiles.stdout.lines().collect();
    conffiles.sort_unstable();
    assert_eq!(conffiles, ["/etc/vigil/conf.d/README", "/etc/vigil/vigil.conf"]);

    let root = sandbox.join("root");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let dpkg = || {
        let mut command = Command::new("dpkg");
        command
            .arg(format!("--root={}", root.display()))
            .args(["--force-not-root", "--force-script-chrootless", "--log=/dev/null"])
            // Its dependencies (libc) live on the host, not in the empty root.
            .arg("--force-depends");
        command
    };
    succeed(dpkg().arg("--install").arg(&deb), TOOL_TIMEOUT);
    let installed = files_under(&root);
    for path in ["usr/bin/vigild", "usr/bin/vigilctl", "etc/vigil/vigil.conf"] {
        assert!(installed.iter().any(|file| file == path), "{path} not installed: {installed:?}");
    }
    assert!(root.join("var/log/vigil").is_dir(), "postinst makes the log directory");
    for (page, name) in [
        ("usr/share/man/man8/vigild.8.gz", "vigild"),
        ("usr/share/man/man1/vigilctl.1.gz", "vigilctl"),
        ("usr/share/man/man5/vigil.conf.5.gz", "vigil.conf"),
    ] {
        assert_man_page(&root.join(page), name);
    }
    for (script, registration) in [
        ("usr/share/bash-completion/completions/vigilctl", "complete -F _vigilctl"),
        ("usr/share/zsh/vendor-completions/_vigilctl", "#compdef vigilctl"),
        ("usr/share/fish/vendor_completions.d/vigilctl.fish", "complete -c vigilctl"),
    ] {
        let text = std::fs::read_to_string(root.join(script)).expect(script);
        assert!(text.contains(registration), "{script} lacks {registration:?}:\n{text}");
    }

    // The installed binary on the installed config, inside the root: the
    // libraries it loads are copied in (scripts/rootfs), then taken out again.
    let libraries = sandbox.join("libraries");
    succeed(
        Command::new(workspace.join("scripts/rootfs"))
            .arg(&libraries)
            .arg(root.join("usr/bin/vigild")),
        TOOL_TIMEOUT,
    );
    let copied: Vec<String> =
        files_under(&libraries).into_iter().filter(|file| !file.starts_with("usr/bin")).collect();
    for file in &copied {
        let to = root.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(libraries.join(file), &to).unwrap();
    }
    let version = succeed(&mut in_root(&root, &["/usr/bin/vigild", "--version"]), TOOL_TIMEOUT);
    assert_eq!(
        version.stdout,
        format!("{} (commit {})\n", env!("CARGO_PKG_VERSION"), expected_commit())
    );
    let check = succeed(
        &mut in_root(&root, &["/usr/bin/vigild", "--check", "-c", "/etc/vigil/vigil.conf"]),
        TOOL_TIMEOUT,
    );
    assert!(check.stdout.starts_with("config OK: 0 programs"), "{check:#?}");
    for file in &copied {
        std::fs::remove_file(root.join(file)).unwrap();
    }

    succeed(dpkg().args(["--purge", "vigil"]), TOOL_TIMEOUT);
    // Directories the library copies needed are ours to remove, not dpkg's.
    for file in &copied {
        let mut dir = root.join(file);
        while dir.pop() && dir != root {
            let _ = std::fs::remove_dir(&dir);
        }
    }
    let left = files_under(&root);
    assert!(left.is_empty(), "files left after purge: {left:?}");
    // Empty directories may stay where the base system has them anyway
    // (etc/systemd/system, var/log, var/lib/systemd, made by the unit's
    // enable/disable helper); none of them may be ours.
    let mut dirs = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.ends_with("var/lib/dpkg") {
                dirs.push(path.strip_prefix(&root).unwrap().display().to_string());
                pending.push(path);
            }
        }
    }
    assert!(
        !dirs.iter().any(|dir| dir.contains("vigil")),
        "directories left after purge: {dirs:?}"
    );
}

/// Whether this process runs on glibc `major.minor` or newer.
#[cfg(target_env = "gnu")]
fn glibc_at_least(major: u32, minor: u32) -> bool {
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    let mut parts = version.to_str().unwrap_or("").split('.').map(|part| part.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(found_major)), Some(Ok(found_minor))) => {
            (found_major, found_minor) >= (major, minor)
        }
        _ => false,
    }
}

#[cfg(not(target_env = "gnu"))]
fn glibc_at_least(_major: u32, _minor: u32) -> bool {
    false
}

/// `docker build` of the `scratch` image from the binaries of this build, and
/// a run of it; skipped, saying why, when no Docker daemon answers (no base
/// image can be pulled here, so the Debian-based stages are not built).
#[test]
fn container_image_builds_and_runs() {
    let docker_found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("docker").is_file()));
    if !docker_found {
        return report("container_image_builds_and_runs: SKIPPED, no docker command on PATH");
    }
    let info =
        run(Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]), TOOL_TIMEOUT);
    if info.code != 0 {
        let why = info.stderr.lines().find(|line| !line.trim().is_empty()).unwrap_or("no answer");
        return report(&format!(
            "container_image_builds_and_runs: SKIPPED, no Docker daemon: {why}"
        ));
    }
    let workspace = workspace();
    let sandbox = Sandbox::new();
    let context = sandbox.join("context");
    succeed(
        Command::new(workspace.join("scripts/rootfs"))
            .arg(context.join("rootfs"))
            .arg(vigild_bin())
            .arg(vigilctl_bin()),
        TOOL_TIMEOUT,
    );
    std::fs::copy(workspace.join("packaging/vigil.conf"), context.join("vigil.conf")).unwrap();
    let tag = format!("vigil-test-{}:scratch", std::process::id());
    succeed(
        Command::new("docker")
            .args(["build", "-q", "-t", &tag, "-f"])
            .arg(workspace.join("packaging/docker/prebuilt.Dockerfile"))
            .arg(&context),
        BUILD_TIMEOUT,
    );
    let name = format!("vigil-test-{}", std::process::id());
    let outcome = std::panic::catch_unwind(|| {
        let check =
            succeed(
                Command::new("docker")
                    .args(["run", "--rm", "--entrypoint", "/usr/bin/vigild"])
                    .args([&tag, "--check", "-c", "/etc/vigil/vigil.conf"]),
                TOOL_TIMEOUT,
            );
        assert!(check.stdout.starts_with("config OK"), "{check:#?}");
        // vigild as PID 1: up, answering vigilctl, and exiting 0 on `docker stop`.
        succeed(Command::new("docker").args(["run", "-d", "--name", &name, &tag]), TOOL_TIMEOUT);
        let answered = vigil_integration::try_wait_until(vigil_integration::TIMEOUT, || {
            run(
                Command::new("docker")
                    .args(["exec", &name, "/usr/bin/vigilctl", "-c"])
                    .args(["/etc/vigil/vigil.conf", "pid"]),
                TOOL_TIMEOUT,
            )
            .stdout
                == "1\n"
        });
        assert!(answered, "vigilctl pid never answered 1 inside the container");
        succeed(Command::new("docker").args(["stop", &name]), TOOL_TIMEOUT);
        let exit = succeed(
            Command::new("docker").args(["inspect", "--format", "{{.State.ExitCode}}", &name]),
            TOOL_TIMEOUT,
        );
        assert_eq!(exit.stdout.trim(), "0");
    });
    let _ = run(Command::new("docker").args(["rm", "-f", &name]), TOOL_TIMEOUT);
    let _ = run(Command::new("docker").args(["rmi", "-f", &tag]), TOOL_TIMEOUT);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
