//! Credential detectors over one piece of text. The token detectors are data (a prefix, the
//! characters and length of what follows); a few shapes need a small function (JWT, PEM
//! blocks, passwords in URLs, AWS secret keys after their name, Azure client secrets, WIF
//! keys, BIP-39 seed phrases). One pass of an Aho-Corasick automaton finds every anchor, so
//! a scan is linear in the text.

use std::ops::Range;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::bytes::{AlphaRuns, SeedStretches};
use super::shape::Shape;

/// What kind of secret a detector finds; the policy acts per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Class {
    /// AWS, GCP, Azure credentials.
    Cloud,
    /// GitHub and GitLab tokens.
    Forge,
    /// Slack, Stripe, OpenAI, Anthropic, Twilio, SendGrid, npm, PyPI, Hugging Face, ...
    Saas,
    /// JSON Web Tokens.
    Jwt,
    /// PEM private key blocks.
    PrivateKey,
    /// `scheme://user:password@host`.
    UrlPassword,
    /// Long random-looking strings in a URL's host, path or query.
    HighEntropy,
    /// Cryptocurrency private keys (WIF, BIP-32 xprv) and BIP-39 seed phrases.
    Crypto,
    /// A value capjail knows is secret: a withheld environment variable, or the contents of a
    /// file read from a `sensitive` path.
    Known,
}

impl Class {
    pub(crate) const ALL: [Class; 9] = [
        Class::Cloud,
        Class::Forge,
        Class::Saas,
        Class::Jwt,
        Class::PrivateKey,
        Class::UrlPassword,
        Class::HighEntropy,
        Class::Crypto,
        Class::Known,
    ];
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Class::Cloud => "cloud",
            Class::Forge => "forge",
            Class::Saas => "saas",
            Class::Jwt => "jwt",
            Class::PrivateKey => "private_key",
            Class::UrlPassword => "url_password",
            Class::HighEntropy => "high_entropy",
            Class::Crypto => "crypto",
            Class::Known => "known",
        }
    }

    /// The rule a finding of this class names (`content.outgoing.<class>`).
    pub(crate) fn rule(self) -> crate::policy::RuleId {
        use crate::policy::RuleId;
        match self {
            Class::Cloud => RuleId::ContentOutgoingCloud,
            Class::Forge => RuleId::ContentOutgoingForge,
            Class::Saas => RuleId::ContentOutgoingSaas,
            Class::Jwt => RuleId::ContentOutgoingJwt,
            Class::PrivateKey => RuleId::ContentOutgoingPrivateKey,
            Class::UrlPassword => RuleId::ContentOutgoingUrlPassword,
            Class::HighEntropy => RuleId::ContentOutgoingHighEntropy,
            Class::Crypto => RuleId::ContentOutgoingCrypto,
            Class::Known => RuleId::ContentOutgoingKnown,
        }
    }
}

/// One detector hit: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) class: Class,
    pub(crate) detector: &'static str,
    pub(crate) span: Range<usize>,
}

#[derive(Clone, Copy)]
enum Chars {
    Alnum,
    /// `[A-Z0-9]`
    Upper,
    /// `[A-Za-z0-9_]`
    Word,
    /// `[A-Za-z0-9_-]`
    Url,
    /// `[A-Za-z0-9_.-]`
    UrlDot,
    Hex,
    /// `[A-Za-z0-9+/=]`
    B64,
    /// `[A-Za-z0-9/]`
    Slash,
}

impl Chars {
    fn has(self, b: u8) -> bool {
        match self {
            Chars::Alnum => b.is_ascii_alphanumeric(),
            Chars::Upper => b.is_ascii_uppercase() || b.is_ascii_digit(),
            Chars::Word => b.is_ascii_alphanumeric() || b == b'_',
            Chars::Url => b.is_ascii_alphanumeric() || b == b'_' || b == b'-',
            Chars::UrlDot => b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.',
            Chars::Hex => b.is_ascii_hexdigit(),
            Chars::B64 => b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=',
            Chars::Slash => b.is_ascii_alphanumeric() || b == b'/',
        }
    }
}

/// A prefix-anchored token detector.
struct TokenRule {
    prefix: &'static str,
    id: &'static str,
    class: Class,
    chars: Chars,
    /// Fewest characters after the prefix.
    min: usize,
    /// Most characters taken into the span.
    max: usize,
}

const fn t(
    prefix: &'static str,
    id: &'static str,
    class: Class,
    chars: Chars,
    min: usize,
    max: usize,
) -> TokenRule {
    TokenRule {
        prefix,
        id,
        class,
        chars,
        min,
        max,
    }
}

use Chars::*;
use Class::*;

/// The token detectors (data). Formats from the vendors' documentation.
const TOKENS: &[TokenRule] = &[
    t("AKIA", "aws_access_key_id", Cloud, Upper, 16, 16),
    t("ASIA", "aws_access_key_id", Cloud, Upper, 16, 16),
    t("AGPA", "aws_access_key_id", Cloud, Upper, 16, 16),
    t("AIDA", "aws_access_key_id", Cloud, Upper, 16, 16),
    t("AROA", "aws_access_key_id", Cloud, Upper, 16, 16),
    t("ANPA", "aws_access_key_id", Cloud, Upper, 16, 16),
    t("AIza", "google_api_key", Cloud, Url, 35, 35),
    t("AccountKey=", "azure_storage_key", Cloud, B64, 80, 100),
    t(
        "SharedAccessKey=",
        "azure_shared_access_key",
        Cloud,
        B64,
        40,
        100,
    ),
    t("ghp_", "github_token", Forge, Alnum, 36, 255),
    t("gho_", "github_token", Forge, Alnum, 36, 255),
    t("ghu_", "github_token", Forge, Alnum, 36, 255),
    t("ghs_", "github_token", Forge, Alnum, 36, 255),
    t("ghr_", "github_token", Forge, Alnum, 36, 255),
    t(
        "github_pat_",
        "github_fine_grained_token",
        Forge,
        Word,
        70,
        255,
    ),
    t("glpat-", "gitlab_token", Forge, Url, 20, 255),
    t("gldt-", "gitlab_deploy_token", Forge, Url, 20, 255),
    t("xoxb-", "slack_token", Saas, Url, 20, 255),
    t("xoxp-", "slack_token", Saas, Url, 20, 255),
    t("xoxa-", "slack_token", Saas, Url, 20, 255),
    t("xoxr-", "slack_token", Saas, Url, 20, 255),
    t("xoxs-", "slack_token", Saas, Url, 20, 255),
    t("xoxe-", "slack_token", Saas, Url, 20, 255),
    t(
        "hooks.slack.com/services/",
        "slack_webhook",
        Saas,
        Slash,
        30,
        80,
    ),
    t("sk_live_", "stripe_secret_key", Saas, Alnum, 20, 255),
    t("rk_live_", "stripe_restricted_key", Saas, Alnum, 20, 255),
    t("sk-ant-", "anthropic_api_key", Saas, Url, 32, 255),
    t("sk-proj-", "openai_api_key", Saas, Url, 32, 255),
    t("sk-svcacct-", "openai_api_key", Saas, Url, 32, 255),
    t("sk-admin-", "openai_api_key", Saas, Url, 32, 255),
    t("sk-", "openai_api_key", Saas, Alnum, 40, 255),
    t("SG.", "sendgrid_api_key", Saas, UrlDot, 60, 80),
    t("SK", "twilio_api_key", Saas, Hex, 32, 32),
    t("npm_", "npm_token", Saas, Alnum, 36, 36),
    t("pypi-AgE", "pypi_token", Saas, Url, 50, 255),
    t("hf_", "huggingface_token", Saas, Alnum, 34, 40),
    t("dop_v1_", "digitalocean_token", Saas, Hex, 64, 64),
    t("shpat_", "shopify_token", Saas, Hex, 32, 32),
    t("shpss_", "shopify_token", Saas, Hex, 32, 32),
    t("xprv", "bip32_private_key", Crypto, Alnum, 100, 108),
    t("tprv", "bip32_private_key", Crypto, Alnum, 100, 108),
];

/// Anchors that need a function.
const SPECIAL: &[&str] = &[
    "eyJ",
    "-----BEGIN ",
    "://",
    "aws_secret_access_key",
    "AWS_SECRET_ACCESS_KEY",
    "SecretAccessKey",
    "aws_secret_key",
    "AWS_SECRET_KEY",
    "Q~",
    "\"private_key_id\"",
];

/// Every anchor (the prefixes of `TOKENS`, then `SPECIAL`): an anchor's id is its index here.
fn anchor_patterns() -> impl Iterator<Item = &'static str> {
    TOKENS
        .iter()
        .map(|r| r.prefix)
        .chain(SPECIAL.iter().copied())
}

/// The anchors' searchers: the two-byte anchors (`SK`, `Q~`) by one searcher of their own,
/// the rest by one automaton. With two-byte patterns in it, the automaton's prefilter (Teddy)
/// keys on two-byte fingerprints, which common letter pairs fill with false candidates: 1.46
/// against 0.31 ms/MiB on source text, 3.7 against 0.55 on prose (issue 19). No occurrence of
/// a two-byte anchor can overlap one of another anchor (a test checks it), so the matches
/// merged in order of their starts are those of one automaton of them all.
struct Anchors {
    /// The automaton of the anchors longer than two bytes, leftmost-longest.
    long: AhoCorasick,
    /// The id of each of the automaton's patterns.
    long_ids: Vec<usize>,
    /// The two-byte anchors, in one pass (they share no byte: their matches never overlap).
    short: ShortAnchors,
    /// The id of each two-byte anchor.
    short_ids: Vec<usize>,
}

/// The two-byte anchors' searcher: Teddy alone (one pass; each anchor in a bucket of its own
/// matches exactly, where two `memmem` passes read the text twice), or an automaton where
/// the CPU has no Teddy.
enum ShortAnchors {
    Packed(aho_corasick::packed::Searcher),
    Automaton(AhoCorasick),
}

impl ShortAnchors {
    fn new(patterns: &[&str]) -> Self {
        let mut b = aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
            .builder();
        b.extend(patterns);
        match b.build() {
            Some(s) => ShortAnchors::Packed(s),
            None => ShortAnchors::Automaton(anchor_automaton(patterns.iter().copied())),
        }
    }

    /// `(start, end, index of the pattern)` of each match, in order.
    fn find_iter<'a>(&'a self, b: &'a [u8]) -> ShortMatches<'a> {
        match self {
            ShortAnchors::Packed(s) => ShortMatches::Packed(s.find_iter(b)),
            ShortAnchors::Automaton(a) => ShortMatches::Automaton(a.find_iter(b)),
        }
    }
}

/// [`ShortAnchors::find_iter`]'s matches (no allocation).
enum ShortMatches<'a> {
    Packed(aho_corasick::packed::FindIter<'a, 'a>),
    Automaton(aho_corasick::FindIter<'a, 'a>),
}

impl Iterator for ShortMatches<'_> {
    type Item = (usize, usize, usize);

    fn next(&mut self) -> Option<Self::Item> {
        let m = match self {
            ShortMatches::Packed(it) => it.next()?,
            ShortMatches::Automaton(it) => it.next()?,
        };
        Some((m.start(), m.end(), m.pattern().as_usize()))
    }
}

/// A leftmost-longest automaton (a DFA) of anchors.
fn anchor_automaton<'a>(patterns: impl IntoIterator<Item = &'a str>) -> AhoCorasick {
    AhoCorasickBuilder::new()
        .match_kind(MatchKind::LeftmostLongest)
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(patterns)
        .expect("static patterns")
}

fn anchors() -> &'static Anchors {
    static A: OnceLock<Anchors> = OnceLock::new();
    A.get_or_init(|| {
        let (mut long, mut long_ids, mut short, mut short_ids) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (id, p) in anchor_patterns().enumerate() {
            if p.len() <= 2 {
                short.push(p);
                short_ids.push(id);
            } else {
                long.push(p);
                long_ids.push(id);
            }
        }
        Anchors {
            long: anchor_automaton(long),
            long_ids,
            short: ShortAnchors::new(&short),
            short_ids,
        }
    })
}

/// Calls `f(id, start, end)` for every anchor match in `text`, in the order of their starts:
/// the matches of one leftmost-longest automaton of every anchor. Both searches are followed
/// lazily (no list of matches: a text of nothing but `SK`s holds millions).
fn anchor_matches(text: &str, mut f: impl FnMut(usize, usize, usize)) {
    let a = anchors();
    let b = text.as_bytes();
    let mut short = a.short.find_iter(b).peekable();
    for m in a.long.find_iter(b) {
        while let Some((s, e, k)) = short.next_if(|&(s, _, _)| s < m.start()) {
            f(a.short_ids[k], s, e);
        }
        f(a.long_ids[m.pattern().as_usize()], m.start(), m.end());
    }
    for (s, e, k) in short {
        f(a.short_ids[k], s, e);
    }
}

/// Every credential in `text` (spans are byte ranges of `text`).
#[cfg(test)]
pub(crate) fn scan(text: &str, out: &mut Vec<Hit>) {
    scan_shaped(text, out);
}

/// [`scan`], after one pass over the bytes ([`shape`](super::shape::shape)) that skips the
/// detectors that cannot fire; the shape is returned (for `candidate_tokens_in`).
pub(crate) fn scan_shaped(text: &str, out: &mut Vec<Hit>) -> Shape {
    scan_with_shape(text, out, super::shape::shape(text.as_bytes()))
}

/// [`scan_shaped`] with the shape of `text` already known.
#[inline]
pub(crate) fn scan_with_shape(text: &str, out: &mut Vec<Hit>, sh: Shape) -> Shape {
    if sh.anchors_possible() {
        anchor_hits(text, out);
    }
    if sh.max_alnum >= WIF_MIN {
        wif_keys_in(text, out, &sh.runs);
    }
    seed_phrases_in(text, out, &sh.seeds);
    sh
}

/// [`seed_phrases`] where the shape pass found they can be: its stretches of twelve words or
/// more, then the rest of the text it left unread (the hits are the same, in the same order).
pub(crate) fn seed_phrases_in(text: &str, out: &mut Vec<Hit>, seeds: &SeedStretches) {
    let mut sc = SeedScratch::default();
    for (from, to) in seeds.kept() {
        seed_range(text, from, to, out, &mut sc);
    }
    if let Some(from) = seeds.rest() {
        seed_phrases_from(text, from, out, &mut sc);
    }
}

/// Tests: every detector through the byte-loop references (the scan before the shape pass);
/// the shape is returned for its flags only.
#[cfg(test)]
pub(crate) fn scan_ungated(text: &str, out: &mut Vec<Hit>) -> Shape {
    anchor_hits(text, out);
    tests::reference::wif_keys(text, out);
    tests::reference::seed_phrases(text, out);
    super::shape::shape(text.as_bytes())
}

/// The shortest WIF key (a run of letters and digits at least this long holds any key).
pub(crate) const WIF_MIN: usize = 51;
/// The fewest words of a seed phrase.
pub(crate) const SEED_MIN_WORDS: usize = 12;

/// The hits of the anchored detectors (tokens after a prefix, and the special shapes).
fn anchor_hits(text: &str, out: &mut Vec<Hit>) {
    anchor_matches(text, |i, s, e| anchor_hit(text, i, s, e, out));
}

/// The hit, if any, of the anchor `i` matched at `s..e`.
fn anchor_hit(text: &str, i: usize, s: usize, e: usize, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    if i < TOKENS.len() {
        let r = &TOKENS[i];
        // A word boundary before (the prefix must start the token).
        if s > 0 && (b[s - 1].is_ascii_alphanumeric() || (r.prefix.len() <= 4 && b[s - 1] == b'_'))
        {
            return;
        }
        let n = run(b, e, r.chars, r.max + 1);
        if n < r.min {
            return;
        }
        let n = n.min(r.max);
        let body = &text[e..e + n];
        if placeholder(body) || !extra_ok(r, body) {
            return;
        }
        out.push(Hit {
            class: r.class,
            detector: r.id,
            span: s..e + n,
        });
    } else {
        let hit = match SPECIAL[i - TOKENS.len()] {
            "eyJ" => jwt(b, s),
            "-----BEGIN " => pem(text, s),
            "://" => url_password(text, s, e),
            "Q~" => azure_client_secret(b, s),
            "\"private_key_id\"" => gcp_key_id(b, e),
            _ => aws_secret(b, s, e),
        };
        out.extend(hit);
    }
}

fn run(b: &[u8], from: usize, chars: Chars, cap: usize) -> usize {
    b[from.min(b.len())..]
        .iter()
        .take(cap)
        .take_while(|&&c| chars.has(c))
        .count()
}

/// Documentation placeholders: AWS's `...EXAMPLE` keys, `xxxx`, runs of one character.
pub(crate) fn placeholder(body: &str) -> bool {
    let upper = body.to_ascii_uppercase();
    if upper.contains("EXAMPLE")
        || upper.contains("XXXX")
        || upper.contains("YOUR")
        || upper.contains("0000000")
    {
        return true;
    }
    let mut seen = [false; 128];
    let mut distinct = 0;
    for c in body.bytes().filter(|c| c.is_ascii()) {
        if !seen[c as usize] {
            seen[c as usize] = true;
            distinct += 1;
        }
    }
    distinct < 6.min(body.len())
}

fn extra_ok(r: &TokenRule, body: &str) -> bool {
    match r.id {
        // Real keys mix letters and digits.
        "aws_access_key_id" | "twilio_api_key" | "google_api_key" | "npm_token"
        | "huggingface_token" => {
            body.bytes().any(|c| c.is_ascii_digit())
                && body.bytes().any(|c| c.is_ascii_alphabetic())
        }
        "sendgrid_api_key" => body.bytes().filter(|&c| c == b'.').count() == 1,
        "openai_api_key" if r.prefix == "sk-" => {
            body.bytes().any(|c| c.is_ascii_digit()) && body.bytes().any(|c| c.is_ascii_uppercase())
        }
        "slack_token" => body.bytes().any(|c| c.is_ascii_digit()),
        _ => true,
    }
}

fn jwt(b: &[u8], s: usize) -> Option<Hit> {
    if s > 0 && (b[s - 1].is_ascii_alphanumeric() || b[s - 1] == b'_' || b[s - 1] == b'-') {
        return None;
    }
    let h = run(b, s, Url, 4096);
    if h < 10 || b.get(s + h) != Some(&b'.') || !b[s + h + 1..].starts_with(b"eyJ") {
        return None;
    }
    let p0 = s + h + 1;
    let p = run(b, p0, Url, 1 << 16);
    if p < 10 || b.get(p0 + p) != Some(&b'.') {
        return None;
    }
    let g0 = p0 + p + 1;
    let g = run(b, g0, Url, 4096);
    (g >= 16).then(|| Hit {
        class: Jwt,
        detector: "jwt",
        span: s..g0 + g,
    })
}

fn pem(text: &str, s: usize) -> Option<Hit> {
    let b = text.as_bytes();
    let head_end = (s + 11..b.len().min(s + 80)).find(|&i| b[i..].starts_with(b"-----"))?;
    let label = &text[s + 11..head_end];
    if !(label.ends_with("PRIVATE KEY") || label.ends_with("PRIVATE KEY BLOCK"))
        || !label.bytes().all(|c| c.is_ascii_uppercase() || c == b' ')
    {
        return None;
    }
    // A body: after blank space (or escaped `\n`) and up to three `Name: value` header
    // lines, a line of 40 base64 characters or more.
    let from = head_end + 5;
    let mut i = from;
    let skip_space = |mut i: usize| loop {
        if i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        } else if b[i..].starts_with(b"\\n") || b[i..].starts_with(b"\\r") {
            i += 2;
        } else {
            return i;
        }
    };
    for _ in 0..4 {
        i = skip_space(i);
        let line = b[i..]
            .iter()
            .take(200)
            .take_while(|&&c| c != b'\n' && c != b'\\')
            .count();
        if b[i..i + line].contains(&b':') {
            i += line;
        } else {
            break;
        }
    }
    if run(b, i, B64, 40) < 40 {
        return None;
    }
    let end = memchr::memmem::find(&b[from..b.len().min(from + (64 << 10))], b"-----END ")
        .map(|i| {
            let e = from + i + 9;
            e + b[e..]
                .iter()
                .take(80)
                .position(|&c| c == b'\n' || c == b'"')
                .unwrap_or(0)
        })
        .unwrap_or(b.len().min(from + (64 << 10)));
    let end = (end..=b.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(b.len());
    Some(Hit {
        class: PrivateKey,
        detector: "pem_private_key",
        span: s..end,
    })
}

const PASSWORD_PLACEHOLDERS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "secret",
    "changeme",
    "pw",
    "p",
    "x",
    "user",
    "admin",
    "root",
    "guest",
    "test",
    "example",
    "redacted",
    "mypassword",
    "yourpassword",
    "your_password",
];

fn url_password(text: &str, s: usize, e: usize) -> Option<Hit> {
    let b = text.as_bytes();
    // The scheme before `://`.
    let scheme = b[..s]
        .iter()
        .rev()
        .take(32)
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'-'))
        .count();
    if scheme == 0 {
        return None;
    }
    let auth_len = b[e..]
        .iter()
        .take(512)
        .take_while(|&&c| {
            !matches!(
                c,
                b'/' | b'?'
                    | b'#'
                    | b' '
                    | b'\n'
                    | b'\r'
                    | b'\t'
                    | b'"'
                    | b'\''
                    | b'<'
                    | b'>'
                    | b'\\'
            )
        })
        .count();
    let auth = &text[e..e + auth_len];
    let at = auth.rfind('@')?;
    let userinfo = &auth[..at];
    let (_, pw) = userinfo.split_once(':')?;
    let decoded: String = percent_encoding::percent_decode_str(pw)
        .decode_utf8_lossy()
        .into_owned();
    let low = decoded.to_ascii_lowercase();
    // Short passwords (ports after a host in a confusing URL, `x:y@`) are not worth a refusal.
    if decoded.chars().count() < 6
        || PASSWORD_PLACEHOLDERS.contains(&low.as_str())
        || decoded.starts_with('$')
        || decoded.starts_with('<')
        || decoded.starts_with('{')
        || decoded.starts_with('%')
        || decoded.starts_with('[')
        || decoded
            .chars()
            .all(|c| c == '*' || c == 'x' || c == '.' || c == '•')
    {
        return None;
    }
    Some(Hit {
        class: UrlPassword,
        detector: "url_password",
        span: e..e + at,
    })
}

fn aws_secret(b: &[u8], s: usize, e: usize) -> Option<Hit> {
    let _ = s;
    let gap = b[e..]
        .iter()
        .take(8)
        .take_while(|c| matches!(c, b' ' | b'"' | b'\'' | b'=' | b':' | b'\t'))
        .count();
    let from = e + gap;
    let n = run(b, from, B64, 41);
    if n != 40 {
        return None;
    }
    let body = std::str::from_utf8(&b[from..from + 40]).ok()?;
    if placeholder(body) {
        return None;
    }
    Some(Hit {
        class: Cloud,
        detector: "aws_secret_access_key",
        span: from..from + 40,
    })
}

/// Microsoft Entra (Azure AD) client secrets: three characters, a digit, `Q~`, 31-34 more.
fn azure_client_secret(b: &[u8], s: usize) -> Option<Hit> {
    let ok = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'~' | b'.' | b'-');
    if s < 4 || !b[s - 1].is_ascii_digit() || !b[s - 4..s - 1].iter().all(ok) {
        return None;
    }
    if s > 4 && ok(&b[s - 5]) {
        return None;
    }
    let n = b[s + 2..].iter().take(35).take_while(|c| ok(c)).count();
    (31..=34).contains(&n).then(|| Hit {
        class: Cloud,
        detector: "azure_client_secret",
        span: s - 4..s + 2 + n,
    })
}

/// A GCP service-account key file (its `private_key` is also a PEM block).
fn gcp_key_id(b: &[u8], e: usize) -> Option<Hit> {
    let gap = b[e..]
        .iter()
        .take(6)
        .take_while(|c| matches!(c, b' ' | b':' | b'"' | b'\\'))
        .count();
    let n = run(b, e + gap, Hex, 41);
    (n == 40).then(|| Hit {
        class: Cloud,
        detector: "gcp_service_account_key",
        span: e + gap..e + gap + 40,
    })
}

const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

fn base58_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    for &c in s {
        let mut carry = BASE58.iter().position(|&x| x == c)? as u32;
        for byte in out.iter_mut().rev() {
            carry += (*byte as u32) * 58;
            *byte = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            out.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = s.iter().take_while(|&&c| c == b'1').count();
    let mut v = vec![0u8; zeros];
    v.extend(out);
    Some(v)
}

/// Bitcoin WIF private keys: base58check, version 0x80, 51 (`5...`) or 52 (`K...`/`L...`)
/// characters, checksum verified (so random text does not match).
///
/// A run of letters and digits is judged in pieces of 200 (as the byte loop it replaced took
/// them): every piece but the last is 200 long, so only the last one can be a key, and the
/// run's length is all that needs counting (a block at a time once it is long).
#[cfg(test)]
pub(crate) fn wif_keys(text: &str, out: &mut Vec<Hit>) {
    wif_keys_in(text, out, &AlphaRuns::default())
}

/// [`wif_keys`], with the long letter runs of `text` already known (jumped over).
fn wif_keys_in(text: &str, out: &mut Vec<Hit>, runs: &AlphaRuns) {
    use super::class_runs::{Class, ClassRuns};
    let b = text.as_bytes();
    for (at, end) in ClassRuns::new(b, Class::Alnum, runs.clone()) {
        let len = end - at;
        // (Words are short: no division for them.)
        let last = if len > 200 { (len - 1) / 200 * 200 } else { 0 };
        let (i, n) = (at + last, len - last);
        if (n == 51 && b[i] == b'5') || (n == 52 && (b[i] == b'K' || b[i] == b'L')) {
            if let Some(d) = base58_decode(&b[i..i + n]) {
                if d.len() >= 37 && d[0] == 0x80 {
                    let (payload, sum) = d.split_at(d.len() - 4);
                    let h = Sha256::digest(Sha256::digest(payload));
                    if &h[..4] == sum {
                        out.push(Hit {
                            class: Crypto,
                            detector: "wif_private_key",
                            span: i..i + n,
                        });
                    }
                }
            }
        }
    }
}

/// The BIP-39 words (3 to 8 lower-case letters), packed into a `u64` each, with their index:
/// one lookup per word of the text, in an open-addressed table with a multiplicative hash (a
/// binary search of strings, then a SipHash map, were most of a scan's time on prose).
struct WordTable {
    /// `WORD_SLOTS` keys (0: empty; no word packs to 0) and their indices.
    keys: Box<[u64; WORD_SLOTS]>,
    idx: Box<[u16; WORD_SLOTS]>,
}

/// Twice the word count: probes stay short.
const WORD_SLOTS: usize = 4096;

fn slot(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - WORD_SLOTS.trailing_zeros())) as usize
}

impl WordTable {
    fn get(&self, key: u64) -> Option<u16> {
        let mut i = slot(key);
        loop {
            match self.keys[i] {
                0 => return None,
                k if k == key => return Some(self.idx[i]),
                _ => i = (i + 1) % WORD_SLOTS,
            }
        }
    }
}

fn wordlist() -> &'static WordTable {
    static W: OnceLock<WordTable> = OnceLock::new();
    W.get_or_init(|| {
        let mut t = WordTable {
            keys: Box::new([0; WORD_SLOTS]),
            idx: Box::new([0; WORD_SLOTS]),
        };
        for (n, w) in include_str!("data/bip39-english.txt").lines().enumerate() {
            let key = pack(w.as_bytes());
            let mut i = slot(key);
            while t.keys[i] != 0 {
                i = (i + 1) % WORD_SLOTS;
            }
            t.keys[i] = key;
            t.idx[i] = n as u16;
        }
        t
    })
}

fn pack(w: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    for (i, c) in w.iter().take(8).enumerate() {
        buf[i] = c.to_ascii_lowercase();
    }
    u64::from_le_bytes(buf)
}

/// [`pack`] of the word `b[at..at + n]` (3 to 8 ASCII letters): one unaligned load masked to
/// the word where eight bytes are there (every byte is a letter, so `| 0x20` lower-cases
/// it), the byte loop only near the text's end.
#[inline(always)]
fn pack_at(b: &[u8], at: usize, n: usize) -> u64 {
    debug_assert!((3..=8).contains(&n) && b[at..at + n].iter().all(u8::is_ascii_alphabetic));
    match b.get(at..at + 8) {
        Some(w) => {
            let x = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            (x | 0x2020_2020_2020_2020) & (u64::MAX >> (64 - 8 * n))
        }
        None => pack(&b[at..at + n]),
    }
}

#[cfg(test)]
pub(crate) fn word_index(w: &str) -> Option<u16> {
    if !(3..=8).contains(&w.len()) {
        return None;
    }
    wordlist().get(pack(w.as_bytes()))
}

/// The list index of the letter run `b[start..end]`, if it is a list word.
#[inline(always)]
fn word_at(table: &WordTable, b: &[u8], (start, end): (usize, usize)) -> Option<u16> {
    let n = end - start;
    if !(3..=8).contains(&n) {
        return None;
    }
    table.get(pack_at(b, start, n))
}

/// Is this sequence of BIP-39 word indices a mnemonic with a valid checksum?
#[cfg(test)]
fn mnemonic_valid(idx: &[u16]) -> bool {
    [12, 15, 18, 21, 24].contains(&idx.len()) && checksum_ok(&phrase_bits(idx), idx.len())
}

/// The words' 11 bits each, most significant first (24 words at most: 33 bytes); the bits
/// of a phrase of the first `n` words are a prefix of them.
#[inline]
fn phrase_bits(idx: &[u16]) -> [u8; 33] {
    let mut buf = [0u8; 33];
    let (mut acc, mut held, mut o) = (0u32, 0u32, 0usize);
    for &v in &idx[..idx.len().min(24)] {
        acc = acc << 11 | u32::from(v & 0x7FF);
        held += 11;
        while held >= 8 {
            held -= 8;
            buf[o] = (acc >> held) as u8;
            o += 1;
        }
        acc &= (1 << held) - 1;
    }
    if held > 0 {
        buf[o] = (acc << (8 - held)) as u8;
    }
    buf
}

/// SHA-256's initial state.
const SHA256_H0: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Do the first `n` words (12, 15, 18, 21 or 24) of `bits` ([`phrase_bits`]) hold a valid
/// checksum? Their entropy is `n * 4 / 3` whole bytes (16 to 32: one SHA-256 block, padded
/// here and compressed once), the checksum the top `n / 3` bits of the next byte.
#[inline]
fn checksum_ok(bits: &[u8; 33], n: usize) -> bool {
    let (ent, cs) = (n * 4 / 3, n / 3);
    let mut block = [0u8; 64];
    block[..ent].copy_from_slice(&bits[..ent]);
    block[ent] = 0x80;
    block[56..].copy_from_slice(&(ent as u64 * 8).to_be_bytes());
    let mut h = SHA256_H0;
    sha2::block_api::compress256(&mut h, &[block]);
    (h[0] >> (32 - cs)) as u8 == bits[ent] >> (8 - cs)
}

/// BIP-39 seed phrases: 12, 15, 18, 21 or 24 consecutive list words with a valid checksum.
///
/// A word of another length than the list's (3 to 8 letters) or a character outside ASCII
/// ends every phrase: the words are looked up only in the stretches between those that hold
/// twelve words or more (most prose has a short or long word every few words).
///
/// (Outside the tests the scan goes through the shape pass: [`seed_phrases_in`].)
#[cfg(test)]
pub(crate) fn seed_phrases(text: &str, out: &mut Vec<Hit>) {
    seed_phrases_from(text, 0, out, &mut SeedScratch::default())
}

/// [`seed_phrases`] in `text[start..]`: `start` must not be inside a letter run or a
/// stretch of words (the text's start, a stretch's first word, a break, a byte after which
/// no stretch is open).
fn seed_phrases_from(text: &str, start: usize, out: &mut Vec<Hit>, sc: &mut SeedScratch) {
    let b = text.as_bytes();
    // The current stretch: where its first word starts, how many words it has.
    let (mut from, mut count) = (start, 0usize);
    let mut i = start;
    while i < b.len() {
        if !b[i].is_ascii_alphabetic() {
            if !b[i].is_ascii() {
                if count >= SEED_MIN_WORDS {
                    seed_range(text, from, i, out, sc);
                }
                count = 0;
            }
            i += 1;
            continue;
        }
        let n = super::bytes::run_len_short(
            b,
            i,
            usize::MAX,
            |c| c.is_ascii_alphabetic(),
            super::bytes::alpha,
        );
        if (3..=8).contains(&n) {
            if count == 0 {
                from = i;
            }
            count += 1;
        } else {
            if count >= SEED_MIN_WORDS {
                seed_range(text, from, i, out, sc);
            }
            count = 0;
        }
        i += n;
    }
    if count >= SEED_MIN_WORDS {
        seed_range(text, from, b.len(), out, sc);
    }
}

/// The longest run of list words [`try_run`] reads: the phrases it tries start at one of the
/// run's first 256 words and have 24 words at most.
const RUN_READ: usize = 256 + 24;

/// The seed search's buffers, reused from stretch to stretch (one allocation a text).
#[derive(Default)]
struct SeedScratch {
    /// Tokens of the stretch being read ([`LetterRuns`](super::bytes::LetterRuns)), from
    /// the current candidate start on.
    toks: Vec<(usize, usize)>,
    /// The list index of each token looked up and found (the others: stale).
    idx: Vec<u16>,
}

impl SeedScratch {
    /// Drops the first `d` tokens.
    fn drop_front(&mut self, d: usize) {
        self.toks.drain(..d);
        self.idx.drain(..d);
    }

    /// Reads blocks until `need` tokens are held (or the range ends): is token `need - 1` there?
    fn fill(&mut self, b: &[u8], lr: &mut super::bytes::LetterRuns, need: usize) -> bool {
        while self.toks.len() < need && !lr.done() {
            lr.block(b, &mut self.toks);
        }
        self.idx.resize(self.toks.len(), 0);
        self.toks.len() >= need
    }
}

/// How many tokens are read ahead at a time (the buffers stay small on a stretch of megabytes).
const READ_AHEAD: usize = 512;

/// The seed scan of `text[from..to]` (`to` ends a word, or the text).
///
/// The letter runs (and the bytes outside ASCII, which end a phrase) are read from the
/// blocks' masks, then looked up Boyer-Moore-like: a phrase is twelve list words in a row,
/// so from a candidate start the twelfth word is looked up first, then the ones before it;
/// a word not in the list moves the candidate start past it (source text and prose have a
/// list word every few words: most stretches are decided with a lookup every twelve words).
/// Each run of twelve list words or more, up to the run's first [`RUN_READ`] words, is tried
/// as every word was looked up ([`try_run`]).
fn seed_range(text: &str, from: usize, to: usize, out: &mut Vec<Hit>, sc: &mut SeedScratch) {
    let b = text.as_bytes();
    let table = wordlist();
    let mut lr = super::bytes::LetterRuns::new(from, to);
    sc.toks.clear();
    sc.idx.clear();
    // The candidate start: token `s - 1` is not a list word (or `s` is the first token);
    // tokens `s..known` are list words.
    let (mut s, mut known) = (0usize, 0usize);
    loop {
        let hi = s + SEED_MIN_WORDS;
        if hi > sc.toks.len() {
            sc.drop_front(s);
            (known, s) = (known - s, 0);
            if !sc.fill(b, &mut lr, SEED_MIN_WORDS + READ_AHEAD) && sc.toks.len() < SEED_MIN_WORDS {
                return;
            }
            continue;
        }
        let mut k = hi;
        while k > known {
            match word_at(table, b, sc.toks[k - 1]) {
                Some(v) => {
                    sc.idx[k - 1] = v;
                    k -= 1;
                }
                None => break,
            }
        }
        if k > known {
            // Token `k - 1` is not a list word: `k..hi` are.
            (s, known) = (k, hi);
            continue;
        }
        // Tokens `s..hi` are list words: the run's end (read up to `RUN_READ` words).
        let mut e = hi;
        let mut tried = false;
        loop {
            if e == sc.toks.len() {
                // (Past `RUN_READ` words only the run's end is wanted.)
                let d = if tried { e } else { s };
                sc.drop_front(d);
                (s, e) = (s - d.min(s), e - d);
                if !sc.fill(b, &mut lr, e + 1 + READ_AHEAD) && e >= sc.toks.len() {
                    break;
                }
            }
            match word_at(table, b, sc.toks[e]) {
                Some(v) => {
                    sc.idx[e] = v;
                    e += 1;
                    if !tried && e - s == RUN_READ {
                        try_run(&sc.idx[s..e], &sc.toks[s..e], out);
                        tried = true;
                    }
                }
                None => break,
            }
        }
        if !tried {
            try_run(&sc.idx[s..e], &sc.toks[s..e], out);
        }
        (s, known) = (e + 1, e + 1);
        if s > sc.toks.len() {
            return; // (the range ended with the run)
        }
    }
}

/// A run of list words (their indices and spans), twelve or more: the first phrase with a
/// valid checksum, trying the run's first 256 words as starts, each the longest first.
fn try_run(idx: &[u16], spans: &[(usize, usize)], out: &mut Vec<Hit>) {
    'starts: for s in 0..idx.len().min(256) {
        // The bits of the longest phrase from `s`, once: the shorter ones are its prefixes.
        let words = &idx[s..idx.len().min(s + 24)];
        if words.len() < SEED_MIN_WORDS {
            break;
        }
        let bits = phrase_bits(words);
        for n in [24, 21, 18, 15, 12] {
            if n <= words.len() && checksum_ok(&bits, n) {
                out.push(Hit {
                    class: Crypto,
                    detector: "bip39_seed_phrase",
                    span: spans[s].0..spans[s + n - 1].1,
                });
                break 'starts;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The scan as it was before runs were counted a block at a time and the word list was an
    /// open-addressed table: the fast paths must find exactly the same hits.
    pub(crate) mod reference {
        use super::super::*;

        fn run(b: &[u8], from: usize, chars: Chars, cap: usize) -> usize {
            b[from.min(b.len())..]
                .iter()
                .take(cap)
                .take_while(|&&c| chars.has(c))
                .count()
        }

        pub(crate) fn wif_keys(text: &str, out: &mut Vec<Hit>) {
            let b = text.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if !b[i].is_ascii_alphanumeric() {
                    i += 1;
                    continue;
                }
                let n = run(b, i, Alnum, 200);
                if (n == 51 && b[i] == b'5') || (n == 52 && (b[i] == b'K' || b[i] == b'L')) {
                    if let Some(d) = base58_decode(&b[i..i + n]) {
                        if d.len() >= 37 && d[0] == 0x80 {
                            let (payload, sum) = d.split_at(d.len() - 4);
                            let h = Sha256::digest(Sha256::digest(payload));
                            if &h[..4] == sum {
                                out.push(Hit {
                                    class: Crypto,
                                    detector: "wif_private_key",
                                    span: i..i + n,
                                });
                            }
                        }
                    }
                }
                i += n.max(1);
            }
        }

        fn word_index(w: &str) -> Option<u16> {
            if !(3..=8).contains(&w.len()) {
                return None;
            }
            static W: OnceLock<std::collections::HashMap<String, u16>> = OnceLock::new();
            W.get_or_init(|| {
                include_str!("data/bip39-english.txt")
                    .lines()
                    .enumerate()
                    .map(|(i, w)| (w.to_string(), i as u16))
                    .collect()
            })
            .get(&w.to_ascii_lowercase())
            .copied()
        }

        /// The same scan with the word list as the plain `HashMap` it was.
        pub(crate) fn seed_phrases(text: &str, out: &mut Vec<Hit>) {
            seed_range(text, 0, text.len(), out, word_index)
        }

        /// The seed scan of `text[from..to]` before the words were read from block masks and
        /// looked up twelfth first: every word looked up, in order.
        pub(crate) fn seed_range(
            text: &str,
            from: usize,
            to: usize,
            out: &mut Vec<Hit>,
            word_index: impl Fn(&str) -> Option<u16>,
        ) {
            let b = text.as_bytes();
            let mut words: Vec<(u16, usize, usize)> = Vec::new();
            let mut i = from;
            let flush = |words: &mut Vec<(u16, usize, usize)>, out: &mut Vec<Hit>| {
                if words.len() >= 12 {
                    let idx: Vec<u16> = words.iter().map(|w| w.0).collect();
                    'starts: for s in 0..idx.len().min(256) {
                        for n in [24, 21, 18, 15, 12] {
                            if s + n <= idx.len() && mnemonic_valid(&idx[s..s + n]) {
                                out.push(Hit {
                                    class: Crypto,
                                    detector: "bip39_seed_phrase",
                                    span: words[s].1..words[s + n - 1].2,
                                });
                                break 'starts;
                            }
                        }
                    }
                }
                words.clear();
            };
            while i < to {
                if !b[i].is_ascii_alphabetic() {
                    // Separators: spaces, punctuation, digits (numbered lists); other letters break.
                    if !b[i].is_ascii() {
                        flush(&mut words, out);
                    }
                    i += 1;
                    continue;
                }
                let n = crate::content::bytes::run_len_short(
                    b,
                    i,
                    usize::MAX,
                    |c| c.is_ascii_alphabetic(),
                    crate::content::bytes::alpha,
                );
                match word_index(&text[i..i + n]) {
                    Some(v) => words.push((v, i, i + n)),
                    None => flush(&mut words, out),
                }
                i += n;
            }
            flush(&mut words, out);
        }

        /// The checksum check before the bits were packed a byte at a time.
        pub(crate) fn mnemonic_valid(idx: &[u16]) -> bool {
            let bits = idx.len() * 11;
            let ent = bits * 32 / 33;
            let cs = bits - ent;
            let mut bytes = vec![0u8; bits.div_ceil(8)];
            for (k, &v) in idx.iter().enumerate() {
                for j in 0..11 {
                    if v & (1 << (10 - j)) != 0 {
                        let bit = k * 11 + j;
                        bytes[bit / 8] |= 0x80 >> (bit % 8);
                    }
                }
            }
            let h = Sha256::digest(&bytes[..ent / 8]);
            let want = h[0] >> (8 - cs);
            let last = ((bytes[ent / 8] as u16) << 8
                | *bytes.get(ent / 8 + 1).unwrap_or(&0) as u16)
                >> (16 - cs);
            want as u16 == last
        }

        /// Every anchor in one automaton, as the anchors were searched before the two-byte
        /// ones got their own searches.
        pub(crate) fn combined_anchors() -> &'static AhoCorasick {
            static A: OnceLock<AhoCorasick> = OnceLock::new();
            A.get_or_init(|| anchor_automaton(anchor_patterns()))
        }

        /// `scan` with the token bodies measured byte by byte.
        pub(crate) fn token_runs(text: &str) -> Vec<(usize, usize)> {
            let b = text.as_bytes();
            let mut v = Vec::new();
            for m in combined_anchors().find_iter(text) {
                let i = m.pattern().as_usize();
                if i < TOKENS.len() {
                    let r = &TOKENS[i];
                    v.push((m.start(), run(b, m.end(), r.chars, r.max + 1)));
                }
            }
            v
        }
    }

    /// Texts built from pieces that exercise every detector and every fast path: runs whose
    /// lengths straddle the 32-byte blocks and WIF's 200-byte steps, secrets at the very end,
    /// separators with non-ASCII characters between seed words.
    pub(crate) fn mixed_texts(n: usize) -> Vec<String> {
        const PIECES: &[&str] = &[
            "AKIAZ7Q3BT4LCMW2PX5N",
            "ghp_4Fq9ZtX1bW7mK2pL8vR3sY6nC0dH5jE9uA1k",
            "glpat-Zq8vX2mN4pL7kR9sT1wY",
            "xoxb-1234567890-0987654321-AbCdEfGhIjKl",
            "sk-ant-api03-Zq8vX2mN4pL7kR9sT1wYb3c5D6e7F8g9H0i",
            "SK0123456789abcdef0123456789abcdef",
            "AIzaSyD4fG7hJ2kL9mN1pQ3rS5tU8vW0xY6zA2b",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTl9.Zq8vX2mN4pL7kR9sT1wYb3c5D6e7F8g9",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowMIIEowMIIEowMIIEowMIIEowMIIEowMIIEowMIIEow\n-----END RSA PRIVATE KEY-----",
            "postgres://app:Tr0ub4dor&3@db/x",
            "aws_secret_access_key = Zq8vX2mN4pL7kR9sT1wYb3c5D6e7F8g9H0iJ1kL2",
            "abc8Q~Zq8vX2mN4pL7kR9sT1wYb3c5D6e7F8g9H",
            "legal winner thank year wave sausage worth useful legal winner thank yellow",
            "legal, winner, thank, year, wave, sausage, worth, useful, legal, winner, thank, yellow",
            "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ",
            "KwDiBf89QgGbjEhKnhXJuH7LrciVrZi3qYjgd9M7rFU73sVHnoWn",
            "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi",
            "the server returned a list of files with its size ",
            "abandon ability able about above absent absorb abstract absurd abuse access accident ",
            "\u{e9}",
            "\u{200b}",
            "\u{212a}",
            "\t",
            "  ",
            "\n\n",
            "x",
            "_",
            "-",
            "=",
            "5",
            "K",
        ];
        let mut rng = crate::test_rng::XorShift::new(0x2545_F491_4F6C_DD1Du64);
        let mut next = move || rng.next_u64();
        (0..n)
            .map(|_| {
                let mut s = String::new();
                for _ in 0..next() % 12 {
                    match next() % 4 {
                        0 => s.push_str(&"x".repeat((next() % 260) as usize)),
                        1 => s.push_str(&"Zq8vX2mN".repeat((next() % 40) as usize)),
                        _ => s.push_str(PIECES[(next() % PIECES.len() as u64) as usize]),
                    }
                    if next() % 3 == 0 {
                        s.push(' ');
                    }
                }
                s
            })
            .collect()
    }

    /// Long runs (the bench's 1 MiB of `x`, keys glued to the end of runs whose lengths fall
    /// either side of the 200-byte pieces and the 32-byte blocks), long runs of words.
    pub(crate) fn long_texts() -> Vec<String> {
        let wif = "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ";
        let wif_k = "KwDiBf89QgGbjEhKnhXJuH7LrciVrZi3qYjgd9M7rFU73sVHnoWn";
        let mut v = vec!["x".repeat(1 << 20), "x".repeat((1 << 16) + 7)];
        for k in [
            200usize, 400, 401, 599, 600, 4000, 4001, 20000, 20031, 20032, 20033,
        ] {
            v.push(format!("{}{wif}", "x".repeat(k)));
            v.push(format!("{}{wif_k}", "Q".repeat(k)));
            v.push(format!("{}{wif}{}", "9".repeat(k), "z".repeat(k)));
            v.push(format!("{} {wif} {}", "x".repeat(k), "y".repeat(k + 1)));
            v.push(format!("{}{wif}", "ab+/".repeat(k / 4)));
        }
        let words = "legal winner thank year wave sausage worth useful legal winner thank yellow ";
        v.push(words.repeat(300));
        v.push(format!("{}{}", "abandon ".repeat(5000), words));
        v.push(format!("{}{}", "x".repeat(100_000), words));
        let w: Vec<&str> = words.split(' ').filter(|w| !w.is_empty()).collect();
        for lead in 0..26 {
            let pre = "zz ".repeat(lead);
            v.push(format!("{pre}{words}"));
            v.push(format!("{pre}abandon {words}zz {words}"));
            v.push(format!("{pre}{} \u{e9} {}", w[..5].join(" "), words));
            v.push(format!("{pre}{}, {} qq", w[..lead % 12].join(", "), words));
            v.push(format!("{pre}{}{words}", "able ".repeat(lead)));
        }
        v
    }

    /// No occurrence of a two-byte anchor can overlap one of another anchor: neither holds
    /// the other, and no end of one is the start of the other.
    #[test]
    fn two_byte_anchors_overlap_no_other_anchor() {
        let all: Vec<&str> = anchor_patterns().collect();
        let short: Vec<&str> = all.iter().copied().filter(|p| p.len() <= 2).collect();
        assert_eq!(short, ["SK", "Q~"]);
        for s in &short {
            let sb = s.as_bytes();
            assert_ne!(sb[0], sb[1], "{s}"); // (nor two of its own occurrences)
            for p in all.iter().filter(|p| p != &s) {
                assert!(!p.contains(s), "{p} holds {s}");
                assert!(!p.ends_with(sb[0] as char), "{p} ends with {s}'s start");
                assert!(!p.starts_with(sb[1] as char), "{p} starts with {s}'s end");
            }
        }
    }

    /// The anchor matches merged from the two-byte finders and the automaton are those of one
    /// automaton of every anchor, in the same order.
    #[test]
    fn merged_anchor_matches_are_the_combined_automatons() {
        let all: Vec<&str> = anchor_patterns().collect();
        let mut rng = crate::test_rng::XorShift::new(0x5eed_a0c4_0000_0004u64);
        let mut texts = mixed_texts(500);
        for _ in 0..3000 {
            let mut t = String::new();
            for _ in 0..rng.below(12) {
                match rng.below(3) {
                    0 => t.push_str(all[rng.below(all.len())]),
                    1 => t.push_str(["SK", "Q~", "S", "K", "Q", "~"][rng.below(6)]),
                    _ => t.push_str(&"aZ9_-/ ".repeat(rng.below(3))),
                }
            }
            texts.push(t);
        }
        let fallback = ShortAnchors::Automaton(anchor_automaton(["SK", "Q~"]));
        let mut n = 0;
        for t in &texts {
            let mut got = Vec::new();
            anchor_matches(t, |i, s, e| got.push((i, s, e)));
            let want: Vec<(usize, usize, usize)> = reference::combined_anchors()
                .find_iter(t.as_str())
                .map(|m| (m.pattern().as_usize(), m.start(), m.end()))
                .collect();
            assert_eq!(got, want, "{t:?}");
            n += got.len();
            // The two-byte anchors' searcher where the CPU has no Teddy: the same matches.
            let packed: Vec<_> = anchors().short.find_iter(t.as_bytes()).collect();
            assert!(matches!(anchors().short, ShortAnchors::Packed(_)));
            let automaton: Vec<_> = fallback.find_iter(t.as_bytes()).collect();
            assert_eq!(packed, automaton, "{t:?}");
        }
        assert!(n > 5000, "{n}");
    }

    #[test]
    fn fast_paths_find_what_the_byte_loops_found() {
        let mut texts = mixed_texts(1500);
        texts.extend(long_texts());
        // Runs around the block size and WIF's 200-byte step, the key at the very end.
        let wif = "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ";
        for k in [
            0usize, 1, 31, 32, 33, 149, 150, 151, 199, 200, 201, 349, 350,
        ] {
            texts.push(format!("{}{wif}", "a".repeat(k)));
            texts.push(format!("{}{wif}", "a".repeat(k).replace('a', "\u{e9}")));
            texts.push(format!("{} {wif}", "a".repeat(k)));
        }
        for (n, t) in texts.iter().enumerate() {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            wif_keys(t, &mut a);
            reference::wif_keys(t, &mut b);
            assert_eq!(a, b, "wif, text {n}: {t:?}");
            let (mut a, mut b) = (Vec::new(), Vec::new());
            seed_phrases(t, &mut a);
            reference::seed_phrases(t, &mut b);
            assert_eq!(a, b, "seed, text {n}: {t:?}");
            let bytes = t.as_bytes();
            let mut fast: Vec<(usize, usize)> = Vec::new();
            anchor_matches(t, |i, s, e| {
                if let Some(r) = TOKENS.get(i) {
                    fast.push((s, run(bytes, e, r.chars, r.max + 1)));
                }
            });
            assert_eq!(fast, reference::token_runs(t), "runs, text {n}");
        }
        // The texts hit every kind of detector.
        let mut kinds = std::collections::BTreeSet::new();
        for t in &texts {
            let mut v = Vec::new();
            scan(t, &mut v);
            kinds.extend(v.into_iter().map(|h| h.detector));
        }
        for d in [
            "wif_private_key",
            "bip39_seed_phrase",
            "aws_access_key_id",
            "jwt",
            "pem_private_key",
        ] {
            assert!(kinds.contains(d), "{d} never found: {kinds:?}");
        }
    }

    /// Texts of seed words, valid phrases and the things that end a stretch (short and long
    /// letter runs, characters outside ASCII), padded so that stretches start and end either
    /// side of the shape pass's 64-byte blocks and 4096-byte checks and at the text's end;
    /// some start with an anchor and long runs, so that the shape pass stops early.
    pub(crate) fn seed_texts(n: usize, seed: u64) -> Vec<String> {
        const PHRASES: &[&str] = &[
            "legal winner thank year wave sausage worth useful legal winner thank yellow",
            "letter advice cage absurd amount doctor acoustic avoid letter advice cage above",
            "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong",
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
            "Legal,winner,thank,year,wave,sausage,worth,useful,legal,winner,thank,yellow",
            "1. legal 2. winner 3. thank 4. year 5. wave 6. sausage 7. worth 8. useful 9. legal 10. winner 11. thank 12. yellow",
        ];
        const WORDS: &[&str] = &[
            "legal",
            "abandon",
            "zoo",
            "wrong",
            "about",
            "thank",
            "yellow",
            "qqq",
            "xyzzyab",
            "LEGAL",
            "a",
            "of",
            "notaseedw",
            "modification",
            "abandoned",
        ];
        const SEPS: &[&str] = &[
            " ", ", ", "\n", "\t", "-", "_", "7", "  ", "\u{e9}", "\u{200b}", "\u{65e5}", ".",
        ];
        let mut rng = crate::test_rng::XorShift::new(seed);
        (0..n)
            .map(|_| {
                let mut s = String::new();
                if rng.below(3) == 0 {
                    // An anchor, runs long enough for every detector, twelve words.
                    s.push_str("ghp_ ");
                    s.push_str(&"Zq8vX2mN".repeat(8));
                    s.push(' ');
                    s.push_str(PHRASES[0]);
                    s.push(' ');
                }
                let target = [60, 200, 4000, 4100, 9000][rng.below(5)];
                while s.len() < target {
                    match rng.below(8) {
                        0 => s.push_str(PHRASES[rng.below(PHRASES.len())]),
                        // Padding that moves what follows across a block edge.
                        1 => s.push_str(&" ".repeat(rng.below(70))),
                        2 => s.push_str(&"9".repeat(rng.below(70))),
                        3 => s.push_str(SEPS[rng.below(SEPS.len())]),
                        _ => s.push_str(WORDS[rng.below(WORDS.len())]),
                    }
                    if rng.below(2) == 0 {
                        s.push_str(SEPS[rng.below(SEPS.len())]);
                    }
                }
                // Maybe a phrase that ends the text (or is glued to a break).
                match rng.below(4) {
                    0 => s.push_str(PHRASES[rng.below(PHRASES.len())]),
                    1 => {
                        s.push_str(PHRASES[0]);
                        s.push('\u{e9}');
                    }
                    _ => {}
                }
                s
            })
            .collect()
    }

    /// A valid mnemonic of `n` words (12 to 24, a multiple of 3) from random entropy.
    fn random_mnemonic(rng: &mut crate::test_rng::XorShift, n: usize) -> Vec<u16> {
        let ent_bits = n * 11 * 32 / 33;
        let mut bytes: Vec<u8> = (0..ent_bits / 8).map(|_| rng.below(256) as u8).collect();
        let h = Sha256::digest(&bytes);
        bytes.push(h[0]);
        let bit = |i: usize| u16::from(bytes[i / 8] >> (7 - i % 8) & 1);
        let idx: Vec<u16> = (0..n)
            .map(|k| (0..11).fold(0, |v, j| v << 1 | bit(k * 11 + j)))
            .collect();
        assert!(mnemonic_valid(&idx), "{idx:?}");
        idx
    }

    /// The checksum check (the words' bits packed a byte at a time, one SHA-256 block
    /// compressed) is the one packed a bit at a time and hashed by `Sha256::digest`: valid
    /// phrases of every length, and the same with any one word changed.
    #[test]
    fn mnemonic_check_is_the_bitwise_one() {
        let mut rng = crate::test_rng::XorShift::new(0xC4EC_4503);
        let mut valid = 0;
        for t in 0..6000 {
            let n = [12, 15, 18, 21, 24][t % 5];
            let mut idx = random_mnemonic(&mut rng, n);
            if t % 2 == 1 {
                let k = rng.below(n);
                idx[k] = rng.below(2048) as u16;
            }
            if t % 7 == 3 {
                // Bits above the eleventh are ignored by both.
                idx[rng.below(n)] |= 0xF800;
            }
            assert_eq!(
                mnemonic_valid(&idx),
                reference::mnemonic_valid(&idx),
                "{idx:?}"
            );
            valid += usize::from(mnemonic_valid(&idx));
        }
        assert!((3000..5000).contains(&valid), "{valid}");
    }

    /// Texts for the seed search's differential test: list words (any case), valid phrases of
    /// every length, words not in the list (of every length), separators (digits, punctuation,
    /// blanks, bytes outside ASCII), some runs of list words longer than the run a phrase is
    /// looked for in and than the search's read-ahead, most ending in a word (the 8-byte load
    /// near the text's end).
    fn seed_search_texts(n: usize, seed: u64) -> Vec<String> {
        let list: Vec<&str> = include_str!("data/bip39-english.txt").lines().collect();
        const SEPS: &[&str] = &[
            " ", " ", " ", ", ", "\n", "\t", "-", "7", "12. ", "  ", "\u{e9}", "\u{65e5}", ".",
            "\"", "_",
        ];
        let mut rng = crate::test_rng::XorShift::new(seed);
        let case = |rng: &mut crate::test_rng::XorShift, w: &str| -> String {
            match rng.below(8) {
                0 => w.to_ascii_uppercase(),
                1 => w
                    .chars()
                    .map(|c| {
                        if rng.below(2) == 0 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect(),
                _ => w.to_string(),
            }
        };
        (0..n)
            .map(|t| {
                let mut s = String::new();
                let long = t % 16 == 0;
                let target = if long {
                    [3000, 5000, 9000][rng.below(3)]
                } else {
                    [20, 80, 200, 600][rng.below(4)]
                };
                let sep = |rng: &mut crate::test_rng::XorShift| {
                    if long || rng.below(3) > 0 {
                        " "
                    } else {
                        SEPS[rng.below(SEPS.len())]
                    }
                };
                while s.len() < target {
                    // (Long texts: runs of list words of a few hundred, past `RUN_READ` and
                    // the read-ahead.)
                    match rng.below(if long { 1000 } else { 10 }) {
                        0 => {
                            let len = [12, 15, 18, 21, 24][rng.below(5)];
                            let m = random_mnemonic(&mut rng, len);
                            for v in m {
                                let w = case(&mut rng, list[v as usize]);
                                s.push_str(&w);
                                s.push_str(sep(&mut rng));
                            }
                        }
                        1 => {
                            // A word not in the list (almost always), of any length.
                            let len = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12][rng.below(10)];
                            s.extend((0..len).map(|_| (b'a' + rng.below(26) as u8) as char));
                        }
                        2 => s.push_str(SEPS[rng.below(SEPS.len())]),
                        _ => {
                            let w = list[rng.below(list.len())];
                            let w = case(&mut rng, w);
                            s.push_str(&w);
                        }
                    }
                    if s.len() < target || rng.below(4) == 0 {
                        s.push_str(sep(&mut rng));
                    }
                }
                s
            })
            .collect()
    }

    /// The seed search (words from block masks, looked up twelfth first, packed with one
    /// load) finds exactly what every word looked up in order found: over whole texts, over
    /// the shape pass's stretches and over ranges between any two letter-run edges.
    #[test]
    fn seed_search_finds_what_every_word_looked_up_found() {
        let mut texts = seed_search_texts(2500, 0x51DE_5EED_0019);
        texts.extend(seed_texts(300, 0x0BAD_5EED));
        // Phrases at the very end of the text, whose last word is shorter than 8 bytes from it.
        let phrase = "legal winner thank year wave sausage worth useful legal winner thank yellow";
        for pre in ["", "x ", "abandon ", "\u{e9}", "about about "] {
            for cut in 0..8 {
                texts.push(format!("{pre}{}", &phrase[..phrase.len() - cut]));
                texts.push(format!("{pre}{}", phrase.to_ascii_uppercase()));
            }
        }
        let mut rng = crate::test_rng::XorShift::new(0x7E57);
        let (mut found, mut long_runs) = (0, 0);
        for (k, t) in texts.iter().enumerate() {
            let mut want = Vec::new();
            reference::seed_range(t, 0, t.len(), &mut want, word_index);
            let mut by_map = Vec::new();
            reference::seed_phrases(t, &mut by_map);
            assert_eq!(by_map, want, "text {k}: {t:?}");
            let mut got = Vec::new();
            seed_phrases(t, &mut got);
            assert_eq!(got, want, "text {k}: {t:?}");
            let mut got = Vec::new();
            seed_range(t, 0, t.len(), &mut got, &mut SeedScratch::default());
            assert_eq!(got, want, "text {k}: {t:?}");
            let sh = super::super::shape::shape(t.as_bytes());
            let mut got = Vec::new();
            seed_phrases_in(t, &mut got, &sh.seeds);
            assert_eq!(got, want, "text {k}: {t:?}");
            found += want.len();
            // The longest run of list words (a byte outside ASCII ends one).
            let (mut run, mut longest) = (0, 0);
            for w in t.split(|c: char| !c.is_ascii_alphabetic() && c.is_ascii()) {
                if !w.is_empty() && word_index(w).is_some() {
                    run += 1;
                    longest = longest.max(run);
                } else if !w.is_empty() || t.is_empty() {
                    run = 0;
                }
            }
            long_runs += usize::from(longest > READ_AHEAD + RUN_READ);
            // Ranges between letter-run edges (one scratch reused, as over a text's stretches).
            let b = t.as_bytes();
            let edges = super::super::bytes::letter_run_edges(b);
            let mut sc = SeedScratch::default();
            for _ in 0..3 {
                let from = edges[rng.below(edges.len())];
                let to = edges[rng.below(edges.len())].max(from);
                let (mut got, mut want) = (Vec::new(), Vec::new());
                seed_range(t, from, to, &mut got, &mut sc);
                reference::seed_range(t, from, to, &mut want, word_index);
                assert_eq!(got, want, "text {k} {from}..{to}: {t:?}");
            }
        }
        assert!(found > 1500 && long_runs > 20, "{found} {long_runs}");
    }

    /// The seed scan over the shape pass's stretches (and the rest it left unread) finds
    /// exactly what the whole-text scan finds.
    #[test]
    fn seed_stretches_find_what_the_whole_text_scan_found() {
        let mut texts = seed_texts(3000, 0x9E37_79B9_7F4A_7C15);
        texts.extend(mixed_texts(500));
        texts.extend(run_texts(300));
        texts.extend(long_texts());
        let phrase = "legal winner thank year wave sausage worth useful legal winner thank yellow";
        // A phrase at every offset around the first 64-byte blocks and the 4096-byte check.
        for k in (0..200).chain(4000..4200) {
            for pad in [" ", "7", "\u{e9}", "x"] {
                texts.push(format!("{}{phrase}", pad.repeat(k)));
                texts.push(format!("{}{phrase} ab", pad.repeat(k)));
            }
        }
        // More stretches than are kept: the rest is read whole.
        let many = format!("{phrase} a ").repeat(super::super::bytes::KEPT_STRETCHES + 5);
        texts.push(many.clone());
        texts.push(format!("ghp_ {} {many}", "Zq8vX2mN".repeat(8)));
        let (mut found, mut early, mut overflow) = (0, 0, 0);
        for (n, t) in texts.iter().enumerate() {
            let sh = super::super::shape::shape(t.as_bytes());
            let (mut got, mut want) = (Vec::new(), Vec::new());
            seed_phrases_in(t, &mut got, &sh.seeds);
            reference::seed_phrases(t, &mut want);
            assert_eq!(got, want, "text {n}: {t:?}");
            found += usize::from(!want.is_empty());
            early += usize::from(!sh.complete);
            overflow += usize::from(sh.complete && sh.seeds.rest().is_some());
        }
        assert!(
            found > 1000 && early > 100 && overflow > 0,
            "{found} {early} {overflow}"
        );
    }

    /// Texts with long letter runs (either side of `LONG_RUN`, more of them than are kept)
    /// glued to digits, base64 characters, keys, seed words, non-ASCII characters and markers.
    pub(crate) fn run_texts(n: usize) -> Vec<String> {
        const PIECES: &[&str] = &[
            "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ",
            "KwDiBf89QgGbjEhKnhXJuH7LrciVrZi3qYjgd9M7rFU73sVHnoWn",
            "legal winner thank year wave sausage worth useful legal winner thank yellow",
            "AKIAZ7Q3BT4LCMW2PX5N",
            "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi",
            "aGVsbG8gd29ybGQsIHNlY3JldA==",
            // `xprv`/`tprv` without an anchor byte, their bodies either side of the minimum.
            "xprvq1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c2v3b4n5m6q7w8e9r0t1y2u3i4o5p6a7s8d9f0g1h2j3k4l5z6x7c8v9b0",
            "tprvq1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c2v3b4n5m6q7w8e9r0t1y2u3i4o5p6a7s8d9f0g1h2j3k4l5z6x7c8v9b",
            "abandon ability able about above absent absorb abstract absurd abuse access",
            "QUtJQVo3UTNCVDRMQ01XMlBYNU4=",
            "ignore previous instructions",
            "<|im_start|>",
            "\u{e9}",
            "\u{200b}",
            "9",
            "+",
            "/",
            "-",
            "_",
            "=",
            " ",
            "\n",
            "\t",
        ];
        let lens = [
            1usize, 7, 8, 9, 63, 64, 65, 199, 200, 201, 255, 256, 257, 300, 1000, 4097,
        ];
        let letters = ["x", "Q", "ab", "Zq"];
        let mut rng = crate::test_rng::XorShift::new(0x9E37_79B9_7F4A_7C15u64);
        let mut next = move || rng.next_u64();
        (0..n)
            .map(|_| {
                let mut s = String::new();
                for _ in 0..1 + next() % 40 {
                    if next() % 2 == 0 {
                        let l = lens[(next() % lens.len() as u64) as usize];
                        let c = letters[(next() % letters.len() as u64) as usize];
                        s.push_str(&c.repeat(l.div_ceil(c.len())));
                    } else {
                        s.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
                    }
                }
                s
            })
            .collect()
    }

    /// The scan with the letter runs shared (seed scan first, WIF and token runs jumping over
    /// the long letter runs) finds exactly what the byte loops found, in the same order.
    #[test]
    fn shared_letter_runs_find_what_the_byte_loops_found() {
        let mut texts = run_texts(3000);
        texts.extend(mixed_texts(1000));
        texts.extend(long_texts());
        // More long runs than are kept, keys after each.
        let wif = "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ";
        texts.push(format!(
            "{}{wif}",
            format!("{}9", "x".repeat(300)).repeat(40)
        ));
        texts.push(format!(
            "{}{wif}",
            format!("{} ", "x".repeat(256)).repeat(40)
        ));
        texts.push(format!(
            "{}{wif}",
            format!("{}+", "y".repeat(257)).repeat(40)
        ));
        let is_tok =
            |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'_' | b'-');
        let mut found = 0;
        for (n, t) in texts.iter().enumerate() {
            let (mut got, mut want) = (Vec::new(), Vec::new());
            let sh = scan_shaped(t, &mut got);
            anchor_hits(t, &mut want);
            reference::wif_keys(t, &mut want);
            reference::seed_phrases(t, &mut want);
            assert_eq!(got, want, "text {n}: {t:?}");
            found += got.len();
            let b = t.as_bytes();
            let mut toks = Vec::new();
            let mut i = 0;
            while i < b.len() {
                if !is_tok(b[i]) {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < b.len() && is_tok(b[i]) {
                    i += 1;
                }
                if i - start >= super::super::encodings::MIN_TOKEN {
                    toks.push(start..i);
                }
            }
            let fast: Vec<_> = if sh.max_tok >= super::super::encodings::MIN_TOKEN {
                super::super::encodings::candidate_tokens_in(t, sh.runs).collect()
            } else {
                Vec::new()
            };
            assert_eq!(fast, toks, "tokens, text {n}: {t:?}");
            // The marker search is skipped for ASCII text without a marker byte.
            if !sh.non_ascii && !sh.marker_byte {
                assert_eq!(super::super::text::injection_marker(t), None, "text {n}");
            }
        }
        assert!(found > 1000, "{found}");
    }

    /// The shape pass may skip the anchored detectors of a text without an anchor byte: every
    /// anchor holds one, but `xprv`/`tprv`, which hold a `v` and need a long run.
    #[test]
    fn every_anchor_holds_an_anchor_byte_or_needs_a_long_run() {
        use super::super::shape::{ANCHOR_BYTES, XPRV_RUN};
        for p in SPECIAL {
            assert!(p.bytes().any(|c| ANCHOR_BYTES.contains(&c)), "{p}");
        }
        for r in TOKENS {
            if r.prefix.bytes().any(|c| ANCHOR_BYTES.contains(&c)) {
                continue;
            }
            assert!(r.prefix.contains('v'), "{}", r.prefix);
            assert!(r.prefix.bytes().all(|c| c.is_ascii_alphanumeric()));
            assert!(matches!(r.chars, Alnum) && r.prefix.len() + r.min >= XPRV_RUN);
        }
        // The WIF scan's shortest key, the seed scan's fewest words.
        assert_eq!(WIF_MIN, 51);
        assert_eq!(SEED_MIN_WORDS, 12);
    }

    #[test]
    fn run_counts_each_class_as_the_standard_predicates() {
        let all: Vec<u8> = (0..=255u8).collect();
        for chars in [Alnum, Upper, Word, Url, UrlDot, Hex, B64, Slash] {
            for c in 0..=255u8 {
                assert_eq!(run(&[c], 0, chars, 10) == 1, chars.has(c), "{c}");
            }
            for from in 0..all.len() {
                let want = all[from..]
                    .iter()
                    .take(300)
                    .take_while(|&&c| chars.has(c))
                    .count();
                assert_eq!(run(&all, from, chars, 300), want);
            }
        }
    }

    #[test]
    fn word_table_holds_every_word_and_nothing_else() {
        let words: Vec<&str> = include_str!("data/bip39-english.txt").lines().collect();
        for (i, w) in words.iter().enumerate() {
            assert_eq!(word_index(w), Some(i as u16), "{w}");
            assert_eq!(word_index(&w.to_ascii_uppercase()), Some(i as u16), "{w}");
        }
        for w in ["abando", "zooo", "the", "xxxxxxxx", "abandonn"] {
            assert_eq!(word_index(w), None, "{w}");
        }
    }

    fn classes(s: &str) -> Vec<&'static str> {
        let mut v = Vec::new();
        scan(s, &mut v);
        v.into_iter().map(|h| h.detector).collect()
    }

    #[test]
    fn tokens() {
        assert_eq!(classes("key=AKIAZ7Q3BT4LCMW2PX5N&x"), ["aws_access_key_id"]);
        assert!(classes("AKIAIOSFODNN7EXAMPLE").is_empty());
        assert_eq!(
            classes("ghp_4Fq9ZtX1bW7mK2pL8vR3sY6nC0dH5jE9uA1k"),
            ["github_token"]
        );
        assert!(classes("ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx").is_empty());
        assert_eq!(classes("glpat-Zq8vX2mN4pL7kR9sT1wY"), ["gitlab_token"]);
        assert_eq!(
            classes("xoxb-1234567890-0987654321-AbCdEfGhIjKl"),
            ["slack_token"]
        );
        assert_eq!(
            classes("sk_live_51HqLyjWDarjtT1zdp7dcAbCd"),
            ["stripe_secret_key"]
        );
        assert_eq!(
            classes("sk-ant-api03-Zq8vX2mN4pL7kR9sT1wYb3c5D6e7F8g9H0i"),
            ["anthropic_api_key"]
        );
        assert_eq!(
            classes("SK0123456789abcdef0123456789abcdef"),
            ["twilio_api_key"]
        );
        assert_eq!(
            classes("AIzaSyD4fG7hJ2kL9mN1pQ3rS5tU8vW0xY6zA2b"),
            ["google_api_key"]
        );
        assert!(classes("task-1234 disk_usage MASKED").is_empty());
    }

    #[test]
    fn shapes() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTl9.Zq8vX2mN4pL7kR9sT1wYb3c5D6e7F8g9";
        assert_eq!(classes(jwt), ["jwt"]);
        let pem = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
            "MIIEow".repeat(20)
        );
        assert_eq!(classes(&pem), ["pem_private_key"]);
        assert!(classes("-----BEGIN RSA PRIVATE KEY----- blocks are PEM").is_empty());
        assert_eq!(classes("postgres://app:Tr0ub4dor&3@db/x"), ["url_password"]);
        assert!(classes("postgres://user:password@localhost/db").is_empty());
        assert!(classes("https://example.com/a").is_empty());
        assert_eq!(
            classes("aws_secret_access_key = Zq8vX2mN4pL7kR9sT1wYb3c5D6e7F8g9H0iJ1kL2"),
            ["aws_secret_access_key"]
        );
        assert!(
            classes("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY").is_empty()
        );
        assert_eq!(
            classes("secret: abc8Q~Zq8vX2mN4pL7kR9sT1wYb3c5D6e7F8g9H"),
            ["azure_client_secret"]
        );
    }

    #[test]
    fn crypto() {
        // The BIP-39 test vector: valid checksum.
        let m = "legal winner thank year wave sausage worth useful legal winner thank yellow";
        assert_eq!(classes(m), ["bip39_seed_phrase"]);
        assert_eq!(
            classes(&format!("1. {}", m.replace(' ', ", "))),
            ["bip39_seed_phrase"]
        );
        // Twelve list words whose checksum fails: not a seed.
        assert!(classes(
            "legal winner thank year wave sausage worth useful legal winner thank thank"
        )
        .is_empty());
        // A WIF key (from the Bitcoin wiki) and a corrupted one.
        assert_eq!(
            classes("5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ"),
            ["wif_private_key"]
        );
        assert!(classes("5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTK").is_empty());
    }
}
