//! Paging: where alerts go and how they get there.
//!
//! * [`seal`]: channel secrets (URLs, routing keys, signing secrets) encrypted at rest,
//!   AES-256-GCM under a per-channel data key wrapped by the key-encryption key.
//! * [`guard`]: which destinations the server may call. Loopback, private,
//!   link-local, multicast and metadata addresses are refused in every spelling, at
//!   save time and again at send time against the address actually connected to.
//! * [`channel`]: the four channel kinds and their settings.
//! * [`payload`]: what each kind receives (PagerDuty Events v2, Slack, Standard
//!   Webhooks, Alertmanager `POST /api/v2/alerts`).
//! * [`routing`]: the tenant's routing tree (channels, `continue`, `group_wait`,
//!   `repeat_interval`), applied when a notification is delivered.
//! * [`worker`]: the outbox delivery loop: claim with a lease, send, retry with
//!   capped exponential backoff and jitter, honour `Retry-After`, dead-letter.

pub mod channel;
pub mod guard;
pub mod payload;
pub mod routing;
pub mod seal;
pub mod worker;
