//! Human durations for flags and config: `250ms`, `1s`, `1.5s`, `2m`,
//! `1m 30s`, or a bare number of seconds (session-buddy's `update_interval`
//! is seconds).
//!
//! A thin wrapper over [`humantime::parse_duration`]: humantime needs a unit
//! on every number (except `0`), so a bare number is read here as seconds,
//! and the result is capped at a day with errors that name the accepted
//! forms.

use crate::error::InvalidValue;
use std::time::Duration;

const FORMS: &str = "use e.g. 500ms, 1s, 1.5s or 2m";

/// Parse a duration; the error names the accepted forms.
pub fn parse(s: &str) -> Result<Duration, InvalidValue> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(InvalidValue(format!("{s:?} must be a positive duration")));
    }
    let d = match t.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::try_from_secs_f64(secs)
            .map_err(|_| InvalidValue(format!("{s:?} is longer than a day")))?,
        Ok(_) => return Err(InvalidValue(format!("{s:?} must be a positive duration"))),
        Err(_) => humantime::parse_duration(t)
            .map_err(|_| InvalidValue(format!("{s:?} is not a duration; {FORMS}")))?,
    };
    if d > Duration::from_secs(86_400) {
        return Err(InvalidValue(format!("{s:?} is longer than a day")));
    }
    Ok(d)
}

/// Like [`parse`] but refuses zero and anything under 10 ms.
pub fn parse_interval(s: &str) -> Result<Duration, InvalidValue> {
    let d = parse(s)?;
    if d < Duration::from_millis(10) {
        return Err(InvalidValue(format!(
            "{s:?} is too short; the minimum is 10ms"
        )));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse("fast").is_err());
        assert!(parse("1x").is_err());
        assert!(parse("-1s").is_err());
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("5ms").is_err());
    }

    #[test]
    fn humantime_forms_and_limits() {
        assert_eq!(parse(" 1m 30s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("2 min"), Ok(Duration::from_secs(120)));
        assert!(parse("25h").unwrap_err().contains("longer than a day"));
        assert!(parse("inf").is_err());
        assert!(parse("1e30").unwrap_err().contains("longer than a day"));
        assert!(parse("fast").unwrap_err().contains("500ms"));
    }
}
