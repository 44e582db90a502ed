//! Channel kinds and their settings.

use serde::{Deserialize, Serialize};

/// Longest accepted channel URL.
pub const MAX_URL_BYTES: usize = 2048;
/// Longest accepted signing secret.
pub const MAX_SECRET_BYTES: usize = 1024;
/// Channels one tenant may have (every alert event is a row per channel).
pub const MAX_CHANNELS_PER_TENANT: usize = 64;

/// PagerDuty's Events API v2 endpoint (the default URL of a `pagerduty` channel).
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    PagerDuty,
    Slack,
    Webhook,
    Alertmanager,
}

impl Kind {
    pub fn parse(text: &str) -> Result<Kind, String> {
        match text {
            "pagerduty" => Ok(Kind::PagerDuty),
            "slack" => Ok(Kind::Slack),
            "webhook" => Ok(Kind::Webhook),
            "alertmanager" => Ok(Kind::Alertmanager),
            other => Err(format!(
                "type: unknown value {other:?}, expected one of pagerduty, slack, webhook, alertmanager"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PagerDuty => "pagerduty",
            Kind::Slack => "slack",
            Kind::Webhook => "webhook",
            Kind::Alertmanager => "alertmanager",
        }
    }
}

/// What a channel needs to send; sealed at rest, never returned by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Secrets {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl Secrets {
    /// Check the fields `kind` needs: PagerDuty a routing key (URL optional), the
    /// webhook a signing secret, Slack and Alertmanager a URL.
    pub fn for_kind(
        kind: Kind,
        url: Option<String>,
        routing_key: Option<String>,
        secret: Option<String>,
    ) -> Result<Secrets, String> {
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let (url, routing_key, secret) = (nonempty(url), nonempty(routing_key), nonempty(secret));
        if url.as_ref().is_some_and(|u| u.len() > MAX_URL_BYTES) {
            return Err(format!("url: at most {MAX_URL_BYTES} bytes"));
        }
        if secret.as_ref().is_some_and(|s| s.len() > MAX_SECRET_BYTES) {
            return Err(format!("secret: at most {MAX_SECRET_BYTES} bytes"));
        }
        let url = match (kind, url) {
            (_, Some(url)) => url,
            (Kind::PagerDuty, None) => PAGERDUTY_EVENTS_URL.to_string(),
            (_, None) => return Err(format!("url: required for a {} channel", kind.as_str())),
        };
        match kind {
            Kind::PagerDuty => {
                let key = routing_key
                    .ok_or("routing_key: required for a pagerduty channel (the integration key)")?;
                if key.len() > 128 {
                    return Err("routing_key: at most 128 characters".into());
                }
                Ok(Secrets {
                    url,
                    routing_key: Some(key),
                    secret: None,
                })
            }
            Kind::Webhook => {
                let secret = secret.ok_or(
                    "secret: required for a webhook channel (the signing key, e.g. whsec_<base64>)",
                )?;
                if signing_key(&secret).len() < 16 {
                    return Err("secret: the signing key must have at least 16 bytes".into());
                }
                Ok(Secrets {
                    url,
                    routing_key: None,
                    secret: Some(secret),
                })
            }
            Kind::Slack | Kind::Alertmanager => Ok(Secrets {
                url,
                routing_key: None,
                secret: None,
            }),
        }
    }
}

/// The HMAC key of a Standard Webhooks secret: `whsec_<base64>` decodes to the key;
/// any other string is used as bytes.
pub fn signing_key(secret: &str) -> Vec<u8> {
    use base64::Engine;
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// A channel as an admin gives it (API body or config file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub routing_key: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
}

/// Validate a channel, check its destination now, and seal its secrets: the row to
/// store. Errors name the field.
pub async fn prepare(
    spec: ChannelSpec,
    id: uuid::Uuid,
    tenant: model::TenantId,
    policy: &crate::guard::Destinations,
    keys: &crate::seal::Keyring,
) -> Result<storage::notify::ChannelRow, String> {
    let name = spec.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err("name: 1-64 characters, no control characters".into());
    }
    let kind = Kind::parse(&spec.kind)?;
    let secrets = Secrets::for_kind(kind, spec.url, spec.routing_key, spec.secret)?;
    let url = policy.check_destination(&secrets.url).await?;
    let host = url.host_str().unwrap_or_default();
    let target = match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    };
    let plain = serde_json::to_vec(&secrets).expect("secrets serialise");
    let now = chrono::Utc::now();
    Ok(storage::notify::ChannelRow {
        id,
        tenant_id: tenant,
        name,
        kind: kind.as_str().to_string(),
        target,
        sealed: keys.seal(&plain, id.as_bytes()),
        created_at: now,
        updated_at: now,
    })
}
