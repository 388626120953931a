//! The s6 target: a run's programs written as an s6 scan directory, and what
//! the harness needs to know about s6's process model.
//!
//! s6 supervises with one `s6-supervise` process per service under one
//! `s6-svscan` that scans a directory of service directories. Each service
//! directory holds a `run` script that execs the program, a `down` file when
//! the service must not start with the scan, and `notification-fd`: the run
//! script reports the service ready just before the exec (what `startsecs=0`
//! means for the others), because s6-supervise restarts at once only a
//! service that has been ready for a second, and pauses a second otherwise. The supervisor's own
//! processes are therefore `s6-svscan` plus every `s6-supervise`, and a
//! program's parent is its `s6-supervise`, not the daemon the harness
//! launched.
//!
//! s6 has no equivalent of `startsecs`, `startretries` or log rotation in a
//! service directory (capture takes a separate `s6-log` service), so a spec
//! asking for them is refused rather than silently run differently.

use crate::config::{Program, Spec};
use anyhow::{Context, bail, ensure};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// How this target's model differs from vigild's and supervisord's, for the
/// report.
pub const MODEL_NOTES: &[&str] = &[
    "s6: the supervisor is `s6-svscan` plus one `s6-supervise` process per program, so \
     memory, CPU and context switches are summed over all of them (\"supervisor processes\" \
     gives the count). A sum of VmRSS counts the pages they share (the binaries, libc) once per \
     process; PSS splits each shared page among its users, so PSS is the memory row that compares.",
    "s6: a service is a `run` script, `#!/bin/sh`, `echo >&3` (readiness, with \
     `notification-fd` 3), `exec sleep 100000 3>&-`, so each spawn also execs /bin/sh once; \
     no `down` files (every program starts with the scan); no log service (an `s6-log` per \
     program would be one more process each): the programs' output goes to s6-svscan's. \
     `s6-svscan -c` is max(500, N); no `-t` rescan, so it never polls.",
    "s6: s6-supervise restarts a service at once only when it has been ready for more than a \
     second; otherwise (or without readiness notification at all, which is why the run \
     script notifies) it pauses a second first. S5 waits until the program has been up for \
     1.1 s before each kill, so its figure is s6's immediate restart (a fork for the absent \
     `./finish`, then one for `./run`); a program dying within a second of its start comes \
     back a second later.",
    "s6 and Horust: no status CLI is used; a program counts as running once it has exec'd \
     `sleep` as a child of its s6-supervise (or of Horust), found by polling `/proc` every \
     --poll-interval-ms, where vigild and supervisord are polled with `ctl status`. Shutdown is \
     SIGTERM to s6-svscan (or Horust), which stops every service and exits.",
];

/// s6-supervise restarts a service at once only when it has been ready for
/// longer than this; otherwise it waits this long before the next spawn.
pub const MIN_RESPAWN_INTERVAL: Duration = Duration::from_secs(1);

/// `s6-svscan -c`: the default of s6 2.11 (500 services), raised to the
/// number of programs when there are more (its service table lives on its
/// stack, so a larger value than needed would cost memory at small N).
pub fn services_max(programs: usize) -> usize {
    programs.max(500)
}

/// The descriptor the run script reports readiness on (`notification-fd`).
pub const NOTIFICATION_FD: u32 = 3;

/// The `run` script of one program: a shell that reports the service ready
/// and execs the command with the notification descriptor closed, so the
/// program itself becomes the supervised process.
pub fn run_script(command: &str) -> anyhow::Result<String> {
    let words = shlex::split(command)
        .filter(|w| !w.is_empty())
        .with_context(|| format!("command '{command}': empty or badly quoted"))?;
    let quoted = shlex::try_join(words.iter().map(String::as_str))
        .with_context(|| format!("command '{command}': cannot be quoted for sh"))?;
    let fd = NOTIFICATION_FD;
    Ok(format!("#!/bin/sh\necho >&{fd}\nexec {quoted} {fd}>&-\n"))
}

/// Refuses the options a service directory cannot express (s6 has no
/// startsecs: a service is up once `./run` is spawned; rotation is the job
/// of an s6-log service).
fn check(p: &Program) -> anyhow::Result<()> {
    if let Some(option) = p.supervisord_only_option() {
        bail!("program {}: s6 has no {option}", p.name);
    }
    ensure!(
        p.autorestart != Some(false),
        "program {}: s6-supervise always restarts a service that is wanted up",
        p.name
    );
    Ok(())
}

/// Writes `spec`'s programs as service directories in `scandir` (created,
/// with the `.s6-svscan` control directory s6-svscan recommends). A program
/// with `autostart=false` gets a `down` file.
pub fn write_scandir(spec: &Spec, scandir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(scandir.join(".s6-svscan"))
        .with_context(|| format!("creating {}", scandir.display()))?;
    for p in &spec.programs {
        check(p)?;
        if p.name.starts_with('.') || p.name.contains('/') {
            bail!("program {}: not a service directory name", p.name);
        }
        let dir = scandir.join(&p.name);
        std::fs::create_dir_all(&dir)?;
        let run = dir.join("run");
        std::fs::write(&run, run_script(&p.command)?)?;
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755))?;
        std::fs::write(dir.join("notification-fd"), format!("{NOTIFICATION_FD}\n"))?;
        let down = dir.join("down");
        if p.autostart == Some(false) {
            std::fs::write(&down, "")?;
        } else if down.exists() {
            std::fs::remove_file(&down)?;
        }
    }
    Ok(())
}

/// Whether a command line is an `s6-supervise` process.
pub fn is_supervise(cmdline: &[String]) -> bool {
    cmdline.first().and_then(|p| Path::new(p).file_name()).is_some_and(|n| n == "s6-supervise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scandir_has_a_run_script_per_program_and_down_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = Spec::in_dir(dir.path());
        let mut p = spec.program("p000", "sleep 100000");
        p.startsecs = Some(0);
        p.autorestart = Some(true);
        spec.programs.push(p);
        let mut idle = spec.program("gen", "'/opt/my bench/vigil-bench' gen 100");
        idle.autostart = Some(false);
        spec.programs.push(idle);
        let scan = dir.path().join("scan");
        write_scandir(&spec, &scan).unwrap();
        assert!(scan.join(".s6-svscan").is_dir());
        let run = scan.join("p000/run");
        assert_eq!(
            std::fs::read_to_string(&run).unwrap(),
            "#!/bin/sh\necho >&3\nexec sleep 100000 3>&-\n"
        );
        assert_eq!(std::fs::read_to_string(scan.join("p000/notification-fd")).unwrap(), "3\n");
        assert_eq!(std::fs::metadata(&run).unwrap().permissions().mode() & 0o777, 0o755);
        assert!(!scan.join("p000/down").exists());
        assert_eq!(
            std::fs::read_to_string(scan.join("gen/run")).unwrap(),
            "#!/bin/sh\necho >&3\nexec '/opt/my bench/vigil-bench' gen 100 3>&-\n"
        );
        assert!(scan.join("gen/down").exists());
    }

    #[test]
    fn options_s6_cannot_express_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let scan = dir.path().join("scan");
        let refused = |edit: fn(&mut Program)| {
            let mut spec = Spec::in_dir(dir.path());
            let mut p = spec.program("p000", "sleep 100000");
            edit(&mut p);
            spec.programs.push(p);
            write_scandir(&spec, &scan).unwrap_err().to_string()
        };
        assert!(refused(|p| p.startsecs = Some(1)).contains("startsecs"));
        assert!(refused(|p| p.startretries = Some(3)).contains("startretries"));
        assert!(refused(|p| p.autorestart = Some(false)).contains("always restarts"));
        assert!(refused(|p| p.stdout_logfile_backups = Some(5)).contains("log rotation"));
        assert!(refused(|p| p.command = "'unterminated".into()).contains("badly quoted"));
    }

    #[test]
    fn supervise_and_services_max() {
        assert!(is_supervise(&["s6-supervise".into(), "p000".into()]));
        assert!(is_supervise(&["/usr/bin/s6-supervise".into(), "p000".into()]));
        assert!(!is_supervise(&["sleep".into(), "100000".into()]));
        assert!(!is_supervise(&[]));
        assert_eq!(services_max(10), 500);
        assert_eq!(services_max(5000), 5000);
    }
}
