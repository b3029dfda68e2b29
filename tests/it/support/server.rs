//! A real `skillmon serve` in-process on 127.0.0.1 port 0.

use std::path::Path;
use std::time::Duration;

use skillmon::server::{Handle, ServeConfig};

/// The serve defaults for `db` with a given interval and top N.
pub fn config(db: &Path, interval: Duration, top: usize) -> ServeConfig {
    let mut c = ServeConfig::new(db);
    c.interval = interval;
    c.top = top;
    c.write_timeout = skillmon::server::default_write_timeout(interval);
    c
}

/// Start a server on 127.0.0.1 port 0.
pub async fn start(config: ServeConfig) -> Handle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    skillmon::server::start(listener, config)
        .await
        .expect("start server")
}

/// Start a server on `db` with the given interval and top 10.
pub async fn serve(db: &Path, interval: Duration) -> Handle {
    start(config(db, interval, 10)).await
}

/// A database seeded with [`seed_basic`](super::seed_basic) and a server on
/// it with the given interval and top 10: the server, the database (its
/// temp dir lives as long as this value) and a writer connection.
pub async fn serve_seeded(interval: Duration) -> (Handle, super::TestDb, rusqlite::Connection) {
    let (db, conn) = super::TestDb::seeded();
    let server = serve(&db.path, interval).await;
    (server, db, conn)
}

/// Stop every server, each cleanly.
pub async fn stop_all<const N: usize>(servers: [Handle; N]) {
    for server in servers {
        server.stop().await.expect("the server stops cleanly");
    }
}
