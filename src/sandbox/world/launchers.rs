//! Launchers that defeat confinement by design, refused in kernel and full mode (pure).

use std::path::Path;

/// Rule id of the refusal (documented in the README's policy reference).
pub(crate) const RULE_CONTAINER_LAUNCHER: &str =
    crate::policy::RuleId::KernelContainerLauncher.static_id();

/// `Some(explanation)` when `argv` starts a server through a container engine's client:
/// `docker run ...` asks the Docker daemon (root, outside any sandbox) to do the work, so
/// neither the namespaces, Landlock nor seccomp around the client would confine the server.
pub(crate) fn refused(argv: &[String]) -> Option<String> {
    let prog = Path::new(argv.first()?)
        .file_name()?
        .to_string_lossy()
        .into_owned();
    const ENGINES: &[&str] = &["docker", "podman", "nerdctl", "docker-compose"];
    if !ENGINES.contains(&prog.as_str()) {
        return None;
    }
    Some(format!(
        "refused [{RULE_CONTAINER_LAUNCHER}]: `{prog}` hands the server to a container daemon that runs outside capjail's sandbox, so the kernel layer could not confine it. Run the server's own command under capjail, or run the container engine's own isolation with `--mode proxy` (the proxy still checks every message)."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_is_refused_other_launchers_are_not() {
        let v = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(refused(&v("docker run -i --rm mcp/fetch"))
            .unwrap()
            .contains(RULE_CONTAINER_LAUNCHER));
        assert!(refused(&v("/usr/bin/podman run x")).is_some());
        assert!(refused(&v("npx -y pkg")).is_none());
        assert!(refused(&v("uvx mcp-server-fetch")).is_none());
    }
}
