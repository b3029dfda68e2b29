//! Human durations for flags and config: `250ms`, `1s`, `1.5s`, `2m`, or a
//! bare number of seconds (session-buddy's `update_interval` is seconds).

use std::time::Duration;

/// Parse a duration; the error names the accepted forms.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" | "sec" | "secs" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "{s:?} is not a duration; use e.g. 500ms, 1s, 1.5s or 2m"
            ));
        }
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; use e.g. 500ms, 1s, 1.5s or 2m"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{s:?} must be a positive duration"));
    }
    let secs = v * scale;
    if secs > 86_400.0 {
        return Err(format!("{s:?} is longer than a day"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Like [`parse`] but refuses zero and anything under 10 ms.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse(s)?;
    if d < Duration::from_millis(10) {
        return Err(format!("{s:?} is too short; the minimum is 10ms"));
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
}
