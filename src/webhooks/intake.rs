//! The webhook HTTP handler: find the endpoint, check the request's shape
//! and signature, record through the engine, answer the way providers
//! expect (2xx only once recorded or dead-lettered durably, 5xx when the
//! store cannot take it so that the provider retries).

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::{ConnectInfo, DefaultBodyLimit, OriginalUri, Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::{
    domain::Millis,
    engine::Engine,
    error::Error,
    providers::ProviderRequest,
    storage::{Backend, StoreError, Tenant},
    webhooks::{
        WebhookEndpoint, WebhooksConfig,
        signatures::{self, Refusal},
        sns::SnsKind,
        sns_client::{SnsClient, SnsFailure},
    },
};

type SourceLimiter = governor::DefaultKeyedRateLimiter<std::net::IpAddr>;

struct Intake {
    engine: Arc<OnceLock<Engine<Backend>>>,
    /// Per source address; `None` without a limit.
    limiter: Option<SourceLimiter>,
    config: WebhooksConfig,
    /// Endpoints by the SHA-256 of their path secret.
    endpoints: HashMap<[u8; 32], (Tenant, WebhookEndpoint)>,
    /// Mailgun tokens seen within the clock-skew window (replays).
    seen_tokens: Mutex<HashMap<String, Instant>>,
    sns: SnsClient,
}

/// Serves the webhook port until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    config: WebhooksConfig,
    max_body_bytes: usize,
    engine: Arc<OnceLock<Engine<Backend>>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut endpoints = HashMap::new();
    for endpoint in &config.endpoints {
        let tenant = Tenant::new(&endpoint.tenant).map_err(anyhow::Error::msg)?;
        let digest = parse_digest(&endpoint.path_secret_sha256).ok_or_else(|| {
            anyhow::anyhow!(
                "webhooks.endpoints: path_secret_sha256 of tenant {tenant} is not 64 hex digits"
            )
        })?;
        endpoints.insert(digest, (tenant, endpoint.clone()));
    }
    let limiter = std::num::NonZeroU32::new(config.requests_per_second_per_source).map(|rate| {
        let burst = std::num::NonZeroU32::new(config.burst_per_source).unwrap_or(rate);
        governor::RateLimiter::keyed(governor::Quota::per_second(rate).allow_burst(burst))
    });
    let intake = Arc::new(Intake {
        engine,
        limiter,
        sns: SnsClient::new(config.sns.clone())?,
        config,
        endpoints,
        seen_tokens: Mutex::new(HashMap::new()),
    });
    let app = Router::new()
        .route("/webhooks/{provider}/{secret}", post(receive))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(intake.clone());
    match (&intake.config.cert_file, &intake.config.key_file) {
        (Some(cert), Some(key)) => {
            let tls = super::tls::server_config(cert, key)?;
            super::tls::serve(listener, app, tls, shutdown).await?;
        }
        (None, None) => {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await?;
        }
        _ => anyhow::bail!("webhooks.cert_file and webhooks.key_file go together"),
    }
    Ok(())
}

fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

fn reply(status: StatusCode, text: impl Into<String>) -> Response {
    (status, format!("{}\n", text.into())).into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn receive(
    State(intake): State<Arc<Intake>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path((provider, secret)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let provider_label = provider.clone();
    metrics::counter!("reach_webhook_requests_total", "provider" => provider_label.clone())
        .increment(1);
    let limited = intake
        .limiter
        .as_ref()
        .is_some_and(|limiter| limiter.check_key(&peer.ip()).is_err());
    let response = if limited {
        Err((StatusCode::TOO_MANY_REQUESTS, "rate limit of this source"))
    } else {
        intake
            .handle(&provider, &secret, &uri, &headers, body)
            .await
    };
    let response = response.unwrap_or_else(|(status, reason)| {
        metrics::counter!(
            "reach_webhook_rejected_total",
            "provider" => provider_label.clone(),
            "reason" => reason,
        )
        .increment(1);
        reply(status, reason)
    });
    metrics::histogram!("reach_webhook_seconds", "provider" => provider_label)
        .record(started.elapsed().as_secs_f64());
    response
}

type Rejection = (StatusCode, &'static str);

impl Intake {
    async fn handle(
        &self,
        provider: &str,
        secret: &str,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, Rejection> {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let (tenant, endpoint) = self
            .endpoints
            .get(&digest)
            .ok_or((StatusCode::NOT_FOUND, "unknown endpoint"))?;
        let content_type = header_str(headers, header::CONTENT_TYPE.as_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let form = content_type.starts_with("application/x-www-form-urlencoded");
        let json = content_type.starts_with("application/json");
        // SNS posts its JSON envelope as text/plain.
        let sns_text = provider == "ses" && content_type.starts_with("text/plain");
        if !form && !json && !sns_text {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content type must be application/json or application/x-www-form-urlencoded",
            ));
        }
        let mut token = None;
        if provider == "ses" && !endpoint.unsigned {
            if let Some(answer) = self.sns_message(endpoint, &body).await? {
                return Ok(answer);
            }
        } else if !endpoint.unsigned {
            token = self
                .verify(provider, endpoint, uri, headers, &content_type, &body)
                .map_err(|refusal| match refusal {
                    Refusal::Missing(r) => (StatusCode::UNAUTHORIZED, r),
                    Refusal::Bad(r) => (StatusCode::FORBIDDEN, r),
                })?;
            metrics::counter!("reach_webhook_verified_total", "provider" => provider.to_owned())
                .increment(1);
        }
        let engine = self
            .engine
            .get()
            .ok_or((StatusCode::SERVICE_UNAVAILABLE, "starting, retry"))?;
        let request = ProviderRequest {
            provider: provider.to_owned(),
            content_type,
            body: body.to_vec(),
            ..ProviderRequest::default()
        };
        let outcomes = engine
            .record_provider_event(tenant, request, false)
            .await
            .map_err(|e| rejection(&e))?;
        // Only a recorded request uses up its token: a redelivery after a
        // 503 carries the same one and must go through.
        if let Some(token) = token {
            self.remember(token);
        }
        let (mut recorded, mut duplicates, mut dead_lettered) = (0u64, 0u64, 0u64);
        for outcome in &outcomes {
            if outcome.dead_lettered {
                dead_lettered += 1;
            } else if outcome.duplicate {
                duplicates += 1;
            } else {
                recorded += 1;
            }
        }
        for (what, n) in [
            ("recorded", recorded),
            ("duplicate", duplicates),
            ("dead_lettered", dead_lettered),
        ] {
            metrics::counter!("reach_webhook_events_total", "provider" => provider.to_owned(), "outcome" => what)
                .increment(n);
        }
        let summary = serde_json::json!({
            "recorded": recorded, "duplicates": duplicates, "dead_lettered": dead_lettered
        });
        Ok((StatusCode::OK, axum::Json(summary)).into_response())
    }

    /// Verifies an SNS message. A notification goes on to be recorded
    /// (`None`); a subscription message is answered here.
    async fn sns_message(
        &self,
        endpoint: &WebhookEndpoint,
        body: &[u8],
    ) -> Result<Option<Response>, Rejection> {
        let sns_rejection = |failure| match failure {
            SnsFailure::Refused(Refusal::Missing(r)) => (StatusCode::UNAUTHORIZED, r),
            SnsFailure::Refused(Refusal::Bad(r)) => (StatusCode::FORBIDDEN, r),
            SnsFailure::Unavailable(r) => (StatusCode::SERVICE_UNAVAILABLE, r),
        };
        let message = self
            .sns
            .verify(body, &endpoint.sns_topic_arns, self.config.max_clock_skew)
            .await
            .map_err(sns_rejection)?;
        metrics::counter!("reach_webhook_verified_total", "provider" => "ses").increment(1);
        match message.kind() {
            Ok(SnsKind::SubscriptionConfirmation) => {
                let text = match self.sns.confirm(&message).await.map_err(sns_rejection)? {
                    true => "subscription confirmed",
                    false => "subscription not confirmed: confirmation is off, see the log",
                };
                Ok(Some(reply(StatusCode::OK, text)))
            }
            Ok(SnsKind::UnsubscribeConfirmation) => {
                tracing::warn!(topic = %message.topic_arn, "SNS subscription ended by the topic's owner");
                Ok(Some(reply(StatusCode::OK, "unsubscription noted")))
            }
            _ => Ok(None),
        }
    }

    fn verify(
        &self,
        provider: &str,
        endpoint: &WebhookEndpoint,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        content_type: &str,
        body: &[u8],
    ) -> Result<Option<String>, Refusal> {
        let key = endpoint
            .signing_keys
            .get(provider)
            .ok_or(Refusal::Bad("no signing key configured for this provider"))?;
        match provider {
            "twilio" | "twilio-voice" => {
                signatures::twilio(
                    key,
                    &self.public_url(uri, headers),
                    content_type,
                    body,
                    header_str(headers, "x-twilio-signature"),
                )?;
                Ok(None)
            }
            "mailgun" => {
                let value: serde_json::Value = serde_json::from_slice(body)
                    .map_err(|_| Refusal::Missing("a JSON body with a signature object"))?;
                let field = |name: &str| {
                    value
                        .pointer(&format!("/signature/{name}"))
                        .and_then(|v| {
                            v.as_str()
                                .map(str::to_owned)
                                .or_else(|| v.as_i64().map(|n| n.to_string()))
                        })
                        .ok_or(Refusal::Missing("signature.timestamp, token and signature"))
                };
                let (timestamp, token, signature) =
                    (field("timestamp")?, field("token")?, field("signature")?);
                signatures::mailgun(key, &timestamp, &token, &signature)?;
                self.fresh(&timestamp)?;
                self.unused(&token)?;
                Ok(Some(token))
            }
            "sendgrid" => {
                let signature = header_str(headers, "x-twilio-email-event-webhook-signature")
                    .ok_or(Refusal::Missing("X-Twilio-Email-Event-Webhook-Signature"))?;
                let timestamp = header_str(headers, "x-twilio-email-event-webhook-timestamp")
                    .ok_or(Refusal::Missing("X-Twilio-Email-Event-Webhook-Timestamp"))?;
                signatures::sendgrid(key, timestamp, body, signature)?;
                self.fresh(timestamp)?;
                Ok(None)
            }
            "plivo" => {
                signatures::plivo(
                    key,
                    &self.public_url(uri, headers),
                    content_type,
                    body,
                    header_str(headers, "x-plivo-signature-v3-nonce"),
                    header_str(headers, "x-plivo-signature-v3"),
                )?;
                Ok(None)
            }
            "vonage" => {
                let iat = signatures::vonage(key, body, header_str(headers, "authorization"))?;
                self.fresh(&iat.to_string())?;
                Ok(None)
            }
            _ => Err(Refusal::Bad(
                "reach checks no signature scheme for this provider yet (see docs/webhooks.md)",
            )),
        }
    }

    /// The URL the provider called: the configured public URL (or, without
    /// one, the port's scheme and the Host header) with the request's path
    /// and query.
    fn public_url(&self, uri: &axum::http::Uri, headers: &HeaderMap) -> String {
        let path = uri.path_and_query().map_or("", |p| p.as_str());
        let scheme = if self.config.cert_file.is_some() {
            "https"
        } else {
            "http"
        };
        match self.config.public_url.trim_end_matches('/') {
            "" => format!(
                "{scheme}://{}{path}",
                header_str(headers, "host").unwrap_or("")
            ),
            configured => format!("{configured}{path}"),
        }
    }

    /// A signed timestamp (seconds since the epoch) within the skew window.
    fn fresh(&self, timestamp: &str) -> Result<(), Refusal> {
        let seconds: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| Refusal::Bad("timestamp is not a number"))?;
        let skew = (Millis::now().0 / 1000 - seconds).unsigned_abs();
        if skew > self.config.max_clock_skew.as_secs() {
            return Err(Refusal::Bad("timestamp outside the allowed clock skew"));
        }
        Ok(())
    }

    /// A Mailgun token not used by a recorded request within the window.
    fn unused(&self, token: &str) -> Result<(), Refusal> {
        let seen = self.seen_tokens.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(token) {
            Some(at) if at.elapsed() < self.token_window() => {
                Err(Refusal::Bad("token already used (replay)"))
            }
            _ => Ok(()),
        }
    }

    /// Remembers a recorded request's token for as long as its timestamp
    /// is accepted, so that a replay of it is refused.
    fn remember(&self, token: String) {
        let window = self.token_window();
        let mut seen = self.seen_tokens.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() % 1024 == 1023 {
            seen.retain(|_, at| at.elapsed() < window);
        }
        seen.insert(token, Instant::now());
    }

    fn token_window(&self) -> Duration {
        self.config.max_clock_skew * 2 + Duration::from_secs(60)
    }
}

/// Engine errors as HTTP: a store that cannot take the events answers 503
/// so the provider retries; a body that does not translate is the
/// sender's to fix (400).
fn rejection(error: &Error) -> Rejection {
    match error {
        Error::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "the body does not translate"),
        Error::NotFound(_) => (StatusCode::NOT_FOUND, "unknown provider"),
        Error::NotReady | Error::Contention(_) | Error::Store(StoreError::Unavailable(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable, retry")
        }
        Error::BadTables(_) | Error::Store(_) => {
            tracing::error!(%error, "webhook not recorded");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}
