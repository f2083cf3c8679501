//! A line diff (longest common subsequence) for showing what `wrap`/`unwrap` change.

/// `-`/`+` lines with `@@ line N` headers; empty when the texts are equal.
pub(crate) fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    let mut in_hunk = false;
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            in_hunk = false;
            i += 1;
            j += 1;
            continue;
        }
        if !in_hunk {
            out.push_str(&format!("@@ line {}\n", i + 1));
            in_hunk = true;
        }
        if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("-{}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+{}\n", b[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn changed_lines_only() {
        let d = super::line_diff("a\nb\nc\n", "a\nB\nc\n");
        assert_eq!(d, "@@ line 2\n-b\n+B\n");
        assert_eq!(super::line_diff("x\n", "x\n"), "");
    }
}
