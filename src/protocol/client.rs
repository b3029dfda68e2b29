//! Client → server frames: [`Subscription`], the classified
//! [`ClientMessage`] and the [`ClientError`]s the server answers with.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::error::InvalidValue;
use crate::text::truncate_chars;

/// What a client asks to receive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Subscription {
    /// Every skill (the top N) and all anomalies.
    #[default]
    All,
    /// Only these skills (sorted, deduplicated, never empty).
    Skills(Vec<String>),
}

impl Subscription {
    /// Build from names; an empty list (or only empty names) means all.
    pub fn from_names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut v: Vec<String> = names
            .into_iter()
            .map(Into::into)
            .filter(|s| !s.is_empty())
            .collect();
        v.sort();
        v.dedup();
        if v.is_empty() {
            Subscription::All
        } else {
            Subscription::Skills(v)
        }
    }

    pub fn includes(&self, skill: &str) -> bool {
        match self {
            Subscription::All => true,
            Subscription::Skills(v) => v.binary_search_by(|s| s.as_str().cmp(skill)).is_ok(),
        }
    }

    /// The limits every server of this protocol enforces (and the client
    /// checks before sending): at most [`MAX_SKILLS_PER_SUBSCRIPTION`] names
    /// of at most [`MAX_SKILL_NAME_LEN`] bytes.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let names = self.skills();
        if names.len() > MAX_SKILLS_PER_SUBSCRIPTION {
            return Err(InvalidValue(format!(
                "{} skills given; at most {MAX_SKILLS_PER_SUBSCRIPTION} per subscription",
                names.len()
            )));
        }
        if let Some(long) = names.iter().find(|n| n.len() > MAX_SKILL_NAME_LEN) {
            return Err(InvalidValue(name_too_long(long)));
        }
        Ok(())
    }

    pub fn skills(&self) -> &[String] {
        match self {
            Subscription::All => &[],
            Subscription::Skills(v) => v,
        }
    }
}

/// A classified client frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `subscribe`; `echo` is the value to put in `subscription_confirmed.skill`.
    Subscribe {
        subscription: Subscription,
        echo: Value,
    },
    Unsubscribe,
    Ping {
        id: Option<Value>,
    },
    /// `{"token": "..."}`: the auth frame (compat).
    Auth {
        token: String,
    },
    /// (documented API) `{"type":"get_metrics","skill_name":"x"}`: one
    /// skill's current figures, answered by `metrics_response`.
    GetMetrics {
        skill: String,
    },
    /// (ext) `{"type":"history","skills":[...],"window":"1h"}`: buckets of
    /// the last hour or day, answered by one `history` frame. `skills` is
    /// sorted and deduplicated; `None` means the current subscription's
    /// visible skills.
    History {
        skills: Option<Vec<String>>,
        window: HistoryWindow,
    },
}

/// Why a client frame was refused; maps to an `error` frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientError {
    pub code: ErrorCode,
    pub message: String,
}

impl ClientError {
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn to_frame(&self) -> ServerMessage {
        ServerMessage::Error(ErrorFrame {
            code: self.code,
            message: self.message.clone(),
        })
    }
}

impl ClientMessage {
    /// Classify one text frame from a client, with the error code to answer
    /// when it is not acceptable.
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ClientError::new(ErrorCode::InvalidJson, e.to_string()))?;
        let Value::Object(obj) = value else {
            return Err(ClientError::new(
                ErrorCode::NotAnObject,
                "a message must be a JSON object with a string field \"type\"",
            ));
        };
        let ty = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            None => {
                if let Some(tok) = obj.get("token") {
                    return match tok {
                        Value::String(t) => Ok(ClientMessage::Auth { token: t.clone() }),
                        _ => Err(ClientError::new(
                            ErrorCode::BadRequest,
                            "\"token\" must be a string",
                        )),
                    };
                }
                return Err(ClientError::new(
                    ErrorCode::BadRequest,
                    "missing field \"type\" (one of subscribe, unsubscribe, ping, get_metrics, history)",
                ));
            }
            Some(_) => {
                return Err(ClientError::new(
                    ErrorCode::BadRequest,
                    "field \"type\" must be a string",
                ));
            }
        };
        match ty {
            "subscribe" => parse_subscribe(&obj),
            "unsubscribe" => Ok(ClientMessage::Unsubscribe),
            "ping" => Ok(ClientMessage::Ping {
                id: obj.get("id").cloned(),
            }),
            "get_metrics" => parse_get_metrics(&obj),
            "history" => history::parse_history(&obj),
            other => Err(ClientError::new(
                ErrorCode::UnknownType,
                format!(
                    "unknown message type {:?}; expected subscribe, unsubscribe, ping, get_metrics or history",
                    truncate_chars(other, 64)
                ),
            )),
        }
    }

    /// Encode as one JSON text frame (used by clients).
    pub fn encode(&self) -> String {
        let v = match self {
            ClientMessage::Subscribe {
                subscription,
                echo: _,
            } => match subscription {
                Subscription::All => serde_json::json!({"type": "subscribe", "skill": null}),
                Subscription::Skills(s) if s.len() == 1 => {
                    serde_json::json!({"type": "subscribe", "skill": s[0]})
                }
                Subscription::Skills(s) => serde_json::json!({"type": "subscribe", "skills": s}),
            },
            ClientMessage::Unsubscribe => serde_json::json!({"type": "unsubscribe"}),
            ClientMessage::Ping { id: None } => serde_json::json!({"type": "ping"}),
            ClientMessage::Ping { id: Some(id) } => serde_json::json!({"type": "ping", "id": id}),
            ClientMessage::Auth { token } => serde_json::json!({ "token": token }),
            ClientMessage::GetMetrics { skill } => {
                serde_json::json!({"type": "get_metrics", "skill_name": skill})
            }
            ClientMessage::History {
                skills: None,
                window,
            } => serde_json::json!({"type": "history", "window": window}),
            ClientMessage::History {
                skills: Some(s),
                window,
            } => serde_json::json!({"type": "history", "skills": s, "window": window}),
        };
        v.to_string()
    }
}

/// The `error` message for a skill name over [`MAX_SKILL_NAME_LEN`]: the
/// start of the name, not all of it.
pub(super) fn name_too_long(name: &str) -> String {
    format!(
        "skill name {:?}… is longer than {MAX_SKILL_NAME_LEN} bytes",
        truncate_chars(name, 32)
    )
}

pub(super) fn parse_subscribe(
    obj: &serde_json::Map<String, Value>,
) -> Result<ClientMessage, ClientError> {
    let mut names: Vec<String> = Vec::new();
    // `skill` (compat) wins over the `skill_name` alias (ext).
    let (single_key, single) = match (obj.get("skill"), obj.get("skill_name")) {
        (Some(v), _) => ("skill", Some(v)),
        (None, Some(v)) => ("skill_name", Some(v)),
        (None, None) => ("skill", None),
    };
    match single {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => names.push(s.clone()),
        Some(_) => {
            return Err(ClientError::new(
                ErrorCode::BadRequest,
                format!("\"{single_key}\" must be a string or null"),
            ));
        }
    }
    match obj.get("skills") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            if items.len() > MAX_SKILLS_PER_SUBSCRIPTION {
                return Err(ClientError::new(
                    ErrorCode::BadRequest,
                    format!("\"skills\" lists more than {MAX_SKILLS_PER_SUBSCRIPTION} names"),
                ));
            }
            for item in items {
                let Value::String(s) = item else {
                    return Err(ClientError::new(
                        ErrorCode::BadRequest,
                        "\"skills\" must be an array of strings",
                    ));
                };
                names.push(s.clone());
            }
        }
        Some(_) => {
            return Err(ClientError::new(
                ErrorCode::BadRequest,
                "\"skills\" must be an array of strings",
            ));
        }
    }
    let subscription = Subscription::from_names(names);
    subscription
        .validate()
        .map_err(|m| ClientError::new(ErrorCode::BadRequest, m.0))?;
    Ok(ClientMessage::Subscribe {
        subscription,
        echo: single.cloned().unwrap_or(Value::Null),
    })
}

pub(super) fn parse_get_metrics(
    obj: &serde_json::Map<String, Value>,
) -> Result<ClientMessage, ClientError> {
    // `skill_name` (documented) or `skill` (the name `subscribe` uses).
    let (key, v) = match (obj.get("skill_name"), obj.get("skill")) {
        (Some(v), _) => ("skill_name", v),
        (None, Some(v)) => ("skill", v),
        (None, None) => {
            return Err(ClientError::new(
                ErrorCode::BadRequest,
                "get_metrics needs \"skill_name\": the skill to report on",
            ));
        }
    };
    match v {
        Value::String(s) if !s.is_empty() && s.len() <= MAX_SKILL_NAME_LEN => {
            Ok(ClientMessage::GetMetrics { skill: s.clone() })
        }
        Value::String(s) if s.len() > MAX_SKILL_NAME_LEN => {
            Err(ClientError::new(ErrorCode::BadRequest, name_too_long(s)))
        }
        _ => Err(ClientError::new(
            ErrorCode::BadRequest,
            format!("get_metrics needs \"{key}\" to be a non-empty skill name"),
        )),
    }
}
