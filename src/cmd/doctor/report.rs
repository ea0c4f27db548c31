//! The doctor's findings: one `Check` per line, grouped by route, printed as text (✓/✗
//! with the likely cause and the fix under each ✗) or as JSON.

use std::fmt::Write;

use serde::Serialize;
use serde_json::Value;

/// The five steps of a route's diagnosis, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Config,
    Dns,
    Tcp,
    Tls,
    Credential,
    Mcp,
}

impl Step {
    fn label(self) -> &'static str {
        match self {
            Step::Config => "config",
            Step::Dns => "dns",
            Step::Tcp => "tcp",
            Step::Tls => "tls",
            Step::Credential => "credential",
            Step::Mcp => "mcp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// Not run because an earlier step failed; never passes.
    Skip,
    /// Worth knowing, not a verdict (e.g. what the system resolver answers).
    Info,
}

impl Status {
    fn mark(self) -> &'static str {
        match self {
            Status::Pass => "✓",
            Status::Fail => "✗",
            Status::Skip => "-",
            Status::Info => "·",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub step: Step,
    pub status: Status,
    /// One line: what was checked and what came out.
    pub summary: String,
    /// For a failure: what most likely causes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// For a failure: what to change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Machine-readable facts (addresses, timings, certificate names, ...).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

impl Check {
    pub fn pass(step: Step, summary: impl Into<String>) -> Check {
        Check::new(step, Status::Pass, summary)
    }

    pub fn info(step: Step, summary: impl Into<String>) -> Check {
        Check::new(step, Status::Info, summary)
    }

    pub fn skip(step: Step, summary: impl Into<String>) -> Check {
        Check::new(step, Status::Skip, summary)
    }

    pub fn fail(
        step: Step,
        summary: impl Into<String>,
        cause: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            cause: Some(cause.into()),
            fix: Some(fix.into()),
            ..Check::new(step, Status::Fail, summary)
        }
    }

    fn new(step: Step, status: Status, summary: impl Into<String>) -> Check {
        Check {
            step,
            status,
            summary: summary.into(),
            cause: None,
            fix: None,
            details: Value::Null,
        }
    }

    pub fn with_details(mut self, details: Value) -> Check {
        self.details = details;
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteReport {
    pub route: String,
    pub path: String,
    pub gateway: String,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True only when no check failed or was skipped.
    pub ok: bool,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Checks that apply to the whole configuration (e.g. a credential that cannot load).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub global: Vec<Check>,
    pub routes: Vec<RouteReport>,
}

impl Report {
    pub fn new(global: Vec<Check>, routes: Vec<RouteReport>) -> Report {
        let all = || {
            global
                .iter()
                .chain(routes.iter().flat_map(|r| r.checks.iter()))
        };
        let count = |status| all().filter(|c| c.status == status).count();
        let (passed, failed, skipped) = (
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Skip),
        );
        Report {
            ok: failed == 0 && skipped == 0,
            passed,
            failed,
            skipped,
            global,
            routes,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for check in &self.global {
            write_check(&mut out, check, "");
        }
        for route in &self.routes {
            let _ = writeln!(
                out,
                "route {} ({} -> {})",
                route.route, route.path, route.gateway
            );
            for check in &route.checks {
                write_check(&mut out, check, "  ");
            }
        }
        let _ = writeln!(
            out,
            "{}: {} passed, {} failed{}",
            if self.ok {
                "all checks passed"
            } else {
                "doctor"
            },
            self.passed,
            self.failed,
            if self.skipped > 0 {
                format!(", {} skipped", self.skipped)
            } else {
                String::new()
            }
        );
        out
    }
}

fn write_check(out: &mut String, check: &Check, indent: &str) {
    let _ = writeln!(
        out,
        "{indent}{} {:<10} {}",
        check.status.mark(),
        check.step.label(),
        check.summary
    );
    if let Some(cause) = &check.cause {
        let _ = writeln!(out, "{indent}    cause: {cause}");
    }
    if let Some(fix) = &check.fix {
        let _ = writeln!(out, "{indent}    fix:   {fix}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_prints_its_cause_and_fix_and_spoils_the_verdict() {
        let report = Report::new(
            Vec::new(),
            vec![RouteReport {
                route: "mcp".into(),
                path: "/mcp".into(),
                gateway: "https://gw.example/mcp".into(),
                checks: vec![
                    Check::pass(Step::Dns, "gw.example -> 10.0.0.5 (in-VPC)"),
                    Check::fail(
                        Step::Tcp,
                        "10.0.0.5:443 refused",
                        "nothing listens",
                        "fix it",
                    ),
                    Check::skip(Step::Tls, "no TCP connection"),
                    Check::info(Step::Dns, "system resolver agrees"),
                ],
            }],
        );
        assert!(!report.ok);
        assert_eq!((report.passed, report.failed, report.skipped), (1, 1, 1));
        let text = report.to_text();
        assert!(text.contains("  ✗ tcp        10.0.0.5:443 refused\n      cause: nothing listens\n      fix:   fix it\n"), "{text}");
        assert!(
            text.ends_with("doctor: 1 passed, 1 failed, 1 skipped\n"),
            "{text}"
        );
        let json: Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["routes"][0]["checks"][1]["status"], "fail");
        assert_eq!(json["routes"][0]["checks"][1]["step"], "tcp");
        assert!(json["routes"][0]["checks"][0].get("cause").is_none());
    }
}
