//! Who may open a connection, before any upgrade: the browser `Origin`
//! check (cross-site WebSocket hijacking) and the per-client-IP limit.
//!
//! Owns the origin rules and the per-IP socket counts. Must not: read or
//! judge tokens (that is [`super::auth`]).
//!
//! Origin rules: no `Origin` header (every non-browser client) is allowed;
//! `--allow-origin *` allows all; a listed origin is allowed; otherwise a
//! loopback page (`http(s)://localhost`, `127.0.0.1`, `[::1]`, any port) or
//! a page from the same host and port as the request is allowed; any other
//! origin, and `null`, only when listed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Whether a browser page from `origin` may open a WebSocket here.
/// `host` is the request's `Host` header; `tls` whether this port is TLS.
pub fn origin_allowed(
    origin: Option<&str>,
    host: Option<&str>,
    allow: &[String],
    tls: bool,
) -> bool {
    let Some(origin) = origin.map(str::trim) else {
        return true;
    };
    let normalized = normalize(origin);
    if allow
        .iter()
        .any(|a| a.trim() == "*" || normalize(a) == normalized)
    {
        return true;
    }
    let Some((o_host, o_port)) = parse_origin(&normalized) else {
        // `null` and anything unparsable: only when listed.
        return false;
    };
    if is_loopback_host(&o_host) {
        return true;
    }
    let Some(host) = host else {
        return false;
    };
    let default_port = if tls { 443 } else { 80 };
    let Some((h_host, h_port)) = split_host_port(&host.trim().to_ascii_lowercase(), default_port)
    else {
        return false;
    };
    o_host == h_host && o_port == h_port
}

fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// `scheme://host[:port]` → (host, port with the scheme's default).
fn parse_origin(origin: &str) -> Option<(String, u16)> {
    let (scheme, rest) = origin.split_once("://")?;
    let default_port = match scheme {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => return None,
    };
    if rest.contains('/') || rest.contains('@') {
        return None;
    }
    split_host_port(rest, default_port)
}

/// `host[:port]` or `[v6][:port]` → (host, port).
fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if s.is_empty() {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((format!("[{h}]"), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Some((h.to_owned(), p.parse().ok()?)),
        Some(_) => None,
        None => Some((s.to_owned(), default_port)),
    }
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host == "127.0.0.1" || host == "[::1]"
}

/// Open sockets per client IP, and the limit.
#[derive(Debug)]
pub struct PerIp {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// Holds one socket's place in [`PerIp`]; released on drop.
#[derive(Debug)]
pub struct IpSlot {
    ip: IpAddr,
    table: Arc<PerIp>,
}

impl PerIp {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Take a place for `ip`, or `None` when it already has `limit` sockets.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut open = crate::sync::lock(&self.open);
        let n = open.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            ip,
            table: self.clone(),
        })
    }

    /// Sockets open from `ip` now.
    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> usize {
        let open = crate::sync::lock(&self.open);
        open.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = crate::sync::lock(&self.table.open);
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(origin: Option<&str>, host: Option<&str>, allow: &[&str]) -> bool {
        let allow: Vec<String> = allow.iter().map(|s| (*s).to_owned()).collect();
        origin_allowed(origin, host, &allow, false)
    }

    #[test]
    fn origins() {
        let host = Some("10.0.0.5:8765");
        assert!(ok(None, host, &[]), "no Origin: not a browser");
        assert!(ok(Some("http://localhost:3000"), host, &[]));
        assert!(ok(Some("https://127.0.0.1"), host, &[]));
        assert!(ok(Some("http://[::1]:8080"), host, &[]));
        assert!(ok(Some("http://10.0.0.5:8765"), host, &[]), "same host");
        assert!(ok(Some("HTTP://10.0.0.5:8765/"), host, &[]));
        assert!(!ok(Some("http://10.0.0.5:9999"), host, &[]), "other port");
        assert!(!ok(Some("https://evil.example"), host, &[]));
        assert!(!ok(Some("null"), host, &[]));
        assert!(ok(Some("null"), host, &["null"]));
        assert!(ok(
            Some("https://dash.example"),
            host,
            &["https://dash.example/"]
        ));
        assert!(ok(Some("https://evil.example"), host, &["*"]));
        assert!(!ok(Some("http://localhost.evil.example"), host, &[]));
        assert!(!ok(Some("http://evil.example"), None, &[]));
        assert!(
            ok(Some("http://myhost"), Some("myhost:80"), &[]),
            "default port"
        );
    }

    #[test]
    fn per_ip_slots_are_released() {
        let t = PerIp::new(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = t.acquire(ip).unwrap();
        let _b = t.acquire(ip).unwrap();
        assert!(t.acquire(ip).is_none());
        assert!(t.acquire("::1".parse().unwrap()).is_some());
        drop(a);
        assert_eq!(t.open(ip), 1);
        assert!(t.acquire(ip).is_some());
    }
}
