//! Channel kinds and their settings.

use serde::{Deserialize, Serialize};

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
