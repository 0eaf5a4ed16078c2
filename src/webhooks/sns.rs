//! Amazon SNS message signatures (SES notifications reach reach through an
//! SNS topic). SNS signs each message with RSA (PKCS #1 v1.5, SHA-1 for
//! `SignatureVersion` 1, SHA-256 for 2) over a canonical string of its
//! fields; the key is in the certificate at `SigningCertURL`, which is
//! trusted only over HTTPS from a configured host (AWS's own SNS endpoints
//! by default). This file holds the plain parts: the config, the message,
//! the string to sign, the host check and the RSA check. Fetching and
//! caching certificates is in `sns_client.rs`.

use std::{path::PathBuf, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use serde::{Deserialize, Serialize};

use super::signatures::Refusal;

/// `[webhooks.sns]` in the config file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnsConfig {
    /// Hosts (`host` or `host:port`) that `SigningCertURL` and
    /// `SubscribeURL` may name; `*` stands for one DNS label. The default
    /// is AWS's SNS endpoints in every region, China's included.
    pub cert_hosts: Vec<String>,
    /// Extra PEM CA certificates trusted when fetching from those hosts
    /// (an egress proxy's, or a test's); the Mozilla roots are always
    /// trusted.
    pub ca_file: Option<PathBuf>,
    /// Oldest `Timestamp` accepted. SNS retries a failed delivery for up to
    /// an hour under its default policy, so this is wider than
    /// `max_clock_skew`; a replay inside it is a duplicate (the events'
    /// ids come from the SNS `MessageId`).
    #[serde(with = "humantime_serde")]
    pub max_message_age: Duration,
    /// Confirm subscriptions (GET `SubscribeURL`) of the topics an
    /// endpoint lists in `sns_topic_arns`.
    pub confirm_subscriptions: bool,
    /// Time allowed for fetching a certificate or confirming a
    /// subscription; past it the request gets 503 and SNS retries.
    #[serde(with = "humantime_serde")]
    pub fetch_timeout: Duration,
}

impl Default for SnsConfig {
    fn default() -> Self {
        SnsConfig {
            cert_hosts: vec![
                "sns.*.amazonaws.com".into(),
                "sns.*.amazonaws.com.cn".into(),
            ],
            ca_file: None,
            max_message_age: Duration::from_secs(3600),
            confirm_subscriptions: true,
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// The SNS envelope (the JSON body of the POST). Absent fields are empty,
/// so that a missing signature is told apart from a body that is not JSON.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SnsMessage {
    #[serde(rename = "Type")]
    pub kind: String,
    pub message_id: String,
    pub topic_arn: String,
    pub message: String,
    pub timestamp: String,
    pub subject: Option<String>,
    pub token: Option<String>,
    #[serde(rename = "SubscribeURL")]
    pub subscribe_url: Option<String>,
    pub signature_version: String,
    pub signature: String,
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
}

/// What a verified message asks of reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnsKind {
    Notification,
    SubscriptionConfirmation,
    UnsubscribeConfirmation,
}

impl SnsMessage {
    /// Parses the body; one that is not an SNS envelope, or has no
    /// signature, is refused as unsigned (401).
    pub fn parse(body: &[u8]) -> Result<SnsMessage, Refusal> {
        let missing = Refusal::Missing("an SNS message with Signature and SigningCertURL");
        let message: SnsMessage = serde_json::from_slice(body).map_err(|_| missing.clone())?;
        if message.signature.is_empty() || message.signing_cert_url.is_empty() {
            return Err(missing);
        }
        Ok(message)
    }

    pub fn kind(&self) -> Result<SnsKind, Refusal> {
        match self.kind.as_str() {
            "Notification" => Ok(SnsKind::Notification),
            "SubscriptionConfirmation" => Ok(SnsKind::SubscriptionConfirmation),
            "UnsubscribeConfirmation" => Ok(SnsKind::UnsubscribeConfirmation),
            _ => Err(Refusal::Bad("unknown SNS message Type")),
        }
    }

    /// The canonical string SNS signs: `name\nvalue\n` for each field of
    /// the message's kind, in this order, `Subject` only when present.
    pub fn string_to_sign(&self) -> Result<String, Refusal> {
        let mut fields: Vec<(&str, &str)> = vec![("Message", &self.message)];
        fields.push(("MessageId", &self.message_id));
        match self.kind()? {
            SnsKind::Notification => {
                if let Some(subject) = &self.subject {
                    fields.push(("Subject", subject));
                }
                fields.push(("Timestamp", &self.timestamp));
            }
            SnsKind::SubscriptionConfirmation | SnsKind::UnsubscribeConfirmation => {
                let url = self.subscribe_url.as_deref();
                fields.push(("SubscribeURL", url.ok_or(Refusal::Bad("no SubscribeURL"))?));
                fields.push(("Timestamp", &self.timestamp));
                let token = self.token.as_deref().ok_or(Refusal::Bad("no Token"))?;
                fields.push(("Token", token));
            }
        }
        fields.push(("TopicArn", &self.topic_arn));
        fields.push(("Type", &self.kind));
        let mut text = String::new();
        for (name, value) in fields {
            text.push_str(name);
            text.push('\n');
            text.push_str(value);
            text.push('\n');
        }
        Ok(text)
    }

    /// Milliseconds since the epoch of the message's `Timestamp`.
    pub fn timestamp_ms(&self) -> Result<i64, Refusal> {
        self.timestamp
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .map_err(|_| Refusal::Bad("Timestamp is not an ISO 8601 time"))
    }
}

/// Checks that `url` is HTTPS on one of the `allowed` hosts and has no
/// user info (which could hide the real host from a careless reader).
pub fn check_url(url: &str, allowed: &[String]) -> Result<url::Url, Refusal> {
    let parsed = url::Url::parse(url).map_err(|_| Refusal::Bad("certificate URL is not a URL"))?;
    if parsed.scheme() != "https" {
        return Err(Refusal::Bad("SNS URLs must be https"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Refusal::Bad("SNS URLs carry no user info"));
    }
    let host = parsed
        .host_str()
        .ok_or(Refusal::Bad("SNS URL has no host"))?
        .to_ascii_lowercase();
    let authority = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    if allowed
        .iter()
        .any(|pattern| host_matches(pattern, &authority))
    {
        Ok(parsed)
    } else {
        Err(Refusal::Bad(
            "SNS URL is not on an allowed certificate host",
        ))
    }
}

/// `pattern` against `host[:port]`, label by label; `*` matches one
/// non-empty label of letters, digits and hyphens.
fn host_matches(pattern: &str, authority: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    let (pattern_host, pattern_port) = split_port(&pattern);
    let (host, port) = split_port(authority);
    if pattern_port != port {
        return false;
    }
    let (labels, wanted): (Vec<&str>, Vec<&str>) =
        (host.split('.').collect(), pattern_host.split('.').collect());
    labels.len() == wanted.len()
        && labels.iter().zip(&wanted).all(|(label, want)| {
            if *want == "*" {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            } else {
                label == want
            }
        })
}

fn split_port(authority: &str) -> (&str, Option<&str>) {
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, Some(port))
        }
        _ => (authority, None),
    }
}

/// The RSA public key of a PEM signing certificate, checked to be within
/// its validity period now.
pub fn public_key_of(pem: &[u8]) -> Result<Vec<u8>, Refusal> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|_| Refusal::Bad("signing certificate is not PEM"))?;
    let cert = pem
        .parse_x509()
        .map_err(|_| Refusal::Bad("signing certificate does not parse"))?;
    if !cert.validity().is_valid() {
        return Err(Refusal::Bad(
            "signing certificate is expired or not yet valid",
        ));
    }
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// Checks the message's signature with the certificate's key (DER
/// PKCS #1 RSA public key, as in the certificate).
pub fn verify(message: &SnsMessage, rsa_public_key: &[u8]) -> Result<(), Refusal> {
    use ring::signature;
    let algorithm: &dyn signature::VerificationAlgorithm = match message.signature_version.as_str()
    {
        "1" => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        "2" => &signature::RSA_PKCS1_2048_8192_SHA256,
        _ => return Err(Refusal::Bad("unknown SignatureVersion")),
    };
    let signed = message.string_to_sign()?;
    let given = BASE64
        .decode(message.signature.trim())
        .map_err(|_| Refusal::Bad("signature is not base64"))?;
    signature::UnparsedPublicKey::new(algorithm, rsa_public_key)
        .verify(signed.as_bytes(), &given)
        .map_err(|_| Refusal::Bad("signature does not match"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification() -> SnsMessage {
        SnsMessage {
            kind: "Notification".into(),
            message_id: "id-1".into(),
            topic_arn: "arn:aws:sns:us-east-1:123456789012:ses".into(),
            message: "{\"a\":\"b\\nc\"}".into(),
            timestamp: "2026-11-26T10:00:10.000Z".into(),
            ..SnsMessage::default()
        }
    }

    #[test]
    fn notification_string_to_sign_has_subject_only_when_present() {
        let mut message = notification();
        assert_eq!(
            message.string_to_sign().unwrap(),
            "Message\n{\"a\":\"b\\nc\"}\nMessageId\nid-1\nTimestamp\n2026-11-26T10:00:10.000Z\nTopicArn\narn:aws:sns:us-east-1:123456789012:ses\nType\nNotification\n"
        );
        message.subject = Some("hi".into());
        assert!(
            message
                .string_to_sign()
                .unwrap()
                .contains("MessageId\nid-1\nSubject\nhi\nTimestamp\n")
        );
    }

    #[test]
    fn confirmation_string_to_sign_has_url_and_token() {
        let message = SnsMessage {
            kind: "SubscriptionConfirmation".into(),
            subscribe_url: Some(
                "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription".into(),
            ),
            token: Some("tok".into()),
            ..notification()
        };
        assert_eq!(
            message.string_to_sign().unwrap(),
            "Message\n{\"a\":\"b\\nc\"}\nMessageId\nid-1\nSubscribeURL\nhttps://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription\nTimestamp\n2026-11-26T10:00:10.000Z\nToken\ntok\nTopicArn\narn:aws:sns:us-east-1:123456789012:ses\nType\nSubscriptionConfirmation\n"
        );
        let no_token = SnsMessage {
            token: None,
            ..message
        };
        assert!(no_token.string_to_sign().is_err());
    }

    #[test]
    fn only_https_urls_on_allowed_hosts_pass() {
        let allowed = SnsConfig::default().cert_hosts;
        for good in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://SNS.eu-west-3.amazonaws.com/x.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/x.pem",
            "https://sns.us-east-1.amazonaws.com:443/x.pem",
        ] {
            assert!(check_url(good, &allowed).is_ok(), "{good}");
        }
        for bad in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.a.b.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://user@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://s3.us-east-1.amazonaws.com/x.pem",
            "not a url",
        ] {
            assert!(check_url(bad, &allowed).is_err(), "{bad}");
        }
        let local = vec!["localhost:8443".to_owned()];
        assert!(check_url("https://localhost:8443/c.pem", &local).is_ok());
        assert!(check_url("https://localhost:8444/c.pem", &local).is_err());
        assert!(check_url("https://localhost/c.pem", &local).is_err());
    }

    #[test]
    fn unknown_types_and_versions_are_refused() {
        let message = SnsMessage {
            kind: "Surprise".into(),
            ..notification()
        };
        assert!(message.string_to_sign().is_err());
        let message = SnsMessage {
            signature_version: "3".into(),
            signature: BASE64.encode([0u8; 256]),
            ..notification()
        };
        assert_eq!(
            verify(&message, &[]),
            Err(Refusal::Bad("unknown SignatureVersion"))
        );
    }
}
