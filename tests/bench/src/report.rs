//! The machine-readable report: every figure with its value, unit, goal, whether the
//! goal is met, the command that reproduces it and when it was measured; and the
//! readable summary generated from the same figures.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// How a figure is judged against its goal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    AtMost(f64),
    AtLeast(f64),
    Exactly(f64),
    /// Reported for context (throughput, the emulator's cost): no goal of its own.
    None,
}

impl Goal {
    pub fn met(&self, value: f64) -> Option<bool> {
        match *self {
            Goal::AtMost(g) => Some(value <= g),
            Goal::AtLeast(g) => Some(value >= g),
            // Counts compared as integers; a tolerance of half a unit absorbs float noise.
            Goal::Exactly(g) => Some((value - g).abs() < 0.5),
            Goal::None => None,
        }
    }

    pub fn describe(&self) -> String {
        match *self {
            Goal::AtMost(g) => format!("≤ {}", fmt_num(g)),
            Goal::AtLeast(g) => format!("≥ {}", fmt_num(g)),
            Goal::Exactly(g) => format!("= {}", fmt_num(g)),
            Goal::None => "— (context)".into(),
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    /// Stable identifier, e.g. `ats.requests_per_1000_records`.
    pub id: String,
    /// Which benchmark of issue I it belongs to (1..=8).
    pub group: u8,
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub goal: Goal,
    /// `null` when the figure has no goal of its own.
    pub met: Option<bool>,
    pub command: String,
    /// RFC 3339 time of the measurement.
    pub date: String,
    /// How it was measured and what it includes; why a goal is missed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl Figure {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        group: u8,
        id: &str,
        name: &str,
        value: f64,
        unit: &str,
        goal: Goal,
        command: &str,
        note: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            group,
            name: name.into(),
            value,
            unit: unit.into(),
            goal,
            met: goal.met(value),
            command: command.into(),
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            note: note.into(),
        }
    }
}

/// Conditions of the run that affect the numbers (2 shared cores).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Environment {
    pub cpus: usize,
    /// 1-minute load average at the start and end of the measurements.
    pub load_start: Option<f64>,
    pub load_end: Option<f64>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub generated_at: String,
    pub environment: Environment,
    pub figures: Vec<Figure>,
}

pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

const GROUPS: [&str; 8] = [
    "ATS requests",
    "Backfill under a rate limit",
    "End-to-end throughput (rate limit off)",
    "Merge against parsing",
    "DynamoDB requests per record",
    "Footprint: RSS, binary size, init time",
    "Scheduler fan-out",
    "Tenant deletion",
];

/// The readable summary.
pub fn summary_markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# eds benchmark summary\n");
    let _ = writeln!(
        s,
        "Generated {} on {} CPU(s); load average {} at start, {} at end.\n",
        r.generated_at,
        r.environment.cpus,
        r.environment
            .load_start
            .map_or("?".into(), |l| format!("{l:.2}")),
        r.environment
            .load_end
            .map_or("?".into(), |l| format!("{l:.2}")),
    );
    for n in &r.environment.notes {
        let _ = writeln!(s, "- {n}");
    }
    let missed: Vec<&Figure> = r.figures.iter().filter(|f| f.met == Some(false)).collect();
    let _ = writeln!(
        s,
        "\n{} figures, {} with a goal, {} missed.\n",
        r.figures.len(),
        r.figures.iter().filter(|f| f.met.is_some()).count(),
        missed.len()
    );
    for (i, title) in GROUPS.iter().enumerate() {
        let figs: Vec<&Figure> = r
            .figures
            .iter()
            .filter(|f| usize::from(f.group) == i + 1)
            .collect();
        if figs.is_empty() {
            continue;
        }
        let _ = writeln!(s, "## {}. {title}\n", i + 1);
        let _ = writeln!(s, "| figure | value | goal | met |");
        let _ = writeln!(s, "|---|---|---|---|");
        for f in &figs {
            let met = match f.met {
                Some(true) => "yes",
                Some(false) => "**MISSED**",
                None => "",
            };
            let _ = writeln!(
                s,
                "| {} | {} {} | {} | {} |",
                f.name,
                fmt_num(f.value),
                f.unit,
                f.goal.describe(),
                met
            );
        }
        let _ = writeln!(s);
        let mut commands: Vec<&str> = figs.iter().map(|f| f.command.as_str()).collect();
        commands.dedup();
        for c in commands {
            let _ = writeln!(s, "Command: `{c}`  ");
        }
        for f in figs.iter().filter(|f| !f.note.is_empty()) {
            let _ = writeln!(s, "- *{}*: {}", f.name, f.note);
        }
        let _ = writeln!(s);
    }
    s
}

pub fn write_json<T: Serialize>(path: &Path, v: &T) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(v)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_judge_values_on_the_right_side() {
        assert_eq!(Goal::AtMost(2.1).met(2.1), Some(true));
        assert_eq!(Goal::AtMost(2.1).met(2.2), Some(false));
        assert_eq!(Goal::AtLeast(200_000.0).met(199_999.0), Some(false));
        assert_eq!(Goal::Exactly(4.0).met(4.0), Some(true));
        assert_eq!(Goal::Exactly(4.0).met(5.0), Some(false));
        assert_eq!(Goal::None.met(1.0), None);
    }

    #[test]
    fn summary_marks_missed_goals() {
        let r = Report {
            generated_at: "now".into(),
            environment: Environment::default(),
            figures: vec![Figure::new(
                4,
                "merge.ratio",
                "ratio",
                2.5,
                "x",
                Goal::AtMost(2.0),
                "cargo bench",
                "why",
            )],
        };
        let s = summary_markdown(&r);
        assert!(s.contains("**MISSED**"), "{s}");
        assert!(s.contains("1 missed"), "{s}");
    }
}
