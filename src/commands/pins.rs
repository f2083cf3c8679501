//! `capjail pins show | diff | accept`: the pin file of tool definitions (see `trust`).

use std::path::PathBuf;

use crate::exit;
use crate::trust::store::{self, PinFile};
use serde_json::Value;

use crate::cli::{PinsArgs, PinsCommand};

pub(crate) fn pins(cmd: PinsCommand) -> i32 {
    match cmd {
        PinsCommand::Show { args, json } => {
            with_file(&args, |path, file| show(path, file, &args, json))
        }
        PinsCommand::Diff { args, tools } => with_file(&args, |_, file| diff(file, &args, &tools)),
        PinsCommand::Accept { args, tools, all } => accept(&args, &tools, all),
    }
}

fn location(args: &PinsArgs) -> Result<PathBuf, i32> {
    if let Some(p) = &args.pins {
        return Ok(std::path::absolute(p).unwrap_or_else(|_| p.clone()));
    }
    if let Some(name) = &args.policy {
        let policy = crate::policy::load(name).map_err(|e| super::report_policy_error(&e))?;
        if let Some(p) = policy.trust.pins_file {
            return Ok(p);
        }
    }
    store::default_location(&|k| std::env::var(k).ok()).map_err(|e| {
        eprintln!("capjail: {e}");
        exit::USAGE
    })
}

fn with_file(args: &PinsArgs, f: impl FnOnce(&std::path::Path, &PinFile) -> i32) -> i32 {
    let path = match location(args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match store::load(&path) {
        Ok(file) => f(&path, &file),
        Err(e) => {
            eprintln!("capjail: {e}");
            exit::POLICY
        }
    }
}

fn selected<'a>(
    file: &'a PinFile,
    args: &'a PinsArgs,
) -> impl Iterator<Item = (&'a String, &'a store::ServerPins)> + 'a {
    file.servers
        .iter()
        .filter(move |(k, _)| args.server.as_ref().is_none_or(|s| s == *k))
}

fn show(path: &std::path::Path, file: &PinFile, args: &PinsArgs, json: bool) -> i32 {
    if json {
        let servers: serde_json::Map<String, Value> = selected(file, args)
            .map(|(k, s)| (k.clone(), serde_json::to_value(s).unwrap_or(Value::Null)))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&servers).unwrap_or_default()
        );
        return 0;
    }
    eprintln!("capjail: pin file {}", path.display());
    for (key, s) in selected(file, args) {
        let info = s
            .server_info
            .as_ref()
            .map(|i| {
                format!(
                    " ({} {})",
                    i["name"].as_str().unwrap_or(""),
                    i["version"].as_str().unwrap_or("")
                )
            })
            .unwrap_or_default();
        println!(
            "{key}{info}: {} pinned, {} changed",
            s.tools.len(),
            s.pending.len()
        );
        for (name, pin) in &s.tools {
            let mark = if s.pending.contains_key(name) {
                "CHANGED"
            } else {
                "pinned"
            };
            println!(
                "  {mark:<8} {name:<32} {} {}",
                &pin.digest[..pin.digest.len().min(19)],
                pin.at
            );
        }
        for name in s.pending.keys().filter(|n| !s.tools.contains_key(*n)) {
            println!("  {:<8} {name:<32} (not pinned)", "NEW");
        }
    }
    0
}

fn diff(file: &PinFile, args: &PinsArgs, tools: &[String]) -> i32 {
    let mut any = false;
    for (key, s) in selected(file, args) {
        for (name, new) in &s.pending {
            if !tools.is_empty() && !tools.contains(name) {
                continue;
            }
            any = true;
            println!("== {key} tool `{name}`");
            let old = s.tools.get(name).map(|p| &p.definition);
            for line in member_diff(old, &new.definition) {
                println!("{line}");
            }
        }
    }
    if !any {
        eprintln!("capjail: no definition differs from its pin");
    }
    i32::from(any)
}

/// One block per pinned member that differs: `- old` / `+ new`, pretty JSON.
fn member_diff(old: Option<&Value>, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for k in crate::trust::digest::PINNED_MEMBERS {
        let a = old.and_then(|o| o.get(*k));
        let b = new.get(*k);
        if a == b {
            continue;
        }
        out.push(format!("  {k}:"));
        for (sign, v) in [("-", a), ("+", b)] {
            let text = match v {
                Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
                None => "(absent)".into(),
            };
            for l in text.lines() {
                out.push(format!("  {sign} {}", visible(l)));
            }
        }
    }
    out
}

/// Hidden characters shown as `<U+XXXX>` so a diff never hides what changed.
fn visible(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_control() || matches!(c as u32, 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2069 | 0xFEFF | 0xE0000..=0xE007F) {
                format!("<U+{:04X}>", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn accept(args: &PinsArgs, tools: &[String], all: bool) -> i32 {
    let path = match location(args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let result = store::update(&path, |file| {
        let mut accepted = Vec::new();
        for (key, s) in file.servers.iter_mut() {
            if args.server.as_ref().is_some_and(|k| k != key) {
                continue;
            }
            let names: Vec<String> = s
                .pending
                .keys()
                .filter(|n| all || tools.contains(n))
                .cloned()
                .collect();
            for n in names {
                if let Some(pin) = s.pending.remove(&n) {
                    s.tools.insert(n.clone(), pin);
                    accepted.push(format!("{key} {n}"));
                }
            }
        }
        accepted
    });
    match result {
        Ok(accepted) if accepted.is_empty() => {
            eprintln!("capjail: nothing to accept in {}", path.display());
            1
        }
        Ok(accepted) => {
            for a in accepted {
                println!("accepted {a}");
            }
            0
        }
        Err(e) => {
            eprintln!("capjail: {e}");
            exit::POLICY
        }
    }
}
