//! The two ways through the egress point, once the destination was judged: a CONNECT tunnel
//! (bytes copied both ways, TLS untouched) and one forwarded plain-HTTP request (origin-form
//! upstream, `Connection: close` both ways so the client's next request comes back to be judged).

use tokio::io::{copy_bidirectional, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http::{client_response_head, head_end, upstream_request, RequestHead, MAX_HEAD};

/// The answer to an HTTP CONNECT that was let through.
pub(crate) const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// Answer a tunnel request with `established` and copy bytes both ways. `early` are bytes the
/// client sent after its request.
pub(crate) async fn tunnel<C>(
    client: &mut C,
    mut upstream: TcpStream,
    early: &[u8],
    established: &[u8],
) -> std::io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    client.write_all(established).await?;
    if !early.is_empty() {
        upstream.write_all(early).await?;
    }
    copy_bidirectional(client, &mut upstream).await?;
    Ok(())
}

/// Send one request upstream and relay its response (head rewritten to `Connection: close`).
/// `early` are bytes the client sent after its head (the start of a body).
pub(crate) async fn forward<C>(
    client: &mut C,
    mut upstream: TcpStream,
    head: &RequestHead,
    origin: &str,
    host_header: &str,
    early: &[u8],
) -> std::io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    upstream
        .write_all(&upstream_request(head, origin, host_header))
        .await?;
    if !early.is_empty() {
        upstream.write_all(early).await?;
    }
    let (mut up_r, mut up_w) = upstream.into_split();
    let (mut cl_r, mut cl_w) = tokio::io::split(client);
    // Client -> upstream: the rest of the body (until the client half-closes or we finish).
    let to_upstream = async {
        let _ = tokio::io::copy(&mut cl_r, &mut up_w).await;
        let _ = up_w.shutdown().await;
    };
    // Upstream -> client: the response head rewritten, then the rest as it comes.
    let to_client = async {
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 8192];
        let end = loop {
            if let Some(end) = head_end(&buf) {
                break Some(end);
            }
            if buf.len() > MAX_HEAD {
                break None;
            }
            let n = up_r.read(&mut chunk).await?;
            if n == 0 {
                break None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        match end.and_then(|e| client_response_head(&buf[..e]).map(|h| (e, h))) {
            Some((e, h)) => {
                cl_w.write_all(&h).await?;
                cl_w.write_all(&buf[e..]).await?;
            }
            None => cl_w.write_all(&buf).await?,
        }
        tokio::io::copy(&mut up_r, &mut cl_w).await?;
        cl_w.shutdown().await
    };
    tokio::select! {
        r = to_client => r,
        _ = async { to_upstream.await; std::future::pending::<()>().await } => unreachable!(),
    }
}
