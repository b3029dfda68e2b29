//! Byte sizes for flags and config, the one home of their words: `65536`,
//! `512KiB`, `4MiB`, `4M`, `64k`, `1.5m` (K and M are binary: 1024, as in
//! every size this crate prints), and [`human`] to print them back
//! (`4 MiB`, `1.5 MiB`, `100 B`). Kept here rather than taken from the
//! `bytesize` crate: there `MB` is 1,000,000, which would silently change
//! what `--max-frame 4M` has always meant. Owns no limits: each caller
//! passes its own range.

use crate::error::InvalidValue;
use std::ops::RangeInclusive;

/// Parse a byte size and check it lies in `range`; errors name the
/// accepted forms or the range.
pub fn parse_within(s: &str, range: RangeInclusive<usize>) -> Result<usize, InvalidValue> {
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
            return Err(InvalidValue(format!(
                "{s:?}: unknown unit; use bytes, KiB or MiB (e.g. 4MiB)"
            )));
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| InvalidValue(format!("{s:?} is not a size; use e.g. 4MiB or 512KiB")))?;
    let bytes = n * mult;
    let (lo, hi) = (*range.start(), *range.end());
    if !bytes.is_finite() || bytes < lo as f64 || bytes > hi as f64 {
        return Err(InvalidValue(format!(
            "{s:?} is outside {} ..= {}",
            human(lo),
            human(hi)
        )));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(human(4 << 20), "4 MiB");
        assert_eq!(human(3 << 19), "1.5 MiB");
        assert_eq!(human(512 << 10), "512 KiB");
        assert_eq!(human(100), "100 B");
    }

    #[test]
    fn any_range_is_the_caller_s() {
        assert_eq!(parse_within("2k", 0..=4096), Ok(2048));
        assert!(parse_within("8k", 0..=4096).unwrap_err().contains("4 KiB"));
    }
}
