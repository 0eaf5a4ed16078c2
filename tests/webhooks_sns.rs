//! Amazon SES through SNS on the webhook port: messages signed the way SNS
//! signs them (RSA with the test's key, SignatureVersion 1 and 2), the
//! signing certificate served over HTTPS by a stand-in for the AWS host,
//! subscription confirmation, and every way a message is refused.

mod common;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use axum::{Router, extract::RawQuery, http::StatusCode, routing::get};
use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use common::{http::*, *};
use reach::webhooks::{WebhookEndpoint, signatures::hex};
use sha2::{Digest, Sha256};

const SECRET: &str = "sns-path-secret-0123456789";
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-events";
const SNS_TEXT: &str = "text/plain; charset=UTF-8";

fn key_pem(name: &str) -> String {
    String::from_utf8(fixture(&format!("../sns/{name}"))).unwrap()
}

/// A self-signed certificate for a key, the way AWS serves its signing
/// certificates (PEM).
fn signing_cert(pem: &str) -> String {
    let key = rcgen::KeyPair::from_pem(pem).unwrap();
    let params = rcgen::CertificateParams::new(vec!["sns.amazonaws.com".into()]).unwrap();
    params.self_signed(&key).unwrap().pem()
}

/// The stand-in for `sns.<region>.amazonaws.com`: certificates (counting
/// fetches), a certificate URL that fails, and ConfirmSubscription.
struct FakeAws {
    host: String,
    ca_file: tempfile::NamedTempFile,
    cert_fetches: Arc<AtomicUsize>,
    confirmed_tokens: Arc<Mutex<Vec<String>>>,
}

async fn fake_aws() -> FakeAws {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), certified.cert.pem()).unwrap();
    let cert_fetches = Arc::new(AtomicUsize::new(0));
    let confirmed_tokens = Arc::new(Mutex::new(Vec::new()));
    let (signing, other) = (
        signing_cert(&key_pem("test-signing-key.pem")),
        signing_cert(&key_pem("test-other-key.pem")),
    );
    let fetches = cert_fetches.clone();
    let tokens = confirmed_tokens.clone();
    let app = Router::new()
        .route(
            "/SimpleNotificationService-test.pem",
            get(move || {
                fetches.fetch_add(1, Ordering::SeqCst);
                std::future::ready(signing.clone())
            }),
        )
        .route("/other.pem", get(move || std::future::ready(other.clone())))
        .route(
            "/down.pem",
            get(|| std::future::ready(StatusCode::SERVICE_UNAVAILABLE)),
        )
        .route(
            "/",
            get(move |RawQuery(query): RawQuery| {
                let query: std::collections::HashMap<String, String> =
                    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                        .into_owned()
                        .collect();
                if query.get("Action").map(String::as_str) == Some("ConfirmSubscription") {
                    tokens
                        .lock()
                        .unwrap()
                        .push(query.get("Token").cloned().unwrap_or_default());
                }
                std::future::ready("<ConfirmSubscriptionResponse/>")
            }),
        );
    let addr = serve_https(app, &certified).await;
    FakeAws {
        host: format!("localhost:{}", addr.port()),
        ca_file,
        cert_fetches,
        confirmed_tokens,
    }
}

async fn start(aws: &FakeAws) -> TestServer {
    let (host, ca) = (aws.host.clone(), aws.ca_file.path().to_owned());
    TestServer::start_with(move |c| {
        c.webhooks.listen = "127.0.0.1:0".into();
        c.webhooks.sns.cert_hosts = vec![host];
        c.webhooks.sns.ca_file = Some(ca);
        c.webhooks.endpoints = vec![WebhookEndpoint {
            tenant: "default".into(),
            path_secret_sha256: hex(&Sha256::digest(SECRET.as_bytes())),
            sns_topic_arns: vec![TOPIC.into()],
            ..WebhookEndpoint::default()
        }];
    })
    .await
}

/// An SNS notification carrying an SES fixture's message, stamped now.
fn notification(aws: &FakeAws, fixture_name: &str, message_id: &str) -> serde_json::Value {
    let envelope: serde_json::Value =
        serde_json::from_slice(&fixture(&format!("ses/{fixture_name}"))).unwrap();
    serde_json::json!({
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": envelope["Message"],
        "Timestamp": jiff::Timestamp::now().to_string(),
        "SignatureVersion": "1",
        "SigningCertURL": format!("https://{}/SimpleNotificationService-test.pem", aws.host),
        "UnsubscribeURL": format!("https://{}/?Action=Unsubscribe", aws.host),
    })
}

fn subscription(aws: &FakeAws, kind: &str, topic: &str, token: &str) -> serde_json::Value {
    serde_json::json!({
        "Type": kind,
        "MessageId": format!("sub-{token}"),
        "Token": token,
        "TopicArn": topic,
        "Message": format!("You have chosen to subscribe to the topic {topic}."),
        "SubscribeURL": format!("https://{}/?Action=ConfirmSubscription&TopicArn={topic}&Token={token}", aws.host),
        "Timestamp": jiff::Timestamp::now().to_string(),
        "SignatureVersion": "1",
        "SigningCertURL": format!("https://{}/SimpleNotificationService-test.pem", aws.host),
    })
}

/// The string SNS signs, written out from AWS's documentation apart from
/// reach's own: `name\nvalue\n` for Message, MessageId, Subject (when
/// present; notifications only), SubscribeURL and Token (confirmations
/// only), Timestamp, TopicArn and Type, in alphabetical order.
fn string_to_sign(message: &serde_json::Value) -> String {
    let names: &[&str] = if message["Type"] == "Notification" {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    names
        .iter()
        .filter_map(|name| {
            message[*name]
                .as_str()
                .map(|value| format!("{name}\n{value}\n"))
        })
        .collect()
}

/// Signs `message` as SNS does: RSA PKCS #1 v1.5 over its string to sign,
/// SHA-1 or SHA-256 after its SignatureVersion, with the key in `key_file`.
fn sign_with(mut message: serde_json::Value, key_file: &str) -> serde_json::Value {
    use rsa::{
        pkcs1v15::SigningKey,
        pkcs8::DecodePrivateKey,
        signature::{SignatureEncoding, Signer},
    };
    let text = string_to_sign(&message);
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&key_pem(key_file)).unwrap();
    let signature = match message["SignatureVersion"].as_str() {
        Some("1") => SigningKey::<sha1::Sha1>::new(key)
            .sign(text.as_bytes())
            .to_vec(),
        _ => SigningKey::<Sha256>::new(key)
            .sign(text.as_bytes())
            .to_vec(),
    };
    message["Signature"] = BASE64.encode(signature).into();
    message
}

fn sign(message: serde_json::Value) -> serde_json::Value {
    sign_with(message, "test-signing-key.pem")
}

async fn post_sns(server: &TestServer, message: &serde_json::Value) -> (u16, String) {
    let body = serde_json::to_vec(message).unwrap();
    let path = format!("/webhooks/ses/{SECRET}");
    let headers = [(
        "x-amz-sns-message-type",
        message["Type"].as_str().unwrap_or("").to_owned(),
    )];
    post(server.webhooks.unwrap(), &path, SNS_TEXT, &headers, &body).await
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_notifications_are_recorded_once_with_one_certificate_fetch() {
    let aws = fake_aws().await;
    let server = start(&aws).await;
    let bounce = sign(notification(&aws, "bounce-permanent.json", "sns-1"));
    let (status, reply) = post_sns(&server, &bounce).await;
    assert_eq!((status, summary(&reply)), (200, (1, 0, 0)), "{reply}");
    // SNS delivers at least once: the same message again is a duplicate.
    let (status, reply) = post_sns(&server, &bounce).await;
    assert_eq!((status, summary(&reply)), (200, (0, 1, 0)), "{reply}");
    // SignatureVersion 2 (SHA-256) from the same certificate.
    let mut delivery = notification(&aws, "delivery-two-recipients.json", "sns-2");
    delivery["SignatureVersion"] = "2".into();
    delivery["Subject"] = "Amazon SES Email Event Notification".into();
    let (status, reply) = post_sns(&server, &sign(delivery)).await;
    assert_eq!((status, summary(&reply)), (200, (2, 0, 0)), "{reply}");
    assert_eq!(
        aws.cert_fetches.load(Ordering::SeqCst),
        1,
        "the key is cached"
    );
    let mut client = server.client().await;
    assert_eq!(email_hard_bounces(&mut client, "gina@example.com").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_are_confirmed_for_listed_topics_only() {
    let aws = fake_aws().await;
    let server = start(&aws).await;
    let confirmation = sign(subscription(
        &aws,
        "SubscriptionConfirmation",
        TOPIC,
        "tok-1",
    ));
    let (status, reply) = post_sns(&server, &confirmation).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply.contains("subscription confirmed"), "{reply}");
    assert_eq!(
        *aws.confirmed_tokens.lock().unwrap(),
        vec!["tok-1".to_owned()]
    );

    let foreign = "arn:aws:sns:us-east-1:999999999999:someone-else";
    let confirmation = sign(subscription(
        &aws,
        "SubscriptionConfirmation",
        foreign,
        "tok-2",
    ));
    let (status, reply) = post_sns(&server, &confirmation).await;
    assert_eq!(status, 403, "{reply}");
    let unsubscribed = sign(subscription(
        &aws,
        "UnsubscribeConfirmation",
        TOPIC,
        "tok-3",
    ));
    let (status, reply) = post_sns(&server, &unsubscribed).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        aws.confirmed_tokens.lock().unwrap().len(),
        1,
        "nothing else confirmed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signature_failures_record_nothing() {
    let aws = fake_aws().await;
    let server = start(&aws).await;
    let good = || notification(&aws, "bounce-permanent.json", "sns-bad");
    let with = |field: &str, value: String| {
        let mut message = good();
        message[field] = value.into();
        message
    };
    let mut unsigned = good();
    unsigned.as_object_mut().unwrap().remove("Signature");
    let mut tampered = sign(good());
    tampered["Message"] = tampered["Message"]
        .as_str()
        .unwrap()
        .replace("Permanent", "Transient")
        .into();
    let stale = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2)).to_string();
    let cases: Vec<(&str, serde_json::Value, u16)> = vec![
        ("no signature", unsigned, 401),
        ("tampered message", tampered, 403),
        ("another key", sign_with(good(), "test-other-key.pem"), 403),
        (
            "certificate of another key",
            sign(with(
                "SigningCertURL",
                format!("https://{}/other.pem", aws.host),
            )),
            403,
        ),
        (
            "untrusted certificate host",
            sign(with(
                "SigningCertURL",
                "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem".into(),
            )),
            403,
        ),
        (
            "certificate over http",
            sign(with(
                "SigningCertURL",
                format!("http://{}/SimpleNotificationService-test.pem", aws.host),
            )),
            403,
        ),
        (
            "no certificate at the URL",
            sign(with(
                "SigningCertURL",
                format!("https://{}/missing.pem", aws.host),
            )),
            403,
        ),
        ("stale timestamp", sign(with("Timestamp", stale)), 403),
        (
            "another topic",
            sign(with(
                "TopicArn",
                "arn:aws:sns:us-east-1:999999999999:x".into(),
            )),
            403,
        ),
        (
            "certificate host down",
            sign(with(
                "SigningCertURL",
                format!("https://{}/down.pem", aws.host),
            )),
            503,
        ),
    ];
    for (case, message, expected) in cases {
        let (status, reply) = post_sns(&server, &message).await;
        assert_eq!(status, expected, "{case}: {reply}");
    }
    let path = format!("/webhooks/ses/{SECRET}");
    let (status, _) = post(server.webhooks.unwrap(), &path, SNS_TEXT, &[], b"not json").await;
    assert_eq!(status, 401, "a body that is not an SNS message");
    // Only the cases that got as far as the signature fetched the
    // certificate, once: the cheap checks come first.
    assert_eq!(aws.cert_fetches.load(Ordering::SeqCst), 1);
    let mut client = server.client().await;
    let status = client
        .get_contact_profile(reach::proto::GetContactProfileRequest {
            contact_id: "gina@example.com".into(),
        })
        .await
        .expect_err("nothing was recorded");
    assert_eq!(status.code(), tonic::Code::NotFound);
}
