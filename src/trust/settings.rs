//! The compiled `pins:` and `tool_scan:` policy sections. A policy that does not mention
//! them gets the protective defaults: pin on first use in the default store, a changed tool
//! refused (its pinned definition shown) until accepted, high-severity findings hidden and
//! refused, the rest recorded.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::policy::schema::{PinsSection, ToolScanSection};

/// What happens to a tool whose definition differs from its pin (or, under a frozen pin
/// file, a tool that has no pin).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnChange {
    /// The client is shown the PINNED definition; calls are refused naming what changed.
    #[default]
    Refuse,
    /// The tool is removed from `tools/list`; calls are refused.
    Hide,
    /// The new definition is shown; calls go through approval.
    Approve,
}

/// What a scanner finding of a given severity does to its tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ScanAction {
    /// Removed from `tools/list`, calls refused.
    Hide,
    /// Listed, calls refused.
    Refuse,
    /// Listed, calls go through approval.
    Approve,
    /// Only recorded in the audit log.
    Record,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TrustPolicy {
    /// Pin definitions at all (`pins.enabled`, default true).
    pub(crate) pinning: bool,
    /// `pins.file`, expanded; `None`: the default store (or `--pins`).
    pub(crate) pins_file: Option<PathBuf>,
    /// Never pin anything new (`pins.frozen`; also `--pins-frozen`).
    pub(crate) frozen: bool,
    pub(crate) on_change: OnChange,
    /// Scan definitions at all (`tool_scan.enabled`, default true).
    pub(crate) scan: bool,
    pub(crate) on_high: ScanAction,
    pub(crate) on_medium: ScanAction,
    pub(crate) on_low: ScanAction,
    /// Rule ids that are not reported (`tool_scan.ignore`).
    pub(crate) ignore: Vec<String>,
}

impl Default for TrustPolicy {
    fn default() -> Self {
        TrustPolicy {
            pinning: true,
            pins_file: None,
            frozen: false,
            on_change: OnChange::Refuse,
            scan: true,
            on_high: ScanAction::Hide,
            on_medium: ScanAction::Record,
            on_low: ScanAction::Record,
            ignore: Vec::new(),
        }
    }
}

impl TrustPolicy {
    pub(crate) fn action(&self, s: super::scan::Severity) -> ScanAction {
        match s {
            super::scan::Severity::High => self.on_high,
            super::scan::Severity::Medium => self.on_medium,
            super::scan::Severity::Low => self.on_low,
        }
    }
}

/// A bad value: (dotted key, value as written, message).
pub(crate) type SettingError = (String, Option<String>, String);

/// Compile the two sections; `expand` expands `~` and variables in `pins.file`.
pub(crate) fn compile(
    pins: Option<&PinsSection>,
    scan: Option<&ToolScanSection>,
    expand: &dyn Fn(&str) -> Result<PathBuf, String>,
) -> Result<TrustPolicy, SettingError> {
    let mut t = TrustPolicy::default();
    if let Some(p) = pins {
        t.pinning = p.enabled.unwrap_or(true);
        t.frozen = p.frozen.unwrap_or(false);
        t.on_change = p.on_change.unwrap_or_default();
        if let Some(f) = &p.file {
            t.pins_file =
                Some(expand(f).map_err(|m| ("pins.file".to_string(), Some(f.clone()), m))?);
        }
    }
    if let Some(s) = scan {
        t.scan = s.enabled.unwrap_or(true);
        t.on_high = s.high.unwrap_or(t.on_high);
        t.on_medium = s.medium.unwrap_or(t.on_medium);
        t.on_low = s.low.unwrap_or(t.on_low);
        for (i, r) in s.ignore.iter().enumerate() {
            if !super::scan::RULES.iter().any(|(id, ..)| id.as_str() == r) {
                let ids: Vec<&str> = super::scan::RULES
                    .iter()
                    .map(|(id, ..)| id.as_str())
                    .collect();
                return Err((
                    format!("tool_scan.ignore[{i}]"),
                    Some(r.clone()),
                    format!("unknown scanner rule; the rules are {}", ids.join(", ")),
                ));
            }
        }
        t.ignore = s.ignore.clone();
    }
    Ok(t)
}

/// The sections with every default written out (`capjail policy show`).
pub(crate) fn effective_sections(t: &TrustPolicy) -> (PinsSection, ToolScanSection) {
    (
        PinsSection {
            enabled: Some(t.pinning),
            file: t.pins_file.as_ref().map(|p| p.display().to_string()),
            frozen: Some(t.frozen),
            on_change: Some(t.on_change),
        },
        ToolScanSection {
            enabled: Some(t.scan),
            high: Some(t.on_high),
            medium: Some(t.on_medium),
            low: Some(t.on_low),
            ignore: t.ignore.clone(),
        },
    )
}
