//! The row-tolerant `metrics_update` parse a client uses: one bad row is
//! dropped and counted ([`RowReport`]), never the whole frame, and rows past
//! the caps are skipped without being read.

#[allow(clippy::wildcard_imports)]
use super::*;
use serde_json::value::RawValue;

/// Most `top_skills` rows a client keeps from one `metrics_update`.
pub const MAX_TOP_SKILLS: usize = 10_000;
/// Most anomalies a client keeps from one `metrics_update`.
pub const MAX_ANOMALIES: usize = 1_000;
/// Longest `skill_name` of a row a client keeps, in bytes (a longer one is
/// a bad row: a name is a key of the dashboard's per-skill history).
pub const MAX_ROW_NAME_BYTES: usize = 1024;

/// The rows a tolerant parse of a `metrics_update` left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowReport {
    /// Rows with a bad value (wrong type, number out of range), dropped.
    pub rejected: u64,
    /// Rows beyond [`MAX_TOP_SKILLS`] / [`MAX_ANOMALIES`], not kept.
    pub over_cap: u64,
    /// Why the first rejected row was rejected.
    pub first_error: Option<String>,
}

/// The rows of one array, each still unparsed, at most `cap` of them.
pub(super) struct CappedRows<'a> {
    rows: Vec<&'a RawValue>,
    over_cap: u64,
}

pub(super) struct CappedRowsSeed(usize);

impl<'de> serde::de::DeserializeSeed<'de> for CappedRowsSeed {
    type Value = CappedRows<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V(usize);
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CappedRows<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of rows")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.0));
                let mut over_cap = 0u64;
                while rows.len() < self.0 {
                    match seq.next_element::<&'de serde_json::value::RawValue>()? {
                        Some(r) => rows.push(r),
                        None => return Ok(CappedRows { rows, over_cap }),
                    }
                }
                // The rest is skipped without being interpreted.
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    over_cap += 1;
                }
                Ok(CappedRows { rows, over_cap })
            }
        }
        d.deserialize_seq(V(self.0))
    }
}

/// Parse `raw` (a JSON array, `null` or absent) row by row into at most
/// `cap` values of `T`, reporting what was left out.
pub(super) fn parse_rows<'a, T: Deserialize<'a>>(
    raw: Option<&'a serde_json::value::RawValue>,
    cap: usize,
    what: &str,
    name: fn(&T) -> &str,
    report: &mut RowReport,
) -> Vec<T> {
    let Some(raw) = raw else { return Vec::new() };
    if raw.get() == "null" {
        return Vec::new();
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let rows = match serde::de::DeserializeSeed::deserialize(CappedRowsSeed(cap), &mut de) {
        Ok(r) => r,
        Err(e) => {
            report.rejected += 1;
            report
                .first_error
                .get_or_insert_with(|| format!("`{what}` is not an array of rows: {e}"));
            return Vec::new();
        }
    };
    report.over_cap += rows.over_cap;
    let mut out = Vec::with_capacity(rows.rows.len());
    for (i, r) in rows.rows.into_iter().enumerate() {
        let why = match serde_json::from_str::<T>(r.get()) {
            Ok(v) if name(&v).len() <= MAX_ROW_NAME_BYTES => {
                out.push(v);
                continue;
            }
            Ok(_) => format!("skill_name longer than {MAX_ROW_NAME_BYTES} bytes"),
            Err(e) => e.to_string(),
        };
        report.rejected += 1;
        report
            .first_error
            .get_or_insert_with(|| format!("{what}[{i}] dropped: {why}"));
    }
    out
}

/// The top level of a `metrics_update`, each field still unparsed: the
/// one set of wire slices both the update and its team fields are read
/// from.
#[derive(Default)]
struct Wire<'a> {
    seq: Option<&'a RawValue>,
    timestamp: Option<&'a RawValue>,
    data: Option<&'a RawValue>,
    /// (team) Present, and not `null`, only from an edge.
    sources: Option<&'a RawValue>,
    /// `sources` came more than once: the team view is dropped, the rest
    /// of the frame is not.
    sources_repeated: bool,
}

impl<'de> Deserialize<'de> for Wire<'de> {
    /// As `#[derive(Deserialize)]` would (a repeated `seq`, `timestamp` or
    /// `data` fails the frame, other keys are skipped), except that a
    /// repeated `sources` costs only the team view.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Key {
            Seq,
            Timestamp,
            Data,
            Sources,
            #[serde(other)]
            Other,
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Wire<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a metrics_update object")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Wire<'de>, A::Error> {
                // A derived struct takes an array too, field by field.
                Ok(Wire {
                    seq: seq.next_element()?.flatten(),
                    timestamp: seq.next_element()?.flatten(),
                    data: seq.next_element()?.flatten(),
                    ..Wire::default()
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Wire<'de>, A::Error> {
                let mut w = Wire::default();
                let mut seen = [false; 4];
                while let Some(key) = map.next_key::<Key>()? {
                    let (slot, i, name) = match key {
                        Key::Seq => (&mut w.seq, 0, "seq"),
                        Key::Timestamp => (&mut w.timestamp, 1, "timestamp"),
                        Key::Data => (&mut w.data, 2, "data"),
                        Key::Sources => (&mut w.sources, 3, "sources"),
                        Key::Other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    let repeated = std::mem::replace(&mut seen[i], true);
                    if repeated && i < 3 {
                        return Err(serde::de::Error::duplicate_field(name));
                    }
                    *slot = map.next_value()?;
                    w.sources_repeated |= repeated;
                }
                Ok(w)
            }
        }
        const FIELDS: &[&str] = &["seq", "timestamp", "data", "sources"];
        d.deserialize_struct("Wire", FIELDS, V)
    }
}

/// The row-tolerant `metrics_update` parse behind [`ServerMessage::parse`].
pub(super) fn parse_update(text: &str) -> Result<MetricsUpdate, serde_json::Error> {
    #[derive(Deserialize, Default)]
    struct WireData<'a> {
        #[serde(borrow, default)]
        top_skills: Option<&'a RawValue>,
        #[serde(borrow, default)]
        anomalies: Option<&'a RawValue>,
    }
    let wire: Wire = serde_json::from_str(text)?;
    let mut rows = RowReport::default();
    let data: WireData = match wire.data {
        None => WireData::default(),
        Some(d) if d.get() == "null" => WireData::default(),
        Some(d) => serde_json::from_str(d.get()).unwrap_or_else(|e| {
            rows.rejected += 1;
            rows.first_error = Some(format!("`data` is not an object: {e}"));
            WireData::default()
        }),
    };
    let top_skills = parse_rows(
        data.top_skills,
        MAX_TOP_SKILLS,
        "top_skills",
        |s: &SkillStat| &s.skill_name,
        &mut rows,
    );
    let anomalies = parse_rows(
        data.anomalies,
        MAX_ANOMALIES,
        "anomalies",
        |a: &Anomaly| &a.skill_name,
        &mut rows,
    );
    // The team fields ride on the same rows: read them from the same
    // slices, only when the frame comes from an edge.
    let team = wire
        .sources
        .filter(|r| r.get() != "null" && !wire.sources_repeated)
        .map(|sources| {
            Box::new(team::TeamFrame::from_rows(
                sources,
                data.top_skills,
                data.anomalies,
            ))
        });
    Ok(MetricsUpdate {
        seq: wire.seq.and_then(|r| serde_json::from_str(r.get()).ok()),
        timestamp: wire
            .timestamp
            .and_then(|r| serde_json::from_str::<Option<String>>(r.get()).ok())
            .flatten(),
        data: MetricsData {
            top_skills,
            anomalies,
        },
        rows,
        team,
    })
}
