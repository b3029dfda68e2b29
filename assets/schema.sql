-- A session-buddy-compatible skills database (migrations V1..V4 folded into one).
-- skillmon's demo and tests build their databases from this file; skillmon
-- never runs it against a user's database, which it only ever reads.
--
-- skill_metrics is kept by the AFTER INSERT trigger on skill_invocation,
-- exactly as session-buddy does:
--   completion_rate      = completed / total * 100   (0.0 until one completes)
--   avg_duration_seconds = completed duration / completed (NULL until one completes)

CREATE TABLE IF NOT EXISTS skill_invocation (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    skill_name TEXT NOT NULL,
    invoked_at TEXT NOT NULL,
    session_id TEXT,
    workflow_path TEXT,
    completed BOOLEAN DEFAULT 0,
    duration_seconds REAL,
    user_query TEXT,
    alternatives_considered TEXT,
    selection_rank INTEGER,
    follow_up_actions TEXT,
    error_type TEXT,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    embedding BLOB,
    workflow_phase TEXT,
    workflow_step_id TEXT
);

CREATE INDEX IF NOT EXISTS idx_skill_invocation_skill_name ON skill_invocation(skill_name);
CREATE INDEX IF NOT EXISTS idx_skill_invocation_invoked_at ON skill_invocation(invoked_at);
CREATE INDEX IF NOT EXISTS idx_skill_invocation_session ON skill_invocation(session_id);

CREATE TABLE IF NOT EXISTS skill_metrics (
    skill_name TEXT PRIMARY KEY,
    total_invocations INTEGER NOT NULL DEFAULT 0,
    completed_invocations INTEGER NOT NULL DEFAULT 0,
    abandoned_invocations INTEGER NOT NULL DEFAULT 0,
    total_duration_seconds REAL NOT NULL DEFAULT 0.0,
    workflow_paths TEXT,
    common_errors TEXT,
    follow_up_actions TEXT,
    avg_selection_rank REAL,
    recommendation_success_rate REAL,
    first_invoked TEXT,
    last_invoked TEXT,
    completion_rate REAL NOT NULL DEFAULT 0.0,
    avg_duration_seconds REAL,
    updated_at TEXT DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS skill_anomalies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    skill_name TEXT NOT NULL,
    detected_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    anomaly_type TEXT NOT NULL,
    baseline_value REAL,
    observed_value REAL,
    deviation_score REAL,
    resolved_at TEXT,
    FOREIGN KEY (skill_name) REFERENCES skill_metrics(skill_name)
);

CREATE INDEX IF NOT EXISTS idx_skill_anomalies_detected_at ON skill_anomalies(detected_at);

CREATE TABLE IF NOT EXISTS skill_metrics_cache (
    skill_name TEXT PRIMARY KEY,
    last_invocation_at TEXT,
    invocation_count_1h INTEGER NOT NULL DEFAULT 0,
    invocation_count_24h INTEGER NOT NULL DEFAULT 0,
    avg_duration_1h REAL,
    completion_rate_1h REAL,
    updated_at TEXT DEFAULT CURRENT_TIMESTAMP
);

CREATE TRIGGER IF NOT EXISTS trg_skill_invocation_metrics
AFTER INSERT ON skill_invocation
BEGIN
    INSERT INTO skill_metrics (
        skill_name, total_invocations, completed_invocations, abandoned_invocations,
        total_duration_seconds, first_invoked, last_invoked,
        completion_rate, avg_duration_seconds, updated_at)
    VALUES (
        NEW.skill_name, 1,
        CASE WHEN NEW.completed THEN 1 ELSE 0 END,
        CASE WHEN NEW.completed THEN 0 ELSE 1 END,
        CASE WHEN NEW.completed THEN COALESCE(NEW.duration_seconds, 0.0) ELSE 0.0 END,
        NEW.invoked_at, NEW.invoked_at,
        CASE WHEN NEW.completed THEN 100.0 ELSE 0.0 END,
        CASE WHEN NEW.completed THEN COALESCE(NEW.duration_seconds, 0.0) ELSE NULL END,
        CURRENT_TIMESTAMP)
    ON CONFLICT(skill_name) DO UPDATE SET
        total_invocations = total_invocations + 1,
        completed_invocations = completed_invocations + excluded.completed_invocations,
        abandoned_invocations = abandoned_invocations + excluded.abandoned_invocations,
        total_duration_seconds = total_duration_seconds + excluded.total_duration_seconds,
        last_invoked = NEW.invoked_at,
        completion_rate = (completed_invocations + excluded.completed_invocations) * 100.0
                          / (total_invocations + 1),
        avg_duration_seconds = CASE
            WHEN completed_invocations + excluded.completed_invocations > 0
            THEN (total_duration_seconds + excluded.total_duration_seconds)
                 / (completed_invocations + excluded.completed_invocations)
            ELSE NULL END,
        updated_at = CURRENT_TIMESTAMP;

    INSERT INTO skill_metrics_cache (skill_name, last_invocation_at, invocation_count_1h, invocation_count_24h, updated_at)
    VALUES (NEW.skill_name, NEW.invoked_at, 1, 1, CURRENT_TIMESTAMP)
    ON CONFLICT(skill_name) DO UPDATE SET
        last_invocation_at = NEW.invoked_at,
        invocation_count_1h = invocation_count_1h + 1,
        invocation_count_24h = invocation_count_24h + 1,
        updated_at = CURRENT_TIMESTAMP;
END;
