//! Who may open a connection, before any upgrade: the `Host` rule (DNS
//! rebinding), the browser `Origin` check (cross-site WebSocket hijacking),
//! the per-client-IP limit and the cap on refused sockets still held.
//!
//! Owns the host and origin rules and the socket counts. Must not: read or
//! judge tokens (that is [`super::auth`]); log (the caller does, through
//! [`super::refusals`]).
//!
//! Host rule (on when bound to loopback, or with `--allow-host`): the
//! `Host` header must name a loopback host (`localhost`, `*.localhost`,
//! 127.0.0.0/8, `[::1]`), an IP address, or an `--allow-host` name, any
//! port, any case, with or without a trailing dot; `*` turns it off. IP
//! addresses pass because a browser connects to an address literal without
//! any name lookup, so no name can be rebound to loopback.
//!
//! Origin rules: no `Origin` header (every non-browser client) is allowed;
//! `--allow-origin *` allows all; a listed origin is allowed; a loopback
//! page (any port) is allowed; with the host rule on, a page whose host is
//! an `--allow-host` name (any port); with it off, a page from the same
//! host and port as the request (a same-origin proxy). Any other origin,
//! and `null`, only when listed.

use std::collections::HashMap;

use crate::error::InvalidValue;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Which `Host` names the server answers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRule {
    /// Off: any `Host` (bound beyond loopback without `--allow-host`, or
    /// `--allow-host *`).
    on: bool,
    /// `--allow-host` names, lowercased, without a trailing dot.
    names: Vec<String>,
}

/// What the host rule says about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum HostVerdict {
    Allowed,
    /// HTTP/1.1 without a `Host` header, or with several (400).
    Missing,
    /// A `Host` that is not `name[:port]` (400).
    Malformed,
    /// A name the server does not answer to (403); the name, lowercased.
    Refused(String),
}

impl HostRule {
    /// The rule for a server bound to a loopback address or not, with the
    /// `--allow-host` entries (`*` allows any). An entry that is not a bare
    /// host name is an error naming the flag.
    pub fn new(loopback_bound: bool, allow: &[String]) -> Result<Self, InvalidValue> {
        let mut names = Vec::new();
        let mut any = false;
        for entry in allow.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
            if entry == "*" {
                any = true;
                continue;
            }
            match host_name(entry) {
                Some((name, None)) if !entry.contains("://") => names.push(name),
                _ => {
                    return Err(InvalidValue(format!(
                        "--allow-host {entry:?}: give a host name as a browser's address bar shows it, \
                         without scheme, port or path (e.g. dash.example), or * for any"
                    )));
                }
            }
        }
        let on = !any && (loopback_bound || !names.is_empty());
        Ok(Self { on, names })
    }

    /// Whether the rule is enforced.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Judge a request's `Host` headers (`hosts`: every value sent;
    /// `http11`: the request is HTTP/1.1, where `Host` is required).
    pub fn check(&self, hosts: &[String], http11: bool) -> HostVerdict {
        if !self.on {
            return HostVerdict::Allowed;
        }
        let value = match hosts {
            // HTTP/1.0 needs no Host; every browser sends one anyway.
            [] if !http11 => return HostVerdict::Allowed,
            [one] => one,
            _ => return HostVerdict::Missing,
        };
        let Some((name, _)) = host_name(value) else {
            return HostVerdict::Malformed;
        };
        if is_loopback_name(&name) || is_ip_literal(&name) || self.names.contains(&name) {
            HostVerdict::Allowed
        } else {
            HostVerdict::Refused(name)
        }
    }
}

/// `host[:port]` or `[v6][:port]` → (host lowercased without a trailing
/// dot, port if one was given). `None` when it is not that shape.
fn host_name(value: &str) -> Option<(String, Option<u16>)> {
    let value = value.trim();
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        h.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{h}]"), port)
    } else {
        match value.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (value.to_owned(), None),
        }
    };
    let port = match port {
        // `host:` is valid (RFC 3986: port = *DIGIT).
        Some("") | None => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    let mut host = host.to_ascii_lowercase();
    if host.ends_with('.') && host.len() > 1 {
        host.pop();
    }
    let legal = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    if host.is_empty() || !(host.starts_with('[') || host.bytes().all(legal)) {
        return None;
    }
    Some((host, port))
}

/// `localhost`, `*.localhost` (RFC 6761: resolved to loopback by the
/// browser itself), 127.0.0.0/8, `[::1]` (and IPv4-mapped loopback).
fn is_loopback_name(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    ip_literal(host).is_some_and(|ip| match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    })
}

fn is_ip_literal(host: &str) -> bool {
    ip_literal(host).is_some()
}

/// A dotted-quad IPv4 address or a bracketed IPv6 address.
fn ip_literal(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// Whether a browser page from `origin` may open a WebSocket here.
/// `host` is the request's `Host` header; `tls` whether this port is TLS.
pub fn origin_allowed(
    origin: Option<&str>,
    host: Option<&str>,
    allow: &[String],
    hosts: &HostRule,
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
    if is_loopback_name(&o_host) {
        return true;
    }
    if hosts.on {
        // The request's own Host is the one thing a rebinding page
        // controls: compare with the names the operator allowed instead.
        return hosts.names.contains(&o_host);
    }
    let Some((h_host, h_port)) = host.and_then(host_name) else {
        return false;
    };
    let default_port = if tls { 443 } else { 80 };
    o_host == h_host && o_port == h_port.unwrap_or(default_port)
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
    host_name(rest).map(|(h, p)| (h, p.unwrap_or(default_port)))
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

/// Refused sockets still held while their answer goes out, and the cap:
/// past it a refused socket is closed without an answer, so a flood from
/// one address costs at most `cap` descriptors beyond its per-IP slots.
#[derive(Debug)]
pub struct Refusing {
    held: AtomicUsize,
    cap: usize,
}

/// One refused socket's place in [`Refusing`]; released on drop.
#[derive(Debug)]
pub struct Held(Arc<Refusing>);

impl Refusing {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicUsize::new(0),
            cap,
        })
    }

    /// Take a place, or `None` when `cap` refused sockets are held.
    pub fn hold(self: &Arc<Self>) -> Option<Held> {
        self.held
            .fetch_update(Relaxed, Relaxed, |n| (n < self.cap).then_some(n + 1))
            .ok()
            .map(|_| Held(self.clone()))
    }

    /// Refused sockets held now.
    pub fn held(&self) -> usize {
        self.held.load(Relaxed)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(loopback: bool, allow: &[&str]) -> HostRule {
        let allow: Vec<String> = allow.iter().map(|s| (*s).to_owned()).collect();
        HostRule::new(loopback, &allow).unwrap()
    }

    fn ok(origin: Option<&str>, host: Option<&str>, allow: &[&str]) -> bool {
        let allow: Vec<String> = allow.iter().map(|s| (*s).to_owned()).collect();
        // Bound beyond loopback without --allow-host: the rule is off.
        origin_allowed(origin, host, &allow, &rule(false, &[]), false)
    }

    #[test]
    fn origins() {
        let host = Some("10.0.0.5:8765");
        assert!(ok(None, host, &[]), "no Origin: not a browser");
        assert!(ok(Some("http://localhost:3000"), host, &[]));
        assert!(ok(Some("https://127.0.0.1"), host, &[]));
        assert!(ok(Some("http://[::1]:8080"), host, &[]));
        assert!(ok(Some("http://app.localhost:5173"), host, &[]));
        assert!(ok(Some("http://127.1.2.3"), host, &[]));
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
    fn origins_are_compared_with_the_allowed_hosts_not_the_request_host() {
        let loopback = rule(true, &[]);
        let check =
            |o: &str, h: &str, r: &HostRule| origin_allowed(Some(o), Some(h), &[], r, false);
        // The rebinding page: its Origin and Host agree, and both are its own.
        assert!(!check(
            "http://evil.example:8765",
            "evil.example:8765",
            &loopback
        ));
        assert!(check("http://localhost:3000", "localhost:8765", &loopback));
        let dash = rule(true, &["dash.example"]);
        assert!(check("https://dash.example", "dash.example", &dash));
        assert!(check("http://DASH.example.:8080", "127.0.0.1:8765", &dash));
        assert!(!check("http://evil.example", "dash.example", &dash));
        // `*` (a same-origin proxy): the page's own host and port.
        let any = rule(true, &["*"]);
        assert!(check("http://proxy.example", "proxy.example", &any));
        assert!(!check("https://evil.example", "proxy.example", &any));
    }

    #[test]
    fn host_rule_allows_loopback_names_addresses_and_listed_names() {
        let r = rule(true, &["Dash.Example."]);
        let check = |h: &str| r.check(&[h.to_owned()], true);
        for h in [
            "localhost",
            "localhost:8765",
            "LOCALHOST.:8765",
            "app.localhost:1",
            "127.0.0.1:8765",
            "127.9.8.7",
            "[::1]:8765",
            "[::ffff:127.0.0.1]",
            "10.0.0.5:8765",
            "[2001:db8::1]",
            "dash.example",
            "DASH.EXAMPLE:443",
            "dash.example.",
            "localhost:",
        ] {
            assert_eq!(check(h), HostVerdict::Allowed, "{h}");
        }
        for (h, name) in [
            ("evil.example:8765", "evil.example"),
            ("localhost.evil.example", "localhost.evil.example"),
            ("sub.dash.example", "sub.dash.example"),
            ("127.0.0.1.nip.io", "127.0.0.1.nip.io"),
            ("2130706433", "2130706433"),
        ] {
            assert_eq!(check(h), HostVerdict::Refused(name.into()), "{h}");
        }
        for h in [
            "",
            "::1",
            "[::1",
            "[zz::1]",
            "localhost:http",
            "a b",
            "x:99999",
            "user@localhost",
        ] {
            assert_eq!(check(h), HostVerdict::Malformed, "{h:?}");
        }
        assert_eq!(r.check(&[], true), HostVerdict::Missing);
        assert_eq!(r.check(&[], false), HostVerdict::Allowed, "HTTP/1.0");
        let two = ["localhost".to_owned(), "evil.example".to_owned()];
        assert_eq!(r.check(&two, true), HostVerdict::Missing);
    }

    #[test]
    fn host_rule_is_off_beyond_loopback_unless_names_are_given() {
        let evil = ["evil.example".to_owned()];
        assert!(!rule(false, &[]).is_on());
        assert_eq!(rule(false, &[]).check(&evil, true), HostVerdict::Allowed);
        assert_eq!(rule(false, &[]).check(&[], true), HostVerdict::Allowed);
        assert!(rule(false, &["dash.example"]).is_on());
        assert!(matches!(
            rule(false, &["dash.example"]).check(&evil, true),
            HostVerdict::Refused(_)
        ));
        assert!(!rule(true, &["*"]).is_on());
        for bad in [
            "http://dash.example",
            "dash.example:80",
            "dash.example/x",
            "a b",
        ] {
            let e = HostRule::new(true, &[bad.to_owned()])
                .unwrap_err()
                .to_string();
            assert!(e.contains("--allow-host"), "{e}");
        }
    }

    #[test]
    fn refused_sockets_held_are_capped() {
        let r = Refusing::new(2);
        let a = r.hold().unwrap();
        let _b = r.hold().unwrap();
        assert!(r.hold().is_none());
        drop(a);
        assert_eq!(r.held(), 1);
        assert!(r.hold().is_some());
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
