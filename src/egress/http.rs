//! HTTP/1.x heads as the egress point sees them (pure): the client's request head, what it
//! asks for (a CONNECT tunnel or an absolute-form plain-HTTP request), the request sent
//! upstream, the response head handed back, and the refusal page.

/// Longest request or response head read (request line + headers).
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// A request head as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHead {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) version: String,
    pub(crate) headers: Vec<(String, String)>,
}

/// What the client asks the egress point for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ask {
    /// `CONNECT host:port`: judged by host and port; the URL is what the policy checks see.
    Connect { authority: String, url: String },
    /// `GET http://host:port/path`: judged as that URL; `origin` is `/path?query` for upstream.
    Forward { url: String, origin: String },
}

/// The end of a head (`\r\n\r\n`): the index just past it.
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    memchr::memmem::find(buf, b"\r\n\r\n").map(|i| i + 4)
}

/// Parse a request head (the bytes up to and including the blank line). Strict: one space
/// between the parts, an HTTP/1.x version, `name: value` headers, no obsolete line folding,
/// no control characters.
pub(crate) fn parse_request_head(head: &[u8]) -> Result<RequestHead, String> {
    let text = std::str::from_utf8(head).map_err(|_| "request head is not UTF-8".to_string())?;
    let text = text
        .strip_suffix("\r\n\r\n")
        .ok_or("request head does not end with a blank line")?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts.as_slice() else {
        return Err(format!("malformed request line: {}", shown(line)));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("malformed method: {}", shown(method)));
    }
    if *version != "HTTP/1.1" && *version != "HTTP/1.0" {
        return Err(format!("unsupported version: {}", shown(version)));
    }
    if target.is_empty() || target.bytes().any(|b| b.is_ascii_control()) {
        return Err("malformed request target".into());
    }
    let mut headers = Vec::new();
    for l in lines {
        if l.starts_with([' ', '\t']) {
            return Err("obsolete header line folding".into());
        }
        let (name, value) = l
            .split_once(':')
            .ok_or_else(|| format!("malformed header line: {}", shown(l)))?;
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(format!("malformed header name: {}", shown(name)));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(format!("control character in header {name}"));
        }
        headers.push((name.to_string(), value.to_string()));
    }
    Ok(RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers,
    })
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What the request asks for. CONNECT needs `host:port`; anything else needs an absolute
/// `http://` target (origin-form requests are for servers, not proxies; `https://` in absolute
/// form would mean the egress point speaks TLS upstream, which it does not).
pub(crate) fn classify(head: &RequestHead) -> Result<Ask, String> {
    if head.method == "CONNECT" {
        let authority = head.target.as_str();
        if authority.contains(['/', '@', '?', '#']) {
            return Err(format!(
                "CONNECT target is not host:port: {}",
                shown(authority)
            ));
        }
        let (_, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("CONNECT target has no port: {}", shown(authority)))?;
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("CONNECT target has no port: {}", shown(authority)));
        }
        return Ok(Ask::Connect {
            authority: authority.to_string(),
            url: format!("https://{authority}/"),
        });
    }
    let target = head.target.as_str();
    let lower = target.get(..7).map(str::to_ascii_lowercase);
    if lower.as_deref() != Some("http://") {
        return Err(format!(
            "not a proxy request (absolute http:// URL or CONNECT expected): {}",
            shown(target)
        ));
    }
    let after = &target[7..];
    let origin = match after.find(['/', '?']) {
        Some(i) if after.as_bytes()[i] == b'/' => after[i..].to_string(),
        Some(i) => format!("/{}", &after[i..]),
        None => "/".to_string(),
    };
    // The fragment is never sent.
    let origin = origin.split('#').next().unwrap_or("/").to_string();
    Ok(Ask::Forward {
        url: target.to_string(),
        origin,
    })
}

/// Headers that concern only the hop to the egress point (and `Host`, rewritten).
pub(crate) fn hop_header(name: &str) -> bool {
    const HOP: [&str; 8] = [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "upgrade",
        "host",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// The request sent upstream: origin-form, `Host` from the checked URL, hop-by-hop and
/// `Proxy-*` headers removed, and `Connection: close` — one request per upstream connection,
/// so that every request the client makes is judged on its own.
pub(crate) fn upstream_request(head: &RequestHead, origin: &str, host_header: &str) -> Vec<u8> {
    let mut out = format!(
        "{} {} {}\r\nHost: {}\r\n",
        head.method, origin, head.version, host_header
    );
    for (name, value) in &head.headers {
        if !hop_header(name) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

/// The response head handed back to the client, with `Connection: close` in place of any
/// connection headers (the client opens a new connection, and is judged again, for its next
/// request). `None` when the head is not a plausible HTTP/1.x response head.
pub(crate) fn client_response_head(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let text = text.strip_suffix("\r\n\r\n")?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?;
    if !status.starts_with("HTTP/1.") {
        return None;
    }
    let mut out = format!("{status}\r\n");
    for l in lines {
        let name = l.split(':').next().unwrap_or_default();
        if ["connection", "proxy-connection", "keep-alive"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    Some(out.into_bytes())
}

/// A complete response page from the egress point itself: `status` with a plain-text body
/// naming the rule, so that the server's HTTP client shows why.
pub(crate) fn page(status: u16, rule: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "Internal Server Error",
    };
    let body = format!("{body}\n");
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Capjail-Rule: {rule}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A string for messages: escaped, at most 200 characters.
pub(crate) fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(200).flat_map(char::escape_debug).collect();
    if s.chars().nth(200).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> RequestHead {
        parse_request_head(s.as_bytes()).unwrap()
    }

    #[test]
    fn parses_absolute_form_and_connect() {
        let h = head("GET http://example.com:8080/a?b=1#f HTTP/1.1\r\nHost: example.com\r\nProxy-Connection: keep-alive\r\n\r\n");
        assert_eq!(
            classify(&h).unwrap(),
            Ask::Forward {
                url: "http://example.com:8080/a?b=1#f".into(),
                origin: "/a?b=1".into()
            }
        );
        let h = head("GET http://example.com HTTP/1.1\r\n\r\n");
        assert!(matches!(classify(&h).unwrap(), Ask::Forward { origin, .. } if origin == "/"));
        let h = head("GET http://example.com?q HTTP/1.1\r\n\r\n");
        assert!(matches!(classify(&h).unwrap(), Ask::Forward { origin, .. } if origin == "/?q"));
        let c = head("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        assert_eq!(
            classify(&c).unwrap(),
            Ask::Connect {
                authority: "example.com:443".into(),
                url: "https://example.com:443/".into()
            }
        );
        let v6 = head("CONNECT [::1]:443 HTTP/1.1\r\n\r\n");
        assert!(
            matches!(classify(&v6).unwrap(), Ask::Connect { url, .. } if url == "https://[::1]:443/")
        );
    }

    #[test]
    fn refuses_what_is_not_a_proxy_request() {
        for bad in [
            "GET /index.html HTTP/1.1\r\n\r\n",
            "GET https://example.com/ HTTP/1.1\r\n\r\n",
            "GET ftp://example.com/ HTTP/1.1\r\n\r\n",
            "CONNECT example.com HTTP/1.1\r\n\r\n",
            "CONNECT example.com:https HTTP/1.1\r\n\r\n",
            "CONNECT user@example.com:443 HTTP/1.1\r\n\r\n",
            "CONNECT example.com:443/x HTTP/1.1\r\n\r\n",
        ] {
            assert!(classify(&head(bad)).is_err(), "{bad:?}");
        }
        for bad in [
            "GET  http://a/ HTTP/1.1\r\n\r\n",
            "get http://a/ HTTP/1.1\r\n\r\n",
            "GET http://a/ HTTP/2\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nBad Name: a\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nX: a\x01\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\n",
        ] {
            assert!(parse_request_head(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn upstream_request_is_origin_form_and_closes() {
        let h = head("POST http://a.example:81/p HTTP/1.1\r\nHost: evil.example\r\nProxy-Authorization: x\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n");
        let up = String::from_utf8(upstream_request(&h, "/p", "a.example:81")).unwrap();
        assert_eq!(
            up,
            "POST /p HTTP/1.1\r\nHost: a.example:81\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn response_head_gets_connection_close() {
        let r = client_response_head(
            b"HTTP/1.1 302 Found\r\nLocation: http://x/\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "HTTP/1.1 302 Found\r\nLocation: http://x/\r\nConnection: close\r\n\r\n"
        );
        assert!(client_response_head(b"SSH-2.0\r\n\r\n").is_none());
    }

    #[test]
    fn page_names_the_rule() {
        let p = String::from_utf8(page(403, "network.private", "refused")).unwrap();
        assert!(p.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(p.contains("X-Capjail-Rule: network.private\r\n"));
        assert!(p.ends_with("\r\n\r\nrefused\n"));
        assert_eq!(head_end(b"a\r\n\r\nb"), Some(5));
    }
}
