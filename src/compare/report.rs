//! The matrix as text, markdown or JSON. Pure: a [`Report`] in, a string out.

use serde_json::{json, Value};

use super::judge::Outcome;
use super::suite::{Case, Kind};
use super::Mode;

pub(crate) struct Row {
    pub(crate) case: &'static Case,
    /// One per mode, in `Report::modes` order.
    pub(crate) outcomes: Vec<Outcome>,
}

pub(crate) struct Report {
    pub(crate) server: String,
    pub(crate) policy: String,
    /// Why the kernel layer is unavailable, if it is.
    pub(crate) kernel: Option<String>,
    /// Why no private network namespace could be made, if so.
    pub(crate) netns: Option<String>,
    pub(crate) modes: Vec<Mode>,
    pub(crate) rows: Vec<Row>,
    pub(crate) seconds: f64,
}

/// Per-mode counts.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Counts {
    pub(crate) attacks: usize,
    pub(crate) contained_by_proxy: usize,
    pub(crate) contained_by_kernel: usize,
    pub(crate) no_effect: usize,
    pub(crate) leaked: usize,
    pub(crate) skipped: usize,
    pub(crate) errors: usize,
    pub(crate) legit: usize,
    pub(crate) allowed: usize,
    pub(crate) false_blocks: usize,
    pub(crate) legit_skipped: usize,
}

impl Counts {
    /// Could most cases not run (skipped or errors)? Then a passing report says little.
    pub(crate) fn mostly_skipped(&self) -> bool {
        let total = self.attacks + self.legit;
        let not_run = self.skipped + self.legit_skipped + self.errors;
        total > 0 && not_run * 2 > total
    }
}

impl Report {
    /// The counts of full mode (what the exit status judges).
    pub(crate) fn full_counts(&self) -> Option<Counts> {
        self.full_index().map(|i| self.counts(i))
    }

    pub(crate) fn counts(&self, mode_index: usize) -> Counts {
        let mut c = Counts::default();
        for row in &self.rows {
            let o = &row.outcomes[mode_index];
            match row.case.kind {
                Kind::Attack => c.attacks += 1,
                Kind::Legit => c.legit += 1,
            }
            match o {
                Outcome::ContainedProxy(_) => c.contained_by_proxy += 1,
                Outcome::ContainedKernel(_) => c.contained_by_kernel += 1,
                Outcome::NoEffect(_) => c.no_effect += 1,
                Outcome::Leaked(_) => c.leaked += 1,
                Outcome::Allowed => c.allowed += 1,
                Outcome::FalseBlock(_) => c.false_blocks += 1,
                Outcome::Skipped(_) if row.case.kind == Kind::Legit => c.legit_skipped += 1,
                Outcome::Skipped(_) => c.skipped += 1,
                Outcome::Error(_) => c.errors += 1,
            }
        }
        c
    }

    fn full_index(&self) -> Option<usize> {
        self.modes.iter().position(|m| *m == Mode::Full)
    }

    /// Full mode leaked nothing, blocked nothing legitimate and every case ran (or was skipped).
    pub(crate) fn ok(&self) -> bool {
        match self.full_index() {
            Some(i) => self.rows.iter().all(|r| !r.outcomes[i].is_failure()),
            None => false,
        }
    }

    /// The full-mode failures, one line each.
    pub(crate) fn failures(&self) -> Vec<String> {
        let Some(i) = self.full_index() else {
            return vec!["full mode was not run".into()];
        };
        self.rows
            .iter()
            .filter(|r| r.outcomes[i].is_failure())
            .map(|r| {
                format!(
                    "{}: {} ({})",
                    r.case.id,
                    r.outcomes[i].label(),
                    r.outcomes[i].detail()
                )
            })
            .collect()
    }

    fn summary_lines(&self) -> Vec<String> {
        self.modes
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let c = self.counts(i);
                format!(
                    "{:<10} attacks {}: contained {} (proxy {}, kernel {}), no effect {}, LEAKED {}, skipped {}, errors {}; legit {}: allowed {}, FALSE BLOCK {}, skipped {}",
                    m.name(),
                    c.attacks,
                    c.contained_by_proxy + c.contained_by_kernel,
                    c.contained_by_proxy,
                    c.contained_by_kernel,
                    c.no_effect,
                    c.leaked,
                    c.skipped,
                    c.errors,
                    c.legit,
                    c.allowed,
                    c.false_blocks,
                    c.legit_skipped
                )
            })
            .collect()
    }

    fn verdict(&self) -> String {
        if self.ok() {
            "verdict: full mode contained every attack that ran and allowed every legitimate operation".into()
        } else {
            format!(
                "verdict: FAIL in full mode:\n  {}",
                self.failures().join("\n  ")
            )
        }
    }

    /// Rows skipped in every mode are listed once instead of filling the table.
    fn all_skipped(row: &Row) -> Option<&str> {
        let first = match row.outcomes.first()? {
            Outcome::Skipped(r) => r.as_str(),
            _ => return None,
        };
        row.outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Skipped(r) if r == first))
            .then_some(first)
    }

    fn skipped_lines(&self) -> Vec<String> {
        let mut by_reason: Vec<(&str, Vec<&str>)> = Vec::new();
        for r in &self.rows {
            if let Some(reason) = Self::all_skipped(r) {
                match by_reason.iter_mut().find(|(x, _)| *x == reason) {
                    Some((_, ids)) => ids.push(r.case.id),
                    None => by_reason.push((reason, vec![r.case.id])),
                }
            }
        }
        by_reason
            .into_iter()
            .map(|(reason, ids)| format!("skipped in every mode ({reason}): {}", ids.join(", ")))
            .collect()
    }

    fn header_lines(&self) -> Vec<String> {
        let mut v = vec![
            format!("server: {}", self.server),
            format!("policy: {}", self.policy),
        ];
        if let Some(k) = &self.kernel {
            v.push(format!("kernel/full modes skipped: {k}"));
        }
        if let Some(n) = &self.netns {
            v.push(format!("network cases skipped: {n}"));
        }
        v
    }

    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        for l in self.header_lines() {
            out += &l;
            out.push('\n');
        }
        out.push('\n');
        let idw = self
            .rows
            .iter()
            .map(|r| r.case.id.len())
            .max()
            .unwrap_or(4)
            .max(4);
        out += &format!("{:<idw$}  {:<12}", "case", "family");
        for m in &self.modes {
            out += &format!("  {:<18}", m.name());
        }
        out.push('\n');
        for r in self.rows.iter().filter(|r| Self::all_skipped(r).is_none()) {
            out += &format!("{:<idw$}  {:<12}", r.case.id, r.case.family);
            for o in &r.outcomes {
                out += &format!("  {:<18}", o.label());
            }
            out = out.trim_end().to_string();
            out.push('\n');
        }
        out.push('\n');
        for l in self.skipped_lines() {
            out += &l;
            out.push('\n');
        }
        for l in self.summary_lines() {
            out += &l;
            out.push('\n');
        }
        out += &self.verdict();
        out.push('\n');
        out
    }

    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        for l in self.header_lines() {
            out += &format!("- {}\n", md(&l));
        }
        out.push('\n');
        out += "| case | family | what |";
        for m in &self.modes {
            out += &format!(" {} |", m.name());
        }
        out += "\n|---|---|---|";
        for _ in &self.modes {
            out += "---|";
        }
        out.push('\n');
        for r in self.rows.iter().filter(|r| Self::all_skipped(r).is_none()) {
            out += &format!(
                "| `{}` | {} | {} |",
                r.case.id,
                r.case.family,
                md(r.case.what)
            );
            for o in &r.outcomes {
                let l = o.label();
                if o.is_failure() {
                    out += &format!(" **{l}** |");
                } else {
                    out += &format!(" {l} |");
                }
            }
            out.push('\n');
        }
        out.push('\n');
        for l in self.skipped_lines() {
            out += &format!("- {}\n", md(&l));
        }
        out += "\n| mode | attacks | contained by proxy | contained by kernel | no effect | LEAKED | skipped | errors | legit allowed | FALSE BLOCK |\n|---|---|---|---|---|---|---|---|---|---|\n";
        for (i, m) in self.modes.iter().enumerate() {
            let c = self.counts(i);
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {} |\n",
                m.name(),
                c.attacks,
                c.contained_by_proxy,
                c.contained_by_kernel,
                c.no_effect,
                c.leaked,
                c.skipped,
                c.errors,
                c.allowed,
                c.legit,
                c.false_blocks
            );
        }
        out += &format!("\n{}\n", md(&self.verdict()));
        out
    }

    pub(crate) fn json(&self) -> Value {
        let cases: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let mut results = serde_json::Map::new();
                for (m, o) in self.modes.iter().zip(&r.outcomes) {
                    let mut v = json!({"outcome": o.key(), "detail": o.detail()});
                    if let Some(by) = o.by() {
                        v["by"] = json!(by);
                    }
                    results.insert(m.name().into(), v);
                }
                json!({
                    "id": r.case.id,
                    "family": r.case.family,
                    "kind": r.case.kind,
                    "target": r.case.target,
                    "layer": r.case.layer,
                    "what": r.case.what,
                    "results": results,
                })
            })
            .collect();
        let mut summary = serde_json::Map::new();
        for (i, m) in self.modes.iter().enumerate() {
            summary.insert(m.name().into(), json!(self.counts(i)));
        }
        json!({
            "server": self.server,
            "policy": self.policy,
            "kernel_unavailable": self.kernel,
            "netns_unavailable": self.netns,
            "modes": self.modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
            "cases": cases,
            "summary": summary,
            "ok": self.ok(),
            "failures": if self.ok() { vec![] } else { self.failures() },
            "seconds": (self.seconds * 10.0).round() / 10.0,
        })
    }
}

fn md(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::suite::SUITE;

    fn report(full: Outcome) -> Report {
        let attack = SUITE.iter().find(|c| c.id == "traversal-dotdot").unwrap();
        let legit = SUITE.iter().find(|c| c.id == "legit-read").unwrap();
        Report {
            server: "node fs {lab}".into(),
            policy: "p".into(),
            kernel: None,
            netns: Some("EPERM".into()),
            modes: Mode::ALL.to_vec(),
            rows: vec![
                Row {
                    case: attack,
                    outcomes: vec![
                        Outcome::Leaked("secret".into()),
                        Outcome::ContainedProxy("-32001: no".into()),
                        Outcome::ContainedKernel("EACCES".into()),
                        full,
                    ],
                },
                Row {
                    case: legit,
                    outcomes: vec![Outcome::Allowed; 4],
                },
            ],
            seconds: 1.0,
        }
    }

    #[test]
    fn compare_report_ok_and_counts() {
        let r = report(Outcome::ContainedProxy("x".into()));
        assert!(r.ok());
        let c = r.counts(2);
        assert_eq!(
            (c.attacks, c.contained_by_kernel, c.legit, c.allowed),
            (1, 1, 1, 1)
        );
        let j = r.json();
        assert_eq!(j["ok"], true);
        assert_eq!(j["cases"][0]["results"]["full"]["by"], "proxy");
        assert_eq!(j["cases"][0]["results"]["unconfined"]["outcome"], "leaked");
        assert_eq!(j["summary"]["kernel"]["contained_by_kernel"], 1);
        assert_eq!(j["netns_unavailable"], "EPERM");
        let t = r.text();
        assert!(
            t.contains("traversal-dotdot")
                && t.contains("contained (kernel)")
                && t.contains("network cases skipped"),
            "{t}"
        );
        let m = r.markdown();
        assert!(
            m.contains("| `traversal-dotdot` | traversal |") && m.contains("| full | 1 | 1 | 0 |"),
            "{m}"
        );
    }

    #[test]
    fn compare_report_fails_on_full_mode_leak_or_false_block() {
        let r = report(Outcome::Leaked("secret".into()));
        assert!(!r.ok());
        assert!(r.failures()[0].starts_with("traversal-dotdot: LEAKED"));
        assert!(r.text().contains("verdict: FAIL"));
        assert!(r.markdown().contains("**LEAKED**"));
        // A leak in proxy mode alone does not fail the run.
        let mut r = report(Outcome::ContainedKernel("x".into()));
        r.rows[0].outcomes[1] = Outcome::Leaked("x".into());
        assert!(r.ok());
        r.rows[1].outcomes[3] = Outcome::FalseBlock("refused".into());
        assert!(!r.ok());
        // Skipped is not a failure.
        r.rows[1].outcomes[3] = Outcome::Skipped("no kernel".into());
        assert!(r.ok());
    }
}

#[cfg(test)]
mod first_hour_tests {
    use super::Counts;

    #[test]
    fn mostly_skipped_means_more_than_half_did_not_run() {
        let c = Counts {
            attacks: 40,
            legit: 10,
            skipped: 30,
            legit_skipped: 9,
            ..Counts::default()
        };
        assert!(c.mostly_skipped());
        let c = Counts {
            attacks: 40,
            legit: 10,
            skipped: 5,
            ..Counts::default()
        };
        assert!(!c.mostly_skipped());
        assert!(!Counts::default().mostly_skipped());
    }
}
