//! The HTTP side of Amazon SNS: fetching signing certificates (cached per
//! URL, one fetch at a time per URL) and confirming subscriptions, over
//! HTTPS to the configured hosts only, without following redirects (a
//! redirect could leave them).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rustls_pki_types::{CertificateDer, pem::PemObject};
use tokio::sync::OnceCell;

use super::{
    signatures::Refusal,
    sns::{self, SnsConfig, SnsKind, SnsMessage},
};
use crate::domain::Millis;

/// Largest certificate accepted (AWS's are about 2 KiB).
const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;
/// How long a fetched key is used before it is fetched again.
const KEY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Certificate URLs remembered at most; past it the cache starts over.
const MAX_CACHED_KEYS: usize = 256;

/// Why an SNS request was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnsFailure {
    /// Unsigned (401) or wrongly signed, stale, or from another topic (403).
    Refused(Refusal),
    /// AWS could not be reached: 503, so that SNS delivers again.
    Unavailable(&'static str),
}

impl From<Refusal> for SnsFailure {
    fn from(refusal: Refusal) -> Self {
        SnsFailure::Refused(refusal)
    }
}

type CachedKey = (Instant, Arc<Vec<u8>>);

pub struct SnsClient {
    http: reqwest::Client,
    config: SnsConfig,
    keys: Mutex<HashMap<String, Arc<OnceCell<CachedKey>>>>,
}

impl SnsClient {
    pub fn new(config: SnsConfig) -> anyhow::Result<SnsClient> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &config.ca_file {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| anyhow::anyhow!("webhooks.sns.ca_file {}: {e}", path.display()))?;
            for cert in certs {
                roots.add(cert)?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.fetch_timeout)
            .build()?;
        Ok(SnsClient {
            http,
            config,
            keys: Mutex::new(HashMap::new()),
        })
    }

    /// Checks an SNS POST body: from one of `topics`, fresh, signed by a
    /// certificate from an allowed host. The topic is checked before
    /// anything is fetched.
    pub async fn verify(
        &self,
        body: &[u8],
        topics: &[String],
        max_clock_skew: Duration,
    ) -> Result<SnsMessage, SnsFailure> {
        let message = SnsMessage::parse(body)?;
        message.kind()?;
        if !topics.contains(&message.topic_arn) {
            return Err(Refusal::Bad("TopicArn is not one this endpoint takes").into());
        }
        let age_ms = Millis::now().0 - message.timestamp_ms()?;
        if age_ms > self.config.max_message_age.as_millis() as i64
            || -age_ms > max_clock_skew.as_millis() as i64
        {
            return Err(Refusal::Bad("Timestamp outside the accepted age").into());
        }
        let url = sns::check_url(&message.signing_cert_url, &self.config.cert_hosts)?;
        let key = self.key(&url).await?;
        sns::verify(&message, &key)?;
        Ok(message)
    }

    /// Confirms a verified `SubscriptionConfirmation` by fetching its
    /// `SubscribeURL` (itself checked against the allowed hosts). Returns
    /// whether it was confirmed (false when confirmation is turned off).
    pub async fn confirm(&self, message: &SnsMessage) -> Result<bool, SnsFailure> {
        debug_assert_eq!(message.kind(), Ok(SnsKind::SubscriptionConfirmation));
        let url = message.subscribe_url.as_deref().unwrap_or("");
        let url = sns::check_url(url, &self.config.cert_hosts)?;
        if !self.config.confirm_subscriptions {
            tracing::warn!(topic = %message.topic_arn, %url, "SNS subscription not confirmed (webhooks.sns.confirm_subscriptions is off): confirm it by visiting the URL");
            count_confirmation("skipped");
            return Ok(false);
        }
        let confirmed = self
            .http
            .get(url)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success());
        if !confirmed {
            count_confirmation("failed");
            return Err(SnsFailure::Unavailable(
                "could not confirm the subscription, retry",
            ));
        }
        count_confirmation("confirmed");
        tracing::info!(topic = %message.topic_arn, "SNS subscription confirmed");
        Ok(true)
    }

    /// The RSA key of the certificate at `url`, from the cache or fetched.
    async fn key(&self, url: &url::Url) -> Result<Arc<Vec<u8>>, SnsFailure> {
        let cell = {
            let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            let stale = keys
                .get(url.as_str())
                .and_then(|cell| cell.get())
                .is_some_and(|(fetched, _)| fetched.elapsed() > KEY_TTL);
            if stale || keys.len() >= MAX_CACHED_KEYS {
                keys.remove(url.as_str());
                if keys.len() >= MAX_CACHED_KEYS {
                    keys.clear();
                }
            }
            keys.entry(url.as_str().to_owned()).or_default().clone()
        };
        let fetched = cell
            .get_or_try_init(|| async {
                let pem = self.fetch(url).await?;
                let key = sns::public_key_of(&pem)?;
                Ok::<_, SnsFailure>((Instant::now(), Arc::new(key)))
            })
            .await;
        match fetched {
            Ok((_, key)) => Ok(key.clone()),
            Err(failure) => {
                // A URL that gave no key is not remembered, so that bogus
                // URLs cannot fill the cache.
                let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
                if keys.get(url.as_str()).is_some_and(|c| !c.initialized()) {
                    keys.remove(url.as_str());
                }
                Err(failure)
            }
        }
    }

    async fn fetch(&self, url: &url::Url) -> Result<Vec<u8>, SnsFailure> {
        let outcome = self.try_fetch(url).await;
        let label = match &outcome {
            Ok(_) => "fetched",
            Err(SnsFailure::Refused(_)) => "refused",
            Err(SnsFailure::Unavailable(_)) => "unavailable",
        };
        metrics::counter!("reach_webhook_sns_certificate_fetches_total", "outcome" => label)
            .increment(1);
        outcome
    }

    async fn try_fetch(&self, url: &url::Url) -> Result<Vec<u8>, SnsFailure> {
        let unavailable = SnsFailure::Unavailable("could not fetch the SNS signing certificate");
        let mut response = self.http.get(url.clone()).send().await.map_err(|e| {
            tracing::warn!(%url, error = %e, "SNS signing certificate not fetched");
            unavailable.clone()
        })?;
        let status = response.status();
        if status.is_server_error() {
            return Err(unavailable);
        }
        if !status.is_success() {
            return Err(Refusal::Bad("SigningCertURL names no certificate").into());
        }
        let mut pem = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|_| unavailable.clone())? {
            pem.extend_from_slice(&chunk);
            if pem.len() > MAX_CERTIFICATE_BYTES {
                return Err(Refusal::Bad("SigningCertURL is too large for a certificate").into());
            }
        }
        Ok(pem)
    }
}

fn count_confirmation(outcome: &'static str) {
    metrics::counter!("reach_webhook_sns_confirmations_total", "outcome" => outcome).increment(1);
}
