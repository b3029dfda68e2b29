//! `watch` over a network, as configured: where the token comes from
//! (never the token), the extra CA for `wss://`, the message limit,
//! whether to offer permessage-deflate; merged
//! flag/env > file > default like every other setting, and shown by
//! `--print-config` without the token's value. Reading the token and
//! building TLS trust is [`crate::client::connect`]'s.

use std::path::{Path, PathBuf};

use super::{ConfigError, FileConfig, Source, WatchOptions, toml_str};
use crate::deflate::Compression;

/// `watch` over a network: where the token comes from (never the token),
/// the extra CA for `wss://`, the message limit. Precedence as everywhere:
/// `--token-file` > `SKILLMON_TOKEN` > `token_file`; relative paths in the
/// config file are relative to its directory.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    pub token: Option<crate::client::TokenSource>,
    pub token_via: Source,
    pub ca_cert: Option<PathBuf>,
    pub ca_cert_source: Source,
    pub max_frame: usize,
    pub max_frame_source: Source,
    pub compression: Compression,
    pub compression_source: Source,
}

impl NetConfig {
    pub(super) fn merge(
        args: &WatchOptions,
        file: &FileConfig,
        path: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        use crate::client::{TokenSource, connect};
        let from_file = |p: &PathBuf| match path.and_then(Path::parent) {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.clone(),
        };
        let (token, token_via) = match (&args.token, &file.token_file) {
            _ if args.no_token => (None, Source::Default),
            (Some((t, src)), _) => (Some(t.clone()), *src),
            (None, Some(p)) => (Some(TokenSource::File(from_file(p))), Source::File),
            (None, None) => (None, Source::Default),
        };
        let (ca_cert, ca_cert_source) = match (&args.ca_cert, &file.ca_cert) {
            (Some((p, src)), _) => (Some(p.clone()), *src),
            (None, Some(p)) => (Some(from_file(p)), Source::File),
            (None, None) => (None, Source::Default),
        };
        let (max_frame, max_frame_source) = match (args.max_frame, &file.max_frame) {
            (Some((n, src)), _) => (n, src),
            (None, Some(text)) => match connect::parse_byte_size(text) {
                Ok(n) => (n, Source::File),
                Err(e) => {
                    return Err(ConfigError::Invalid {
                        path: path.map(Path::to_path_buf).unwrap_or_default(),
                        message: format!("key \"max_frame\": {e}"),
                    });
                }
            },
            (None, None) => (connect::DEFAULT_MAX_FRAME, Source::Default),
        };
        let (compression, compression_source) = match (args.compression, &file.compression) {
            (Some((c, src)), _) => (c, src),
            (None, Some(text)) => match text.parse::<Compression>() {
                Ok(c) => (c, Source::File),
                Err(_) => {
                    return Err(ConfigError::Invalid {
                        path: path.map(Path::to_path_buf).unwrap_or_default(),
                        message: format!(
                            "key \"compression\": {:?} is not a mode; use \"deflate\" or \"off\"",
                            crate::text::sanitize_line(text, 40)
                        ),
                    });
                }
            },
            (None, None) => (Compression::default(), Source::Default),
        };
        Ok(NetConfig {
            token,
            token_via,
            ca_cert,
            ca_cert_source,
            max_frame,
            max_frame_source,
            compression,
            compression_source,
        })
    }

    /// The `--print-config` lines: the token's source, never its value.
    pub(super) fn to_display(&self) -> String {
        use crate::client::{TokenSource, connect};
        let mut out = String::new();
        match &self.token {
            Some(TokenSource::File(p)) => out.push_str(&format!(
                "token_file = {}  # {}; token set (from file), value never shown\n",
                toml_str(&p.display().to_string()),
                self.token_via.as_str()
            )),
            Some(TokenSource::Env) => out.push_str(&format!(
                "# token: set (from env {}), value never shown\n",
                connect::TOKEN_ENV
            )),
            None => out.push_str(
                "# token: not set (--token-file, SKILLMON_TOKEN or token_file to send one)\n",
            ),
        }
        match &self.ca_cert {
            Some(p) => out.push_str(&format!(
                "ca_cert = {}  # {}; trusted for wss:// with the platform's roots\n",
                toml_str(&p.display().to_string()),
                self.ca_cert_source.as_str()
            )),
            None => out.push_str("# ca_cert: none (wss:// trusts the platform's roots)\n"),
        }
        out.push_str(&format!(
            "max_frame = {}  # {}\n",
            toml_str(&crate::size::human(self.max_frame)),
            self.max_frame_source.as_str()
        ));
        out.push_str(&format!(
            "compression = {}  # {}; {}\n",
            toml_str(&self.compression.to_string()),
            self.compression_source.as_str(),
            match self.compression {
                Compression::Deflate => "permessage-deflate offered",
                Compression::Off => "nothing offered",
            }
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::{merge, parse_file};
    use super::*;

    fn p() -> PathBuf {
        PathBuf::from("/tmp/skillmon.toml")
    }

    #[test]
    fn network_settings_merge_and_never_show_the_token() {
        use crate::client::TokenSource;
        let file = parse_file(
            "token_file = \"tok\"\nca_cert = \"/etc/ca.pem\"\nmax_frame = \"1MiB\"\n",
            &p(),
        )
        .unwrap();
        let c = merge(
            &WatchOptions::default(),
            file.clone(),
            Some(p()),
            true,
            false,
        )
        .unwrap();
        // Relative to the config file's directory.
        assert_eq!(
            c.net.token,
            Some(TokenSource::File(PathBuf::from("/tmp/tok")))
        );
        assert_eq!(c.net.token_via, Source::File);
        assert_eq!(c.net.ca_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(c.net.max_frame, 1 << 20);

        let args = WatchOptions {
            token: Some((TokenSource::Env, Source::Env)),
            max_frame: Some((64 << 10, Source::Flag)),
            ..WatchOptions::default()
        };
        let c = merge(&args, file.clone(), Some(p()), true, false).unwrap();
        assert_eq!(c.net.token, Some(TokenSource::Env));
        assert_eq!(c.net.max_frame, 64 << 10);
        let shown = c.net.to_display();
        assert!(
            shown.contains("token: set (from env SKILLMON_TOKEN)"),
            "{shown}"
        );
        assert!(shown.contains("max_frame = \"64 KiB\"  # flag"), "{shown}");

        // `demo` sends no token whatever the file says.
        let args = WatchOptions {
            no_token: true,
            ..WatchOptions::default()
        };
        let c = merge(&args, file, Some(p()), true, false).unwrap();
        assert_eq!(c.net.token, None);

        let bad = parse_file("max_frame = \"lots\"\n", &p()).unwrap();
        let e = merge(&WatchOptions::default(), bad, Some(p()), true, false).unwrap_err();
        assert!(e.to_string().contains("max_frame"), "{e}");
    }

    #[test]
    fn compression_defaults_to_deflate_and_merges() {
        let c = merge(
            &WatchOptions::default(),
            FileConfig::default(),
            None,
            true,
            false,
        )
        .unwrap();
        assert_eq!(c.net.compression, Compression::Deflate);
        assert!(
            c.net
                .to_display()
                .contains("compression = \"deflate\"  # default; permessage-deflate offered")
        );
        let file = parse_file("compression = \"OFF\"\n", &p()).unwrap();
        let c = merge(
            &WatchOptions::default(),
            file.clone(),
            Some(p()),
            true,
            false,
        )
        .unwrap();
        assert_eq!(
            (c.net.compression, c.net.compression_source),
            (Compression::Off, Source::File)
        );
        let args = WatchOptions {
            compression: Some((Compression::Deflate, Source::Env)),
            ..WatchOptions::default()
        };
        let c = merge(&args, file, Some(p()), true, false).unwrap();
        assert_eq!(c.net.compression, Compression::Deflate);
        let bad = parse_file("compression = \"gzip\"\n", &p()).unwrap();
        let e = merge(&WatchOptions::default(), bad, Some(p()), true, false).unwrap_err();
        assert!(e.to_string().contains("\"deflate\" or \"off\""), "{e}");
    }
}
