//! `capjail wrap` / `capjail unwrap`: find the MCP client configs, show the diff, write, keep
//! (or restore) the backup. The rewriting itself is `crate::wrap` (pure).

use std::path::{Path, PathBuf};

use crate::exit;
use crate::wrap::{self, diff::line_diff, Rewrite, WrapOptions};
use sha2::{Digest, Sha256};

use crate::cli::WrapArgs;

/// The configs of Claude Desktop, Cursor, VS Code and Claude Code that exist, for `home` and
/// the project directory `cwd`.
pub(crate) fn default_configs(home: &Path, cwd: &Path) -> Vec<PathBuf> {
    [
        home.join(".config/Claude/claude_desktop_config.json"),
        home.join("Library/Application Support/Claude/claude_desktop_config.json"),
        home.join(".cursor/mcp.json"),
        cwd.join(".cursor/mcp.json"),
        home.join(".config/Code/User/mcp.json"),
        cwd.join(".vscode/mcp.json"),
        home.join(".claude.json"),
        cwd.join(".mcp.json"),
    ]
    .into_iter()
    .filter(|p| p.is_file())
    .collect()
}

/// `FILE.capjail-backup.json`: the original text and the hash of what wrap wrote.
fn backup_path(config: &Path) -> PathBuf {
    let mut s = config.as_os_str().to_owned();
    s.push(".capjail-backup.json");
    PathBuf::from(s)
}

fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn configs(args: &WrapArgs) -> Result<Vec<PathBuf>, i32> {
    if !args.config.is_empty() {
        return Ok(args.config.clone());
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cwd = std::env::current_dir().unwrap_or_default();
    let found = default_configs(&home, &cwd);
    if found.is_empty() {
        eprintln!("capjail: error: no MCP client config found (Claude Desktop, Cursor, VS Code, Claude Code: .mcp.json, ~/.claude.json); name one with --config FILE");
        return Err(exit::USAGE);
    }
    Ok(found)
}

fn report(path: &Path, before: &str, r: &Rewrite, verb: &str) {
    println!("{}:", path.display());
    for s in &r.servers {
        match &s.outcome {
            Ok(line) => println!("  {verb} {}: {}", s.key, line.join(" ")),
            Err(why) => println!("  skipped {}: {why}", s.key),
        }
    }
    let d = line_diff(before, &r.text);
    if !d.is_empty() {
        println!("--- {}\n+++ {}", path.display(), path.display());
        print!("{d}");
    }
}

pub(crate) fn wrap(args: WrapArgs) -> i32 {
    let files = match configs(&args) {
        Ok(f) => f,
        Err(c) => return c,
    };
    let capjail = args
        .capjail
        .clone()
        .or_else(|| std::env::current_exe().ok())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "capjail".into());
    let opts = WrapOptions {
        capjail,
        policy: args.policy.clone(),
    };
    let mut code = 0;
    for path in files {
        let before = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("capjail: error: {}: {e}", path.display());
                code = exit::USAGE;
                continue;
            }
        };
        let r = match wrap::wrap(&before, &opts) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("capjail: error: {}: not JSON: {e}", path.display());
                code = exit::USAGE;
                continue;
            }
        };
        report(&path, &before, &r, "wrap");
        if r.text == before || args.dry_run {
            continue;
        }
        let backup = backup_path(&path);
        if backup.exists() {
            eprintln!("capjail: error: {} exists: the file was wrapped before; run `capjail unwrap --config {}` first", backup.display(), path.display());
            code = exit::USAGE;
            continue;
        }
        let record = serde_json::json!({"original": before, "wrapped_sha256": sha256(&r.text)});
        if let Err(e) = std::fs::write(&backup, record.to_string())
            .and_then(|()| std::fs::write(&path, &r.text))
        {
            eprintln!("capjail: error: {}: {e}", path.display());
            code = exit::USAGE;
            continue;
        }
        println!(
            "  wrote {} (backup: {}; undo with `capjail unwrap`)",
            path.display(),
            backup.display()
        );
    }
    code
}

pub(crate) fn unwrap(args: WrapArgs) -> i32 {
    let files = match configs(&args) {
        Ok(f) => f,
        Err(c) => return c,
    };
    let mut code = 0;
    for path in files {
        let current = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("capjail: error: {}: {e}", path.display());
                code = exit::USAGE;
                continue;
            }
        };
        let backup = backup_path(&path);
        let saved: Option<(String, String)> = std::fs::read_to_string(&backup)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| {
                Some((
                    v["original"].as_str()?.to_string(),
                    v["wrapped_sha256"].as_str()?.to_string(),
                ))
            });
        if let Some((original, hash)) = &saved {
            if *hash == sha256(&current) {
                println!(
                    "{}: restored byte for byte from {}",
                    path.display(),
                    backup.display()
                );
                let d = line_diff(&current, original);
                print!("{d}");
                if !args.dry_run {
                    if let Err(e) =
                        std::fs::write(&path, original).and_then(|()| std::fs::remove_file(&backup))
                    {
                        eprintln!("capjail: error: {}: {e}", path.display());
                        code = exit::USAGE;
                    }
                }
                continue;
            }
            eprintln!("capjail: warning: {} changed since `capjail wrap`: unwrapping each server in place (the original stays in {})", path.display(), backup.display());
        }
        let r = match wrap::unwrap(&current) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("capjail: error: {}: not JSON: {e}", path.display());
                code = exit::USAGE;
                continue;
            }
        };
        report(&path, &current, &r, "unwrap");
        if r.text != current && !args.dry_run {
            if let Err(e) = std::fs::write(&path, &r.text) {
                eprintln!("capjail: error: {}: {e}", path.display());
                code = exit::USAGE;
            }
        }
    }
    code
}
