//! Every rule id a refusal can name (`error.data.rule`, the audit record's `rule`): one variant
//! per built-in refusal, with what triggers it and how to allow it, plus [`RuleId::Policy`] for
//! the rules a policy file names (`deny[0]`, `require_approval[2]`, `flows.rules[1]`).
//!
//! docs/rules.md is generated from this table and checked against it by a unit test
//! (`CAPJAIL_BLESS=1 cargo test --lib rule_id` rewrites it); `capjail policy explain --rule ID`
//! prints one entry.

macro_rules! rule_ids {
    ($( $variant:ident = $id:literal {
        trigger: $trigger:literal,
        allow: $allow:literal $(,)?
    } )*) => {
        /// The rule that decided a refusal.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum RuleId {
            $(
                #[doc = $trigger]
                $variant,
            )*
            /// A rule of the policy file, by its key: `deny[0]`, `require_approval[1]`,
            /// `flows.rules[2] (name)`; for an allowed call also `allow[0]` or
            /// `filesystem.mounts[/srv]`.
            Policy(String),
        }

        impl RuleId {
            /// Every built-in id, in the order of the table.
            #[cfg(test)]
            pub(crate) fn builtin() -> Vec<RuleId> {
                vec![$(RuleId::$variant),*]
            }

            /// The dotted id of a built-in rule (`"policy"` for a rule of the policy file:
            /// use [`RuleId::as_str`] for its key).
            pub(crate) const fn static_id(&self) -> &'static str {
                match self {
                    $(RuleId::$variant => $id,)*
                    RuleId::Policy(_) => "policy",
                }
            }

            /// What makes capjail refuse with this rule.
            pub(crate) fn trigger(&self) -> &'static str {
                match self {
                    $(RuleId::$variant => $trigger,)*
                    RuleId::Policy(_) => POLICY_TRIGGER,
                }
            }

            /// How to allow what this rule refuses.
            pub(crate) fn how_to_allow(&self) -> &'static str {
                match self {
                    $(RuleId::$variant => $allow,)*
                    RuleId::Policy(_) => POLICY_ALLOW,
                }
            }

            fn builtin_from(s: &str) -> Option<RuleId> {
                match s {
                    $($id => Some(RuleId::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

const POLICY_TRIGGER: &str = "a `deny` rule of the policy matches the call (or a `require_approval` rule and the approval was not given; or a rule of `flows.rules`)";
const POLICY_ALLOW: &str =
    "change or remove that rule of the policy file (`capjail policy show P` numbers them)";

rule_ids! {
    ProtocolInvalidJson = "protocol.invalid_json" {
        trigger: "a client line is not JSON (-32700 Parse error)",
        allow: "cannot be allowed: send JSON-RPC 2.0 as one JSON text per line",
    }
    ProtocolStrictJson = "protocol.strict_json" {
        trigger: "JSON that readers could interpret differently: a duplicate key in an object, or nesting deeper than `proxy.max_depth` (-32600)",
        allow: "raise `proxy.max_depth` for deep nesting; duplicate keys are never accepted",
    }
    ProtocolTooLong = "protocol.too_long" {
        trigger: "a client message longer than `proxy.max_line_bytes` (-32600)",
        allow: "raise `proxy.max_line_bytes`",
    }
    ProtocolInvalidRequest = "protocol.invalid_request" {
        trigger: "not a JSON-RPC 2.0 message: not an object, `jsonrpc` is not \"2.0\", a bad `id` or `method` (-32600)",
        allow: "cannot be allowed: fix the client",
    }
    ProtocolEmptyBatch = "protocol.empty_batch" {
        trigger: "an empty JSON array (-32600)",
        allow: "cannot be allowed: an empty batch is invalid JSON-RPC",
    }
    ProtocolBatch = "protocol.batch" {
        trigger: "another element of the same batch was refused, so the whole batch is (the refused element names its own rule)",
        allow: "allow the refused element, or send the requests one by one",
    }
    ProtocolReservedId = "protocol.reserved_id" {
        trigger: "a client request whose id starts with `capjail:`, the id space of capjail's own requests (-32600)",
        allow: "use another id",
    }
    ProtocolDuplicateId = "protocol.duplicate_id" {
        trigger: "a client request whose id is already used by a request in flight (-32600)",
        allow: "wait for the answer, or use another id",
    }
    ProtocolInFlight = "protocol.in_flight" {
        trigger: "a client request while `proxy.max_in_flight` requests are already forwarded and neither answered nor cancelled (-32001; the server never sees it); a server request while as many of the server's requests are unanswered by the client (dropped, not relayed)",
        allow: "wait for answers, cancel calls that will not be answered (`notifications/cancelled` frees their place), or raise `proxy.max_in_flight`",
    }
    ProtocolUnsolicitedResponse = "protocol.unsolicited_response" {
        trigger: "a client response to a request the server never sent: dropped, not answered (`capjail check` names it; the audit record is a dropped `response_filter`)",
        allow: "cannot be allowed: the client must answer only what the server asked",
    }
    ProtocolToolCallParams = "protocol.tool_call_params" {
        trigger: "`tools/call` without an object `params`",
        allow: "cannot be allowed: fix the client",
    }
    ProtocolToolName = "protocol.tool_name" {
        trigger: "`tools/call` without a non-empty string `params.name`",
        allow: "cannot be allowed: fix the client",
    }
    ProtocolToolArguments = "protocol.tool_arguments" {
        trigger: "`tools/call` whose `params.arguments` is not an object",
        allow: "cannot be allowed: fix the client",
    }
    ProtocolResourceUri = "protocol.resource_uri" {
        trigger: "`resources/read`, `resources/subscribe` or `resources/unsubscribe` without a string `params.uri`",
        allow: "cannot be allowed: fix the client",
    }
    ProtocolParams = "protocol.params" {
        trigger: "another method whose params capjail reads are malformed (subscription URIs, `completion/complete` ref, task ids)",
        allow: "cannot be allowed: fix the client",
    }
    ProtocolAllowed = "protocol.allowed" {
        trigger: "not a refusal: the rule an allowed protocol message names in its audit record and in `capjail check` (initialize, ping, listings, notifications: messages that reach no capability)",
        allow: "nothing to allow: these messages are forwarded",
    }
    ProfileUnknownTool = "profile.unknown_tool" {
        trigger: "a call of a tool that no profile and no `tools/list` of the server describes, while the policy restricts the filesystem or the network",
        allow: "describe the tool in a profile (profiles/README.md) and pass `--profile FILE`",
    }
    ProfileStringArgument = "profile.string_argument" {
        trigger: "a path or URL argument that the tool's profile declares is not a string",
        allow: "cannot be allowed: capjail checks only values it can read (fix the call or the profile)",
    }
    ProfileListArgument = "profile.list_argument" {
        trigger: "a list-of-paths argument that the tool's profile declares is not an array",
        allow: "cannot be allowed: fix the call or the profile",
    }
    ProfileListItem = "profile.list_item" {
        trigger: "an element of a declared list-of-paths argument is not a string",
        allow: "cannot be allowed: fix the call or the profile",
    }
    ToolsAllowed = "tools.allowed" {
        trigger: "`tools: {mode: allowlist}` and the tool is not in `tools.allowed`",
        allow: "add the tool to `tools.allowed`",
    }
    ToolsBlocked = "tools.blocked" {
        trigger: "the tool matches an entry of `tools.blocked`",
        allow: "remove the entry from `tools.blocked`",
    }
    FilesystemMounts = "filesystem.mounts" {
        trigger: "a path outside every `filesystem.mounts` entry (after `..` and symlinks), or a write in a read-only mount",
        allow: "add a mount that contains the path (`mode: rw` to write)",
    }
    FilesystemPath = "filesystem.path" {
        trigger: "a path capjail cannot read safely: undecodable, relative to nothing, or a pattern that is absolute or climbs with `..`",
        allow: "cannot be allowed: pass a plain path",
    }
    Default = "default" {
        trigger: "the policy's rules speak about this capability and no `allow` rule matches the call",
        allow: "add an `allow` rule for the capability and resource",
    }
    DefaultShell = "default.shell" {
        trigger: "shell execution (or writing a file that is execution, see `filesystem.executes`) with no rule naming `shell.execute`",
        allow: "add an `allow` rule with `capability: shell.execute`",
    }
    DefaultEnvironment = "default.environment" {
        trigger: "reading the server's environment with no rule naming `environment.read`",
        allow: "add an `allow` rule with `capability: environment.read`",
    }
    NetworkUrl = "network.url" {
        trigger: "a URL capjail cannot read unambiguously (scheme, userinfo, host)",
        allow: "cannot be allowed: pass a plain URL",
    }
    NetworkMode = "network.mode" {
        trigger: "any network access under `network: {mode: none}`",
        allow: "`network.mode: allowlist` with the host in `allowed_hosts`, or `mode: all`",
    }
    NetworkAllowedHosts = "network.allowed_hosts" {
        trigger: "a host not in `network.allowed_hosts` under `mode: allowlist`",
        allow: "add the host (or `*.domain`, with an optional port) to `network.allowed_hosts`",
    }
    NetworkMetadata = "network.metadata" {
        trigger: "a cloud metadata address or name (169.254.169.254, metadata.google.internal, ...)",
        allow: "never allowed",
    }
    NetworkPrivate = "network.private" {
        trigger: "a loopback, private, link-local or otherwise non-public address (literal or resolved)",
        allow: "`network.allow_loopback`, `allow_private` or `allow_link_local` (or an exact `allowed_hosts` entry)",
    }
    NetworkResolve = "network.resolve" {
        trigger: "a host name that does not resolve, or resolves to an address the policy refuses",
        allow: "fix the name; allow the address class it resolves to",
    }
    EgressRequest = "egress.request" {
        trigger: "the egress point could not read the server's request (not HTTP, no host, a bad CONNECT)",
        allow: "cannot be allowed: the server must send a plain HTTP or CONNECT request",
    }
    EgressUpstream = "egress.upstream" {
        trigger: "the egress point could not reach the allowed host (502)",
        allow: "not a refusal by the policy: check the host and the network",
    }
    KernelContainerLauncher = "kernel.container_launcher" {
        trigger: "`docker`/`podman`/`nerdctl` as the server command in kernel or full mode (the daemon would run the server outside the sandbox)",
        allow: "run it with `--mode proxy`, or confine the container runtime itself",
    }
    Audit = "audit" {
        trigger: "the audit log cannot be written, so nothing more is forwarded and the session ends (-32603)",
        allow: "fix the audit log location (`--audit FILE`, `audit.path`), its disk or its permissions",
    }
    ApprovalRequired = "approval.required" {
        trigger: "a tool definition change or a scan finding whose action is `approve`, and no approval was given",
        allow: "approve it when asked, or set the action (`pins.on_change`, `tool_scan.<severity>`) to `record`",
    }
    ApprovalToken = "approval.token" {
        trigger: "an approval answer with a token capjail did not issue (a forged or replayed answer)",
        allow: "never allowed",
    }
    PinsChanged = "pins.changed" {
        trigger: "a tool definition differs from its pin and `pins.on_change` is `refuse`",
        allow: "review and re-pin it (`capjail pins accept`), or set `pins.on_change: approve` or `hide`",
    }
    PinsFrozen = "pins.frozen" {
        trigger: "a tool without a pin while pins are frozen (`pins.frozen`, `--pins-frozen`)",
        allow: "pin it (`capjail pins accept`) or unfreeze",
    }
    PinsUnlisted = "pins.unlisted" {
        trigger: "a call of a tool the server's own listing does not contain (or withheld because it changed)",
        allow: "the server must list the tool; re-pin it if it changed",
    }
    ScanHiddenUnicode = "scan.hidden_unicode" {
        trigger: "a tool definition holds invisible Unicode (tag characters, zero-width)",
        allow: "`tool_scan.ignore: [scan.hidden_unicode]` or a lower action for its severity",
    }
    ScanBidiControl = "scan.bidi_control" {
        trigger: "a tool definition holds bidirectional control characters",
        allow: "`tool_scan.ignore: [scan.bidi_control]` or a lower action for its severity",
    }
    ScanModelInstruction = "scan.model_instruction" {
        trigger: "a tool definition speaks to the model (instructions, `<IMPORTANT>` blocks)",
        allow: "`tool_scan.ignore: [scan.model_instruction]` or a lower action for its severity",
    }
    ScanModelPressure = "scan.model_pressure" {
        trigger: "a tool definition pressures the model (urgency, secrecy)",
        allow: "`tool_scan.ignore: [scan.model_pressure]` or a lower action for its severity",
    }
    ScanCredentialPath = "scan.credential_path" {
        trigger: "a tool definition names credential files (`~/.ssh`, `.env`, ...)",
        allow: "`tool_scan.ignore: [scan.credential_path]` or a lower action for its severity",
    }
    ScanCredentialWord = "scan.credential_word" {
        trigger: "a tool definition asks for secrets (password, token, API key)",
        allow: "`tool_scan.ignore: [scan.credential_word]` or a lower action for its severity",
    }
    ScanCrossTool = "scan.cross_tool" {
        trigger: "a tool definition tells the model how to use another tool",
        allow: "`tool_scan.ignore: [scan.cross_tool]` or a lower action for its severity",
    }
    ScanShadowingName = "scan.shadowing_name" {
        trigger: "a tool named like a well-known tool of another server",
        allow: "`tool_scan.ignore: [scan.shadowing_name]` or a lower action for its severity",
    }
    ContentOutgoingCloud = "content.outgoing.cloud" {
        trigger: "a cloud provider credential in a call's arguments",
        allow: "`content.outgoing.classes.cloud: record` (or `approve`), or `exempt_tools` / `exempt_hosts`",
    }
    ContentOutgoingForge = "content.outgoing.forge" {
        trigger: "a code forge token (GitHub, GitLab, ...) in a call's arguments",
        allow: "`content.outgoing.classes.forge: record` (or `approve`), or `exempt_tools` / `exempt_hosts`",
    }
    ContentOutgoingSaas = "content.outgoing.saas" {
        trigger: "a SaaS API key (Slack, Stripe, OpenAI, ...) in a call's arguments",
        allow: "`content.outgoing.classes.saas: record` (or `approve`), or `exempt_tools` / `exempt_hosts`",
    }
    ContentOutgoingJwt = "content.outgoing.jwt" {
        trigger: "a JSON Web Token in a call's arguments",
        allow: "`content.outgoing.classes.jwts: record` (or `approve`), or `exempt_tools` / `exempt_hosts`",
    }
    ContentOutgoingPrivateKey = "content.outgoing.private_key" {
        trigger: "a private key block in a call's arguments",
        allow: "`content.outgoing.classes.private_key: record` (or `approve`), or `exempt_tools` / `exempt_hosts`",
    }
    ContentOutgoingUrlPassword = "content.outgoing.url_password" {
        trigger: "a URL with a password in a call's arguments",
        allow: "`content.outgoing.classes.url_password: record` (or `approve`), or `exempt_tools` / `exempt_hosts`",
    }
    ContentOutgoingHighEntropy = "content.outgoing.high_entropy" {
        trigger: "a long high-entropy string next to a credential word in a call's arguments",
        allow: "`content.outgoing.classes.high_entropy: record`, or `exempt_tools` / `exempt_hosts`",
    }
    ContentOutgoingCrypto = "content.outgoing.crypto" {
        trigger: "a wallet seed phrase or crypto private key in a call's arguments",
        allow: "`content.outgoing.classes.crypto: record` (or `approve`), or `exempt_tools` / `exempt_hosts`",
    }
    ContentOutgoingKnown = "content.outgoing.known" {
        trigger: "a value capjail knows is secret (a withheld environment variable, a sensitive file read earlier) in a call's arguments",
        allow: "`content.outgoing.classes.known: record` (or `approve`), or `exempt_tools` / `exempt_hosts`",
    }
    ContentResultsSecrets = "content.results.secrets" {
        trigger: "a secret in a result, with `content.results.secrets: refuse`",
        allow: "`content.results.secrets: redact` or `record`",
    }
    ContentResultsInjection = "content.results.injection" {
        trigger: "instructions to the model in a result, with `content.results.injection: refuse`",
        allow: "`content.results.injection: record`",
    }
    ContentResultsHiddenUnicode = "content.results.hidden_unicode" {
        trigger: "invisible Unicode in a result, with `content.results.hidden_unicode: refuse`",
        allow: "`content.results.hidden_unicode: strip` or `record`",
    }
    FlowSensitiveReadThenNetwork = "flows.default.sensitive-read-then-network" {
        trigger: "a network call after a read of a sensitive path in the same session, not approved",
        allow: "approve it when asked, or `flows.defaults: false`",
    }
    FlowEnvReadThenNetwork = "flows.default.env-read-then-network" {
        trigger: "a network call after an environment read in the same session, not approved",
        allow: "approve it when asked, or `flows.defaults: false`",
    }
    FlowSecretInResultThenNetwork = "flows.default.secret-in-result-then-network" {
        trigger: "a network call after a secret came back in a result in the same session, not approved",
        allow: "approve it when asked, or `flows.defaults: false`",
    }
}

impl RuleId {
    /// The id as it appears in `error.data.rule` and the audit log.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            RuleId::Policy(key) => key,
            other => other.static_id(),
        }
    }

    /// A built-in id, or the key of a policy rule (`deny[0]`, `require_approval[1]`,
    /// `allow[2]`, `flows.rules[3]...`); `None` for anything else.
    pub(crate) fn parse(s: &str) -> Option<RuleId> {
        if let Some(b) = RuleId::builtin_from(s) {
            return Some(b);
        }
        let policy_key = [
            "deny[",
            "require_approval[",
            "allow[",
            "flows.rules[",
            "filesystem.mounts[",
        ]
        .iter()
        .any(|p| s.starts_with(p));
        policy_key.then(|| RuleId::Policy(s.to_string()))
    }

    /// A rule id given as text (read back from a log or a reply, or built by a layer that names
    /// rules by their id): a known id, else the key as a policy rule
    /// (a user-named or older id, kept as written).
    pub(crate) fn named(s: &str) -> RuleId {
        RuleId::parse(s).unwrap_or_else(|| RuleId::Policy(s.to_string()))
    }

    /// `error.data` of a protocol-level refusal: `{"rule": ID}`.
    pub(crate) fn data(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "rule": self.as_str() }))
    }

    /// The entry `capjail policy explain --rule ID` prints.
    pub(crate) fn explain(&self) -> String {
        format!(
            "{}\n  triggered by: {}\n  to allow: {}\n",
            self.as_str(),
            self.trigger(),
            self.how_to_allow()
        )
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `rule == "deny[0]"`: compares the id as written.
impl PartialEq<&str> for RuleId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl From<RuleId> for String {
    fn from(r: RuleId) -> String {
        match r {
            RuleId::Policy(key) => key,
            other => other.static_id().to_string(),
        }
    }
}

impl serde::Serialize for RuleId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// docs/rules.md: the table of every id.
#[cfg(test)]
pub(crate) fn markdown() -> String {
    let mut out = String::from(
        "# Rule ids\n\n\
         Every refusal names the rule that decided it in `error.data.rule` and in its audit \
         record. An allowed decision's record names the rule that allowed it: `allow[N]`, \
         `filesystem.mounts[PATH]`, `default` or `protocol.allowed`. \
         `capjail policy explain --rule ID` prints one entry. Generated from \
         `src/policy/rule_id.rs` (a unit test checks this file against it).\n\n\
         | id | triggered by | to allow |\n|---|---|---|\n",
    );
    let row = |id: &str, t: &str, a: &str| {
        let esc = |s: &str| s.replace('|', "\\|");
        format!("| `{id}` | {} | {} |\n", esc(t), esc(a))
    };
    for r in RuleId::builtin() {
        out.push_str(&row(r.as_str(), r.trigger(), r.how_to_allow()));
    }
    out.push_str(&row(
        "deny[N]`, `require_approval[N]`, `flows.rules[N]",
        POLICY_TRIGGER,
        POLICY_ALLOW,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_parse_back() {
        let all = RuleId::builtin();
        let mut ids: Vec<&str> = all.iter().map(|r| r.static_id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all.len(), "duplicate ids");
        for r in &all {
            assert_eq!(RuleId::parse(r.as_str()).as_ref(), Some(r));
            assert!(!r.trigger().is_empty() && !r.how_to_allow().is_empty());
        }
        assert_eq!(
            RuleId::parse("deny[3]"),
            Some(RuleId::Policy("deny[3]".into()))
        );
        assert_eq!(RuleId::parse("protocol"), None);
        assert_eq!(RuleId::parse("profile"), None);
        assert_eq!(
            serde_json::to_value(RuleId::ProtocolBatch).unwrap(),
            "protocol.batch"
        );
    }

    #[test]
    fn ids_built_elsewhere_are_in_the_table() {
        use crate::content::secrets::Class;
        for c in [
            Class::Cloud,
            Class::Forge,
            Class::Saas,
            Class::Jwt,
            Class::PrivateKey,
            Class::UrlPassword,
            Class::HighEntropy,
            Class::Crypto,
            Class::Known,
        ] {
            let id = format!("content.outgoing.{}", c.as_str());
            assert_eq!(RuleId::parse(&id), Some(c.rule()), "{id}");
        }
        for (name, _, rule) in crate::content::config::DEFAULT_FLOWS {
            let id = format!("flows.default.{name}");
            assert_eq!(RuleId::parse(&id).as_ref(), Some(rule), "{id}");
        }
    }

    /// Refusal sites name a `RuleId`, never a string of their own.
    #[test]
    fn refusal_sites_use_the_enum() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs")
                    && !p.to_string_lossy().contains("tests")
                {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
            &mut files,
        );
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for bad in ["Denial::new(\"", "\"rule\":\""] {
                assert!(
                    !code.contains(bad),
                    "{}: a refusal names a rule by a string literal ({bad}); use RuleId",
                    f.display()
                );
            }
            // Rule ids are read from text only where text is what there is: the audit log
            // (`audit replay`) and this table. Every layer that decides names a `RuleId`.
            let reads_text = f.ends_with("audit/replay.rs") || f.ends_with("policy/rule_id.rs");
            assert!(
                reads_text || !code.contains("RuleId::named("),
                "{}: a layer names a rule by its id text (RuleId::named); name the RuleId",
                f.display()
            );
        }
    }

    /// docs/rules.md lists every id, and nothing else (`CAPJAIL_BLESS=1` rewrites it).
    #[test]
    fn docs_table_matches_the_enum() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/rules.md");
        let want = markdown();
        if std::env::var_os("CAPJAIL_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        let documented: Vec<String> = have
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_string)
            .collect();
        for r in RuleId::builtin() {
            assert!(
                documented.iter().any(|d| d == r.as_str()),
                "{} is not in docs/rules.md (CAPJAIL_BLESS=1 cargo test --lib rule_id)",
                r.as_str()
            );
        }
        for d in documented.iter().filter(|d| !d.starts_with("deny[")) {
            assert!(
                RuleId::parse(d).is_some(),
                "docs/rules.md documents unknown id {d}"
            );
        }
        assert_eq!(
            have, want,
            "docs/rules.md is stale (CAPJAIL_BLESS=1 cargo test --lib rule_id)"
        );
    }
}
