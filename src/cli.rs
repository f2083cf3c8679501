//! Command-line definitions (clap) only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub(crate) use crate::sandbox::Mode;

/// `--mode`: the command-line face of [`Mode`] (library types do not derive clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ModeArg {
    /// The stdio JSON-RPC proxy only.
    Proxy,
    /// Kernel confinement only (the server's stdio is passed through unchecked).
    Kernel,
    /// Both (the default on Linux).
    Full,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Proxy => Mode::Proxy,
            ModeArg::Kernel => Mode::Kernel,
            ModeArg::Full => Mode::Full,
        }
    }
}

impl From<Mode> for ModeArg {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Proxy => ModeArg::Proxy,
            Mode::Kernel => ModeArg::Kernel,
            Mode::Full => ModeArg::Full,
        }
    }
}

/// `capjail probe-server` options. CLI only: nothing is read from the environment.
#[derive(Debug, Clone, Args)]
pub(crate) struct ProbeArgs {
    /// Lab root (the tree built by `probe::lab::make_lab`); tool paths are relative to it.
    #[arg(long, value_name = "DIR")]
    pub(crate) root: PathBuf,
    /// Loopback TCP port of the canary listener (`ping_home` connects to 127.0.0.1:PORT).
    #[arg(long, value_name = "PORT")]
    pub(crate) canary_port: Option<u16>,
    /// A process outside the sandbox: target of `peek outside`, `signal` and `trace`.
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(i32).range(2..))]
    pub(crate) outside_pid: Option<i32>,
}

impl From<ProbeArgs> for crate::probe::ProbeConfig {
    fn from(a: ProbeArgs) -> Self {
        crate::probe::ProbeConfig {
            canary_port: a.canary_port,
            outside_pid: a.outside_pid,
            ..crate::probe::ProbeConfig::new(a.root)
        }
    }
}

pub(crate) const EXIT_CODES: &str = "\
EXIT STATUS:
  capjail run    the server's exit status (128+N if a signal N ended it)
  capjail check  0 if every line is allowed, 1 if any is denied
  capjail compare  0 if full mode contains every attack and allows every legitimate operation, 1 if not
  any command    120 internal error, 122 kernel confinement required but not available,
                 123 audit log error, 124 policy or profile error, 125 usage error,
                 126 the server command cannot be executed, 127 the server command was not found";

#[derive(Debug, Parser)]
#[command(
    name = "capjail",
    version,
    about = "A sandbox for MCP servers: one policy, enforced on the stdio JSON-RPC stream and in the kernel",
    long_about = "capjail spawns a stdio MCP server and stands between it and the MCP client. Every \
JSON-RPC message is parsed strictly and every tool call is mapped to capabilities, paths and URLs \
and checked against the policy; refused calls get a JSON-RPC error (-32001) and never reach the \
server. stdout carries protocol only; logs go to stderr.",
    after_help = EXIT_CODES
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) log: LogArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// More logging on stderr (-v: debug, -vv: trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// Log line format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run an MCP server behind the policy: capjail run [OPTIONS] -- CMD [ARGS...]
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Dry run: read JSON-RPC lines on stdin and print the verdict `run` would give each, without a server
    #[command(
        after_help = "Prints one JSON object per input line. Exit status: 0 if every line is allowed, 1 if any is denied, 124 policy error."
    )]
    Check(CheckArgs),
    /// List, show, validate and explain policies
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// What this machine's kernel can enforce, and what a policy would enforce here
    Doctor {
        /// Also report what this policy would enforce
        #[arg(long, short = 'p', value_name = "NAME|FILE")]
        policy: Option<String>,
        /// Directory that `${CAPJAIL_WORKSPACE}` stands for
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
    },
    /// Verify and read audit logs
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Pinned tool definitions: show them, diff the changed ones, accept changes
    #[command(subcommand)]
    Pins(PinsCommand),
    /// Run the built-in attack suite in proxy, kernel and full mode and print what each stops
    #[command(after_help = COMPARE_HELP)]
    Compare(CompareArgs),
    /// A built-in MCP server whose innocently named tools misbehave inside the process (tests, compare)
    #[command(hide = true)]
    ProbeServer(ProbeArgs),
    /// Put capjail in front of the stdio MCP servers of Claude Desktop, Cursor, VS Code and Claude Code
    #[command(after_help = WRAP_HELP)]
    Wrap(WrapArgs),
    /// Undo `capjail wrap`: restore the backup byte for byte (or unwrap each server in place)
    Unwrap(WrapArgs),
    /// Re-decide every request recorded in an audit log under another policy and print what changes
    #[command(
        after_help = "A FILE with rotated files beside it (FILE.1, FILE.2, ...) is replayed as a whole set, oldest first, and verified as one.\nExit status: 0 if nothing that was denied becomes allowed, 1 if something does (gate policy changes on real traffic), 123 unreadable log, 124 policy error."
    )]
    Replay {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        policy: PolicyArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Check the hash chain of one or more audit logs; name the first broken record
    #[command(
        after_help = "Without FILE: the log `capjail run` writes to ($CAPJAIL_AUDIT, else the policy's audit.path, else $XDG_STATE_HOME/capjail/audit.jsonl); the file read is named on stderr. A file with rotated files beside it (FILE.1, FILE.2, ...) is verified as a whole set, and against FILE.head when present.\nExit status: 0 if every file verifies, 1 on any break (edited, deleted, inserted, reordered, truncated records, a missing file of a rotated set)."
    )]
    Verify {
        /// Audit log(s) [default: the log `capjail run` writes to]
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print an audit log as a table (or JSON lines with --json); a rotated set whole, oldest first
    Show {
        /// Audit log [default: the log `capjail run` writes to]
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// Only decisions with this verdict
        #[arg(long, value_parser = ["allow", "deny"])]
        verdict: Option<String>,
        /// Only records about this tool
        #[arg(long)]
        tool: Option<String>,
        /// Only records at or after this time (RFC 3339 UTC or a prefix: 2026-11-22, 2026-11-22T12)
        #[arg(long)]
        since: Option<String>,
        /// JSON lines instead of a table
        #[arg(long)]
        json: bool,
    },
}

pub(crate) const WRAP_HELP: &str = "\
Reads (without --config, those that exist): ~/.config/Claude/claude_desktop_config.json (and the
macOS path), ~/.cursor/mcp.json and ./.cursor/mcp.json, ~/.config/Code/User/mcp.json and
./.vscode/mcp.json, ~/.claude.json (top-level and per-project servers) and ./.mcp.json.
Each stdio server's command becomes `capjail run --policy P -- <original command>`: P is --policy,
else `workspace --workspace DIR` when the server was given a directory DIR, else `strict`.
The change is printed as a diff; the original is kept in FILE.capjail-backup.json. Remote
servers (url, type sse/http) are listed with the reason and left alone.";

#[derive(Debug, Args)]
pub(crate) struct WrapArgs {
    /// A client config file (repeatable) instead of the default locations
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Vec<PathBuf>,
    /// Policy for every server [default: suggested per server]
    #[arg(long, short = 'p', value_name = "NAME|FILE")]
    pub(crate) policy: Option<String>,
    /// The capjail executable written into the configs [default: this one]
    #[arg(long, value_name = "PATH")]
    pub(crate) capjail: Option<PathBuf>,
    /// Print what would change, write nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    /// Built-in policy name (strict, readonly, workspace, capfence) or a YAML file [default: strict]
    #[arg(long, short = 'p', env = "CAPJAIL_POLICY", value_name = "NAME|FILE")]
    pub(crate) policy: Option<String>,
    /// Directory that `${CAPJAIL_WORKSPACE}` stands for in policies (readonly's /workspace)
    #[arg(long, value_name = "DIR")]
    pub(crate) workspace: Option<PathBuf>,
    /// Force a server profile (built-in name or YAML file) instead of detecting it
    #[arg(long, value_name = "NAME|FILE")]
    pub(crate) profile: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) policy: PolicyArgs,
    /// Which layers enforce the policy: the stdio proxy, kernel confinement (Linux), or both
    #[arg(long, value_enum, default_value_t = ModeArg::from(Mode::default()))]
    pub(crate) mode: ModeArg,
    /// Refuse to start unless the kernel layer is fully enforced (also: policy kernel.require)
    #[arg(long)]
    pub(crate) require_kernel: bool,
    /// Print the sandbox plan (Landlock rules with their reasons, network, environment) and exit
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Working directory of the server (relative paths in tool calls resolve against it)
    #[arg(long, value_name = "DIR")]
    pub(crate) cwd: Option<PathBuf>,
    /// Audit log file, or `off` (only where the policy allows it)
    /// [default: the policy's audit.path, else $XDG_STATE_HOME/capjail/audit.jsonl]
    #[arg(long, value_name = "FILE|off", env = "CAPJAIL_AUDIT")]
    pub(crate) audit: Option<String>,
    /// Pin file for the server's tool definitions, or `off`
    /// [default: the policy's pins.file, else $XDG_STATE_HOME/capjail/pins.json]
    #[arg(long, value_name = "FILE|off", env = "CAPJAIL_PINS")]
    pub(crate) pins: Option<String>,
    /// Never pin anything new: a tool without a pin is hidden and refused (CI with a committed pin file)
    #[arg(long)]
    pub(crate) pins_frozen: bool,
    /// Longest accepted client message in bytes (overrides the policy's proxy.max_line_bytes)
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_line_bytes: Option<usize>,
    /// The MCP server command and its arguments
    #[arg(required = true, last = true, value_name = "CMD")]
    pub(crate) command: Vec<String>,
}

pub(crate) const COMPARE_HELP: &str = "\
Every case runs in a fresh temporary lab (random canary tokens in secret files, a workspace,
a prefix-sharing sibling, symlinks out of the workspace), in four columns: the server alone
(`unconfined`: shows which attacks are real against it), then `capjail run --mode proxy`,
`--mode kernel` and `--mode full`. Each attack is judged by its effect: a secret token reached
the client, a file appeared, the loopback canary was hit, the outside process was signalled.

  contained (proxy)   capjail refused the request and the effect did not happen
  contained (kernel)  the request reached the confined server and the effect did not happen
  no effect           the effect did not happen even unconfined: no layer takes the credit
  LEAKED              the effect happened
  skipped             not run, with the reason (no such tool, no kernel layer, no netns)
  allowed / FALSE BLOCK   legitimate operations

Request-level attacks (traversal, prefix confusion, symlinks, argument shapes, parser
differentials, batches, encoded hosts for fetch-type servers) run against the server under
test; in-server attacks run against capjail's probe server. Network cases run in a private
network namespace (loopback only, canary inside); when none can be made they are skipped.

The server command: `{lab}` is replaced by the lab root and `{ws}` by its workspace, e.g.
  capjail compare -- node .../server-filesystem/dist/index.js {lab}
Without a command: the real filesystem server when installed ($CAPJAIL_PEERS, ./.peers or the
global npm folder), else the probe server (also: --server probe).
Without --policy, each lab gets a generated policy: its workspace read-write, no network.

stdout carries the report only; one progress line per case goes to stderr.
Exit status: 0 if full mode contains every attack and allows every legitimate operation,
1 if it leaks or blocks anything (or a case could not run; or, without --server or a command,
when more than half the cases could not run against the fallback server), 124 policy error,
125 usage error.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompareServer {
    /// The real filesystem server (@modelcontextprotocol/server-filesystem), when installed
    Filesystem,
    /// capjail's built-in probe server
    Probe,
}

#[derive(Debug, Args)]
pub(crate) struct CompareArgs {
    /// Policy for every run: a built-in name or a YAML file
    /// [default: generated per lab: the lab workspace read-write, no network; the egress family
    /// always runs under its own: one allowed origin, network: allowlist]
    #[arg(long, short = 'p', value_name = "NAME|FILE")]
    pub(crate) policy: Option<String>,
    /// The server under test when no command is given [default: filesystem if installed, else probe]
    #[arg(long, value_enum, conflicts_with = "command")]
    pub(crate) server: Option<CompareServer>,
    /// Print the report as JSON
    #[arg(long, conflicts_with = "markdown")]
    pub(crate) json: bool,
    /// Print the report as a markdown table
    #[arg(long)]
    pub(crate) markdown: bool,
    /// Cases run in parallel
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) jobs: u16,
    /// Run only the cases of this family (traversal, prefix, symlink, arg-shape, parser, batch,
    /// encoded-host, in-server, egress, legit)
    #[arg(long, value_name = "FAMILY")]
    pub(crate) family: Option<String>,
    /// Bound on one case, in seconds
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub(crate) timeout: u64,
    /// The server under test and its arguments (`{lab}`, `{ws}` are substituted per case)
    #[arg(last = true, value_name = "CMD")]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) policy: PolicyArgs,
    /// Working directory to resolve relative paths against [default: the current directory]
    #[arg(long, value_name = "DIR")]
    pub(crate) cwd: Option<PathBuf>,
    /// Print one line of text per verdict instead of JSON
    #[arg(long)]
    pub(crate) text: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// List the built-in policies
    List,
    /// Print the effective policy as YAML (a built-in name or a file)
    Show {
        #[arg(value_name = "NAME|FILE")]
        policy: String,
        /// Directory that `${CAPJAIL_WORKSPACE}` stands for
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
    },
    /// Print the JSON Schema of policy files (for editors: see README, yaml-language-server)
    Schema,
    /// Validate a policy file; errors name file, line and column
    Validate {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print what the proxy checks and the kernel sandbox plan for a policy and a server command: capjail policy explain P -- CMD...; or what a rule id means: capjail policy explain --rule ID
    Explain {
        /// A rule id of `error.data.rule` (docs/rules.md): print what triggers it and how to allow it
        #[arg(long, value_name = "ID", conflicts_with_all = ["policy", "command"])]
        rule: Option<String>,
        #[arg(value_name = "NAME|FILE", required_unless_present = "rule")]
        policy: Option<String>,
        /// Directory that `${CAPJAIL_WORKSPACE}` stands for
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
        /// JSON instead of text
        #[arg(long)]
        json: bool,
        /// The MCP server command
        #[arg(required_unless_present = "rule", last = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct PinsArgs {
    /// Pin file [default: the policy's pins.file, else $XDG_STATE_HOME/capjail/pins.json]
    #[arg(long, value_name = "FILE", env = "CAPJAIL_PINS")]
    pub(crate) pins: Option<PathBuf>,
    /// Take the pin file from this policy's pins.file
    #[arg(long, short = 'p', value_name = "NAME|FILE")]
    pub(crate) policy: Option<String>,
    /// Only this server (its key as `pins show` prints it)
    #[arg(long, value_name = "KEY")]
    pub(crate) server: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PinsCommand {
    /// List the servers and their pinned tools (with changes waiting to be accepted)
    Show {
        #[command(flatten)]
        args: PinsArgs,
        /// The pin file's JSON for the selected servers instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show what changed in the definitions that differ from their pins
    #[command(
        after_help = "Exit status: 0 when nothing is waiting, 1 when some definition differs from its pin."
    )]
    Diff {
        #[command(flatten)]
        args: PinsArgs,
        /// Only these tools
        #[arg(value_name = "TOOL")]
        tools: Vec<String>,
    },
    /// Pin the changed definitions of these tools (all waiting ones with --all)
    Accept {
        #[command(flatten)]
        args: PinsArgs,
        #[arg(value_name = "TOOL", required_unless_present = "all")]
        tools: Vec<String>,
        /// Every waiting change (of the selected server)
        #[arg(long)]
        all: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_args_parse() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            probe: ProbeArgs,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--root",
            "/tmp/lab",
            "--canary-port",
            "8080",
            "--outside-pid",
            "42",
        ])
        .unwrap();
        let cfg = crate::probe::ProbeConfig::from(cli.probe);
        assert_eq!(cfg.root, std::path::Path::new("/tmp/lab"));
        assert_eq!(cfg.canary_port, Some(8080));
        assert_eq!(cfg.outside_pid, Some(42));
        assert!(Cli::try_parse_from(["x", "--root", "/r", "--outside-pid", "1"]).is_err());
        assert!(Cli::try_parse_from(["x", "--root", "/r", "--outside-pid", "-5"]).is_err());
        assert!(Cli::try_parse_from(["x"]).is_err());
    }
}
