//! Control-group limits (Vigil extension): `memory_max`,
//! `memory_restart_threshold`, `cpu_quota`, `pids_max` and `cgroup`, the same
//! keys in both formats.
//!
//! Only the values are checked here; whether this host and this daemon can
//! give a program its own control group is the runtime's question
//! (vigil-core's `cgroup::check`, which `vigild --check` asks too).

use super::reader::Reader;
use crate::error::{Diagnostics, Locate};
use crate::expand::Expansions;
use crate::model::CgroupLimits;
use crate::values;

/// The program's control group, `None` without one; errors are reported.
pub(super) fn cgroup(
    r: &mut Reader<'_>,
    exp: &Expansions,
    diags: &mut Diagnostics,
) -> Option<CgroupLimits> {
    let positive = |what: &'static str| {
        move |text: &str| match values::byte_size(text)? {
            0 => Err(format!("{what} must be above 0")),
            n => Ok(n),
        }
    };
    let memory_max = r.opt("memory_max", exp, diags, positive("memory_max"));
    let memory_restart_threshold =
        r.opt("memory_restart_threshold", exp, diags, positive("memory_restart_threshold"));
    let cpu_quota = r.opt("cpu_quota", exp, diags, cpu_quota);
    let pids_max = r.opt("pids_max", exp, diags, |text| match text.trim().parse::<u64>() {
        Ok(0) | Err(_) => Err(format!("'{text}' is not a positive number of processes")),
        Ok(n) => Ok(n),
    });
    let limits = CgroupLimits { memory_max, memory_restart_threshold, cpu_quota, pids_max };
    if let (Some(max), Some(threshold)) = (memory_max, memory_restart_threshold)
        && threshold >= max
        && let Some((_, place)) = r.text("memory_restart_threshold", exp, diags)
    {
        diags.error(
            &place.place(),
            format!("{threshold} is not below memory_max ({max}): the OOM killer would act first"),
        );
    }
    let limited = limits != CgroupLimits::default();
    match r.text("cgroup", exp, diags) {
        Some((text, place)) => match values::boolean(&text) {
            Ok(true) => Some(limits),
            Ok(false) if limited => {
                diags.error(
                    &place.place(),
                    "cgroup=false, but memory_max, memory_restart_threshold, cpu_quota or pids_max need one",
                );
                None
            }
            Ok(false) => None,
            Err(message) => {
                diags.error(&place.place(), message);
                None
            }
        },
        None => limited.then_some(limits),
    }
}

/// `50%` (half a CPU), `200%` (two CPUs), as systemd's `CPUQuota=`; the `%`
/// may be left out (written `50%%` where supervisord's `%(name)s` expansion applies, in both formats).
pub(crate) fn cpu_quota(text: &str) -> Result<u32, String> {
    let invalid = || format!("'{text}' is not a CPU share in percent of one CPU (50%, 200%)");
    let trimmed = text.trim();
    let number = trimmed.strip_suffix('%').unwrap_or(trimmed);
    match number.trim().parse::<u32>() {
        Ok(0) | Err(_) => Err(invalid()),
        Ok(percent) if percent > 100_000 => Err(invalid()),
        Ok(percent) => Ok(percent),
    }
}

#[cfg(test)]
mod tests {
    use super::cpu_quota;

    #[test]
    fn cpu_quotas_are_percentages() {
        assert_eq!(cpu_quota("50%"), Ok(50));
        assert_eq!(cpu_quota(" 250 %"), Ok(250));
        assert_eq!(cpu_quota("75"), Ok(75));
        for bad in ["0%", "-5%", "1.5%", "%", "lots%", "100001%"] {
            assert!(cpu_quota(bad).is_err(), "{bad}");
        }
    }
}
