//! Resource limits (Vigil extension): `rlimit_<name>` keys in both formats, or
//! a `rlimits` table in TOML (`rlimits = { nofile = "1024:4096" }`).
//!
//! A value is `N` (soft and hard), `SOFT:HARD`, with `unlimited` (or
//! `infinity`) for either side; the limits measured in bytes also take sizes
//! (`512MB`). A hard limit above the daemon's own is only possible with
//! CAP_SYS_RESOURCE: without it, the config check reports it up front rather
//! than every start of the program failing.

use super::reader::Reader;
use crate::error::{Diagnostics, Locate};
use crate::expand::Expansions;
use crate::model::{RLIMITS, ResourceLimit};
use crate::raw::RawData;
use crate::values;

/// The program's limits, in [`RLIMITS`] order; errors are reported.
pub(super) fn rlimits(
    r: &mut Reader<'_>,
    exp: &Expansions,
    diags: &mut Diagnostics,
) -> Vec<ResourceLimit> {
    let mut table: Vec<(String, String)> = Vec::new();
    if let Some(value) = r.raw("rlimits") {
        let place = r.place("rlimits", value);
        match &value.data {
            RawData::Table(pairs) => table.clone_from(pairs),
            _ => diags.error(&place, "expected a table of limits (in INI: rlimit_<name>=...)"),
        }
        if let Some((name, _)) =
            table.iter().find(|(name, _)| !RLIMITS.iter().any(|(n, _)| n == name))
        {
            let names: Vec<&str> = RLIMITS.iter().map(|(n, _)| *n).collect();
            diags.error(&place, format!("unknown limit '{name}' (known: {})", names.join(", ")));
        }
    }
    let mut out = Vec::new();
    for &(name, bytes) in RLIMITS {
        let key = format!("rlimit_{name}");
        let (text, place) = match r.text(&key, exp, diags) {
            Some((text, place)) => (text, place.place()),
            None => match table.iter().find(|(n, _)| n == name) {
                Some((_, text)) => {
                    let value = r.raw("rlimits").expect("rlimits was read");
                    (text.clone(), r.place("rlimits", value).place())
                }
                None => continue,
            },
        };
        match parse(&text, bytes) {
            Ok((soft, hard)) => {
                let limit = ResourceLimit { name, soft, hard };
                if let Err(message) = within_reach(&limit) {
                    diags.error(&place, message);
                }
                out.push(limit);
            }
            Err(message) => diags.error(&place, format!("{name}: {message}")),
        }
    }
    out
}

/// `N`, `SOFT:HARD`, `unlimited`; sizes when `bytes`.
pub(crate) fn parse(text: &str, bytes: bool) -> Result<(Option<u64>, Option<u64>), String> {
    let one = |s: &str| -> Result<Option<u64>, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("infinity") {
            return Ok(None);
        }
        let n = if bytes {
            values::byte_size(s)?
        } else {
            s.parse::<u64>().map_err(|_| format!("'{s}' is not a number or 'unlimited'"))?
        };
        // The kernel reads this value as "unlimited".
        Ok((n != u64::MAX).then_some(n))
    };
    let (soft, hard) = match text.split_once(':') {
        Some((soft, hard)) => (one(soft)?, one(hard)?),
        None => {
            let n = one(text)?;
            (n, n)
        }
    };
    let above = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (None, Some(_)) => true,
        (Some(a), Some(b)) => a > b,
        _ => false,
    };
    if above(soft, hard) {
        return Err(format!("the soft limit is above the hard limit in '{text}'"));
    }
    Ok((soft, hard))
}

/// A hard limit the daemon could not give: above its own hard limit, and it
/// lacks CAP_SYS_RESOURCE.
fn within_reach(limit: &ResourceLimit) -> Result<(), String> {
    let Some(resource) = limit.resource() else { return Ok(()) };
    let Ok((_, daemon_hard)) = nix::sys::resource::getrlimit(resource) else { return Ok(()) };
    let daemon_hard = (daemon_hard != nix::sys::resource::RLIM_INFINITY).then_some(daemon_hard);
    let raises = match (limit.hard, daemon_hard) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(wanted), Some(own)) => wanted > own,
    };
    if raises && !has_sys_resource() {
        let own = daemon_hard.map_or("unlimited".to_owned(), |n| n.to_string());
        return Err(format!(
            "{}: the hard limit is above vigild's own ({own}) and vigild lacks CAP_SYS_RESOURCE to raise it",
            limit.name
        ));
    }
    Ok(())
}

/// CAP_SYS_RESOURCE (bit 24) in this process's effective set.
fn has_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn values() {
        assert_eq!(parse("1024", false), Ok((Some(1024), Some(1024))));
        assert_eq!(parse("1024:4096", false), Ok((Some(1024), Some(4096))));
        assert_eq!(parse("unlimited", false), Ok((None, None)));
        assert_eq!(parse("0:unlimited", true), Ok((Some(0), None)));
        assert_eq!(parse("1MB:2MB", true), Ok((Some(1 << 20), Some(2 << 20))));
        assert!(parse("4096:1024", false).is_err());
        assert!(parse("unlimited:5", false).is_err());
        assert!(parse("1MB", false).is_err());
        assert!(parse("lots", true).is_err());
    }
}
