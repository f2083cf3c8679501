//! SOCKS5 at the egress point (RFC 1928), the part a client needs to open a tunnel: no
//! authentication, the CONNECT command only, IPv4 / IPv6 / domain-name targets (a domain name
//! is resolved by capjail, `socks5h://`). The target is judged exactly as an HTTP CONNECT is
//! (`https://host:port/`: host and port only). Served on the same port as the HTTP proxy: a
//! first byte of 5 is SOCKS5. Pure parsing here; the I/O is in `super::handle_socks`.

/// The first byte of every SOCKS5 message.
pub(crate) const VERSION: u8 = 5;
/// Reply codes.
pub(crate) const SUCCEEDED: u8 = 0;
pub(crate) const GENERAL_FAILURE: u8 = 1;
pub(crate) const NOT_ALLOWED: u8 = 2;
pub(crate) const HOST_UNREACHABLE: u8 = 4;
pub(crate) const COMMAND_NOT_SUPPORTED: u8 = 7;
pub(crate) const ADDRESS_NOT_SUPPORTED: u8 = 8;

/// The method-selection answer: `no authentication` when offered, else `no acceptable method`.
pub(crate) fn choose_method(greeting: &[u8]) -> Result<Option<(usize, bool)>, String> {
    let [v, n, ..] = greeting else {
        return Ok(None);
    };
    if *v != VERSION {
        return Err(format!("not SOCKS5 (version {v})"));
    }
    let end = 2 + *n as usize;
    if greeting.len() < end {
        return Ok(None);
    }
    Ok(Some((end, greeting[2..end].contains(&0))))
}

/// A CONNECT request: `(bytes used, authority, url)`. `Err((reply code, reason))` when it is
/// not one capjail serves; `Ok(None)`: incomplete.
pub(crate) type Parsed = Option<(usize, String, String)>;

pub(crate) fn parse_request(buf: &[u8]) -> Result<Parsed, (u8, String)> {
    if buf.len() < 4 {
        return Ok(None);
    }
    if buf[0] != VERSION || buf[2] != 0 {
        return Err((GENERAL_FAILURE, "malformed SOCKS5 request".into()));
    }
    if buf[1] != 1 {
        return Err((
            COMMAND_NOT_SUPPORTED,
            format!("SOCKS5 command {} (only CONNECT is served)", buf[1]),
        ));
    }
    let (host, at) = match buf[3] {
        1 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let ip = std::net::Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]);
            (ip.to_string(), 8)
        }
        4 => {
            if buf.len() < 22 {
                return Ok(None);
            }
            let mut o = [0u8; 16];
            o.copy_from_slice(&buf[4..20]);
            (format!("[{}]", std::net::Ipv6Addr::from(o)), 20)
        }
        3 => {
            let Some(&n) = buf.get(4) else {
                return Ok(None);
            };
            let end = 5 + n as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            let name = std::str::from_utf8(&buf[5..end])
                .ok()
                .filter(|s| {
                    !s.is_empty()
                        && s.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'
                        })
                })
                .ok_or((GENERAL_FAILURE, "malformed SOCKS5 domain name".to_string()))?;
            (name.to_ascii_lowercase(), end)
        }
        t => return Err((ADDRESS_NOT_SUPPORTED, format!("SOCKS5 address type {t}"))),
    };
    let port = u16::from_be_bytes([buf[at], buf[at + 1]]);
    if port == 0 {
        return Err((GENERAL_FAILURE, "SOCKS5 port 0".into()));
    }
    let authority = format!("{host}:{port}");
    let url = format!("https://{authority}/");
    Ok(Some((at + 2, authority, url)))
}

/// A reply with code `code` and an unspecified bound address.
pub(crate) fn reply(code: u8) -> [u8; 10] {
    [VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socks_greeting_and_requests() {
        assert_eq!(choose_method(&[5, 1, 0]), Ok(Some((3, true))));
        assert_eq!(choose_method(&[5, 1, 2]), Ok(Some((3, false))));
        assert_eq!(choose_method(&[5, 2, 2]), Ok(None));
        assert!(choose_method(&[4, 1, 0]).is_err());
        let mut name = vec![5, 1, 0, 3, 11];
        name.extend_from_slice(b"Example.COM");
        name.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(
            parse_request(&name),
            Ok(Some((
                name.len(),
                "example.com:443".into(),
                "https://example.com:443/".into()
            )))
        );
        assert_eq!(parse_request(&name[..name.len() - 1]), Ok(None));
        let v4 = [5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90];
        assert_eq!(
            parse_request(&v4).unwrap().unwrap().1,
            "127.0.0.1:8080".to_string()
        );
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0, 80]);
        assert_eq!(
            parse_request(&v6).unwrap().unwrap().2,
            "https://[::1]:80/".to_string()
        );
        assert_eq!(
            parse_request(&[5, 2, 0, 1, 1, 1, 1, 1, 0, 80])
                .unwrap_err()
                .0,
            COMMAND_NOT_SUPPORTED
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 9, 0, 0]).unwrap_err().0,
            ADDRESS_NOT_SUPPORTED
        );
        let mut bad = vec![5, 1, 0, 3, 3];
        bad.extend_from_slice(b"a b\0\x50");
        assert!(parse_request(&bad).is_err());
        assert_eq!(reply(NOT_ALLOWED)[1], 2);
    }
}
