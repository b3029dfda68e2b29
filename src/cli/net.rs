//! `serve`'s network flags: tokens, origins, hosts, TLS, per-IP limit,
//! how far behind a client may fall (`--max-lag`).
//! Secrets come from files or the environment, never from a flag's value.

use std::path::PathBuf;

use clap::Args;
use skillmon::deflate::Compression;

/// `serve` beyond loopback: tokens, origins, TLS, per-IP limit.
/// Secrets come from files or the environment, never from a flag's value.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "On a network")]
pub struct NetArgs {
    /// Require this static token (file content, trimmed); or set SKILLMON_TOKEN.
    #[arg(long, value_name = "PATH", env = "SKILLMON_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Accept session-buddy's HS256 JWTs signed with this secret; or set SESSION_BUDDY_JWT_SECRET.
    #[arg(long, value_name = "PATH", env = "SKILLMON_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// A JWT must carry this in its `permissions` claim (e.g. session-buddy:read).
    #[arg(long, value_name = "NAME", env = "SKILLMON_REQUIRE_PERMISSION")]
    pub require_permission: Option<String>,
    /// Also allow WebSockets from browser pages of this origin (repeatable; `*` allows all).
    #[arg(
        long,
        value_name = "URL",
        env = "SKILLMON_ALLOW_ORIGIN",
        value_delimiter = ','
    )]
    pub allow_origin: Vec<String>,
    /// Also answer requests whose Host is this name (repeatable; `*` any, for a same-origin proxy).
    /// Loopback-bound, other names get 403 (DNS rebinding); beyond loopback, only with this flag.
    #[arg(
        long,
        value_name = "NAME",
        env = "SKILLMON_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub allow_host: Vec<String>,
    /// Serve wss:// and https:// with this PEM certificate chain (with --tls-key).
    #[arg(
        long,
        value_name = "FILE",
        env = "SKILLMON_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        value_name = "FILE",
        env = "SKILLMON_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Most open connections from one client IP; more get HTTP 503.
    #[arg(long, env = "SKILLMON_MAX_CONNECTIONS_PER_IP", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_ip: u32,
    /// Close (1013) a client more than this many bytes behind, e.g. 4MiB [default: 10 frames or 1MiB, whichever is larger].
    #[arg(long, value_name = "SIZE", env = "SKILLMON_MAX_LAG", value_parser = parse_max_lag)]
    pub max_lag: Option<usize>,
    /// permessage-deflate (RFC 7692) with every client that offers it (browsers, Python websockets, Node ws, watch), or off.
    #[arg(long, value_name = "MODE", env = "SKILLMON_COMPRESSION", ignore_case = true, default_value_t = Compression::Deflate, value_parser = super::names::<Compression>())]
    pub compression: Compression,
}

/// `--max-lag`: a byte size from 16 KiB to 1 GiB (the crate's one size
/// parser, shared with `watch --max-frame`).
fn parse_max_lag(s: &str) -> Result<usize, skillmon::error::InvalidValue> {
    skillmon::size::parse_within(s, (16 << 10)..=(1 << 30))
}

impl NetArgs {
    /// Read the secrets (files named by flags, else the environment).
    pub fn to_config(&self) -> anyhow::Result<skillmon::server::NetConfig> {
        use skillmon::server::auth::{AuthConfig, Secret};
        let secret =
            |file: &Option<PathBuf>, flag: &str, env: &str| -> anyhow::Result<Option<Secret>> {
                match file {
                    Some(p) => Secret::from_file(p, flag)
                        .map(Some)
                        .map_err(anyhow::Error::from),
                    None => Ok(std::env::var(env).ok().and_then(|v| Secret::new(&v))),
                }
            };
        Ok(skillmon::server::NetConfig {
            auth: AuthConfig {
                token: secret(&self.token_file, "--token-file", "SKILLMON_TOKEN")?,
                jwt_secret: secret(
                    &self.jwt_secret_file,
                    "--jwt-secret-file",
                    "SESSION_BUDDY_JWT_SECRET",
                )?,
                require_permission: self.require_permission.clone(),
                ..AuthConfig::default()
            },
            allow_origins: self.allow_origin.clone(),
            allow_hosts: self.allow_host.clone(),
            tls: self
                .tls_cert
                .clone()
                .zip(self.tls_key.clone())
                .map(|(cert, key)| skillmon::server::tls::TlsFiles { cert, key }),
            max_connections_per_ip: self.max_connections_per_ip as usize,
            max_lag: self.max_lag,
            compression: self.compression,
        })
    }
}
