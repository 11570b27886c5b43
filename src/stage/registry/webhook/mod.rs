//! MLflow 3.x webhook deliveries (CONTRACTS §6.3): verification and parsing.
//!
//! A delivery is `POST` JSON with `X-MLflow-Delivery-Id` (a UUID, new per send, the same on
//! MLflow's own retries), `X-MLflow-Timestamp` (Unix seconds) and `X-MLflow-Signature`:
//! `v1,<base64 HMAC-SHA256(secret, "{delivery_id}.{timestamp}.{raw body}")>`. Verification runs
//! over the raw body bytes, compares in constant time ([`hmac::Mac::verify_slice`]) and refuses
//! timestamps outside the allowed skew either way, so a captured delivery cannot be replayed
//! later; replays inside the window are caught by the delivery id (the handler remembers it).

use std::time::Duration;

use base64::Engine;
use hmac::{KeyInit, Mac};
use serde_json::Value;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub const DELIVERY_ID: &str = "x-mlflow-delivery-id";
pub const TIMESTAMP: &str = "x-mlflow-timestamp";
pub const SIGNATURE: &str = "x-mlflow-signature";

/// Limits of the verification.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest distance between the delivery's timestamp and now, either way.
    pub max_skew: Duration,
    /// Largest body accepted (MLflow's model-registry payloads are a few KiB).
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_skew: Duration::from_secs(300),
            max_body: 256 << 10,
        }
    }
}

/// The three headers, as received (`None` when absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers<'a> {
    pub delivery_id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Why a delivery was refused; [`Refusal::status`] is the HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed header {header}: {why}")]
    BadHeader { header: &'static str, why: String },
    #[error("the signature does not match")]
    BadSignature,
    #[error("timestamp {timestamp} is {skew} s away from now (allowed: {allowed} s)")]
    Stale {
        timestamp: i64,
        skew: i64,
        allowed: u64,
    },
    #[error("the body is {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed body: {0}")]
    Malformed(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::MissingHeader(_)
            | Refusal::BadHeader { .. }
            | Refusal::BadSignature
            | Refusal::Stale { .. } => 401,
            Refusal::TooLarge { .. } => 413,
            Refusal::Malformed(_) => 400,
        }
    }
}

/// Checks a delivery against each current secret (more than one during a rotation). Returns the
/// delivery id. `now` is Unix seconds.
pub fn verify<'a>(
    secrets: &[&[u8]],
    h: &Headers<'a>,
    body: &[u8],
    now: i64,
    limits: &Limits,
) -> Result<&'a str, Refusal> {
    if body.len() > limits.max_body {
        return Err(Refusal::TooLarge {
            size: body.len(),
            limit: limits.max_body,
        });
    }
    let id = h.delivery_id.ok_or(Refusal::MissingHeader(DELIVERY_ID))?;
    let ts_text = h.timestamp.ok_or(Refusal::MissingHeader(TIMESTAMP))?;
    let sig = h.signature.ok_or(Refusal::MissingHeader(SIGNATURE))?;
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Refusal::BadHeader {
            header: DELIVERY_ID,
            why: "expected up to 128 printable ASCII characters".into(),
        });
    }
    let ts: i64 = ts_text.trim().parse().map_err(|_| Refusal::BadHeader {
        header: TIMESTAMP,
        why: format!("{ts_text:?} is not Unix seconds"),
    })?;
    // Several entries may be sent (space-separated `v1,<sig>`); any one matching is enough.
    // Unknown versions are ignored; undecodable v1 entries count as no match.
    let candidates: Vec<Vec<u8>> = sig
        .split_ascii_whitespace()
        .filter_map(|e| e.strip_prefix("v1,"))
        .filter_map(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .collect();
    if candidates.is_empty() {
        return Err(Refusal::BadHeader {
            header: SIGNATURE,
            why: "no v1,<base64> entry".into(),
        });
    }
    let matched = secrets.iter().any(|secret| {
        candidates.iter().any(|c| {
            let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
                return false;
            };
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(ts_text.as_bytes());
            mac.update(b".");
            mac.update(body);
            mac.verify_slice(c).is_ok()
        })
    });
    if !matched {
        return Err(Refusal::BadSignature);
    }
    // Checked after the signature, so an unsigned request learns nothing about the clock.
    let skew = now.saturating_sub(ts);
    let allowed = limits.max_skew.as_secs();
    if skew.unsigned_abs() > allowed {
        return Err(Refusal::Stale {
            timestamp: ts,
            skew,
            allowed,
        });
    }
    Ok(id)
}

/// The signature MLflow sends for a delivery (also what the tests sign with).
pub fn sign(secret: &[u8], delivery_id: &str, timestamp: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length; the fallback is unreachable but keeps this panic-free.
    let mut mac = HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| HmacSha256::new_from_slice(b"").expect("an empty key is accepted"));
    mac.update(format!("{delivery_id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// What a verified delivery says.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    VersionCreated {
        model: String,
        version: String,
        source: String,
        /// The MLflow run the version came from, when it has one.
        mlflow_run_id: Option<String>,
        tags: Vec<(String, String)>,
    },
    TagSet {
        model: String,
        version: String,
        key: String,
        value: String,
    },
    /// An alias was created (`version` present) or deleted (`None`).
    AliasChanged {
        model: String,
        alias: String,
        version: Option<String>,
    },
    /// An event type the pipeline does not act on (`entity.action`).
    Other(String),
}

impl Payload {
    /// The registered model the delivery is about, if any.
    pub fn model(&self) -> Option<&str> {
        match self {
            Payload::VersionCreated { model, .. }
            | Payload::TagSet { model, .. }
            | Payload::AliasChanged { model, .. } => Some(model),
            Payload::Other(_) => None,
        }
    }
}

/// Parses a verified body: `{"entity", "action", "timestamp", "data": {...}}`.
pub fn parse(body: &[u8]) -> Result<Payload, Refusal> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| Refusal::Malformed(format!("not JSON: {e}")))?;
    let text = |obj: &Value, field: &str| -> Result<String, Refusal> {
        match &obj[field] {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            // MLflow sends versions as strings; accept a number too.
            Value::Number(n) if field == "version" => Ok(n.to_string()),
            Value::Null => Err(Refusal::Malformed(format!("data.{field} is missing"))),
            other => Err(Refusal::Malformed(format!(
                "data.{field} must be a non-empty string, got {other}"
            ))),
        }
    };
    let entity = v["entity"]
        .as_str()
        .ok_or_else(|| Refusal::Malformed("entity is missing".into()))?;
    let action = v["action"]
        .as_str()
        .ok_or_else(|| Refusal::Malformed("action is missing".into()))?;
    let data = &v["data"];
    let kind = format!("{entity}.{action}");
    if !matches!(
        kind.as_str(),
        "model_version.created"
            | "model_version_tag.set"
            | "model_version_alias.created"
            | "model_version_alias.deleted"
    ) {
        return Ok(Payload::Other(kind));
    }
    if !data.is_object() {
        return Err(Refusal::Malformed("data must be an object".into()));
    }
    let model = text(data, "name")?;
    Ok(match kind.as_str() {
        "model_version.created" => Payload::VersionCreated {
            version: text(data, "version")?,
            source: data["source"].as_str().unwrap_or_default().to_owned(),
            mlflow_run_id: data["run_id"]
                .as_str()
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
            tags: tags(&data["tags"]),
            model,
        },
        "model_version_tag.set" => Payload::TagSet {
            version: text(data, "version")?,
            key: text(data, "key")?,
            value: data["value"].as_str().unwrap_or_default().to_owned(),
            model,
        },
        "model_version_alias.created" => Payload::AliasChanged {
            alias: text(data, "alias")?,
            version: Some(text(data, "version")?),
            model,
        },
        _ => Payload::AliasChanged {
            alias: text(data, "alias")?,
            version: None,
            model,
        },
    })
}

/// Tags as MLflow sends them: an object `{key: value}` or a list of `{key, value}`.
fn tags(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|t| {
                Some((
                    t["key"].as_str()?.to_owned(),
                    t["value"].as_str().unwrap_or_default().to_owned(),
                ))
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
