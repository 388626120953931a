//! The benchmark's config: what one run asks of a daemon, written as a
//! supervisord INI file that both supervisord and vigild read.
//!
//! Every path (socket, pid file, daemon log, program logs) lives in the run's
//! own directory, so two runs never share a file. The config is replaced
//! atomically (write a sibling, then rename), because S7 rewrites it under a
//! running daemon.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

/// One `[program:x]` section. `None` means "leave supervisord's default".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub name: String,
    pub command: String,
    pub autostart: Option<bool>,
    pub autorestart: Option<bool>,
    pub startsecs: Option<u32>,
    pub startretries: Option<u32>,
    pub stdout_logfile: PathBuf,
    pub stderr_logfile: PathBuf,
    /// supervisord size syntax, e.g. `10MB`.
    pub stdout_logfile_maxbytes: Option<String>,
    pub stdout_logfile_backups: Option<u32>,
    /// Vigil's `stdout_logfile_format` (raw, timestamped, json).
    pub stdout_logfile_format: Option<String>,
}

impl Program {
    /// The first option set here that only a supervisord-compatible target
    /// has (`startsecs` above 0, `startretries`, rotation by size and
    /// count), for the targets that refuse a spec they cannot express.
    pub fn supervisord_only_option(&self) -> Option<&'static str> {
        if self.startsecs.unwrap_or(0) != 0 {
            Some("startsecs")
        } else if self.startretries.is_some() {
            Some("startretries")
        } else if self.stdout_logfile_maxbytes.is_some() || self.stdout_logfile_backups.is_some() {
            Some("log rotation by size and count")
        } else {
            None
        }
    }
}

/// Everything one daemon run is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub pidfile: PathBuf,
    pub logfile: PathBuf,
    pub childlogdir: PathBuf,
    pub programs: Vec<Program>,
}

impl Spec {
    /// A spec with the standard file layout inside `dir` and no programs.
    pub fn in_dir(dir: &Path) -> Spec {
        Spec {
            dir: dir.to_path_buf(),
            socket: dir.join("ctl.sock"),
            pidfile: dir.join("daemon.pid"),
            logfile: dir.join("daemon.log"),
            childlogdir: dir.join("logs"),
            programs: Vec::new(),
        }
    }

    /// A program with its stdout/stderr logs in `childlogdir`, all options at
    /// supervisord's defaults.
    pub fn program(&self, name: &str, command: &str) -> Program {
        Program {
            name: name.to_owned(),
            command: command.to_owned(),
            autostart: None,
            autorestart: None,
            startsecs: None,
            startretries: None,
            stdout_logfile: self.childlogdir.join(format!("{name}.out")),
            stderr_logfile: self.childlogdir.join(format!("{name}.err")),
            stdout_logfile_maxbytes: None,
            stdout_logfile_backups: None,
            stdout_logfile_format: None,
        }
    }

    /// The INI text of this spec.
    pub fn to_ini(&self) -> String {
        let mut ini = String::new();
        let sock = self.socket.display();
        // Writing to a String cannot fail.
        let _ = writeln!(ini, "[unix_http_server]\nfile={sock}\n");
        let _ = writeln!(
            ini,
            "[supervisord]\nlogfile={}\npidfile={}\nchildlogdir={}\nnodaemon=true\nloglevel=info\n",
            self.logfile.display(),
            self.pidfile.display(),
            self.childlogdir.display()
        );
        let _ = writeln!(
            ini,
            "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        );
        let _ = writeln!(ini, "[supervisorctl]\nserverurl=unix://{sock}\n");
        for p in &self.programs {
            let _ = writeln!(ini, "[program:{}]\ncommand={}", p.name, p.command);
            let mut opt = |key: &str, value: Option<String>| {
                if let Some(v) = value {
                    let _ = writeln!(ini, "{key}={v}");
                }
            };
            opt("autostart", p.autostart.map(|b| b.to_string()));
            opt("autorestart", p.autorestart.map(|b| b.to_string()));
            opt("startsecs", p.startsecs.map(|n| n.to_string()));
            opt("startretries", p.startretries.map(|n| n.to_string()));
            opt("stdout_logfile", Some(p.stdout_logfile.display().to_string()));
            opt("stdout_logfile_maxbytes", p.stdout_logfile_maxbytes.clone());
            opt("stdout_logfile_backups", p.stdout_logfile_backups.map(|n| n.to_string()));
            opt("stdout_logfile_format", p.stdout_logfile_format.clone());
            opt("stderr_logfile", Some(p.stderr_logfile.display().to_string()));
            ini.push('\n');
        }
        ini
    }

    /// Writes the INI to `path` atomically and creates the log directory.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(&self.childlogdir)?;
        let tmp = path.with_extension("conf.tmp");
        std::fs::write(&tmp, self.to_ini())?;
        std::fs::rename(&tmp, path)
    }
}

/// Program names `p000`, `p001`, ... for `range`; at least three digits so a
/// status table sorts in numeric order.
pub fn names(range: std::ops::Range<usize>) -> Vec<String> {
    let width = range.end.saturating_sub(1).to_string().len().max(3);
    range.map(|i| format!("p{i:0width$}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_has_every_section_and_only_set_options() {
        let mut spec = Spec::in_dir(Path::new("/r"));
        let mut p = spec.program("p000", "sleep 100000");
        p.startsecs = Some(0);
        p.autorestart = Some(true);
        spec.programs.push(p);
        let ini = spec.to_ini();
        let expected = "\
[unix_http_server]
file=/r/ctl.sock

[supervisord]
logfile=/r/daemon.log
pidfile=/r/daemon.pid
childlogdir=/r/logs
nodaemon=true
loglevel=info

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix:///r/ctl.sock

[program:p000]
command=sleep 100000
autorestart=true
startsecs=0
stdout_logfile=/r/logs/p000.out
stderr_logfile=/r/logs/p000.err

";
        assert_eq!(ini, expected);
    }

    #[test]
    fn write_is_atomic_and_creates_logdir() {
        let dir = tempfile::tempdir().unwrap();
        let spec = Spec::in_dir(dir.path());
        let path = dir.path().join("supervisord.conf");
        spec.write(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), spec.to_ini());
        assert!(dir.path().join("logs").is_dir());
        assert!(!dir.path().join("supervisord.conf.tmp").exists());
    }

    #[test]
    fn names_are_zero_padded() {
        assert_eq!(names(0..3), vec!["p000", "p001", "p002"]);
        assert_eq!(names(4998..5000), vec!["p4998", "p4999"]);
    }
}
