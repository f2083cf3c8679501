//! Text that hides from a human reader or addresses the model: invisible and confusable
//! characters, and prompt-injection markers. Shared by every check that reads text meant for
//! the model (tool results here; tool definitions could use the same functions).
//!
//! Everything is one pass over the input.

/// Characters a reader does not see: zero-width and joiners, bidi controls, the Unicode
/// tag block (U+E0000..U+E007F, "ASCII smuggling"), variation selectors, soft hyphen, BOM.
pub(crate) fn is_hidden(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{E0000}'..='\u{E007F}'
        | '\u{E0100}'..='\u{E01EF}')
}

/// Bidirectional controls: embeddings, overrides, isolates, marks (all of them hidden too).
pub(crate) fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// The ASCII character a confusable stands for (fullwidth forms, common Cyrillic and Greek
/// look-alikes), or `None`.
pub(crate) fn confusable(c: char) -> Option<char> {
    let u = c as u32;
    if (0xFF01..=0xFF5E).contains(&u) {
        return char::from_u32(u - 0xFF01 + 0x21);
    }
    Some(match c {
        'А' => 'A',
        'В' => 'B',
        'Е' => 'E',
        'К' => 'K',
        'М' => 'M',
        'Н' => 'H',
        'О' => 'O',
        'Р' => 'P',
        'С' => 'C',
        'Т' => 'T',
        'Х' => 'X',
        'а' => 'a',
        'е' => 'e',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'у' => 'y',
        'х' => 'x',
        'і' => 'i',
        'ј' => 'j',
        'ѕ' => 's',
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Υ' => 'Y',
        'Χ' => 'X',
        'ο' => 'o',
        'ν' => 'v',
        '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2212}' => '-',
        '\u{2024}' => '.',
        '\u{FF0E}' => '.',
        _ => return None,
    })
}

/// `s` with hidden characters removed and confusables mapped to ASCII, and for every byte
/// of the result the byte offset in `s` it came from. `None` when `s` has neither (the common
/// case: no copy).
pub(crate) fn normalize(s: &str) -> Option<(String, Vec<usize>)> {
    if !non_ascii(s).any(|(_, c)| is_hidden(c) || confusable(c).is_some()) {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut map = Vec::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        if is_hidden(c) {
            continue;
        }
        let c = confusable(c).unwrap_or(c);
        let before = out.len();
        out.push(c);
        for _ in before..out.len() {
            map.push(i);
        }
    }
    Some((out, map))
}

/// How many hidden characters `s` holds.
pub(crate) fn count_hidden(s: &str) -> usize {
    non_ascii(s).filter(|&(_, c)| is_hidden(c)).count()
}

/// The non-ASCII characters of `s` with their byte offsets, ASCII runs skipped a byte at a
/// time without decoding (no ASCII character is hidden or confusable).
fn non_ascii(s: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let b = s.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        i += b[i.min(b.len())..].iter().position(|&x| x >= 0x80)?;
        let c = s[i..].chars().next()?;
        let at = i;
        i += c.len_utf8();
        Some((at, c))
    })
}

/// `s` without its hidden characters.
pub(crate) fn strip_hidden(s: &str) -> String {
    s.chars().filter(|&c| !is_hidden(c)).collect()
}

/// Markers of text that addresses the model rather than the user: instructions to ignore
/// earlier instructions, fake role or system delimiters, orders to hide things from the user.
/// Lower-case ASCII; matched case-insensitively on whitespace-collapsed text.
pub(crate) const INJECTION_MARKERS: &[&str] = &[
    "ignore previous instructions",
    "ignore all previous instructions",
    "ignore all prior instructions",
    "ignore the previous instructions",
    "ignore your previous instructions",
    "ignore the above instructions",
    "disregard previous instructions",
    "disregard all previous instructions",
    "disregard your instructions",
    "disregard the above",
    "forget your previous instructions",
    "forget all previous instructions",
    "new instructions for the assistant",
    "instructions for the ai assistant",
    "note to the ai assistant",
    "attention ai assistant",
    "do not tell the user",
    "don't tell the user",
    "do not mention this to the user",
    "without telling the user",
    "without informing the user",
    "you must now call",
    "<|im_start|>",
    "<|im_end|>",
    "<|system|>",
    "<|endoftext|>",
    "[inst]",
    "<<sys>>",
    "</system>",
    "<system>",
    "<important>",
    "</tool_result>",
    "<function_calls>",
    "\n\nhuman:",
    "\n\nassistant:",
];

/// The first injection marker in `s`, if any (case-insensitive, hidden characters and runs
/// of spaces ignored).
pub(crate) fn injection_marker(s: &str) -> Option<&'static str> {
    // Collapse: lower-case, hidden characters dropped, runs of spaces/tabs to one space.
    if s.is_ascii() {
        let b = s.as_bytes();
        if memchr::memchr(b'\t', b).is_none() && memchr::memmem::find(b, b"  ").is_none() {
            // Nothing to collapse: search the text itself, case-insensitively (no copy).
            return markers_ascii_ci()
                .find(b)
                .map(|m| INJECTION_MARKERS[m.pattern().as_usize()]);
        }
        // The common case, a byte at a time: ASCII has no hidden or confusable characters, and
        // its lower case is `to_ascii_lowercase` (the same text as the loop below builds).
        let mut t = Vec::with_capacity(s.len());
        let mut space = false;
        for &b in s.as_bytes() {
            if b == b' ' || b == b'\t' {
                if !space {
                    t.push(b' ');
                }
                space = true;
                continue;
            }
            space = false;
            t.push(b.to_ascii_lowercase());
        }
        return markers()
            .find(&t)
            .map(|m| INJECTION_MARKERS[m.pattern().as_usize()]);
    }
    let mut t = String::with_capacity(s.len().min(1 << 20));
    let mut space = false;
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // ASCII runs a byte at a time (the same text as the character loop below builds).
        let x = b[i];
        if x < 0x80 {
            if x == b' ' || x == b'\t' {
                if !space {
                    t.push(' ');
                }
                space = true;
            } else {
                space = false;
                t.push(x.to_ascii_lowercase() as char);
            }
            i += 1;
            continue;
        }
        let Some(c) = s[i..].chars().next() else {
            break;
        };
        i += c.len_utf8();
        if is_hidden(c) {
            continue;
        }
        let c = confusable(c).unwrap_or(c);
        if c == ' ' || c == '\t' {
            if !space {
                t.push(' ');
            }
            space = true;
            continue;
        }
        space = false;
        t.extend(c.to_lowercase());
    }
    markers()
        .find(&t)
        .map(|m| INJECTION_MARKERS[m.pattern().as_usize()])
}

/// The markers, matched ASCII-case-insensitively (they are lower-case ASCII). A DFA (a few
/// hundred KiB for these patterns): the default NFA ran at about 60 MB/s on large results.
fn markers_ascii_ci() -> &'static aho_corasick::AhoCorasick {
    static M: std::sync::OnceLock<aho_corasick::AhoCorasick> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(INJECTION_MARKERS)
            .expect("static patterns")
    })
}

fn markers() -> &'static aho_corasick::AhoCorasick {
    static M: std::sync::OnceLock<aho_corasick::AhoCorasick> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        aho_corasick::AhoCorasick::builder()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(INJECTION_MARKERS)
            .expect("static patterns")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_and_confusables() {
        assert_eq!(count_hidden("a\u{200b}b\u{E0041}"), 2);
        assert_eq!(strip_hidden("a\u{200b}b"), "ab");
        let (n, map) = normalize("AK\u{200b}IА").unwrap();
        assert_eq!(n, "AKIA");
        assert_eq!(map, vec![0, 1, 5, 6]);
        assert!(normalize("plain ascii").is_none());
        assert!(normalize("café").is_none());
        assert_eq!(normalize("ｇｈｐ").unwrap().0, "ghp");
    }

    #[test]
    fn markers_found_case_and_space_insensitive() {
        assert_eq!(
            injection_marker("Weather: sunny. IGNORE   previous\u{200b} instructions and ..."),
            Some("ignore previous instructions")
        );
        assert_eq!(injection_marker("<|im_start|>system"), Some("<|im_start|>"));
        // The ASCII path and the general one agree.
        for s in [
            "IGNORE \t previous  instructions",
            "x\n\nHuman: y",
            "Do Not Tell The User",
            "a <|IM_START|> b",
            "nothing to see here",
        ] {
            let general = format!("{s}\u{e9}");
            assert_eq!(
                injection_marker(s).is_some(),
                !s.starts_with("nothing"),
                "{s}"
            );
            assert_eq!(injection_marker(s), injection_marker(&general), "{s}");
        }
        assert_eq!(
            injection_marker("The system prompt is documented in the guide."),
            None
        );
    }
}
