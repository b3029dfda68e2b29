//! `serve`'s team-view flags: publisher and edge. They exist in
//! every build; without the `team` cargo feature `--publish` and `--from`
//! answer with how to get it (rather than clap's "unexpected argument").

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Publisher and edge flags, converted by [`TeamArgs::to_role`].
#[derive(Debug, Args)]
#[cfg_attr(not(feature = "team"), allow(dead_code))]
#[command(next_help_heading = "Team view (Redis)")]
pub struct TeamArgs {
    /// Also write every snapshot to this Redis (redis://[user:pass@]HOST:PORT, rediss:// for TLS).
    #[arg(
        long,
        value_name = "URL",
        env = "SKILLMON_PUBLISH",
        conflicts_with = "from"
    )]
    pub publish: Option<String>,
    /// With --publish: this database's name in the team [default: the host name].
    #[arg(
        long,
        value_name = "NAME",
        env = "SKILLMON_SOURCE",
        requires = "publish"
    )]
    pub source: Option<String>,
    /// With --publish: write at least this often, changed or not.
    #[arg(long, value_name = "DURATION", default_value = "10s", requires = "publish", value_parser = skillmon::duration::parse_interval)]
    pub publish_every: Duration,
    /// With --publish: serve no WebSocket clients, only publish.
    #[arg(long, requires = "publish")]
    pub no_listen: bool,
    /// Be an edge: serve the merged snapshots of every publisher on this Redis (no --db).
    #[arg(long, value_name = "URL", env = "SKILLMON_FROM")]
    pub from: Option<String>,
    /// With --from: `all`, or the comma-separated sources to merge.
    #[arg(
        long,
        value_name = "all|NAME,…",
        env = "SKILLMON_SOURCES",
        default_value = "all",
        requires = "from"
    )]
    pub sources: String,
    /// With --from: drop a source from the totals after this long without a snapshot.
    #[arg(long, value_name = "DURATION", env = "SKILLMON_SOURCE_TTL", default_value = "10m", requires = "from", value_parser = skillmon::duration::parse_interval)]
    pub source_ttl: Duration,
    /// File holding the Redis password (first line; never logged).
    #[arg(long, value_name = "PATH", env = "SKILLMON_REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,
}

impl TeamArgs {
    /// Without the `team` feature: `--publish` / `--from` (or their env
    /// vars) are an error naming the fix; anything else is a single server.
    #[cfg(not(feature = "team"))]
    pub fn to_role(&self, _db_flag: bool) -> Result<skillmon::team::TeamRole, String> {
        let flag = match (&self.publish, &self.from) {
            (Some(_), _) => "--publish",
            (None, Some(_)) => "--from",
            (None, None) => return Ok(skillmon::team::TeamRole::None),
        };
        Err(format!(
            "{flag}: this skillmon was built without the team feature (Redis); \
             rebuild it with the default features, e.g. `cargo install --locked --path .` \
             without --no-default-features"
        ))
    }

    /// The team role, or a message naming the flag to fix. `db_flag`:
    /// `--db` was given on the command line (an edge reads no database;
    /// a `SKILLMON_DB` in the environment is simply not used).
    #[cfg(feature = "team")]
    pub fn to_role(&self, db_flag: bool) -> Result<skillmon::team::TeamRole, String> {
        use skillmon::team::{EdgeConfig, PublishConfig, RedisTarget, TeamRole};
        let target = |url: &str, flag: &str| {
            RedisTarget::parse(url, self.redis_password_file.as_deref())
                .map_err(|e| format!("--{flag}: {e}"))
        };
        if let Some(url) = &self.publish {
            let source = match &self.source {
                Some(s) => s.clone(),
                None => skillmon::team::default_source().ok_or(
                    "--publish: cannot read this machine's host name; name the source with --source NAME",
                )?,
            };
            skillmon::team::validate_source(&source).map_err(|e| format!("--source: {e}"))?;
            return Ok(TeamRole::Publish(PublishConfig {
                redis: target(url, "publish")?,
                source,
                every: self.publish_every,
            }));
        }
        if let Some(url) = &self.from {
            if db_flag {
                return Err(
                    "--from makes an edge, which reads no database: drop --db (or use --publish to send this database to Redis)".into(),
                );
            }
            let sources = match self.sources.trim() {
                "all" | "" => None,
                list => {
                    let names: Vec<String> = list.split(',').map(|s| s.trim().to_owned()).collect();
                    for n in &names {
                        skillmon::team::validate_source(n)
                            .map_err(|e| format!("--sources: {e}"))?;
                    }
                    Some(names)
                }
            };
            return Ok(TeamRole::Edge(EdgeConfig {
                redis: target(url, "from")?,
                sources,
                source_ttl: self.source_ttl,
            }));
        }
        Ok(TeamRole::None)
    }
}
