//! Direct webhook intake over real HTTP: requests shaped and signed the way
//! each provider documents (by the test, with test keys), every signature
//! failure mode, and 5xx while the store is unavailable followed by a
//! redelivery that counts once.

mod common;

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use common::{http::*, *};
use hmac::{Hmac, Mac};
use reach::{
    proto::{self, Channel},
    webhooks::{WebhookEndpoint, signatures::hex},
};
use sha2::{Digest, Sha256};

const SECRET: &str = "path-secret-0123456789";
const OTHER_SECRET: &str = "path-secret-of-another-tenant";
const TWILIO_TOKEN: &str = "twilio-auth-token";
const MAILGUN_KEY: &str = "mailgun-signing-key";
const PLIVO_TOKEN: &str = "plivo-auth-token";
const VONAGE_SECRET: &str = "vonage-signature-secret";
const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

fn sendgrid_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[42u8; 32]).unwrap()
}

fn endpoint(tenant: &str, secret: &str) -> WebhookEndpoint {
    use p256::pkcs8::EncodePublicKey;
    let sendgrid_public = BASE64.encode(
        sendgrid_key()
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes(),
    );
    WebhookEndpoint {
        tenant: tenant.into(),
        path_secret_sha256: hex(&Sha256::digest(secret.as_bytes())),
        signing_keys: [
            ("twilio", TWILIO_TOKEN.to_owned()),
            ("mailgun", MAILGUN_KEY.to_owned()),
            ("plivo", PLIVO_TOKEN.to_owned()),
            ("vonage", VONAGE_SECRET.to_owned()),
            ("sendgrid", sendgrid_public),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        unsigned: false,
        sns_topic_arns: Vec::new(),
    }
}

async fn start_with(tweak: impl FnOnce(&mut reach::config::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.webhooks.listen = "127.0.0.1:0".into();
        c.webhooks.endpoints = vec![endpoint("default", SECRET), endpoint("other", OTHER_SECRET)];
        fixture_contact_fields(c);
        tweak(c);
    })
    .await
}

async fn start() -> TestServer {
    start_with(|_| {}).await
}

fn twilio_signature(url: &str, body: &[u8]) -> String {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    params.sort();
    let mut data = url.to_owned();
    for (k, v) in params {
        data.push_str(&k);
        data.push_str(&v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(TWILIO_TOKEN.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// The Mailgun fixture with a fresh signature object (`timestamp`, a
/// `token`, HMAC-SHA256 over both with `key`).
fn mailgun_body(key: &str, timestamp: i64, token: &str) -> Vec<u8> {
    let mut value: serde_json::Value =
        serde_json::from_slice(&fixture("mailgun/failed-permanent.json")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{timestamp}{token}").as_bytes());
    value["signature"] = serde_json::json!({
        "timestamp": timestamp.to_string(),
        "token": token,
        "signature": hex(&mac.finalize().into_bytes()),
    });
    serde_json::to_vec(&value).unwrap()
}

fn sendgrid_headers(timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    use p256::ecdsa::{Signature, signature::Signer};
    let signature: Signature =
        sendgrid_key().sign(&[timestamp.to_string().as_bytes(), body].concat());
    vec![
        (
            "X-Twilio-Email-Event-Webhook-Signature",
            BASE64.encode(signature.to_der().as_bytes()),
        ),
        (
            "X-Twilio-Email-Event-Webhook-Timestamp",
            timestamp.to_string(),
        ),
    ]
}

fn now_s() -> i64 {
    now_ms() / 1000
}

async fn sms_delivered(client: &mut Client, contact: &str) -> u32 {
    match client
        .get_contact_profile(proto::GetContactProfileRequest {
            contact_id: contact.into(),
        })
        .await
    {
        Ok(p) => counts(&p.into_inner(), Channel::Sms).delivered,
        Err(s) if s.code() == tonic::Code::NotFound => 0,
        Err(s) => panic!("{s}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn twilio_signed_form_is_recorded_once() {
    let server = start().await;
    let addr = server.webhooks.unwrap();
    let path = format!("/webhooks/twilio/{SECRET}");
    let body = fixture("twilio/delivered.form");
    let signature = twilio_signature(&format!("http://{addr}{path}"), &body);
    let headers = [("X-Twilio-Signature", signature)];
    let (status, reply) = post(addr, &path, FORM, &headers, &body).await;
    assert_eq!((status, summary(&reply)), (200, (1, 0, 0)), "{reply}");
    let mut client = server.client().await;
    assert_eq!(sms_delivered(&mut client, "+14155550100").await, 1);
    // Twilio retries on timeouts: the redelivery is a duplicate.
    let (status, reply) = post(addr, &path, FORM, &headers, &body).await;
    assert_eq!((status, summary(&reply)), (200, (0, 1, 0)), "{reply}");
    assert_eq!(sms_delivered(&mut client, "+14155550100").await, 1);

    // The same request on another tenant's endpoint lands in that tenant.
    let other = format!("/webhooks/twilio/{OTHER_SECRET}");
    let signature = twilio_signature(&format!("http://{addr}{other}"), &body);
    let (status, reply) = post(
        addr,
        &other,
        FORM,
        &[("X-Twilio-Signature", signature)],
        &body,
    )
    .await;
    assert_eq!((status, summary(&reply)), (200, (1, 0, 0)), "{reply}");
}

#[tokio::test(flavor = "multi_thread")]
async fn twilio_signature_failures_record_nothing() {
    let server = start().await;
    let addr = server.webhooks.unwrap();
    let path = format!("/webhooks/twilio/{SECRET}");
    let body = fixture("twilio/delivered.form");
    let url = format!("http://{addr}{path}");
    let good = twilio_signature(&url, &body);
    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace("MessageStatus=delivered", "MessageStatus=failed")
        .into_bytes();
    let wrong_key = {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"not-the-token").unwrap();
        mac.update(url.as_bytes());
        BASE64.encode(mac.finalize().into_bytes())
    };
    // (what, headers, body, content type, expected status)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>, &'a str, u16);
    let cases: Vec<Case> = vec![
        ("missing signature", vec![], body.clone(), FORM, 401),
        (
            "wrong key",
            vec![("X-Twilio-Signature", wrong_key)],
            body.clone(),
            FORM,
            403,
        ),
        (
            "tampered body",
            vec![("X-Twilio-Signature", good.clone())],
            tampered,
            FORM,
            403,
        ),
        (
            "wrong content type",
            vec![("X-Twilio-Signature", good.clone())],
            body.clone(),
            "text/plain",
            415,
        ),
    ];
    for (label, headers, body, content_type, want) in cases {
        let (status, reply) = post(addr, &path, content_type, &headers, &body).await;
        assert_eq!(status, want, "{label}: {reply}");
    }
    let (status, _) = post(
        addr,
        "/webhooks/twilio/not-a-secret",
        FORM,
        &[("X-Twilio-Signature", good)],
        &body,
    )
    .await;
    assert_eq!(status, 404, "unknown endpoint");
    let big = vec![b'a'; server.config.providers.max_body_bytes + 1];
    let (status, _) = post(addr, &path, FORM, &[], &big).await;
    assert_eq!(status, 413, "body over the limit");
    let mut client = server.client().await;
    assert_eq!(sms_delivered(&mut client, "+14155550100").await, 0);
    // Refusals are counted by provider and reason.
    let (_, metrics) = http_get(server.admin, "/metrics").await;
    assert!(
        metrics.contains(
            "reach_webhook_rejected_total{provider=\"twilio\",reason=\"signature does not match\"}"
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mailgun_signed_json_with_replay_and_clock_checks() {
    let server = start().await;
    let addr = server.webhooks.unwrap();
    let path = format!("/webhooks/mailgun/{SECRET}");
    let body = mailgun_body(MAILGUN_KEY, now_s(), "token-1");
    let (status, reply) = post(addr, &path, JSON, &[], &body).await;
    assert_eq!((status, summary(&reply)), (200, (1, 0, 0)), "{reply}");
    // The same signed request again is a replay: refused, nothing counted.
    let (status, reply) = post(addr, &path, JSON, &[], &body).await;
    assert_eq!(status, 403, "{reply}");
    assert!(reply.contains("replay"), "{reply}");
    let stale = mailgun_body(MAILGUN_KEY, now_s() - 3600, "token-2");
    let (status, reply) = post(addr, &path, JSON, &[], &stale).await;
    assert_eq!(status, 403, "{reply}");
    assert!(reply.contains("clock skew"), "{reply}");
    let wrong = mailgun_body("other-key", now_s(), "token-3");
    assert_eq!(post(addr, &path, JSON, &[], &wrong).await.0, 403);
    let unsigned = fixture("mailgun/failed-permanent.json");
    let mut value: serde_json::Value = serde_json::from_slice(&unsigned).unwrap();
    value.as_object_mut().unwrap().remove("signature");
    let unsigned = serde_json::to_vec(&value).unwrap();
    assert_eq!(post(addr, &path, JSON, &[], &unsigned).await.0, 401);
    let mut client = server.client().await;
    assert_eq!(email_hard_bounces(&mut client, "c-liam").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sendgrid_signed_event_webhook() {
    let server = start().await;
    let addr = server.webhooks.unwrap();
    let path = format!("/webhooks/sendgrid/{SECRET}");
    let body = fixture("sendgrid/events.json");
    let (status, reply) = post(addr, &path, JSON, &sendgrid_headers(now_s(), &body), &body).await;
    assert_eq!(status, 200, "{reply}");
    let (recorded, duplicates, _) = summary(&reply);
    assert!(recorded >= 5 && duplicates == 0, "{reply}");
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let headers = sendgrid_headers(now_s(), &body);
    assert_eq!(post(addr, &path, JSON, &headers, &tampered).await.0, 403);
    let stale = sendgrid_headers(now_s() - 3600, &body);
    assert_eq!(post(addr, &path, JSON, &stale, &body).await.0, 403);
    assert_eq!(post(addr, &path, JSON, &[], &body).await.0, 401);
    let (status, reply) = post(addr, &path, JSON, &sendgrid_headers(now_s(), &body), &body).await;
    assert_eq!(
        (status, summary(&reply).0),
        (200, 0),
        "a redelivery: {reply}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unavailable_store_answers_503_then_the_redelivery_counts_once() {
    if !redis_or_skip() {
        return;
    }
    // On Redis, a paused cluster stands for a store that cannot write.
    let server = start_with(use_test_cluster).await;
    let addr = server.webhooks.unwrap();
    let path = format!("/webhooks/mailgun/{SECRET}");
    let body = mailgun_body(MAILGUN_KEY, now_s(), "token-pause");
    let cluster = test_cluster();
    for node in &cluster.nodes {
        reach::bench::redis_cluster::cli(node.port, &["client", "pause", "6000", "write"]).unwrap();
    }
    let (status, reply) = post(addr, &path, JSON, &[], &body).await;
    assert_eq!(status, 503, "{reply}");
    tokio::time::sleep(Duration::from_millis(6500)).await;
    // The provider retries the same signed request: accepted now (its
    // token was not used up by the failure), and counted once.
    let mut accepted = None;
    for _ in 0..20 {
        let (status, reply) = post(addr, &path, JSON, &[], &body).await;
        if status == 200 {
            accepted = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let reply = accepted.expect("the redelivery was accepted");
    let (recorded, duplicates, _) = summary(&reply);
    assert_eq!(recorded + duplicates, 1, "{reply}");
    let mut client = server.client().await;
    assert_eq!(email_hard_bounces(&mut client, "c-liam").await, 1);
}

/// Plivo V3 as its SDKs sign a POST without query parameters: URL, `?`,
/// the sorted form parameters as `kv`, `.`, the nonce; HMAC-SHA256, base64.
fn plivo_headers(url: &str, body: &[u8], nonce: &str) -> Vec<(&'static str, String)> {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    params.sort();
    let mut data = format!("{url}?");
    for (k, v) in params {
        data.push_str(&k);
        data.push_str(&v);
    }
    data.push('.');
    data.push_str(nonce);
    let mut mac = Hmac::<Sha256>::new_from_slice(PLIVO_TOKEN.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    vec![
        (
            "X-Plivo-Signature-V3",
            BASE64.encode(mac.finalize().into_bytes()),
        ),
        ("X-Plivo-Signature-V3-Nonce", nonce.to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn plivo_v3_signed_callback() {
    let server = start().await;
    let addr = server.webhooks.unwrap();
    let path = format!("/webhooks/plivo/{SECRET}");
    let url = format!("http://{addr}{path}");
    let body = fixture("plivo/delivered.form");
    let headers = plivo_headers(&url, &body, "nonce-1");
    let (status, reply) = post(addr, &path, FORM, &headers, &body).await;
    assert_eq!((status, summary(&reply)), (200, (1, 0, 0)), "{reply}");
    let mut tampered = body.clone();
    tampered.extend_from_slice(b"&Extra=1");
    assert_eq!(post(addr, &path, FORM, &headers, &tampered).await.0, 403);
    let other_nonce = vec![
        headers[0].clone(),
        ("X-Plivo-Signature-V3-Nonce", "nonce-2".into()),
    ];
    assert_eq!(post(addr, &path, FORM, &other_nonce, &body).await.0, 403);
    assert_eq!(post(addr, &path, FORM, &[], &body).await.0, 401);
    let mut client = server.client().await;
    assert_eq!(sms_delivered(&mut client, "+14155550120").await, 1);
}

fn vonage_bearer(secret: &str, iat: i64, body: &[u8]) -> (&'static str, String) {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let claims = serde_json::json!({
        "iat": iat, "jti": format!("jti-{iat}"), "iss": "Vonage",
        "payload_hash": hex(&Sha256::digest(body)),
    });
    let token = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    ("Authorization", format!("Bearer {token}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn vonage_signed_webhook() {
    let server = start().await;
    let addr = server.webhooks.unwrap();
    let path = format!("/webhooks/vonage/{SECRET}");
    let body = fixture("vonage/delivered.json");
    let good = [vonage_bearer(VONAGE_SECRET, now_s(), &body)];
    let (status, reply) = post(addr, &path, JSON, &good, &body).await;
    assert_eq!((status, summary(&reply)), (200, (1, 0, 0)), "{reply}");
    let mut tampered = body.clone();
    tampered.push(b' ');
    assert_eq!(post(addr, &path, JSON, &good, &tampered).await.0, 403);
    let wrong = [vonage_bearer("not-the-secret", now_s(), &body)];
    assert_eq!(post(addr, &path, JSON, &wrong, &body).await.0, 403);
    let stale = [vonage_bearer(VONAGE_SECRET, now_s() - 3600, &body)];
    assert_eq!(post(addr, &path, JSON, &stale, &body).await.0, 403);
    assert_eq!(post(addr, &path, JSON, &[], &body).await.0, 401);
    let mut client = server.client().await;
    assert_eq!(sms_delivered(&mut client, "+447700900130").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_source_is_rate_limited() {
    let server = start_with(|c| {
        c.webhooks.requests_per_second_per_source = 1;
        c.webhooks.burst_per_source = 3;
    })
    .await;
    let addr = server.webhooks.unwrap();
    let path = format!("/webhooks/twilio/{SECRET}");
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(post(addr, &path, FORM, &[], b"").await.0);
    }
    // The burst passes (and is refused for its missing signature), then 429.
    assert_eq!(&codes[..3], &[401, 401, 401], "{codes:?}");
    assert!(codes[3..].contains(&429), "{codes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_port_speaks_tls_with_its_own_certificate() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("hooks.crt"), dir.path().join("hooks.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let server = start_with(move |c| {
        c.webhooks.cert_file = Some(cert);
        c.webhooks.key_file = Some(key);
    })
    .await;
    let addr = server.webhooks.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server_name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(server_name, tcp).await.unwrap();
    let host = format!("localhost:{}", addr.port());
    let path = format!("/webhooks/twilio/{SECRET}");
    let body = fixture("twilio/delivered.form");
    // Twilio signs the https URL it called.
    let signature = twilio_signature(&format!("https://{host}{path}"), &body);
    let headers = [("X-Twilio-Signature", signature)];
    let (status, reply) = exchange(stream, &host, &path, FORM, &headers, &body).await;
    assert_eq!((status, summary(&reply)), (200, (1, 0, 0)), "{reply}");
}
