//! A short owned string kept inline (no allocation up to [`INLINE`] bytes): the id keys and
//! tool names a request leaves in the session's maps (issue 19).
//!
//! The client's thread makes these entries and the server's thread removes them when the
//! answer comes: as `String`s, every call allocated on one thread what the other freed, which
//! keeps glibc's per-thread caches empty on one side and full on the other (each such pair
//! took the allocator's slow path). Ids are mostly a few digits and tool names a few words,
//! so they fit.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use smallvec::SmallVec;

/// Bytes held without an allocation: the text then takes a `String`'s 24 bytes (the inline
/// buffer shares the space of the heap pointer and length). Numeric ids and most tool names
/// (`read_text_file`, `git_status`) fit; 24 took more memory per entry than it saved (issue
/// 19's memory rows: +0.5 MiB with 4,095 requests in flight).
pub(crate) const INLINE: usize = 16;

/// A UTF-8 string, inline when short. Hashes, compares and borrows as the `str` it holds, so a
/// map keyed by it is looked up with a `&str`. (Public as a decision's tool name,
/// `check::decide::ToolName`: read it as a `str`.)
#[derive(Clone, Default)]
pub struct InlineText(SmallVec<[u8; INLINE]>);

impl InlineText {
    pub(crate) fn new(s: &str) -> InlineText {
        InlineText(SmallVec::from_slice(s.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: the bytes are only ever a whole `str`'s (`new`, the one constructor; the
        // field is private and never changed after), so they are UTF-8. (Checking them again
        // on every hash and comparison cost more than the allocation it saves.)
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// Is it held without an allocation?
    #[cfg(test)]
    pub(crate) fn is_inline(&self) -> bool {
        !self.0.spilled()
    }
}

impl Deref for InlineText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for InlineText {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for InlineText {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for InlineText {}

impl Hash for InlineText {
    /// As the `str` hashes (what `Borrow<str>` lookups require).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl From<&str> for InlineText {
    fn from(s: &str) -> Self {
        InlineText::new(s)
    }
}

impl From<String> for InlineText {
    fn from(s: String) -> Self {
        InlineText::new(&s)
    }
}

impl From<&String> for InlineText {
    fn from(s: &String) -> Self {
        InlineText::new(s)
    }
}

impl fmt::Debug for InlineText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for InlineText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for InlineText {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for InlineText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for InlineText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn short_texts_stay_inline_long_ones_spill_and_both_read_back() {
        for (s, inline) in [
            ("", true),
            ("7", true),
            ("\"req-42\"", true),
            ("read_text_file", true),
            ("x".repeat(INLINE).as_str(), true),
            ("x".repeat(INLINE + 1).as_str(), false),
            ("\"ünïcødé id, a long one at that\"", false),
        ] {
            let t = InlineText::new(s);
            assert_eq!(t.as_str(), s);
            assert_eq!(t.is_inline(), inline, "{s}");
            assert_eq!(t.to_string(), s);
            assert_eq!(format!("{t:?}"), format!("{s:?}"));
        }
    }

    #[test]
    fn it_is_the_size_of_a_string() {
        assert_eq!(
            std::mem::size_of::<InlineText>(),
            std::mem::size_of::<String>()
        );
    }

    #[test]
    fn a_map_keyed_by_it_is_looked_up_by_str_in_every_hasher() {
        let keys = [
            "1",
            "\"a\"",
            "-9",
            "\"a key longer than the inline buffer\"",
        ];
        let mut std_map: HashMap<InlineText, usize> = HashMap::new();
        let mut fast: foldhash::HashMap<InlineText, usize> = Default::default();
        for (i, k) in keys.iter().enumerate() {
            std_map.insert(InlineText::new(k), i);
            fast.insert((*k).into(), i);
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(std_map.get(*k), Some(&i));
            assert_eq!(fast.remove(*k), Some(i));
        }
        assert!(!std_map.contains_key("2") && fast.is_empty());
    }
}
