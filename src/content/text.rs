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
    if s.is_ascii() || !non_ascii(s).any(|(_, c)| is_hidden(c) || confusable(c).is_some()) {
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
    if s.is_ascii() {
        return 0;
    }
    non_ascii(s).filter(|&(_, c)| is_hidden(c)).count()
}

/// The non-ASCII characters of `s` with their byte offsets, ASCII runs skipped a byte at a
/// time without decoding (no ASCII character is hidden or confusable).
fn non_ascii(s: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let b = s.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        i = super::bytes::next_non_ascii(b, i)?;
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
/// of blanks ([`blank`]) ignored).
pub(crate) fn injection_marker(s: &str) -> Option<&'static str> {
    // Collapse: lower-case, hidden characters dropped, runs of blanks to one space.
    let b = s.as_bytes();
    if s.is_ascii() || non_ascii(s).all(|(_, c)| inert(c)) {
        // Every marker lies in an ASCII stretch of the text: its key, searched in the text
        // itself (no copy), then the stretch around each hit collapsed and searched.
        return keyed_marker(b);
    }
    let mut t = String::with_capacity(s.len().min(1 << 20));
    let mut space = false;
    let mut i = 0;
    while i < b.len() {
        // ASCII runs a byte at a time (the same text as the character loop below builds).
        let x = b[i];
        if x < 0x80 {
            if blank_byte(x) {
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
        if blank(c) {
            if !space {
                t.push(' ');
            }
            space = true;
            continue;
        }
        space = false;
        t.extend(c.to_lowercase());
    }
    find_marker(markers(), t.as_bytes())
}

/// The space-free piece of a marker the keyed search looks for: its longest (ties: the first),
/// or a shorter key it holds (`\n\nassistant:` holds `assistant`). A marker in the collapsed
/// text holds its key as it is in the text, in any case: the collapse changes only blanks
/// (none in a key) and case, and keeps the text's non-ASCII characters (the keyed search
/// runs only on texts whose non-ASCII characters are [`inert`]) as non-ASCII, so a marker's
/// ASCII characters are the text's, contiguous apart from runs of blanks.
#[cfg(test)]
fn marker_key(marker: &str) -> &'static str {
    let keys = &marker_keys().1;
    keys.iter()
        .copied()
        .filter(|k| marker.contains(*k))
        .min_by_key(|k| k.len())
        .expect("every marker holds a key")
}

/// The keys, one per marker, none holding another (so at most one starts at any place), and
/// a searcher for them in lower-case text.
fn marker_keys() -> &'static (KeyFinder, Vec<&'static str>) {
    static K: std::sync::OnceLock<(KeyFinder, Vec<&'static str>)> = std::sync::OnceLock::new();
    K.get_or_init(|| {
        let longest = |m: &'static str| {
            m.split(' ')
                .fold("", |best, p| if p.len() > best.len() { p } else { best })
        };
        let mut keys: Vec<&'static str> = INJECTION_MARKERS.iter().map(|m| longest(m)).collect();
        // A key that holds another key: the shorter one serves.
        let all = keys.clone();
        for k in &mut keys {
            if let Some(inner) = all.iter().find(|o| o.len() < k.len() && k.contains(**o)) {
                *k = inner;
            }
        }
        keys.sort_unstable();
        keys.dedup();
        (KeyFinder::new(&keys), keys)
    })
}

/// Finds the keys in lower-case text: the packed (SIMD) searcher where the CPU has one, an
/// automaton elsewhere (several times slower on large texts).
enum KeyFinder {
    Packed(aho_corasick::packed::Searcher),
    Automaton(aho_corasick::AhoCorasick),
}

impl KeyFinder {
    fn new(keys: &[&str]) -> KeyFinder {
        match aho_corasick::packed::Config::new()
            .builder()
            .extend(keys)
            .build()
        {
            Some(p) => KeyFinder::Packed(p),
            None => KeyFinder::automaton(keys),
        }
    }

    /// The automaton finder (what CPUs without a packed searcher get).
    fn automaton(keys: &[&str]) -> KeyFinder {
        KeyFinder::Automaton(
            aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                .build(keys)
                .expect("static patterns"),
        )
    }

    /// The leftmost hit in `t[from..]`: where it starts and ends.
    fn find(&self, t: &[u8], from: usize) -> Option<(usize, usize)> {
        let span = aho_corasick::Span::from(from..t.len());
        let m = match self {
            KeyFinder::Packed(p) => p.find_in(t, span),
            KeyFinder::Automaton(a) => a.find(aho_corasick::Input::new(t).span(span)),
        }?;
        Some((m.start(), m.end()))
    }
}

/// Bytes of text lower-cased at a time for the key search (one buffer, reused).
const KEY_CHUNK: usize = 64 << 10;

/// Calls `f` with every hit of a key in `b` (ASCII case ignored), in the order of their
/// starts, until it returns `true`. The text is lower-cased [`KEY_CHUNK`] bytes at a time,
/// each chunk starting the longest key's length before the last one's end (a hit across the
/// edge is whole in the next chunk; one whole in both is reported once).
fn key_hits(b: &[u8], chunk: usize, mut f: impl FnMut(usize, usize) -> bool) {
    let (finder, keys) = marker_keys();
    let overlap = keys.iter().map(|k| k.len()).max().unwrap_or(1) - 1;
    let chunk = chunk.max(overlap + 1);
    let mut lower = Vec::with_capacity(b.len().min(chunk));
    // The start of the last hit reported (none: before the text).
    let mut last: Option<usize> = None;
    let mut at = 0;
    loop {
        let end = b.len().min(at + chunk);
        lower.clear();
        lower.extend(
            b[at..end]
                .iter()
                .map(|&c| c | (u8::from(c.wrapping_sub(b'A') < 26) << 5)),
        );
        let mut from = 0;
        while let Some((s, e)) = finder.find(&lower, from) {
            from = s + 1;
            if last.is_some_and(|l| at + s <= l) {
                continue;
            }
            last = Some(at + s);
            if f(at + s, at + e) {
                return;
            }
        }
        if end == b.len() {
            return;
        }
        at = end - overlap;
    }
}

/// Collapsed bytes gathered on each side of a key hit: every marker holding the key lies
/// within them, and so does every marker that holds a later hit and ends before the end of
/// the window (see [`keyed_marker`]; checked, the first by a test).
const KEY_REACH: usize = MAX_MARKER;
// The first region holding a marker holds every marker ending before it.
const _: () = assert!(KEY_REACH >= MAX_MARKER);

/// Most bytes of text searched as one region by [`keyed_marker`] (windows keep joining a
/// region until it is this long; a window can be longer, with long runs of blanks).
const REGION: usize = 16 << 10;

/// [`injection_marker`] of a text whose non-ASCII characters, if any, are [`inert`]: the
/// first marker (the one ending first, as the automaton reports it in the collapsed text)
/// without collapsing the whole text. Each hit of a key (in the text itself, in any case, in
/// the order of their starts) has a window of the text reaching [`KEY_REACH`] collapsed bytes
/// to either side of it, or to a non-ASCII character (it breaks every marker) or the text's
/// end. A hit starting within [`KEY_REACH`] bytes of the furthest end of the hits before it
/// joins their region (up to [`REGION`] long): a region runs from its first hit's window
/// start to its furthest hit's window end. Each region is collapsed and searched, in order;
/// a hit costs no more than a look at its place (texts dense in keys cost about what
/// collapsing them whole did).
/// - A region's collapse is a piece of the whole text's (a blank run cut by its edge still
///   collapses to one space; a non-ASCII byte in it, kept as it is, breaks every marker as
///   the character's lower case does): every marker found is in the whole collapsed text.
/// - Every marker holds a hit of one of its keys whose window holds all of it, and a
///   region holds its hits' windows (`reach` is monotone in where it starts).
/// - The first region holding a marker holds the first marker: a marker ending earlier holds
///   a hit whose window holds it; that hit is in this region, or later (an earlier region
///   would have held the marker), so it starts after this region's last hit, and the marker,
///   at most [`MAX_MARKER`] long, starts after that hit's window does.
fn keyed_marker(b: &[u8]) -> Option<&'static str> {
    keyed_marker_in(b, KEY_CHUNK, REGION, SHORT_TEXT)
}

/// Texts this short are collapsed and searched whole, on the stack: no key search to set up.
/// (Their non-ASCII bytes, kept as they are, break every marker as the characters'
/// lower case, kept by the collapse, does.)
const SHORT_TEXT: usize = 256;

/// [`keyed_marker`] with its sizes given (the tests make them small).
fn keyed_marker_in(
    b: &[u8],
    chunk: usize,
    region_max: usize,
    short: usize,
) -> Option<&'static str> {
    let mut window = smallvec::SmallVec::<[u8; SHORT_TEXT]>::new();
    let mut search = |(from, to): (usize, usize)| {
        collapse_ascii(&b[from..to], &mut window);
        markers()
            .find(&window)
            .map(|m| INJECTION_MARKERS[m.pattern().as_usize()])
    };
    if b.len() <= short {
        if !may_hold_key(b) {
            return None; // no key, no marker (the common small text)
        }
        return search((0, b.len()));
    }
    // The open region: where its first hit's window starts, and the furthest end of its hits
    // (its own end is that end's window's: `reach` is monotone, so the furthest).
    let mut region: Option<(usize, usize)> = None;
    let mut found = None;
    let end_of = |furthest: usize| reach(b, furthest, Side::After);
    key_hits(b, chunk, |s, e| {
        region = match region {
            Some((a, furthest)) if s <= furthest + KEY_REACH && s - a < region_max => {
                Some((a, furthest.max(e)))
            }
            Some((a, furthest)) => {
                found = search((a, end_of(furthest)));
                Some((reach(b, s, Side::Before), e))
            }
            None => Some((reach(b, s, Side::Before), e)),
        };
        found.is_some()
    });
    found.or_else(|| region.and_then(|(a, furthest)| search((a, end_of(furthest)))))
}

#[derive(Clone, Copy)]
enum Side {
    Before,
    After,
}

/// Where a window reaching [`KEY_REACH`] collapsed bytes from `at` to one side ends: the
/// start (`Before`) or end (`After`) of the text, a non-ASCII byte, or the byte that makes
/// the count (a run of blanks counts once, as it collapses).
fn reach(b: &[u8], at: usize, side: Side) -> usize {
    let mut i = at;
    let (mut n, mut blank) = (0usize, false);
    while n < KEY_REACH {
        let x = match side {
            Side::Before if i > 0 => b[i - 1],
            Side::After if i < b.len() => b[i],
            _ => break,
        };
        if x >= 0x80 {
            break;
        }
        let is_blank = blank_byte(x);
        if !(is_blank && blank) {
            n += 1;
        }
        blank = is_blank;
        match side {
            Side::Before => i -= 1,
            Side::After => i += 1,
        }
    }
    i
}

/// The collapse of `b` into `out`: ASCII lower case, a run of blanks one space, other bytes
/// as they are.
///
/// Without a branch per byte: each byte's collapse is written at the output's end, which moves
/// on unless it is a blank after a blank (the output is never longer than `b`, so it is sized
/// once; a per-byte `push` was most of a small answer's marker search, issue 19).
fn collapse_ascii(b: &[u8], out: &mut smallvec::SmallVec<[u8; SHORT_TEXT]>) {
    out.clear();
    out.extend_from_slice(b);
    let dst = &mut out[..];
    let (mut n, mut space) = (0, false);
    for &x in b {
        let blank = blank_byte(x);
        dst[n] = if blank { b' ' } else { x.to_ascii_lowercase() };
        n += usize::from(!(blank && space));
        space = blank;
    }
    out.truncate(n);
}

/// A blank the collapse makes one space of (with the blanks next to it): any white space but
/// the newline (it is part of the `\n\nhuman:` markers) — a no-break or ideographic space, a
/// form feed between two words of a marker hides it from a search for spaces only.
pub(crate) fn blank(c: char) -> bool {
    c != '\n' && c.is_whitespace()
}

/// [`blank`] of an ASCII byte: space, tab, carriage return, vertical tab, form feed.
pub(crate) fn blank_byte(x: u8) -> bool {
    matches!(x, b' ' | b'\t' | b'\r' | 0x0b | 0x0c)
}

/// A non-ASCII character the collapse keeps as a non-ASCII character: not blank, not hidden, not a
/// confusable, and its lower case has no ASCII character (the Kelvin sign's is `k`).
fn inert(c: char) -> bool {
    !blank(c) && !is_hidden(c) && confusable(c).is_none() && c.to_lowercase().all(|l| !l.is_ascii())
}

/// Longest marker, in bytes (a test checks it).
const MAX_MARKER: usize = 40;
/// Every marker holds one of these bytes (a test checks it): a block of text without any of
/// them cannot hold a marker's middle.
const MARKER_BYTES: [u8; 4] = [b' ', b'<', b'[', b'\n'];
/// Blocks of text looked at for marker bytes.
const BLOCK: usize = 4096;

/// The first marker `ac` finds in `t`, searched only where a marker can be: the blocks that
/// hold a marker byte, widened by the longest marker on both sides (so every occurrence lies
/// wholly inside one region, and so does the automaton's state where it ends: the same
/// first match as a search of the whole text). Prose is one region: the whole text.
fn find_marker(ac: &aho_corasick::AhoCorasick, t: &[u8]) -> Option<&'static str> {
    let hot = |blk: &[u8]| {
        memchr::memchr3(MARKER_BYTES[0], MARKER_BYTES[1], MARKER_BYTES[2], blk).is_some()
            || memchr::memchr(MARKER_BYTES[3], blk).is_some()
    };
    let mut region: Option<(usize, usize)> = None;
    let search = |(a, e): (usize, usize)| {
        ac.find(&t[a..e])
            .map(|m| INJECTION_MARKERS[m.pattern().as_usize()])
    };
    let mut at = 0;
    while at < t.len() {
        let end = (at + BLOCK).min(t.len());
        if hot(&t[at..end]) {
            let (a, e) = (
                at.saturating_sub(MAX_MARKER),
                (end + MAX_MARKER).min(t.len()),
            );
            region = match region {
                Some((ra, re)) if a <= re => Some((ra, e)),
                Some(r) => {
                    if let Some(m) = search(r) {
                        return Some(m);
                    }
                    Some((a, e))
                }
                None => Some((a, e)),
            };
        }
        at = end;
    }
    region.and_then(search)
}

/// Could `b` hold a hit of a marker's key (ASCII case ignored)? Every marker the collapsed
/// text holds has its key, as it is, in the text (see [`keyed_marker`]): a text none of whose
/// four-byte windows starts a key holds no marker. The windows are folded with `| 0x20`
/// (the same for both cases of a letter, so a hit in any case passes; other bytes may
/// collide, which only lets a text through to the search) and looked up in a 4096-bit set of
/// the keys' first four bytes: about eight instructions a byte, where collapsing a small
/// text and running the marker automaton over it cost about forty (issue 19).
fn may_hold_key(b: &[u8]) -> bool {
    let Some(starts) = key_starts() else {
        return true; // (a key shorter than four bytes: no filter)
    };
    #[cfg(target_arch = "x86_64")]
    if b.len() >= 11 && crate::simd::fast() {
        // SAFETY: the CPU has the vector paths' features (`simd::fast`, just above).
        return unsafe { may_hold_key_avx2(b, starts) };
    }
    may_hold_key_words(b, starts)
}

/// [`may_hold_key`] a window at a time.
fn may_hold_key_words(b: &[u8], starts: &[u64; 64]) -> bool {
    b.windows(4).any(|w| {
        let h = key_start_slot(u32::from_le_bytes(w.try_into().expect("four bytes")));
        starts[h >> 6] >> (h & 63) & 1 != 0
    })
}

/// [`may_hold_key`] eight windows at a time (`b` holds at least 11 bytes): the windows
/// shuffled out of two 8-byte loads, folded and hashed as [`key_start_slot`] does, their bits
/// gathered from the set (about a fifth of the word loop's instructions on a small answer's
/// text, issue 19). The last eight windows overlap the ones before them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt,bmi1,lzcnt")]
fn may_hold_key_avx2(b: &[u8], starts: &[u64; 64]) -> bool {
    use std::arch::x86_64::*;
    let windows = b.len() - 3;
    // Lane 0: windows 0-3 from the bytes at `at`; lane 1: windows 4-7 from the bytes at `at + 3`.
    let shuffle = _mm256_setr_epi8(
        0, 1, 2, 3, 1, 2, 3, 4, 2, 3, 4, 5, 3, 4, 5, 6, 1, 2, 3, 4, 2, 3, 4, 5, 3, 4, 5, 6, 4, 5,
        6, 7,
    );
    let fold = _mm256_set1_epi32(0x2020_2020);
    let mul = _mm256_set1_epi32(0x9E37_79B1_u32 as i32);
    let low5 = _mm256_set1_epi32(31);
    let one = _mm256_set1_epi32(1);
    let set = starts.as_ptr().cast::<i32>();
    let mut i = 0;
    while i < windows {
        let at = i.min(windows - 8);
        // SAFETY: `at + 3 + 8 <= b.len()` (`at <= b.len() - 11`): both 8-byte loads lie inside
        // `b`; the gather's indices are below 128 (a 12-bit slot over 32), inside the set's
        // 64 words of 8 bytes.
        let hit = unsafe {
            let lo = _mm_loadl_epi64(b.as_ptr().add(at).cast::<__m128i>());
            let hi = _mm_loadl_epi64(b.as_ptr().add(at + 3).cast::<__m128i>());
            let w = _mm256_shuffle_epi8(_mm256_set_m128i(hi, lo), shuffle);
            let h = _mm256_srli_epi32::<20>(_mm256_mullo_epi32(_mm256_or_si256(w, fold), mul));
            let words = _mm256_i32gather_epi32::<4>(set, _mm256_srli_epi32::<5>(h));
            let bits = _mm256_and_si256(_mm256_srlv_epi32(words, _mm256_and_si256(h, low5)), one);
            _mm256_testz_si256(bits, bits) == 0
        };
        if hit {
            return true;
        }
        i += 8;
    }
    false
}

/// The slot of a four-byte window in the set of [`may_hold_key`], folded.
#[inline(always)]
fn key_start_slot(w: u32) -> usize {
    ((w | 0x2020_2020).wrapping_mul(0x9E37_79B1) >> 20) as usize
}

/// The set of the keys' first four bytes (`None` if a key is shorter).
fn key_starts() -> Option<&'static [u64; 64]> {
    static S: std::sync::OnceLock<Option<[u64; 64]>> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let mut set = [0u64; 64];
        for k in &marker_keys().1 {
            let h = key_start_slot(u32::from_le_bytes(k.as_bytes().get(..4)?.try_into().ok()?));
            set[h >> 6] |= 1 << (h & 63);
        }
        Some(set)
    })
    .as_ref()
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

    /// The marker search as it was: the whole collapsed text through the automaton.
    /// The collapse byte by byte, as it was first written.
    fn collapse_reference(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut space = false;
        for &x in b {
            if blank_byte(x) {
                if !space {
                    out.push(b' ');
                }
                space = true;
            } else {
                space = false;
                out.push(x.to_ascii_lowercase());
            }
        }
        out
    }

    #[test]
    fn the_branchless_collapse_is_the_per_byte_one() {
        let mut rng = crate::test_rng::XorShift::new(0x0c0_11a95e);
        let alphabet = b" \t\r\x0b\x0c\nAaZz<[]#~\x80\xc3\xa9";
        let mut out = smallvec::SmallVec::new();
        for case in 0..4000 {
            let len = if case < 40 { case } else { rng.below(600) };
            let b: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            collapse_ascii(&b, &mut out);
            assert_eq!(&out[..], &collapse_reference(&b)[..], "{b:?}");
        }
    }

    fn reference_marker(s: &str) -> Option<&'static str> {
        let mut t = String::new();
        let mut space = false;
        for c in s.chars() {
            if is_hidden(c) {
                continue;
            }
            let c = confusable(c).unwrap_or(c);
            if blank(c) {
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

    #[test]
    fn every_marker_holds_a_marker_byte_and_fits() {
        for m in INJECTION_MARKERS {
            assert!(m.len() <= MAX_MARKER, "{m}");
            assert!(m.bytes().any(|b| MARKER_BYTES.contains(&b)), "{m}");
            assert!(m.is_ascii() && m.to_ascii_lowercase() == *m, "{m}");
        }
    }

    /// Markers straddling the blocks, at the very start and end, after non-ASCII characters
    /// (kept, or changed by the collapse), in long texts with no marker byte elsewhere.
    #[test]
    fn windowed_search_finds_the_same_first_marker() {
        let fillers = ["x", "\u{e9}", "x\u{200b}", "\u{212a}", "xy\t"];
        let markers = [
            "IGNORE   previous instructions",
            "<|im_start|>",
            "\n\nHuman:",
            "[INST]",
            "disregard the above",
            "do not tell the user",
            "ignore previous\u{200b} instructions",
            "\u{212a}",
        ];
        let mut n = 0;
        for f in fillers {
            for m in markers {
                for before in [0usize, 1, 4055, 4056, 4095, 4097, 8191] {
                    for after in [0usize, 1, 40, 41] {
                        let fl = |k: usize| f.repeat(k / f.len());
                        let s = format!("{}{m}{}", fl(before), fl(after));
                        assert_eq!(
                            injection_marker(&s),
                            reference_marker(&s),
                            "{f:?} {m:?} {before} {after}"
                        );
                        n += 1;
                    }
                }
                // Two markers, the second one in a later block: the first one wins.
                let s = format!(
                    "{}{m}{}do not tell the user",
                    f.repeat(5000 / f.len()),
                    f.repeat(9000 / f.len())
                );
                assert_eq!(
                    injection_marker(&s),
                    reference_marker(&s),
                    "{f:?} {m:?} two"
                );
            }
        }
        assert!(n > 1000, "{n}");
        for t in crate::content::secrets::tests::mixed_texts(1000) {
            assert_eq!(injection_marker(&t), reference_marker(&t), "{t:?}");
        }
        // The Kelvin sign lower-cases to `k`: a text with it takes the collapse.
        assert!(!inert('\u{212a}') && !inert('\u{200b}') && !inert('а') && inert('\u{e9}'));
        assert_eq!(
            injection_marker("do not tell the user \u{e9}"),
            Some("do not tell the user")
        );
        assert_eq!(
            injection_marker("IGNORE previous instructions"),
            reference_marker("IGNORE previous instructions")
        );
    }

    /// Every marker holds its key, no key a blank, and no marker is a suffix of another
    /// (so at most one marker ends at any place: "the first" is one marker).
    #[test]
    fn every_marker_holds_its_key() {
        for m in INJECTION_MARKERS {
            let k = marker_key(m);
            assert!(!k.is_empty() && !k.contains(blank), "{m:?} {k:?}");
            for o in INJECTION_MARKERS {
                assert!(o == m || !o.ends_with(m), "{o:?} ends with {m:?}");
            }
        }
        // Every marker lies within KEY_REACH of one of its keys' hits.
        let reach_needed = |m: &str| {
            let keys = marker_keys().1.iter().filter(|k| m.contains(**k));
            keys.map(|k| {
                let at = m.find(k).unwrap();
                at.max(m.len() - at - k.len())
            })
            .min()
            .expect("a key")
        };
        let need = INJECTION_MARKERS.iter().map(|m| reach_needed(m)).max();
        assert_eq!(need, Some(23));
        assert!(need.unwrap() <= KEY_REACH);
        assert!(marker_keys().1.len() < INJECTION_MARKERS.len());
        assert_eq!(marker_key("\n\nassistant:"), "assistant");
        // No key holds another: at most one starts at any place (the key search reports
        // one hit per place).
        for k in &marker_keys().1 {
            for o in &marker_keys().1 {
                assert!(k == o || !k.contains(o), "{k:?} holds {o:?}");
            }
        }
    }

    /// The small texts' filter is on (every key is four bytes or more), lets through every
    /// key in any case at any place, and stops a small text without one.
    #[test]
    fn the_key_filter_passes_every_key_and_stops_plain_text() {
        assert!(key_starts().is_some(), "a key shorter than four bytes");
        for k in &marker_keys().1 {
            for t in [
                k.to_string(),
                k.to_ascii_uppercase(),
                format!("ab {} cd", k.to_ascii_uppercase()),
                format!("x{k}"),
            ] {
                assert!(may_hold_key(t.as_bytes()), "{t:?}");
            }
        }
        assert!(!may_hold_key(
            b"echo: the quick brown fox jumps over the lazy dog"
        ));
        assert!(!may_hold_key(b"All 12 tests passed in 0.42s."));
        assert!(!may_hold_key(b"abc"));
    }

    /// The vector filter answers as the word loop does, on texts of every length with keys (in
    /// any case) at every place, near misses, and plain text.
    #[test]
    fn the_vector_key_filter_is_the_word_loop() {
        let Some(starts) = key_starts() else {
            panic!("a key shorter than four bytes")
        };
        let mut r = crate::test_rng::XorShift::new(0x6d61_795f_686f_6c64);
        let keys = &marker_keys().1;
        let (mut passed, mut stopped) = (0, 0);
        for _ in 0..20_000 {
            let len = r.below(120);
            let mut t: Vec<u8> = (0..len)
                .map(|_| b"abcdefghijklmnopqrstuvwxyz      .,:<[\n"[r.below(38)])
                .collect();
            if r.below(3) == 0 {
                let k = keys[r.below(keys.len())].as_bytes();
                let k: Vec<u8> = if r.below(2) == 0 {
                    k.to_ascii_uppercase()
                } else {
                    k.to_vec()
                };
                let at = r.below(t.len() + 1);
                t.splice(at..at, k);
            }
            let want = may_hold_key_words(&t, starts);
            assert_eq!(may_hold_key(&t), want, "{:?}", String::from_utf8_lossy(&t));
            if want {
                passed += 1;
            } else {
                stopped += 1;
            }
        }
        assert!(
            passed > 3000 && stopped > 3000,
            "{passed} passed, {stopped} stopped"
        );
    }

    /// The keyed search finds the first marker the whole collapsed text holds: markers in any
    /// case, with runs of blanks (long ones too) inside and around them, next to non-ASCII
    /// characters that break them, keys without their markers, several markers in a row.
    #[test]
    fn the_keyed_search_finds_the_same_first_marker() {
        let markers = [
            "IGNORE \t  previous\t\tinstructions",
            "<|im_start|>",
            "\n\nHuman:",
            "\n\n Human:",
            "[INST]",
            "Do  Not tell the\tuser",
            "disregard all previous instructions",
            "Disregard   all previous    INSTRUCTIONS",
            "ignore all previous instructions",
            "do not mention this to the user",
            "new instructions for the assistant",
            "without informing the user",
            "you must now call",
            "\n\nAssistant:",
        ];
        let fillers = [
            "x",
            "ab \t",
            "  ",
            "\t",
            "ignore previous ",
            "do not tell ",
            "instructions ",
            "\u{e9}",
            "tell\u{e9} the user",
            "ASSISTANT",
            "\n",
        ];
        let mut rng = crate::test_rng::XorShift::new(0xc011_a95e_0f00_0002u64);
        let (mut n, mut found) = (0, 0);
        for _ in 0..4000 {
            let mut s = String::new();
            for _ in 0..rng.below(7) {
                s.push_str(&fillers[rng.below(fillers.len())].repeat(rng.below(30)));
                if rng.below(3) == 0 {
                    let m = markers[rng.below(markers.len())];
                    // Blanks inside the marker, sometimes a long run.
                    let m = if rng.below(4) == 0 {
                        m.replacen(' ', &" ".repeat(1 + rng.below(200)), 1)
                    } else {
                        m.to_string()
                    };
                    s.push_str(&m);
                }
            }
            let got = injection_marker(&s);
            let want = reference_marker(&s);
            assert_eq!(got, want, "{s:?}");
            // Small chunks (keys across their edges) and small regions.
            if s.chars().all(|c| c.is_ascii() || inert(c)) {
                let chunk = [1usize, 16, 17, 23, 64][rng.below(5)];
                let region = [1usize, 50, 1000][rng.below(3)];
                let small = keyed_marker_in(s.as_bytes(), chunk, region, 0);
                assert_eq!(small, want, "{chunk} {region} {s:?}");
            }
            n += 1;
            found += usize::from(got.is_some());
        }
        assert!(found > 1500 && n - found > 500, "{found} of {n}");
        // Across the real chunk and region sizes: markers at every offset around the edges.
        for m in markers.iter().step_by(3) {
            for before in [
                KEY_CHUNK - 20,
                KEY_CHUNK - 1,
                REGION - 3,
                2 * KEY_CHUNK - 10,
            ] {
                for filler in ["x \t", "tell", "\u{e9}"] {
                    let s = format!(
                        "{}{m}{}",
                        filler.repeat(before / filler.len()),
                        "y".repeat(50)
                    );
                    assert_eq!(injection_marker(&s), reference_marker(&s), "{m:?} {before}");
                    // (`\n\n Human:` is no marker: the collapse keeps newlines.)
                    assert!(injection_marker(&s).is_some() || m.contains("\n "), "{m:?}");
                }
            }
        }
        // Every marker, cut off by a non-ASCII character on either side at every offset, or
        // pushed off the window by blanks: the same answer as the reference.
        for m in INJECTION_MARKERS {
            for cut in 0..=m.len() {
                if !m.is_char_boundary(cut) {
                    continue;
                }
                for sep in ["\u{e9}", " ", "\t\t", "x"] {
                    let s = format!("ab {}{sep}{} cd", &m[..cut], &m[cut..]);
                    assert_eq!(injection_marker(&s), reference_marker(&s), "{s:?}");
                    let up = s.to_ascii_uppercase();
                    assert_eq!(injection_marker(&up), reference_marker(&up), "{up:?}");
                }
            }
        }
    }

    /// The automaton the key search falls back to (no SIMD) finds what the packed searcher
    /// finds, and every hit of every key is reported once, in order, across chunk edges.
    #[test]
    fn key_finders_agree() {
        let keys = &marker_keys().1;
        let packed = KeyFinder::new(keys);
        let auto = KeyFinder::automaton(keys);
        let mut rng = crate::test_rng::XorShift::new(0x6e79_0000_0000_0003u64);
        for _ in 0..500 {
            let mut t = String::new();
            for _ in 0..rng.below(20) {
                if rng.below(2) == 0 {
                    t.push_str(keys[rng.below(keys.len())]);
                } else {
                    t.push_str(&"ab \n<".repeat(rng.below(5)));
                }
            }
            let t = t.as_bytes();
            let all = |f: &KeyFinder| {
                let (mut v, mut from) = (Vec::new(), 0);
                while let Some((s, e)) = f.find(t, from) {
                    v.push((s, e));
                    from = s + 1;
                }
                v
            };
            let want = all(&auto);
            assert_eq!(all(&packed), want);
            // Every key occurrence, by brute force.
            let mut brute: Vec<(usize, usize)> = (0..t.len())
                .flat_map(|i| {
                    keys.iter()
                        .filter(move |k| t[i..].starts_with(k.as_bytes()))
                        .map(move |k| (i, i + k.len()))
                })
                .collect();
            brute.sort_unstable();
            assert_eq!(want, brute);
            let upper = t.to_ascii_uppercase();
            for chunk in [1usize, 15, 16, 33] {
                let mut got = Vec::new();
                key_hits(&upper, chunk, |s, e| {
                    got.push((s, e));
                    false
                });
                assert_eq!(got, want, "{chunk}");
            }
        }
    }

    #[test]
    fn ascii_shortcuts_agree() {
        for t in crate::content::secrets::tests::mixed_texts(500) {
            let slow_hidden = t.chars().filter(|&c| is_hidden(c)).count();
            assert_eq!(count_hidden(&t), slow_hidden);
            assert_eq!(
                normalize(&t).is_some(),
                t.chars().any(|c| is_hidden(c) || confusable(c).is_some())
            );
        }
    }

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

    /// Any white space but the newline separates a marker's words: a no-break, ideographic or
    /// en space, a form feed, a vertical tab, a carriage return (the shape pass flags them, so
    /// the check is not skipped for an ASCII text without a space).
    #[test]
    fn markers_found_across_every_blank() {
        for sep in [
            "\u{a0}",
            "\u{3000}",
            "\u{2002}",
            "\x0c",
            "\x0b",
            "\r",
            " \u{a0}\t",
        ] {
            let s = format!("IGNORE{sep}previous{sep}instructions");
            assert_eq!(
                injection_marker(&s),
                Some("ignore previous instructions"),
                "{s:?}"
            );
            assert_eq!(injection_marker(&s), reference_marker(&s));
            assert!(!inert(sep.chars().next().unwrap()));
            let sh = crate::content::shape::shape(s.as_bytes());
            assert!(sh.marker_byte || sh.non_ascii, "{s:?}");
        }
        for c in (0u8..0x80).map(char::from) {
            assert_eq!(blank_byte(c as u8), blank(c), "{c:?}");
        }
        // The newline is not a blank: the `\n\nhuman:` markers need it.
        assert_eq!(injection_marker("ignore\nprevious instructions"), None);
        assert_eq!(injection_marker("x\n\nHuman: y"), Some("\n\nhuman:"));
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
