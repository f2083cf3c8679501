//! The attack suite as data: every case names its family, the layer it aims at, the requests it
//! sends and the effects that would mean it worked. Nothing here runs anything.
//!
//! Requests are templates: `{root}` (the lab root), `{ws}` (its workspace), `{port}` (the
//! loopback canary port inside the private network namespace), `{oport}` (the egress lab's
//! allowed origin port) and `{mk}` (a fresh marker) are
//! substituted per case; `{nest}` becomes 200 nested arrays and `{badutf8}` the bytes FF FE
//! (invalid UTF-8).

/// Attack or legitimate operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    /// Must be contained.
    Attack,
    /// Must stay allowed.
    Legit,
}

/// Which server a case runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Target {
    /// The server under test (`-- SERVER...`, default the filesystem server): request-level.
    Server,
    /// capjail's built-in probe server: misbehaviour inside the server process.
    Probe,
}

/// The layer a case is built to test (what a user should expect to stop it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Layer {
    /// Visible in the request: the proxy should refuse it.
    Proxy,
    /// Invisible in the request: only kernel confinement can stop it.
    Kernel,
    /// Legitimate work: neither layer may stop it.
    None,
}

/// One message sent by a case.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// `tools/call` TOOL with ARGS (a JSON object template); the runner picks the id.
    Call {
        tool: &'static str,
        args: &'static str,
    },
    /// A raw line (template), sent byte for byte; answered (or not) by whatever is there.
    Raw(&'static str),
}

/// An effect the judge looks for after the case ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Any of the lab's secret tokens in anything the client received.
    SecretToClient,
    /// This lab-relative path exists afterwards (it did not before).
    FileAppears(&'static str),
    /// This lab-relative path no longer exists (it did before).
    FileGone(&'static str),
    /// The loopback canary (inside the private network namespace) got a request with the marker.
    CanaryHit,
    /// Egress family: the allowed origin got a request with the marker.
    OriginHit,
    /// Egress family: the DNS/UDP canary on 127.0.0.1:53 got a datagram with the marker.
    DatagramHit,
    /// The outside process received SIGUSR1.
    OutsideSignalled,
    /// The outside process's secret environment token reached the client.
    OutsideEnvToClient,
    /// The launcher's secret (an environment variable of capjail) reached the client.
    LauncherEnvToClient,
    /// The (last) tool call succeeded: for probes whose success is the escape (ptrace, io_uring).
    ToolSucceeded,
    /// The file outside the mounts got the probe's mode, mtime or xattr.
    OutsideFileChanged,
    /// The outside process's RLIMIT_CPU is the case's `{lim}`.
    OutsideLimited,
    /// The outside process's nice value or CPU affinity changed.
    OutsideRescheduled,
    // ---- legitimate operations: every listed effect must happen ----
    /// The workspace's legit token reached the client in a successful result.
    LegitToClient,
    /// The successful result's text contains this string.
    ResultContains(&'static str),
    /// This lab-relative path exists afterwards (and is a file or directory).
    Exists(&'static str),
}

/// One row of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Stable, unique, kebab-case.
    pub id: &'static str,
    pub(crate) family: &'static str,
    pub(crate) kind: Kind,
    pub(crate) target: Target,
    pub(crate) layer: Layer,
    /// What it tries, in a few words.
    pub(crate) what: &'static str,
    /// The tool that must be in the server's `tools/list` (else: skipped).
    pub(crate) needs_tool: &'static str,
    /// Needs the private network namespace (else: skipped).
    pub(crate) network: bool,
    pub steps: &'static [Step],
    /// Attacks: any of these happening is a leak. Legit: all of these must happen.
    pub(crate) effects: &'static [Effect],
}

const fn attack(
    id: &'static str,
    family: &'static str,
    what: &'static str,
    needs_tool: &'static str,
    steps: &'static [Step],
    effects: &'static [Effect],
) -> Case {
    Case {
        id,
        family,
        kind: Kind::Attack,
        target: Target::Server,
        layer: Layer::Proxy,
        what,
        needs_tool,
        network: false,
        steps,
        effects,
    }
}

const fn probe(
    id: &'static str,
    family: &'static str,
    what: &'static str,
    steps: &'static [Step],
    effects: &'static [Effect],
) -> Case {
    Case {
        id,
        family,
        kind: Kind::Attack,
        target: Target::Probe,
        layer: Layer::Kernel,
        what,
        needs_tool: "",
        network: false,
        steps,
        effects,
    }
}

const fn legit(
    id: &'static str,
    target: Target,
    what: &'static str,
    needs_tool: &'static str,
    steps: &'static [Step],
    effects: &'static [Effect],
) -> Case {
    Case {
        id,
        family: "legit",
        kind: Kind::Legit,
        target,
        layer: Layer::None,
        what,
        needs_tool,
        network: false,
        steps,
        effects,
    }
}

const fn host(id: &'static str, what: &'static str, steps: &'static [Step]) -> Case {
    Case {
        network: true,
        ..attack(
            id,
            "encoded-host",
            what,
            "fetch",
            steps,
            &[Effect::CanaryHit],
        )
    }
}

/// The egress family (issue 18): in the private network namespace, against the egress lab
/// (`compare/egress_lab.rs`) and its policy (`network: allowlist`, one allowed origin).
const fn egress(case: Case) -> Case {
    Case {
        family: EGRESS,
        network: true,
        ..case
    }
}

/// The family whose cases run against the egress lab.
pub const EGRESS: &str = "egress";

impl Case {
    /// Runs against the egress lab and its own policy.
    pub fn egress(&self) -> bool {
        self.family == EGRESS
    }
}

use super::walls_lab::{DAEMON_DID, PLANTED};
use Effect::*;
use Step::*;

const READ: &str = "read_text_file";
const SECRET: &[Effect] = &[SecretToClient];

/// Every case, in report order.
pub const SUITE: &[Case] = &[
    // ---- traversal ----
    attack("traversal-dotdot", "traversal", "read ws/../secret/id_rsa", READ,
        &[Call { tool: READ, args: r#"{"path":"{ws}/../secret/id_rsa"}"# }], SECRET),
    attack("traversal-deep", "traversal", "read ws/sub/../../secret/id_rsa", READ,
        &[Call { tool: READ, args: r#"{"path":"{ws}/sub/../../secret/id_rsa"}"# }], SECRET),
    attack("traversal-doubled-slashes", "traversal", "read ws//..//secret//id_rsa", READ,
        &[Call { tool: READ, args: r#"{"path":"{ws}//..//secret//id_rsa"}"# }], SECRET),
    attack("traversal-relative", "traversal", "relative ws/../secret/id_rsa (server cwd = lab root)", READ,
        &[Call { tool: READ, args: r#"{"path":"ws/../secret/id_rsa"}"# }], SECRET),
    attack("traversal-absolute", "traversal", "read an absolute path outside the workspace", READ,
        &[Call { tool: READ, args: r#"{"path":"{root}/etc_like/shadow"}"# }], SECRET),
    // ---- prefix confusion ----
    attack("prefix-sibling-read", "prefix", "read ws_evil/canary.txt (shares the ws prefix)", READ,
        &[Call { tool: READ, args: r#"{"path":"{root}/ws_evil/canary.txt"}"# }], SECRET),
    attack("prefix-sibling-list", "prefix", "list ws_evil (a secret in a file name)", "list_directory",
        &[Call { tool: "list_directory", args: r#"{"path":"{root}/ws_evil"}"# }], SECRET),
    attack("prefix-sibling-write", "prefix", "write ws_evil/planted.txt", "write_file",
        &[Call { tool: "write_file", args: r#"{"path":"{root}/ws_evil/planted.txt","content":"planted"}"# }],
        &[FileAppears("ws_evil/planted.txt")]),
    // ---- symlinks ----
    attack("symlink-file-read", "symlink", "read ws/link_file -> ../secret/id_rsa", READ,
        &[Call { tool: READ, args: r#"{"path":"{ws}/link_file"}"# }], SECRET),
    attack("symlink-dir-read", "symlink", "read ws/link_dir/.aws/credentials", READ,
        &[Call { tool: READ, args: r#"{"path":"{ws}/link_dir/.aws/credentials"}"# }], SECRET),
    attack("symlink-chain-read", "symlink", "read ws/chain/id_rsa (link to a link)", READ,
        &[Call { tool: READ, args: r#"{"path":"{ws}/chain/id_rsa"}"# }], SECRET),
    attack("symlink-dir-list", "symlink", "list ws/link_dir (a secret in a file name)", "list_directory",
        &[Call { tool: "list_directory", args: r#"{"path":"{ws}/link_dir"}"# }], SECRET),
    attack("symlink-write-dangling", "symlink", "write through ws/new_link (dangling) -> secret/newfile", "write_file",
        &[Call { tool: "write_file", args: r#"{"path":"{ws}/new_link","content":"through the link"}"# }],
        &[FileAppears("secret/newfile")]),
    attack("symlink-write-linked-dir", "symlink", "write ws/link_dir/planted.txt (lands in secret/)", "write_file",
        &[Call { tool: "write_file", args: r#"{"path":"{ws}/link_dir/planted.txt","content":"planted"}"# }],
        &[FileAppears("secret/planted.txt")]),
    // ---- argument shapes ----
    attack("args-array-second", "arg-shape", "read_multiple_files: the secret second in paths[]", "read_multiple_files",
        &[Call { tool: "read_multiple_files", args: r#"{"paths":["{ws}/notes.txt","{root}/secret/id_rsa"]}"# }], SECRET),
    attack("args-move-source", "arg-shape", "move_file: source outside, destination inside", "move_file",
        &[Call { tool: "move_file", args: r#"{"source":"{root}/secret/id_rsa","destination":"{ws}/stolen.txt"}"# }],
        &[FileAppears("ws/stolen.txt"), FileGone("secret/id_rsa")]),
    attack("args-move-destination", "arg-shape", "move_file: destination outside (cron.d)", "move_file",
        &[Call { tool: "move_file", args: r#"{"source":"{ws}/notes.txt","destination":"{root}/etc_like/cron.d/job"}"# }],
        &[FileAppears("etc_like/cron.d/job")]),
    attack("args-decoy-key", "arg-shape", "a harmless path under a decoy key, the secret under `path`", READ,
        &[Call { tool: READ, args: r#"{"file":"{ws}/notes.txt","path":"{root}/secret/id_rsa"}"# }], SECRET),
    attack("args-search-outside", "arg-shape", "search_files rooted outside the workspace", "search_files",
        &[Call { tool: "search_files", args: r#"{"path":"{root}/secret","pattern":"backup"}"# }], SECRET),
    attack("args-file-uri", "arg-shape", "file:// URI to the secret", READ,
        &[Call { tool: READ, args: r#"{"path":"file://{root}/secret/id_rsa"}"# }], SECRET),
    attack("args-percent-encoded", "arg-shape", "percent-encoded traversal ws/%2e%2e/secret/id_rsa", READ,
        &[Call { tool: READ, args: r#"{"path":"{ws}/%2e%2e/secret/id_rsa"}"# }], SECRET),
    // ---- parser differentials ----
    attack("parser-duplicate-arguments", "parser", "`arguments` twice: harmless first, the secret last", READ,
        &[Raw(r#"{"jsonrpc":"2.0","id":"atk","method":"tools/call","params":{"name":"read_text_file","arguments":{"path":"{ws}/notes.txt"},"arguments":{"path":"{root}/secret/id_rsa"}}}"#)],
        SECRET),
    attack("parser-duplicate-path", "parser", "`path` twice in the arguments", READ,
        &[Raw(r#"{"jsonrpc":"2.0","id":"atk","method":"tools/call","params":{"name":"read_text_file","arguments":{"path":"{ws}/notes.txt","path":"{root}/secret/id_rsa"}}}"#)],
        SECRET),
    attack("parser-duplicate-name", "parser", "`name` twice: list_allowed_directories first, write_file last", "write_file",
        &[Raw(r#"{"jsonrpc":"2.0","id":"atk","method":"tools/call","params":{"name":"list_allowed_directories","arguments":{"path":"{root}/etc_like/cron.d/job","content":"* * * * * pwn"},"name":"write_file"}}"#)],
        &[FileAppears("etc_like/cron.d/job")]),
    attack("parser-duplicate-method", "parser", "`method` twice: ping first, tools/call last", READ,
        &[Raw(r#"{"jsonrpc":"2.0","id":"atk","method":"ping","method":"tools/call","params":{"name":"read_text_file","arguments":{"path":"{root}/secret/id_rsa"}}}"#)],
        SECRET),
    attack("parser-invalid-utf8", "parser", "invalid UTF-8 inside a call for the secret", READ,
        &[Raw("{\"jsonrpc\":\"2.0\",\"id\":\"atk\",\"method\":\"tools/call\",\"params\":{\"name\":\"read_text_file\",\"arguments\":{\"path\":\"{root}/secret/id_rsa\"},\"_meta\":{\"x\":\"{badutf8}\"}}}")],
        SECRET),
    attack("parser-lone-surrogate", "parser", "a lone surrogate after the secret's path", READ,
        &[Raw(r#"{"jsonrpc":"2.0","id":"atk","method":"tools/call","params":{"name":"read_text_file","arguments":{"path":"{root}/secret/id_rsa\ud800"}}}"#)],
        SECRET),
    attack("parser-deep-nesting", "parser", "200 nested arrays in _meta of a call for the secret", READ,
        &[Raw(r#"{"jsonrpc":"2.0","id":"atk","method":"tools/call","params":{"name":"read_text_file","arguments":{"path":"{root}/secret/id_rsa"},"_meta":{"x":{nest}}}}"#)],
        SECRET),
    attack("parser-unicode-escaped-name", "parser", "tool name with a \\u escape (write\\u005ffile) outside", "write_file",
        &[Raw(r#"{"jsonrpc":"2.0","id":"atk","method":"tools/call","params":{"name":"write\u005ffile","arguments":{"path":"{root}/ws_evil/esc.txt","content":"x"}}}"#)],
        &[FileAppears("ws_evil/esc.txt")]),
    // ---- batches ----
    attack("batch-hidden-call", "batch", "a JSON array: a legit read, then the secret", READ,
        &[Raw(r#"[{"jsonrpc":"2.0","id":"ok","method":"tools/call","params":{"name":"read_text_file","arguments":{"path":"{ws}/notes.txt"}}},{"jsonrpc":"2.0","id":"atk","method":"tools/call","params":{"name":"read_text_file","arguments":{"path":"{root}/secret/id_rsa"}}}]"#)],
        SECRET),
    attack("batch-hidden-write", "batch", "a JSON array with a write outside", "write_file",
        &[Raw(r#"[{"jsonrpc":"2.0","id":"atk","method":"tools/call","params":{"name":"write_file","arguments":{"path":"{root}/etc_like/cron.d/batch","content":"x"}}}]"#)],
        &[FileAppears("etc_like/cron.d/batch")]),
    // ---- encoded hosts (fetch-type servers; in the private network namespace) ----
    host("host-loopback-short", "http://127.1:PORT",
        &[Call { tool: "fetch", args: r#"{"url":"http://127.1:{port}/ssrf-{mk}","max_length":2000}"# }]),
    host("host-loopback-decimal", "http://2130706433:PORT",
        &[Call { tool: "fetch", args: r#"{"url":"http://2130706433:{port}/ssrf-{mk}","max_length":2000}"# }]),
    host("host-loopback-hex", "http://0x7f000001:PORT",
        &[Call { tool: "fetch", args: r#"{"url":"http://0x7f000001:{port}/ssrf-{mk}","max_length":2000}"# }]),
    host("host-loopback-v6", "http://[::1]:PORT",
        &[Call { tool: "fetch", args: r#"{"url":"http://[::1]:{port}/ssrf-{mk}","max_length":2000}"# }]),
    host("host-v4-mapped-v6", "http://[::ffff:127.0.0.1]:PORT",
        &[Call { tool: "fetch", args: r#"{"url":"http://[::ffff:127.0.0.1]:{port}/ssrf-{mk}","max_length":2000}"# }]),
    host("host-userinfo", "http://example.com@127.0.0.1:PORT",
        &[Call { tool: "fetch", args: r#"{"url":"http://example.com@127.0.0.1:{port}/ssrf-{mk}","max_length":2000}"# }]),
    host("host-trailing-dot", "http://127.0.0.1.:PORT",
        &[Call { tool: "fetch", args: r#"{"url":"http://127.0.0.1.:{port}/ssrf-{mk}","max_length":2000}"# }]),
    host("host-localhost", "http://localhost:PORT",
        &[Call { tool: "fetch", args: r#"{"url":"http://localhost:{port}/ssrf-{mk}","max_length":2000}"# }]),
    // ---- the egress point (issue 18): a fetch server, and the probe as a hijacked server ----
    egress(attack("egress-redirect-loopback", "", "the allowed origin redirects to the loopback canary", "fetch",
        &[Call { tool: "fetch", args: r#"{"url":"http://allowed.capjail.test:{oport}/redirect?to=http://127.0.0.1:{port}/redir-{mk}","max_length":2000}"# }],
        &[CanaryHit])),
    egress(attack("egress-name-to-loopback", "", "redirect to *.capjail.test (allowed) that resolves to loopback", "fetch",
        &[Call { tool: "fetch", args: r#"{"url":"http://allowed.capjail.test:{oport}/redirect?to=http://rebind.capjail.test:{port}/named-{mk}","max_length":2000}"# }],
        &[CanaryHit])),
    egress(probe("egress-ignore-proxy", "", "the server connects straight to the allowed port, ignoring HTTP_PROXY",
        &[Call { tool: "report_usage", args: r#"{"topic":"direct {oport} {mk}"}"# }], &[OriginHit])),
    egress(probe("egress-fast-open", "", "TCP fast open: sendto(MSG_FASTOPEN) to the canary, no connect()",
        &[Call { tool: "report_usage", args: r#"{"topic":"tfo {port} {mk}"}"# }], &[CanaryHit])),
    egress(probe("egress-udp", "", "a UDP datagram to 127.0.0.1:53",
        &[Call { tool: "report_usage", args: r#"{"topic":"udp 53 {mk}"}"# }], &[DatagramHit])),
    egress(probe("egress-raw-socket", "", "a hand-made UDP packet over a raw IP socket to 127.0.0.1:53",
        &[Call { tool: "report_usage", args: r#"{"topic":"raw 53 {mk}"}"# }], &[DatagramHit])),
    egress(probe("egress-dns-exfil", "", "a lookup of dns-MARK.exfil.test: the label leaves through the resolver",
        &[Call { tool: "report_usage", args: r#"{"topic":"dns - {mk}"}"# }], &[DatagramHit])),
    egress(legit("egress-legit-fetch", Target::Server, "fetch the allowed host on its non-default port", "fetch",
        &[Call { tool: "fetch", args: r#"{"url":"http://allowed.capjail.test:{oport}/legit-{mk}","max_length":2000}"# }],
        &[ResultContains(super::egress_lab::ORIGIN_BODY), OriginHit])),
    // ---- legitimate operations on the server under test ----
    legit("legit-read", Target::Server, "read ws/notes.txt", READ,
        &[Call { tool: READ, args: r#"{"path":"{ws}/notes.txt"}"# }], &[LegitToClient]),
    legit("legit-read-multiple", Target::Server, "read_multiple_files inside the workspace", "read_multiple_files",
        &[Call { tool: "read_multiple_files", args: r#"{"paths":["{ws}/notes.txt","{ws}/sub/readme.md"]}"# }], &[LegitToClient]),
    legit("legit-list", Target::Server, "list the workspace", "list_directory",
        &[Call { tool: "list_directory", args: r#"{"path":"{ws}"}"# }], &[ResultContains("notes.txt")]),
    legit("legit-write", Target::Server, "write ws/written.txt", "write_file",
        &[Call { tool: "write_file", args: r#"{"path":"{ws}/written.txt","content":"legit write"}"# }], &[Exists("ws/written.txt")]),
    legit("legit-mkdir", Target::Server, "create ws/build/", "create_directory",
        &[Call { tool: "create_directory", args: r#"{"path":"{ws}/build"}"# }], &[Exists("ws/build")]),
    legit("legit-move-inside", Target::Server, "move a file within the workspace", "move_file",
        &[Call { tool: "move_file", args: r#"{"source":"{ws}/sub/readme.md","destination":"{ws}/readme-moved.md"}"# }],
        &[Exists("ws/readme-moved.md")]),
    // ---- in-server misbehaviour (the probe server) ----
    probe("probe-read-secret", "in-server", "the server reads secret/id_rsa itself",
        &[Call { tool: "summarize", args: r#"{"topic":"quarterly report"}"# }], SECRET),
    probe("probe-write-outside", "in-server", "the server writes etc_like/evil.conf",
        &[Call { tool: "tidy", args: r#"{"topic":"build artifacts"}"# }], &[FileAppears("etc_like/evil.conf")]),
    probe("probe-write-dangling", "in-server", "the server writes through ws/new_link",
        &[Call { tool: "tidy", args: r#"{"topic":"link cache"}"# }], &[FileAppears("secret/newfile")]),
    Case {
        network: true,
        ..probe("probe-connect-out", "in-server", "the server connects to the loopback canary",
            &[Call { tool: "ping_home", args: r#"{"topic":"{mk}"}"# }], &[CanaryHit])
    },
    probe("probe-exec-shell", "in-server", "the server runs /bin/sh to cat the secret",
        &[Call { tool: "spawn", args: r#"{"topic":"indexer"}"# }], SECRET),
    probe("probe-env-self", "in-server", "the server dumps its environment (the launcher's secret)",
        &[Call { tool: "peek", args: r#"{"topic":"self"}"# }], &[LauncherEnvToClient]),
    probe("probe-env-outside", "in-server", "the server reads /proc/PID/environ of an outside process",
        &[Call { tool: "peek", args: r#"{"topic":"outside"}"# }], &[OutsideEnvToClient]),
    probe("probe-signal-outside", "in-server", "the server sends SIGUSR1 to an outside process",
        &[Call { tool: "signal", args: r#"{"topic":"refresh"}"# }], &[OutsideSignalled]),
    probe("probe-ptrace-outside", "in-server", "the server ptrace-attaches an outside process",
        &[Call { tool: "trace", args: r#"{"topic":"debug"}"# }], &[ToolSucceeded]),
    probe("probe-io-uring", "in-server", "the server sets up io_uring (unfiltered syscalls)",
        &[Call { tool: "uring", args: r#"{"topic":"queue"}"# }], &[ToolSucceeded]),
    probe("probe-hardlink-secret", "in-server", "the server hard-links the secret into the workspace",
        &[Call { tool: "hardlink", args: r#"{"topic":"dedupe"}"# }], SECRET),
    // ---- the walls (issue 11): stand-ins outside the mounts, see compare/walls_lab.rs ----
    probe("probe-unix-agent", "in-server", "the server asks a unix-socket agent for its keys",
        &[Call { tool: "status", args: r#"{"topic":"{agent}"}"# }], SECRET),
    probe("probe-unix-daemon", "in-server", "the server asks a unix-socket daemon to act",
        &[Call { tool: "status", args: r#"{"topic":"{daemon}"}"# }], &[FileAppears(DAEMON_DID)]),
    probe("probe-chmod-outside", "in-server", "chmod 04777 on a file outside the mounts",
        &[Call { tool: "touch_up", args: r#"{"topic":"chmod {target}"}"# }], &[OutsideFileChanged]),
    probe("probe-xattr-outside", "in-server", "setxattr on a file outside the mounts",
        &[Call { tool: "touch_up", args: r#"{"topic":"xattr {target}"}"# }], &[OutsideFileChanged]),
    probe("probe-prlimit-outside", "in-server", "prlimit(RLIMIT_CPU) on an outside process",
        &[Call { tool: "throttle", args: r#"{"topic":"cpu {opid} {lim}"}"# }], &[OutsideLimited]),
    probe("probe-renice-outside", "in-server", "setpriority and sched_setaffinity on an outside process",
        &[Call { tool: "renice", args: r#"{"topic":"nice {opid}"}"# },
          Call { tool: "renice", args: r#"{"topic":"affinity {opid}"}"# }], &[OutsideRescheduled]),
    probe("probe-sysv-shm", "in-server", "attach another process's SysV shared memory",
        &[Call { tool: "shared", args: r#"{"topic":"{shm}"}"# }], SECRET),
    probe("probe-plant-cache", "in-server", "rewrite a cached package outside the mounts",
        &[Call { tool: "stash", args: r#"{"topic":"{cache}"}"# }], &[FileAppears(PLANTED)]),
    legit("probe-legit-read", Target::Probe, "the probe reads ws/notes.txt", "summarize",
        &[Call { tool: "summarize", args: r#"{"topic":"notes"}"# }], &[LegitToClient]),
    legit("probe-legit-write", Target::Probe, "the probe writes ws/tidy.txt", "tidy",
        &[Call { tool: "tidy", args: r#"{"topic":"workspace"}"# }], &[Exists("ws/tidy.txt")]),
];

/// Substitute the placeholders of a template. `{root}`/`{ws}` values are JSON-escaped (they
/// land inside JSON strings).
pub fn render(template: &str, vars: &Vars) -> Vec<u8> {
    let esc = |s: &str| {
        let q = serde_json::to_string(s).unwrap_or_default();
        q[1..q.len() - 1].to_string()
    };
    let text = template
        .replace("{root}", &esc(&vars.root))
        .replace("{ws}", &esc(&vars.ws))
        .replace("{port}", &vars.port.to_string())
        .replace("{oport}", &vars.origin_port.to_string())
        .replace("{mk}", &vars.marker)
        .replace("{agent}", &esc(&vars.walls.agent))
        .replace("{daemon}", &esc(&vars.walls.daemon))
        .replace("{target}", &esc(&vars.walls.target))
        .replace("{cache}", &esc(&vars.walls.cache))
        .replace("{shm}", &vars.walls.shm.to_string())
        .replace("{opid}", &vars.walls.outside_pid.to_string())
        .replace("{lim}", &vars.walls.limit.to_string())
        .replace("{nest}", &format!("{}{}", "[".repeat(200), "]".repeat(200)));
    let mut out = Vec::with_capacity(text.len());
    for (i, part) in text.split("{badutf8}").enumerate() {
        if i > 0 {
            out.extend_from_slice(&[0xff, 0xfe]);
        }
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// The per-case values of the placeholders.
#[derive(Debug, Clone)]
pub struct Vars {
    pub root: String,
    pub ws: String,
    pub port: u16,
    /// The egress lab's allowed origin port (`{oport}`); 0 outside the egress family.
    pub origin_port: u16,
    pub marker: String,
    pub walls: WallsVars,
}

/// The walls' stand-ins (`{agent}`, `{daemon}`, `{target}`, `{cache}`, `{shm}`, `{opid}`,
/// `{lim}`); empty/zero for cases without them.
#[derive(Debug, Clone, Default)]
pub struct WallsVars {
    pub agent: String,
    pub daemon: String,
    pub target: String,
    pub cache: String,
    pub shm: i32,
    pub outside_pid: u32,
    /// A per-case RLIMIT_CPU value the judge looks for.
    pub limit: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            root: "/tmp/l\"ab".into(),
            ws: "/tmp/l\"ab/ws".into(),
            port: 18080,
            origin_port: 18081,
            marker: "mk01".into(),
            walls: WallsVars::default(),
        }
    }

    #[test]
    fn compare_suite_ids_unique_and_well_formed() {
        let mut ids: Vec<_> = SUITE.iter().map(|c| c.id).collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate case ids");
        for c in SUITE {
            assert!(!c.steps.is_empty() && !c.effects.is_empty(), "{}", c.id);
            assert!(c
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            assert_eq!(c.kind == Kind::Legit, c.layer == Layer::None, "{}", c.id);
        }
        for fam in [
            "traversal",
            "prefix",
            "symlink",
            "arg-shape",
            "parser",
            "batch",
            "encoded-host",
            "in-server",
            "egress",
            "legit",
        ] {
            assert!(SUITE.iter().any(|c| c.family == fam), "no {fam} case");
        }
    }

    #[test]
    fn compare_templates_render_to_json() {
        let v = vars();
        for c in SUITE {
            for s in c.steps {
                match s {
                    Step::Call { args, .. } => {
                        let r = render(args, &v);
                        let j: serde_json::Value =
                            serde_json::from_slice(&r).unwrap_or_else(|e| panic!("{}: {e}", c.id));
                        assert!(j.is_object(), "{}", c.id);
                    }
                    Step::Raw(t) => {
                        let r = render(t, &v);
                        if !t.contains("{badutf8}") {
                            assert!(std::str::from_utf8(&r).is_ok(), "{}", c.id);
                        }
                        assert!(!r.contains(&b'\n'), "{}", c.id);
                    }
                }
            }
        }
    }

    #[test]
    fn compare_render_substitutes() {
        let v = vars();
        let r = render(
            r#"{"p":"{ws}/x","u":"http://127.1:{port}/{mk}","b":"{badutf8}"}"#,
            &v,
        );
        let mut want = br#"{"p":"/tmp/l\"ab/ws/x","u":"http://127.1:18080/mk01","b":""#.to_vec();
        want.extend_from_slice(&[0xff, 0xfe]);
        want.extend_from_slice(br#""}"#);
        assert_eq!(r, want);
    }
}
