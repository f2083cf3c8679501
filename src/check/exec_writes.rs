//! Writes that execute: files that a program on the other side runs as code, or reads as
//! configuration that runs code. Writing one is execution (`shell.execute`) as well as
//! `filesystem.write`, so it is refused unless the policy allows execution. Pure.
//!
//! Patterns are matched against the resolved absolute path, by whole components: `**` is any
//! number of components, `*` inside a component any characters. The built-in list is in the
//! policy reference (README); a policy adds its own with `filesystem.executes`.

use std::path::{Component, Path};

/// Built-in patterns, with why a write there is execution.
pub(crate) const BUILTIN: &[(&str, &str)] = &[
    // git runs programs named in its configuration (core.fsmonitor, core.sshCommand,
    // core.pager, filters, diff drivers, aliases) and runs hooks.
    (
        "**/.git",
        "a `.git` file can point git at another git directory",
    ),
    (
        "**/.git/config",
        "git runs commands named in its configuration (core.fsmonitor, filters, ...)",
    ),
    ("**/.git/hooks/**", "git runs hooks"),
    (
        "**/.git/info/attributes",
        "git attributes select filter and diff drivers that run commands",
    ),
    (
        "**/.git/modules/**",
        "submodule git directories: configuration and hooks",
    ),
    (
        "**/.gitattributes",
        "git attributes select filter and diff drivers that run commands",
    ),
    ("**/.gitmodules", "submodule URLs and update commands"),
    (
        "**/.gitconfig",
        "git runs commands named in its configuration",
    ),
    (
        "**/.config/git/**",
        "git runs commands named in its configuration",
    ),
    (
        "**/.pre-commit-config.yaml",
        "pre-commit runs the hooks it names",
    ),
    // shells
    ("**/.bashrc", "shell start-up file"),
    ("**/.bash_profile", "shell start-up file"),
    ("**/.bash_login", "shell start-up file"),
    ("**/.bash_logout", "shell start-up file"),
    ("**/.profile", "shell start-up file"),
    ("**/.zshrc", "shell start-up file"),
    ("**/.zshenv", "shell start-up file"),
    ("**/.zprofile", "shell start-up file"),
    ("**/.zlogin", "shell start-up file"),
    ("**/.kshrc", "shell start-up file"),
    ("**/.cshrc", "shell start-up file"),
    ("**/.tcshrc", "shell start-up file"),
    ("**/.config/fish/**", "shell start-up file"),
    ("**/.xinitrc", "X session start-up file"),
    ("**/.xprofile", "X session start-up file"),
    ("**/.envrc", "direnv runs it on entering the directory"),
    ("**/.ssh/rc", "sshd runs it at login"),
    ("**/profile.d/**", "shell start-up files"),
    // package managers and build tools
    (
        "**/package.json",
        "npm runs its scripts (install, test, ...)",
    ),
    (
        "**/.npmrc",
        "npm configuration (script-shell, node-options, ...)",
    ),
    ("**/.yarnrc", "yarn configuration"),
    (
        "**/.yarnrc.yml",
        "yarn configuration (yarnPath runs a file)",
    ),
    ("**/Makefile", "make runs its recipes"),
    ("**/makefile", "make runs its recipes"),
    ("**/GNUmakefile", "make runs its recipes"),
    ("**/setup.py", "pip and setuptools run it"),
    (
        "**/pyproject.toml",
        "build backends and tools named in it run",
    ),
    ("**/conftest.py", "pytest imports it"),
    ("**/sitecustomize.py", "Python imports it at start-up"),
    ("**/usercustomize.py", "Python imports it at start-up"),
    (
        "**/*.pth",
        "Python runs `import` lines of .pth files at start-up",
    ),
    ("**/build.rs", "cargo runs build scripts"),
    ("**/.cargo/config", "cargo configuration (runners, aliases)"),
    (
        "**/.cargo/config.toml",
        "cargo configuration (runners, aliases)",
    ),
    // editors and CI
    ("**/.vscode/tasks.json", "the editor runs its tasks"),
    (
        "**/.vscode/settings.json",
        "editor settings can name programs to run",
    ),
    ("**/.github/workflows/**", "CI workflow"),
    ("**/.gitlab-ci.yml", "CI pipeline"),
    ("**/.circleci/**", "CI pipeline"),
    ("**/.travis.yml", "CI pipeline"),
    ("**/Jenkinsfile", "CI pipeline"),
    ("**/azure-pipelines.yml", "CI pipeline"),
    // schedulers and services
    ("**/cron.d/**", "cron runs its entries"),
    ("**/cron.hourly/**", "cron runs it"),
    ("**/cron.daily/**", "cron runs it"),
    ("**/cron.weekly/**", "cron runs it"),
    ("**/cron.monthly/**", "cron runs it"),
    ("**/crontab", "cron runs its entries"),
    ("**/crontabs/**", "cron runs its entries"),
    ("**/anacrontab", "cron runs its entries"),
    ("**/systemd/**", "systemd units run commands"),
    ("**/.config/autostart/**", "the desktop session starts it"),
];

/// Why writing `path` is execution, if it is: the built-in list, then the policy's own
/// patterns.
pub(crate) fn executes_on_write(path: &Path, extra: &[String]) -> Option<String> {
    let comps: Vec<&str> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    for (pat, why) in BUILTIN {
        if matches(pat, &comps) {
            return Some(format!("{why} (`{pat}`)"));
        }
    }
    extra
        .iter()
        .find(|p| matches(p, &comps))
        .map(|p| format!("the policy's filesystem.executes lists `{p}`"))
}

/// Files of a git directory (a repository's `.git`, a bare repository, a linked worktree's or a
/// submodule's git directory, wherever a `gitdir:` file points) that run code, relative to it.
const IN_GIT_DIR: &[(&str, &str)] = &[
    (
        "config",
        "git runs commands named in its configuration (core.fsmonitor, filters, ...)",
    ),
    (
        "config.worktree",
        "git runs commands named in its configuration",
    ),
    ("hooks/**", "git runs hooks"),
    (
        "info/attributes",
        "git attributes select filter and diff drivers that run commands",
    ),
    (
        "modules/**",
        "submodule git directories: configuration and hooks",
    ),
    (
        "worktrees/**",
        "linked worktrees' git directories: configuration",
    ),
    ("commondir", "points git at another git directory"),
];

/// [`executes_on_write`], and also: a write inside a directory that IS a git directory by its
/// contents (`is_git_dir`: `HEAD` and `objects/` + `refs/`, or `HEAD` + `commondir`) —
/// a bare repository (`repo.git/config`, `repo.git/hooks/*`) is one whatever its name — and a
/// write of a file named `HEAD`, which is what turns a directory into a git directory whose
/// `config` git then obeys.
pub(crate) fn executes_on_write_in(
    path: &Path,
    extra: &[String],
    is_git_dir: &dyn Fn(&Path) -> bool,
) -> Option<String> {
    if let Some(why) = executes_on_write(path, extra) {
        return Some(why);
    }
    if path.file_name().is_some_and(|n| n == "HEAD") {
        return Some(
            "a `HEAD` file makes its directory a git directory, whose configuration runs commands (`**/HEAD`)"
                .into(),
        );
    }
    for dir in path.ancestors().skip(1) {
        if dir.parent().is_none() || !is_git_dir(dir) {
            continue;
        }
        let rel: Vec<&str> = path
            .strip_prefix(dir)
            .ok()?
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect();
        if let Some((pat, why)) = IN_GIT_DIR.iter().find(|(p, _)| matches(p, &rel)) {
            return Some(format!(
                "{why} (`{pat}` of the git directory {})",
                dir.display()
            ));
        }
    }
    None
}

/// Is `dir` a git directory by its contents, as git itself decides (`is_git_directory`):
/// `HEAD`, and `objects/` and `refs/` directories (or a `commondir` file, for a linked
/// worktree's git directory). Symlinks are not followed for the markers' own names.
pub(crate) fn looks_like_git_dir(dir: &Path) -> bool {
    let file = |n: &str| std::fs::symlink_metadata(dir.join(n)).is_ok_and(|m| !m.is_dir());
    let is_dir = |n: &str| std::fs::metadata(dir.join(n)).is_ok_and(|m| m.is_dir());
    file("HEAD") && ((is_dir("objects") && is_dir("refs")) || file("commondir"))
}

fn matches(pattern: &str, comps: &[&str]) -> bool {
    let pat: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    match_from(&pat, comps)
}

fn match_from(pat: &[&str], comps: &[&str]) -> bool {
    match pat.split_first() {
        None => comps.is_empty(),
        Some((&"**", rest)) => (0..=comps.len()).any(|i| match_from(rest, &comps[i..])),
        Some((p, rest)) => match comps.split_first() {
            Some((c, crest)) => glob_component(p, c) && match_from(rest, crest),
            None => false,
        },
    }
}

/// `*` matches any run of characters inside one component.
fn glob_component(p: &str, c: &str) -> bool {
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == c;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !c.starts_with(first)
        || !c[first.len()..].ends_with(last)
        || c.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &c[first.len()..c.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(p: &str) -> bool {
        executes_on_write(Path::new(p), &[]).is_some()
    }

    #[test]
    fn files_that_run() {
        for p in [
            "/w/repo/.git/config",
            "/w/repo/.git/hooks/pre-commit",
            "/w/repo/.git/hooks/fsmonitor-watchman.sample",
            "/w/repo/.git",
            "/w/repo/.gitattributes",
            "/w/repo/.gitmodules",
            "/w/repo/sub/.git/modules/x/config",
            "/home/u/.bashrc",
            "/home/u/.profile",
            "/home/u/.zshrc",
            "/w/app/package.json",
            "/w/app/.npmrc",
            "/w/.github/workflows/ci.yml",
            "/w/.gitlab-ci.yml",
            "/w/Makefile",
            "/w/.envrc",
            "/w/lib/python3.12/site-packages/evil.pth",
            "/etc/cron.d/job",
            "/home/u/.config/systemd/user/x.service",
            "/w/.vscode/tasks.json",
        ] {
            assert!(ex(p), "{p}");
        }
    }

    #[test]
    fn ordinary_files_do_not() {
        for p in [
            "/w/repo/notes.txt",
            "/w/repo/.gitignore",
            "/w/repo/git/config",
            "/w/repo/.git_config",
            "/w/README.md",
            "/w/src/main.rs",
            "/w/pth",
            "/w/.github/README.md",
        ] {
            assert!(!ex(p), "{p}");
        }
    }

    #[test]
    fn bare_repositories_and_git_dirs_by_content() {
        let git_dirs = ["/w/bare.git", "/w/plain", "/w/elsewhere/gitdir"];
        let is = |d: &Path| git_dirs.iter().any(|g| Path::new(g) == d);
        let ex = |p: &str| executes_on_write_in(Path::new(p), &[], &is).is_some();
        for p in [
            "/w/bare.git/config",
            "/w/plain/config",
            "/w/plain/config.worktree",
            "/w/plain/hooks/post-checkout",
            "/w/plain/info/attributes",
            "/w/plain/commondir",
            "/w/plain/worktrees/x/config.worktree",
            "/w/elsewhere/gitdir/hooks/pre-commit",
            // Writing HEAD anywhere makes a git directory.
            "/w/new/HEAD",
            // The fixed list still holds.
            "/w/repo/.git/config",
        ] {
            assert!(ex(p), "{p}");
        }
        for p in [
            "/w/bare.git/objects/ab/cdef",
            "/w/bare.git/description",
            "/w/notgit/config",
            "/w/notgit/hooks/x",
            "/w/plain.txt",
        ] {
            assert!(!ex(p), "{p}");
        }
    }

    #[test]
    fn git_dir_detection_reads_the_markers() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        assert!(!looks_like_git_dir(d));
        std::fs::write(d.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        assert!(!looks_like_git_dir(d));
        std::fs::create_dir(d.join("objects")).unwrap();
        std::fs::create_dir(d.join("refs")).unwrap();
        assert!(looks_like_git_dir(d));
        let w = d.join("wt");
        std::fs::create_dir(&w).unwrap();
        std::fs::write(w.join("HEAD"), "0000\n").unwrap();
        std::fs::write(w.join("commondir"), "..\n").unwrap();
        assert!(looks_like_git_dir(&w));
    }

    #[test]
    fn the_policy_extends_the_list() {
        let extra = vec!["**/deploy/*.sh".to_string()];
        assert!(executes_on_write(Path::new("/w/deploy/run.sh"), &extra).is_some());
        assert!(executes_on_write(Path::new("/w/deploy/run.txt"), &extra).is_none());
        assert!(glob_component("a*b*c", "aXXbYc"));
        assert!(!glob_component("a*b", "ab_"));
        assert!(!glob_component("ab*ba", "aba"));
    }
}
