//! Direct webhook intake: providers post their receipts to
//! `POST /webhooks/{provider}/{secret}` on a port of its own (off by
//! default). The tenant comes from the endpoint the secret names; the body
//! goes through the same translation, dead-letter and dedupe path as
//! `RecordProviderEvent`, after the provider's signature is checked.
//! See docs/webhooks.md.

mod intake;
pub mod signatures;
pub mod sns;
mod sns_client;
mod tls;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

pub use intake::serve;

/// `[webhooks]` in the config file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Address of the webhook HTTP port; empty (the default) turns it off.
    pub listen: String,
    /// The base URL providers call, as they see it (e.g.
    /// `https://hooks.example.com`): Twilio signs the full URL, so behind a
    /// proxy or load balancer this must be the public one.
    pub public_url: String,
    /// PEM certificate chain of the webhook port; with `key_file`, it
    /// speaks HTTPS. Apart from the gRPC port's: this one faces the
    /// internet.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the webhook port.
    pub key_file: Option<PathBuf>,
    /// How far a signed timestamp (Mailgun, SendGrid, Vonage) may be from now.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Requests per second from one source address (the peer of the TCP
    /// connection: behind a proxy, the proxy) before 429; 0 for no limit.
    pub requests_per_second_per_source: u32,
    /// Requests one source may send at once above that rate.
    pub burst_per_source: u32,
    /// Amazon SNS (how SES notifications arrive): certificate hosts,
    /// message age, subscription confirmation.
    pub sns: sns::SnsConfig,
    pub endpoints: Vec<WebhookEndpoint>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            listen: String::new(),
            public_url: String::new(),
            cert_file: None,
            key_file: None,
            max_clock_skew: Duration::from_secs(300),
            requests_per_second_per_source: 200,
            burst_per_source: 400,
            sns: sns::SnsConfig::default(),
            endpoints: Vec::new(),
        }
    }
}

/// One tenant's intake: the secret in its URL and its providers' keys.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookEndpoint {
    pub tenant: String,
    /// SHA-256 (hex) of the secret in the URL path: providers post to
    /// `/webhooks/{provider}/{secret}` (make one with `openssl rand -hex 24`,
    /// hash it with `printf %s SECRET | sha256sum`).
    pub path_secret_sha256: String,
    /// Accept requests without a checked signature (for providers reach
    /// has no scheme for yet, behind a proxy that checks them). Off.
    pub unsigned: bool,
    /// Signing keys by provider: `twilio` / `twilio-voice` the account's
    /// auth token, `mailgun` the webhook signing key, `sendgrid` the
    /// verification key (base64 DER, from the Event Webhook settings),
    /// `plivo` the auth token, `vonage` the signature secret. (`ses` needs
    /// none: see `sns_topic_arns`.)
    pub signing_keys: BTreeMap<String, String>,
    /// SNS topics (ARNs) whose messages this endpoint takes on `ses`: SNS
    /// signs every topic's messages with the same AWS certificates, so the
    /// topic is what says a message is this tenant's. Required for `ses`.
    pub sns_topic_arns: Vec<String>,
}
