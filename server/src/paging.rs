//! Channels and routing from a configuration file (`--channels-file`), applied at
//! start: channels named in the file are created or updated (secrets sealed like the
//! API's, destinations checked), a tenant's `routing` replaces its tree. Channels the
//! file does not name are left as the API made them. Secrets may come from the
//! environment (`url_env`, `routing_key_env`, `secret_env`) so the file holds none.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use notify::channel::ChannelSpec;
use serde::Deserialize;
use storage::access::AccessStore;
use storage::notify::NotificationStore;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PagingFile {
    tenants: BTreeMap<String, TenantPaging>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantPaging {
    #[serde(default)]
    channels: Vec<FileChannel>,
    /// A routing document (`route: ...`), as `PUT /api/v1/routing` takes.
    #[serde(default)]
    routing: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileChannel {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_env: Option<String>,
    #[serde(default)]
    routing_key: Option<String>,
    #[serde(default)]
    routing_key_env: Option<String>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_env: Option<String>,
}

fn value(
    field: &str,
    literal: Option<String>,
    env: Option<String>,
) -> anyhow::Result<Option<String>> {
    match (literal, env) {
        (Some(_), Some(_)) => anyhow::bail!("{field} and {field}_env exclude each other"),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(var)) => std::env::var(&var)
            .map(Some)
            .with_context(|| format!("{field}_env: environment variable {var} is not set")),
        (None, None) => Ok(None),
    }
}

/// Apply the file; returns how many channels it wrote.
pub async fn apply(
    path: &Path,
    access: &AccessStore,
    store: &NotificationStore,
    sender: &notify::worker::Sender,
) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read channels file {}", path.display()))?;
    let file: PagingFile = serde_saphyr::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}",
            path.display(),
            e.to_string().lines().next().unwrap_or_default()
        )
    })?;
    let mut written = 0;
    for (tenant_name, paging) in file.tenants {
        let at = |what: String| format!("{}: tenants.{tenant_name}.{what}", path.display());
        let tenant = access
            .tenant_by_name(&tenant_name)
            .await
            .with_context(|| at("no such tenant".into()))?;
        let existing = store.channels(tenant.id).await?;
        for (i, c) in paging.channels.into_iter().enumerate() {
            let place = |e: String| anyhow::anyhow!(at(format!("channels[{i}].{e}")));
            let spec = ChannelSpec {
                name: c.name,
                kind: c.kind,
                url: value("url", c.url, c.url_env).map_err(|e| place(e.to_string()))?,
                routing_key: value("routing_key", c.routing_key, c.routing_key_env)
                    .map_err(|e| place(e.to_string()))?,
                secret: value("secret", c.secret, c.secret_env)
                    .map_err(|e| place(e.to_string()))?,
            };
            let before = existing.iter().find(|e| e.name == spec.name.trim());
            let id = before.map_or_else(uuid::Uuid::now_v7, |b| b.id);
            let mut row =
                notify::channel::prepare(spec, id, tenant.id, &sender.policy, &sender.keys)
                    .await
                    .map_err(place)?;
            match before {
                Some(b) if b.kind != row.kind => {
                    return Err(place(format!(
                        "type: {} channel cannot become {}",
                        b.kind, row.kind
                    )));
                }
                Some(b) => {
                    row.created_at = b.created_at;
                    store.update_channel(&row).await?;
                }
                None => store.create_channel(&row).await?,
            }
            written += 1;
        }
        if let Some(routing) = paging.routing {
            let names: Vec<String> = store
                .channels(tenant.id)
                .await?
                .into_iter()
                .map(|c| c.name)
                .collect();
            let parsed = notify::routing::Routing::parse(&routing.to_string(), &names)
                .map_err(|e| anyhow::anyhow!(at(format!("routing: {e}"))))?;
            let tree = serde_json::to_value(&parsed)?;
            store.put_routing(tenant.id, &tree, "config").await?;
        }
    }
    Ok(written)
}
