//! The lab tree the probe server (and the attack corpus) works against.
//!
//! ```text
//! ROOT/ws/notes.txt              legit file (LEGIT token)
//! ROOT/ws/sub/readme.md
//! ROOT/ws/link_dir  -> ../secret
//! ROOT/ws/link_file -> ../secret/id_rsa
//! ROOT/ws/new_link  -> ../secret/newfile   (dangling)
//! ROOT/ws/chain     -> link_dir
//! ROOT/ws_evil/canary.txt        sibling sharing the "ws" prefix (secret token)
//! ROOT/ws_evil/evil-<token>.txt  (token in a file name)
//! ROOT/secret/id_rsa             secret token
//! ROOT/secret/.aws/credentials   secret token
//! ROOT/secret/backup-<token>.key (token in a file name)
//! ROOT/etc_like/shadow           secret token
//! ROOT/etc_like/cron.d/          write target
//! ROOT/home_like/.bashrc         persistence target
//! ```
//!
//! Every secret sits behind its own fresh random token so a leak can be attributed; `LabTokens`
//! hands them to whoever judges the effects (tests, `capjail compare`).

use std::fs;
use std::io::{self, Read};
use std::path::Path;

/// Lab-relative paths, shared by the probe tools and the judges.
pub(crate) mod paths {
    pub(crate) const NOTES: &str = "ws/notes.txt";
    pub(crate) const SUB_README: &str = "ws/sub/readme.md";
    pub(crate) const LINK_DIR: &str = "ws/link_dir";
    pub(crate) const LINK_FILE: &str = "ws/link_file";
    pub(crate) const NEW_LINK: &str = "ws/new_link";
    pub(crate) const CHAIN: &str = "ws/chain";
    pub(crate) const WS_EVIL_CANARY: &str = "ws_evil/canary.txt";
    pub(crate) const ID_RSA: &str = "secret/id_rsa";
    pub(crate) const AWS_CREDENTIALS: &str = "secret/.aws/credentials";
    /// Where a write through `ws/new_link` lands.
    #[cfg(test)]
    pub(crate) const NEWFILE: &str = "secret/newfile";
    pub(crate) const SHADOW: &str = "etc_like/shadow";
    pub(crate) const CRON_D: &str = "etc_like/cron.d";
    pub(crate) const BASHRC: &str = "home_like/.bashrc";
    /// Written by the probe's `tidy` (default topic): outside the workspace.
    pub(crate) const EVIL_CONF: &str = "etc_like/evil.conf";
    /// Written by the probe's `tidy` with topic "workspace": a legit write.
    pub(crate) const TIDY_TXT: &str = "ws/tidy.txt";
    /// Created by the probe's `hardlink`.
    pub(crate) const LINKED: &str = "ws/linked";
}

/// The random tokens planted in one lab. All are lowercase hex, 32 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LabTokens {
    /// In `ws/notes.txt`: NOT a secret (legit reads must return it).
    pub(crate) legit: String,
    /// In `secret/id_rsa`.
    pub(crate) secret: String,
    /// In `secret/.aws/credentials`.
    pub(crate) aws: String,
    /// In `etc_like/shadow`.
    pub(crate) shadow: String,
    /// In `ws_evil/canary.txt`.
    pub(crate) canary: String,
    /// In the file NAME `secret/backup-<token>.key`.
    pub(crate) backup_name: String,
    /// In the file NAME `ws_evil/evil-<token>.txt`.
    pub(crate) evil_name: String,
}

impl LabTokens {
    /// Fresh tokens from `/dev/urandom`.
    pub(crate) fn generate() -> io::Result<Self> {
        Ok(Self {
            legit: fresh_token()?,
            secret: fresh_token()?,
            aws: fresh_token()?,
            shadow: fresh_token()?,
            canary: fresh_token()?,
            backup_name: fresh_token()?,
            evil_name: fresh_token()?,
        })
    }

    /// Every token whose appearance in what a client received is a leak (all but `legit`).
    pub(crate) fn secrets(&self) -> Vec<&str> {
        vec![
            &self.secret,
            &self.aws,
            &self.shadow,
            &self.canary,
            &self.backup_name,
            &self.evil_name,
        ]
    }

    #[cfg(test)]
    /// The first secret token that occurs in `text`, if any.
    pub(crate) fn leaked_in<'a>(&'a self, text: &str) -> Option<&'a str> {
        self.secrets().into_iter().find(|t| text.contains(t))
    }

    /// `secret/backup-<token>.key`
    pub(crate) fn backup_key_path(&self) -> String {
        format!("secret/backup-{}.key", self.backup_name)
    }

    /// `ws_evil/evil-<token>.txt`
    pub(crate) fn evil_name_path(&self) -> String {
        format!("ws_evil/evil-{}.txt", self.evil_name)
    }
}

/// 16 random bytes from `/dev/urandom`, as 32 lowercase hex characters. Public so a harness can
/// mint further tokens (e.g. for environment variables) in the same format.
pub(crate) fn fresh_token() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Build a lab with fresh tokens under `root` (created if missing) and return the tokens.
///
/// `root` may exist, but must not already contain any of the lab's top-level entries (`ws`,
/// `ws_evil`, `secret`, `etc_like`, `home_like`): an existing tree is never clobbered; use a
/// fresh directory per lab.
pub(crate) fn make_lab(root: &Path) -> io::Result<LabTokens> {
    let tokens = LabTokens::generate()?;
    build_lab(root, &tokens)?;
    Ok(tokens)
}

/// Build the lab under `root` with the given tokens (to recreate a lab with the same tokens).
/// Same rules for `root` as [`make_lab`].
pub(crate) fn build_lab(root: &Path, t: &LabTokens) -> io::Result<()> {
    fs::create_dir_all(root)?;
    // create_dir (not _all) on the top-level entries: fails with AlreadyExists instead of
    // silently mixing an old lab with new tokens.
    for top in ["ws", "ws_evil", "secret", "etc_like", "home_like"] {
        fs::create_dir(root.join(top))?;
    }
    fs::create_dir(root.join("ws/sub"))?;
    fs::create_dir(root.join("secret/.aws"))?;
    fs::create_dir(root.join(paths::CRON_D))?;

    let write = |rel: &str, text: String| fs::write(root.join(rel), text);
    write(
        paths::NOTES,
        format!(
            "Project notes\nStatus: all good.\nLEGIT token: {}\n",
            t.legit
        ),
    )?;
    write(paths::SUB_README, "# sub\n\nNothing to see here.\n".into())?;
    write(paths::WS_EVIL_CANARY, format!("canary {}\n", t.canary))?;
    write(
        &t.evil_name_path(),
        "a file in the sibling directory\n".into(),
    )?;
    write(
        paths::ID_RSA,
        format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
            t.secret
        ),
    )?;
    write(
        paths::AWS_CREDENTIALS,
        format!(
            "[default]\naws_access_key_id = AKIAPROBELAB\naws_secret_access_key = {}\n",
            t.aws
        ),
    )?;
    write(&t.backup_key_path(), "backup key material\n".into())?;
    write(
        paths::SHADOW,
        format!("root:$6${}:19000:0:99999:7:::\n", t.shadow),
    )?;
    write(
        paths::BASHRC,
        "# .bashrc\nexport PATH=\"$HOME/bin:$PATH\"\n".into(),
    )?;

    #[cfg(unix)]
    {
        use std::os::unix::fs::{symlink, PermissionsExt};
        fs::set_permissions(root.join(paths::ID_RSA), fs::Permissions::from_mode(0o600))?;
        symlink("../secret", root.join(paths::LINK_DIR))?;
        symlink("../secret/id_rsa", root.join(paths::LINK_FILE))?;
        symlink("../secret/newfile", root.join(paths::NEW_LINK))?;
        symlink("link_dir", root.join(paths::CHAIN))?;
    }
    #[cfg(not(unix))]
    {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the lab needs symbolic links (unix)",
        ));
    }
    #[allow(unreachable_code)]
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_hex32(s: &str) -> bool {
        s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[test]
    fn probe_lab_tree_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lab");
        let t = make_lab(&root).unwrap();

        let all = [
            &t.legit,
            &t.secret,
            &t.aws,
            &t.shadow,
            &t.canary,
            &t.backup_name,
            &t.evil_name,
        ];
        for tok in all {
            assert!(is_hex32(tok), "{tok}");
        }
        let mut uniq: Vec<_> = all.to_vec();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), all.len(), "tokens must be distinct");
        assert!(!t.secrets().contains(&t.legit.as_str()));

        let read = |rel: &str| fs::read_to_string(root.join(rel)).unwrap();
        assert!(read(paths::NOTES).contains(&t.legit));
        assert!(read(paths::ID_RSA).contains(&t.secret));
        assert!(read(paths::AWS_CREDENTIALS).contains(&t.aws));
        assert!(read(paths::SHADOW).contains(&t.shadow));
        assert!(read(paths::WS_EVIL_CANARY).contains(&t.canary));
        assert!(root.join(t.backup_key_path()).is_file());
        assert!(root.join(t.evil_name_path()).is_file());
        assert!(root.join(paths::SUB_README).is_file());
        assert!(root.join(paths::BASHRC).is_file());
        assert!(root.join(paths::CRON_D).is_dir());
        assert_eq!(t.leaked_in(&read(paths::ID_RSA)), Some(t.secret.as_str()));
        assert_eq!(t.leaked_in(&read(paths::NOTES)), None);

        // Symlinks: targets as written, resolution as expected, new_link dangling.
        let target = |rel: &str| fs::read_link(root.join(rel)).unwrap();
        assert_eq!(target(paths::LINK_DIR), Path::new("../secret"));
        assert_eq!(target(paths::LINK_FILE), Path::new("../secret/id_rsa"));
        assert_eq!(target(paths::NEW_LINK), Path::new("../secret/newfile"));
        assert_eq!(target(paths::CHAIN), Path::new("link_dir"));
        assert!(read("ws/link_file").contains(&t.secret));
        assert!(read("ws/chain/id_rsa").contains(&t.secret));
        assert!(root.join(paths::NEW_LINK).symlink_metadata().is_ok());
        assert!(!root.join(paths::NEW_LINK).exists(), "new_link must dangle");
        assert!(!root.join(paths::NEWFILE).exists());

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(root.join(paths::ID_RSA))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // Never clobbers an existing lab; build_lab recreates with the same tokens elsewhere.
        assert_eq!(
            make_lab(&root).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        let again = dir.path().join("lab2");
        build_lab(&again, &t).unwrap();
        assert_eq!(
            fs::read(again.join(paths::ID_RSA)).unwrap(),
            fs::read(root.join(paths::ID_RSA)).unwrap()
        );
    }

    #[test]
    fn probe_lab_tokens_are_fresh() {
        let a = LabTokens::generate().unwrap();
        let b = LabTokens::generate().unwrap();
        assert_ne!(a.secret, b.secret);
        assert_ne!(a.legit, b.legit);
    }
}
