//! Whether this CPU may take capjail's vector paths (detected at run time, x86_64 only).
//!
//! The paths are compiled for AVX2 and for the bit instructions every AVX2 CPU also has:
//! POPCNT (a mask's set bits: words, runs), BMI1 (`tzcnt`) and LZCNT. Without them a
//! `count_ones` is a dozen shifts and multiplies: a fifth of the shape pass's time on a
//! source file's text (issue 19). The features are enabled together
//! ([`FEATURES`] at each `#[target_feature]`) and checked together here.

/// What the vector paths' `#[target_feature(enable = ...)]` lists (kept in step with
/// `detect`; a test checks it).
#[cfg(test)]
pub(crate) const FEATURES: &str = "avx2,popcnt,bmi1,lzcnt";

/// May the vector paths run? One relaxed load once known: the string scan asks for every
/// string of every message (four of std's checks in a row cost a small call 250
/// instructions, issue 19).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn fast() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    /// 0: not yet detected; 1: no; 2: yes.
    static FAST: AtomicU8 = AtomicU8::new(0);
    match FAST.load(Ordering::Relaxed) {
        0 => {
            let yes = detect();
            FAST.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
            yes
        }
        known => known == 2,
    }
}

#[cfg(target_arch = "x86_64")]
#[cold]
fn detect() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("popcnt")
        && std::arch::is_x86_feature_detected!("bmi1")
        && std::arch::is_x86_feature_detected!("lzcnt")
}

#[cfg(test)]
mod tests {
    /// Every vector path enables exactly [`super::FEATURES`] (so `fast` checks what they
    /// use).
    #[test]
    fn every_vector_path_enables_the_checked_features() {
        let src = concat!(
            include_str!("jsonrpc/strict.rs"),
            include_str!("jsonrpc/stops.rs"),
            include_str!("content/borrowed.rs"),
            include_str!("content/shape.rs"),
            include_str!("content/text.rs"),
            include_str!("proxy/refusals.rs"),
        );
        let mut n = 0;
        for line in src.lines().filter(|l| l.contains("#[target_feature(")) {
            assert!(
                line.contains(&format!("enable = \"{}\"", super::FEATURES)),
                "{line}"
            );
            n += 1;
        }
        assert!(n >= 10, "{n}");
        assert!(!src.contains(concat!("is_x86_feature_", "detected!(\"avx2\")")));
    }
}
