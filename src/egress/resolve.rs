//! Resolution at the point of connection: the decision (which resolves names with the system
//! resolver, in capjail's own network namespace) runs off the reactor, bounded in time, and
//! the connection goes to one of the addresses it checked — never through a second lookup.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::check::net::{Destination, NetRefusal};
use crate::check::World;
use crate::policy::NetworkPolicy;
use crate::policy::RuleId;

/// Longest time a decision (with its name lookup) may take.
pub(crate) const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time a connection to a checked address may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// [`super::check::judge`] on a blocking thread, bounded by [`RESOLVE_TIMEOUT`].
pub(crate) async fn judge(
    url: String,
    policy: Arc<NetworkPolicy>,
    world: Arc<dyn World + Send + Sync>,
) -> Result<Destination, NetRefusal> {
    let target = url.clone();
    let task = tokio::task::spawn_blocking(move || super::check::judge(&url, &policy, &*world));
    match tokio::time::timeout(RESOLVE_TIMEOUT, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) | Err(_) => Err(NetRefusal {
            rule: RuleId::NetworkResolve,
            reason: format!("cannot resolve in time: {target} (refused: fail closed)"),
            target,
        }),
    }
}

/// Connect to the first checked address that answers (each one was judged).
pub(crate) async fn connect_checked(dest: &Destination) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::other("no address");
    for ip in &dest.addresses {
        let addr = SocketAddr::new(*ip, dest.port);
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
        }
    }
    Err(last)
}
