//! Collected figures, their summary statistics and the side-by-side table.
//!
//! A figure is one measured quantity of one scenario case (for example "S1,
//! N=500 startsecs=0, launch to all RUNNING"). Each repetition adds one value
//! per target; the table shows the median and the min-max of those values for
//! every target, and how many times better the first target is than each
//! other one.

use serde::Serialize;
use std::collections::BTreeMap;

/// Which direction of a figure is good; decides how the ratio is oriented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
    /// A count or a check: no ratio.
    Neither,
}

/// One figure and its values per target, in repetition order.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub scenario: String,
    pub case: String,
    pub name: String,
    pub unit: String,
    pub better: Better,
    pub values: BTreeMap<String, Vec<f64>>,
}

/// A single measured value, as a scenario returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    pub name: String,
    pub unit: &'static str,
    pub better: Better,
    pub value: f64,
}

impl Measure {
    pub fn lower(name: impl Into<String>, unit: &'static str, value: f64) -> Measure {
        Measure { name: name.into(), unit, better: Better::Lower, value }
    }
    pub fn higher(name: impl Into<String>, unit: &'static str, value: f64) -> Measure {
        Measure { name: name.into(), unit, better: Better::Higher, value }
    }
    pub fn count(name: impl Into<String>, unit: &'static str, value: f64) -> Measure {
        Measure { name: name.into(), unit, better: Better::Neither, value }
    }
}

/// Median, minimum and maximum of a non-empty sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// Summarizes `values`; `None` when empty. The median of an even count is
/// the mean of the two middle values.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
    Some(Summary { median, min: sorted[0], max: sorted[n - 1], n })
}

/// Median of `values`, or NaN when empty (a per-repetition helper).
pub fn median(values: &[f64]) -> f64 {
    summarize(values).map_or(f64::NAN, |s| s.median)
}

/// All figures of a run, in the order they were first recorded.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Results {
    pub figures: Vec<Figure>,
    /// Failed or skipped repetitions, one line each, for the report.
    pub notes: Vec<String>,
    /// Per-sample values behind a per-repetition median (every S5 kill,
    /// every S4 call), for the JSON output only.
    pub samples: Vec<Samples>,
    /// Processes the harness collected as a subreaper (descendants whose
    /// parent was gone before they were reaped), by scenario case and
    /// target, summed over the repetitions.
    pub escaped: Vec<Escaped>,
}

/// Processes that outlived their parent during one scenario case of one
/// target, and were collected by the harness.
#[derive(Debug, Clone, Serialize)]
pub struct Escaped {
    /// Scenario, case and target.
    pub run: String,
    pub count: u64,
}

/// The samples of one series in one repetition.
#[derive(Debug, Clone, Serialize)]
pub struct Samples {
    /// Scenario, case, repetition and target.
    pub run: String,
    pub series: String,
    pub values: Vec<f64>,
}

impl Results {
    /// Adds `count` processes collected by the harness during `run`.
    pub fn record_escaped(&mut self, run: String, count: u64) {
        if count == 0 {
            return;
        }
        match self.escaped.iter_mut().find(|e| e.run == run) {
            Some(existing) => existing.count += count,
            None => self.escaped.push(Escaped { run, count }),
        }
    }

    /// Adds one repetition's measures of `target` for a scenario case.
    pub fn record(&mut self, scenario: &str, case: &str, target: &str, measures: &[Measure]) {
        for m in measures {
            let existing = self
                .figures
                .iter_mut()
                .find(|f| f.scenario == scenario && f.case == case && f.name == m.name);
            let figure = match existing {
                Some(f) => f,
                None => {
                    self.figures.push(Figure {
                        scenario: scenario.to_owned(),
                        case: case.to_owned(),
                        name: m.name.clone(),
                        unit: m.unit.to_owned(),
                        better: m.better,
                        values: BTreeMap::new(),
                    });
                    self.figures.last_mut().expect("just pushed")
                }
            };
            figure.values.entry(target.to_owned()).or_default().push(m.value);
        }
    }

    /// The markdown table: one column per target (median and min-max) and
    /// one ratio column per target after the first.
    pub fn table(&self, targets: &[String]) -> String {
        let mut header = vec!["Scenario", "Case", "Figure", "Unit"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        for t in targets {
            header.push(format!("{t} median (min-max)"));
        }
        let first = targets.first().cloned().unwrap_or_default();
        for t in targets.iter().skip(1) {
            header.push(format!("{first} vs {t}"));
        }
        let mut rows = vec![header];
        for f in &self.figures {
            let mut row = vec![f.scenario.clone(), f.case.clone(), f.name.clone(), f.unit.clone()];
            let summaries: Vec<Option<Summary>> =
                targets.iter().map(|t| f.values.get(t).and_then(|v| summarize(v))).collect();
            // Counts and checks are whole numbers; print them as such.
            let show = |v: f64| {
                if f.better == Better::Neither && v.fract() == 0.0 {
                    format!("{v:.0}")
                } else {
                    num(v)
                }
            };
            for s in &summaries {
                row.push(match s {
                    Some(s) if s.n > 1 => {
                        format!("{} ({} - {})", show(s.median), show(s.min), show(s.max))
                    }
                    Some(s) => show(s.median),
                    None => "-".to_owned(),
                });
            }
            for other in summaries.iter().skip(1) {
                row.push(ratio(f.better, summaries[0], *other));
            }
            rows.push(row);
        }
        render_markdown(&rows)
    }
}

/// "Nx better/worse" for the first target against another one.
pub fn ratio(better: Better, first: Option<Summary>, other: Option<Summary>) -> String {
    let (Some(a), Some(b)) = (first, other) else { return "-".to_owned() };
    let times = match better {
        Better::Lower => b.median / a.median,
        Better::Higher => a.median / b.median,
        Better::Neither => return "-".to_owned(),
    };
    if !times.is_finite() || times <= 0.0 {
        return if a.median == 0.0 && b.median > 0.0 && better == Better::Lower {
            "0 vs >0".to_owned()
        } else {
            "-".to_owned()
        };
    }
    if (times - 1.0).abs() < 0.005 {
        return "equal".to_owned();
    }
    if times >= 1.0 {
        format!("{}x better", num(times))
    } else {
        format!("{}x worse", num(1.0 / times))
    }
}

/// Three significant digits, no exponent, thousands kept readable.
pub fn num(v: f64) -> String {
    // A hair above the true value, so that 0.05 - 0.04 (CPU ticks) lands
    // in the same band as 0.01.
    let a = v.abs() * (1.0 + 1e-9);
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// A markdown table with padded columns (readable as plain text too).
pub fn render_markdown(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = (0..columns)
            .map(|c| {
                let cell = row.get(c).map_or("", String::as_str).replace('|', "\\|");
                format!("{cell:<w$}", w = width[c])
            })
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
        if i == 0 {
            let rule: Vec<String> = width.iter().map(|w| "-".repeat((*w).max(3))).collect();
            out.push_str(&format!("| {} |\n", rule.join(" | ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_and_nan() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let s = summarize(&[5.0, f64::NAN, 1.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (3.0, 1.0, 5.0, 2));
    }

    #[test]
    fn ratio_orientation() {
        let s = |m| Some(Summary { median: m, min: m, max: m, n: 1 });
        assert_eq!(ratio(Better::Lower, s(0.2), s(3.5)), "17.5x better");
        assert_eq!(ratio(Better::Higher, s(400.0), s(365.0)), "1.10x better");
        assert_eq!(ratio(Better::Lower, s(2.0), s(1.0)), "2.00x worse");
        assert_eq!(ratio(Better::Neither, s(89.0), s(89.0)), "-");
        assert_eq!(ratio(Better::Lower, s(24.8), s(24.8)), "equal");
        assert_eq!(ratio(Better::Lower, s(0.0), s(0.95)), "0 vs >0");
        assert_eq!(ratio(Better::Lower, s(1.0), None), "-");
    }

    #[test]
    fn numbers() {
        assert_eq!(num(1006.4), "1006");
        assert_eq!(num(34.84), "34.8");
        assert_eq!(num(3.514), "3.51");
        assert_eq!(num(0.4531), "0.453");
        assert_eq!(num(0.0012), "0.0012");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(0.05 - 0.04), "0.010");
    }

    #[test]
    fn table_renders_both_targets_and_ratio() {
        let mut r = Results::default();
        let m = |v| [Measure::lower("launch to all RUNNING", "s", v)];
        r.record("S1", "N=10", "vigil", &m(0.1));
        r.record("S1", "N=10", "supervisord", &m(1.6));
        r.record("S1", "N=10", "vigil", &m(0.3));
        r.record("S1", "N=10", "supervisord", &m(1.4));
        r.record("S2", "N=0", "supervisord", &[Measure::lower("VmRSS", "MiB", 24.8)]);
        r.record("S7", "N=100", "vigil", &[Measure::count("unchanged pids", "count", 89.0)]);
        let t = r.table(&["vigil".into(), "supervisord".into()]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[0],
            "| Scenario | Case  | Figure                | Unit  | vigil median (min-max) \
             | supervisord median (min-max) | vigil vs supervisord |"
        );
        assert!(lines[1].starts_with("| -------- | ----- |"));
        assert_eq!(
            lines[2],
            "| S1       | N=10  | launch to all RUNNING | s     | 0.200 (0.100 - 0.300)  \
             | 1.50 (1.40 - 1.60)           | 7.50x better         |"
        );
        assert!(lines[3].contains("| -                      | 24.8 "));
        assert!(lines[4].contains("| 89                     |"), "{}", lines[4]);
    }
}
