//! Where this run's pins live: `--pins FILE|off` (or `CAPJAIL_PINS`), else the policy's
//! `pins.file`, else `$XDG_STATE_HOME/capjail/pins.json`; frozen by `--pins-frozen` or the
//! policy's `pins.frozen`.

use std::path::Path;

use super::session::PinsConfig;
use super::settings::TrustPolicy;
use super::store::{default_location, StoreError};

pub(crate) fn resolve(
    cli: Option<&str>,
    frozen_flag: bool,
    policy: &TrustPolicy,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<PinsConfig, StoreError> {
    let frozen = frozen_flag || policy.frozen;
    let file = match cli {
        _ if !policy.pinning => None,
        Some("off") => None,
        Some(p) => Some(cwd.join(p)),
        None => match &policy.pins_file {
            Some(p) => Some(p.clone()),
            None => Some(default_location(env)?),
        },
    };
    Ok(PinsConfig { file, frozen })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn flag_then_policy_then_default() {
        let env = |k: &str| (k == "HOME").then(|| "/h".to_string());
        let cwd = Path::new("/w");
        let mut p = TrustPolicy::default();
        let r = |cli, frozen, p: &TrustPolicy| resolve(cli, frozen, p, &env, cwd).unwrap();
        assert_eq!(
            r(None, false, &p).file,
            Some(PathBuf::from("/h/.local/state/capjail/pins.json"))
        );
        assert_eq!(
            r(Some("p.json"), true, &p),
            PinsConfig {
                file: Some("/w/p.json".into()),
                frozen: true
            }
        );
        assert_eq!(r(Some("off"), false, &p).file, None);
        p.pins_file = Some("/team/pins.json".into());
        p.frozen = true;
        assert_eq!(
            r(None, false, &p),
            PinsConfig {
                file: Some("/team/pins.json".into()),
                frozen: true
            }
        );
        p.pinning = false;
        assert_eq!(r(Some("x"), false, &p).file, None);
    }
}
