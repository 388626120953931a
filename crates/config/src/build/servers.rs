//! The sections of the control surface: `[unix_http_server]`,
//! `[inet_http_server]`, `[supervisorctl]`, and the plugin sections
//! (`[rpcinterface:x]`, `[ctlplugin:x]`) whose keys are kept verbatim.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::reader::Reader;
use super::{Context, here_str, with};
use crate::error::{Diagnostics, Place};
use crate::expand::Expansions;
use crate::model::*;
use crate::raw::{RawData, RawSection, RawValue, here_of};
use crate::values;

/// A plugin section's keys as written, without expansion (supervisord hands them
/// to the plugin's factory).
pub(super) fn verbatim(section: &RawSection, diags: &mut Diagnostics) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, value) in &section.entries {
        let text = match &value.data {
            RawData::Text(t) => t.clone(),
            RawData::Int(n) => n.to_string(),
            RawData::Bool(b) => b.to_string(),
            RawData::Float(f) => f.to_string(),
            RawData::List(items) => items.join(", "),
            RawData::Table(_) => {
                let place = Place {
                    file: value.file.to_path_buf(),
                    line: value.line,
                    section: Some(section.name.clone()),
                    key: Some(key.clone()),
                };
                diags.error(&place, "expected a single value, not a table");
                continue;
            }
        };
        out.insert(key.clone(), text);
    }
    out
}

/// `username=` and `password=`: both or neither.
fn credentials(
    r: &mut Reader<'_>,
    exp: &Expansions,
    diags: &mut Diagnostics,
) -> Option<Credentials> {
    let username = r.text("username", exp, diags).map(|(t, _)| t);
    let password = r.text("password", exp, diags).map(|(password, place)| {
        // The server keeps only a digest: `{SHA}` and the SHA-1 in hex.
        if let Some(hex) = password.strip_prefix("{SHA}")
            && (hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            diags.error(&place, "'{SHA}' must be followed by the 40 hex digits of a SHA-1");
        }
        password
    });
    match (username, password) {
        (Some(username), Some(password)) => Some(Credentials { username, password }),
        (None, None) => None,
        _ => {
            diags.error(
                &r.section_place(),
                "section contains incomplete authentication: If a username or a password is specified, both the username and password must be specified",
            );
            None
        }
    }
}

/// `[unix_http_server]`: the socket file, its mode and owner, and credentials.
pub(super) fn unix_server(
    section: &RawSection,
    ctx: &Context<'_>,
    global_exp: &Expansions,
    diags: &mut Diagnostics,
) -> UnixHttpServer {
    let mut r = Reader::new(section);
    let exp = with(global_exp, &[("here", here_str(section))]);
    let file = match r.text("file", &exp, diags) {
        Some((text, _)) => {
            let base = r.raw("file").map(RawValue::here).unwrap_or_else(|| here_of(&section.file));
            values::normalize_path(&text, &base, ctx.env)
        }
        None => {
            if !r.has("file") {
                diags.error(&r.section_place(), "section has no file value");
            }
            PathBuf::new()
        }
    };
    let chmod = r.octal("chmod", &exp, diags).unwrap_or(0o700);
    let chown = r.opt("chown", &exp, diags, values::user_group);
    let auth = credentials(&mut r, &exp, diags);
    r.warn_unknown(diags);
    UnixHttpServer { file, chmod, chown, auth }
}

/// `[inet_http_server]`: `port=` (host:port) and credentials.
pub(super) fn inet_server(
    section: &RawSection,
    global_exp: &Expansions,
    diags: &mut Diagnostics,
) -> InetHttpServer {
    let mut r = Reader::new(section);
    let exp = with(global_exp, &[("here", here_str(section))]);
    if !r.has("port") {
        diags.error(&r.section_place(), "section has no port value");
    }
    let (host, port) = r.get("port", &exp, diags, (String::new(), 0), values::inet_address);
    let auth = credentials(&mut r, &exp, diags);
    let allow_unauthenticated = r.get("allow_unauthenticated", &exp, diags, false, values::boolean);
    r.warn_unknown(diags);
    InetHttpServer { host, port, auth, allow_unauthenticated }
}

/// `[supervisorctl]`: what the client connects to and how it prompts.
pub(super) fn ctl(
    section: &RawSection,
    ctx: &Context<'_>,
    global_exp: &Expansions,
    diags: &mut Diagnostics,
) -> Supervisorctl {
    let mut r = Reader::new(section);
    let exp = with(global_exp, &[("here", here_str(section))]);
    let serverurl = r.get("serverurl", &exp, diags, "http://localhost:9001".to_string(), |s| {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "'{s}' is not a valid serverurl: a unix:// path must be absolute"
                ));
            }
            Ok(format!("unix://{}", values::lexical_normalize(Path::new(path)).display()))
        } else if s.starts_with("http://") {
            Ok(s.to_string())
        } else {
            Err(format!("'{s}' is not a valid serverurl (http://host:port or unix:///path)"))
        }
    });
    let username = r.text("username", &exp, diags).map(|(t, _)| t);
    let password = r.text("password", &exp, diags).map(|(t, _)| t);
    let prompt = r.get("prompt", &exp, diags, "supervisor".to_string(), |s| Ok(s.to_string()));
    let history_file = r.text("history_file", &exp, diags).map(|(t, _)| {
        let base =
            r.raw("history_file").map(RawValue::here).unwrap_or_else(|| here_of(&section.file));
        values::normalize_path(&t, &base, ctx.env)
    });
    r.warn_unknown(diags);
    Supervisorctl { serverurl, username, password, prompt, history_file }
}
