//! The `[supervisord]` section: the daemon's own settings, with supervisord's
//! defaults and existence checks of the directories its files go in.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::reader::Reader;
use super::{Context, here_str, with};
use crate::error::{Diagnostics, Place};
use crate::expand::{Expansion, Expansions};
use crate::model::*;
use crate::raw::{RawSection, here_of};
use crate::values;

/// Reads `[supervisord]`; when the files have none, that is an error and the
/// defaults are built from an empty section so that the rest is still checked.
pub(super) fn supervisord(
    section: Option<&RawSection>,
    ctx: &Context<'_>,
    env_exp: &Expansions,
    host: &Expansion,
    diags: &mut Diagnostics,
) -> Supervisord {
    match section {
        Some(section) => read(section, ctx, env_exp, host, diags),
        None => {
            let root_place = Place { file: ctx.root.to_path_buf(), ..Place::default() };
            diags.error(&root_place, ".ini file does not include supervisord section");
            let empty = RawSection {
                name: "supervisord".into(),
                file: Rc::from(ctx.root),
                line: None,
                entries: Vec::new(),
            };
            read(&empty, ctx, env_exp, host, diags)
        }
    }
}

fn read(
    section: &RawSection,
    ctx: &Context<'_>,
    env_exp: &Expansions,
    host: &Expansion,
    diags: &mut Diagnostics,
) -> Supervisord {
    let mut r = Reader::new(section);
    let here = here_of(&section.file);
    let exp = with(env_exp, &[("here", here_str(section))]);
    let env_only = with(&exp, &[("host_node_name", host.clone())]);
    let env = ctx.env;
    let paths = Paths { here: &here, env };

    let logfile = logfile(&mut r, &exp, &paths, diags);
    let logfile_maxbytes = r.get("logfile_maxbytes", &exp, diags, 50 << 20, values::byte_size);
    let logfile_backups =
        r.get("logfile_backups", &exp, diags, 10, |s| values::integer_in(s, "logfile_backups"));
    let loglevel = r.get("loglevel", &exp, diags, LogLevel::Info, values::log_level);
    let pidfile = paths
        .checked(&mut r, "pidfile", &exp, values::existing_dirpath, diags)
        .unwrap_or_else(|| values::normalize_path("supervisord.pid", &here, env));
    let umask = r.octal("umask", &exp, diags).unwrap_or(0o022);
    let nodaemon = r.get("nodaemon", &exp, diags, false, values::boolean);
    let silent = r.get("silent", &exp, diags, false, values::boolean);
    let minfds = r.get("minfds", &exp, diags, 1024, |s| values::integer_in(s, "minfds"));
    let minprocs = r.get("minprocs", &exp, diags, 200, |s| values::integer_in(s, "minprocs"));
    let nocleanup = r.get("nocleanup", &exp, diags, false, values::boolean);
    let childlogdir = paths
        .checked(&mut r, "childlogdir", &exp, values::existing_directory, diags)
        // tempfile.gettempdir(), from the env map passed in.
        .unwrap_or_else(|| {
            ["TMPDIR", "TEMP", "TMP"]
                .iter()
                .find_map(|k| env.get(*k).filter(|v| !v.is_empty()))
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp"))
        });
    let user = r.opt("user", &exp, diags, values::user);
    let directory = paths.checked(&mut r, "directory", &exp, values::existing_directory, diags);
    let strip_ansi = r.get("strip_ansi", &exp, diags, false, values::boolean);
    let environment = r.environment(&env_only, diags).into_iter().collect();
    let identifier =
        r.get("identifier", &exp, diags, "supervisor".to_string(), |s| Ok(s.to_string()));
    let on_fatal = r.get("on_fatal", &exp, diags, OnFatal::Ignore, |s| {
        match s.trim().to_ascii_lowercase().as_str() {
            "ignore" => Ok(OnFatal::Ignore),
            "shutdown" => Ok(OnFatal::Shutdown),
            _ => Err(format!("'{s}' is not a valid on_fatal (ignore, shutdown)")),
        }
    });
    let env_file = super::envfiles::key(&mut r, &exp, env, diags);
    let cgroup_root = r.opt("cgroup_root", &exp, diags, values::cgroup_path);
    let logfile_format =
        r.get("logfile_format", &exp, diags, MainLogFormat::Text, values::main_log_format);
    r.warn_unknown(diags);
    Supervisord {
        logfile,
        logfile_maxbytes,
        logfile_backups,
        loglevel,
        pidfile: Some(pidfile),
        umask,
        nodaemon,
        silent,
        minfds,
        minprocs,
        nocleanup,
        childlogdir,
        user,
        directory,
        strip_ansi,
        environment,
        identifier,
        on_fatal,
        env_file,
        cgroup_root,
        logfile_format,
    }
}

/// How the section's relative paths resolve: against the directory of the file
/// each value is written in (`here` when the key is absent).
struct Paths<'a> {
    here: &'a Path,
    env: &'a std::collections::BTreeMap<String, String>,
}

impl Paths<'_> {
    fn resolve(&self, r: &Reader<'_>, key: &str, text: &str) -> PathBuf {
        let base = r
            .raw
            .entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.here())
            .unwrap_or_else(|| self.here.to_path_buf());
        values::normalize_path(text, &base, self.env)
    }

    /// The path written at `key`, resolved; `check` failing is reported at the value.
    fn checked(
        &self,
        r: &mut Reader<'_>,
        key: &str,
        exp: &Expansions,
        check: fn(&Path) -> Result<(), String>,
        diags: &mut Diagnostics,
    ) -> Option<PathBuf> {
        let (text, place) = r.text(key, exp, diags)?;
        let path = self.resolve(r, key, &text);
        if let Err(message) = check(&path) {
            diags.error(&place, message);
        }
        Some(path)
    }
}

/// `logfile=`: a path, or one of the words `NONE`, `OFF` and `SYSLOG`.
fn logfile(
    r: &mut Reader<'_>,
    exp: &Expansions,
    paths: &Paths<'_>,
    diags: &mut Diagnostics,
) -> LogTarget {
    match r.text("logfile", exp, diags) {
        Some((text, place)) => match text.trim().to_ascii_lowercase().as_str() {
            "none" | "off" => LogTarget::None,
            "syslog" => LogTarget::Syslog,
            "auto" => {
                diags.error(&place, "AUTO is only valid for program logs");
                LogTarget::None
            }
            _ => {
                let path = paths.resolve(r, "logfile", &text);
                if let Err(message) = values::existing_dirpath(&path) {
                    diags.error(&place, message);
                }
                LogTarget::Path(path)
            }
        },
        None => LogTarget::Path(values::normalize_path("supervisord.log", paths.here, paths.env)),
    }
}
