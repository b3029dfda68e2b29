//! Human byte sizes for flags and config: `65536`, `512KiB`, `4MiB`, `4M`,
//! `64k`, `1.5m` (binary units; bare numbers are bytes), each bounded by
//! the caller's range, and their printed form (`4 MiB`).
//!
//! Owns only the words; what a size means belongs to its user
//! (`watch --max-frame`, `serve --max-lag`).

use std::ops::RangeInclusive;

/// Parse a byte size within `range`; errors name the accepted forms or
/// the bounds.
pub fn parse_in(s: &str, range: &RangeInclusive<usize>) -> Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit; use bytes, KiB or MiB (e.g. 4MiB)"
            ));
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; use e.g. 4MiB or 512KiB"))?;
    let bytes = n * mult;
    let (lo, hi) = (*range.start(), *range.end());
    if !bytes.is_finite() || bytes < lo as f64 || bytes > hi as f64 {
        return Err(format!("{s:?} is outside {} ..= {}", human(lo), human(hi)));
    }
    Ok(bytes as usize)
}

/// `4 MiB`, `512 KiB`, `100 B`, `1.5 MiB`.
pub fn human(n: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    let fmt = |v: f64, unit: &str| {
        if v.fract() == 0.0 {
            format!("{v:.0} {unit}")
        } else {
            format!("{v:.1} {unit}")
        }
    };
    if n >= MIB {
        fmt(n as f64 / MIB as f64, "MiB")
    } else if n >= KIB {
        fmt(n as f64 / KIB as f64, "KiB")
    } else {
        format!("{n} B")
    }
}
