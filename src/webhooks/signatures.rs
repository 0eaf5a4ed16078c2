//! Each provider's documented webhook signature scheme, as plain functions
//! over the request's parts (no HTTP types). The cryptography is from the
//! RustCrypto crates (`hmac`, `sha1`, `sha2`, `p256`); comparisons of MACs
//! are constant-time (`Mac::verify_slice`).

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The signature (or its timestamp) is missing: 401.
    Missing(&'static str),
    /// Present but wrong, stale or replayed: 403.
    Bad(&'static str),
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Missing(r) | Refusal::Bad(r) => r,
        }
    }
}

fn decode_base64(text: &str) -> Result<Vec<u8>, Refusal> {
    BASE64
        .decode(text.trim())
        .map_err(|_| Refusal::Bad("signature is not base64"))
}

/// Twilio (`X-Twilio-Signature`): HMAC-SHA1 with the account's auth token
/// over the full URL the provider called, followed, for a form body, by
/// every parameter name and value sorted by name; base64. A JSON body is
/// covered instead by a `bodySHA256` query parameter (hex SHA-256 of the
/// body) that is part of the signed URL.
pub fn twilio(
    auth_token: &str,
    url: &str,
    content_type: &str,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), Refusal> {
    let signature = signature.ok_or(Refusal::Missing("X-Twilio-Signature"))?;
    let mut data = url.to_owned();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let mut params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        params.sort();
        for (name, value) in params {
            data.push_str(&name);
            data.push_str(&value);
        }
    } else {
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let declared = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "bodySHA256")
            .map(|(_, v)| v.into_owned())
            .ok_or(Refusal::Missing("bodySHA256"))?;
        if !declared.eq_ignore_ascii_case(&hex(&Sha256::digest(body))) {
            return Err(Refusal::Bad("body does not match bodySHA256"));
        }
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(data.as_bytes());
    mac.verify_slice(&decode_base64(signature)?)
        .map_err(|_| Refusal::Bad("signature does not match"))
}

/// Mailgun: the body's `signature` object holds `timestamp`, `token` and
/// `signature` = hex HMAC-SHA256 with the webhook signing key over
/// timestamp + token. The caller checks the timestamp's age and that the
/// token was not seen before (replays).
pub fn mailgun(
    signing_key: &str,
    timestamp: &str,
    token: &str,
    signature: &str,
) -> Result<(), Refusal> {
    let expected = unhex(signature).ok_or(Refusal::Bad("signature is not hex"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_key.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    mac.verify_slice(&expected)
        .map_err(|_| Refusal::Bad("signature does not match"))
}

/// SendGrid signed Event Webhook: ECDSA P-256 with SHA-256 over the
/// `X-Twilio-Email-Event-Webhook-Timestamp` header followed by the raw
/// body; the signature header is base64 DER, the verification key is the
/// base64 DER public key shown in SendGrid's settings.
pub fn sendgrid(
    public_key_base64: &str,
    timestamp: &str,
    body: &[u8],
    signature: &str,
) -> Result<(), Refusal> {
    use p256::{
        ecdsa::{Signature, VerifyingKey, signature::Verifier},
        pkcs8::DecodePublicKey,
    };
    let key_der = BASE64
        .decode(public_key_base64.trim())
        .map_err(|_| Refusal::Bad("configured SendGrid key is not base64"))?;
    let key = VerifyingKey::from_public_key_der(&key_der)
        .map_err(|_| Refusal::Bad("configured SendGrid key is not a P-256 public key"))?;
    let signature = Signature::from_der(&decode_base64(signature)?)
        .map_err(|_| Refusal::Bad("signature is not DER ECDSA"))?;
    let mut payload = timestamp.as_bytes().to_vec();
    payload.extend_from_slice(body);
    key.verify(&payload, &signature)
        .map_err(|_| Refusal::Bad("signature does not match"))
}

/// Plivo V3 (`X-Plivo-Signature-V3`, `X-Plivo-Signature-V3-Nonce`), as
/// Plivo's SDKs compute it for a POST: the URL without its query, then `?`
/// and the query parameters sorted as `k=v` joined by `&` (when there are
/// query or body parameters), a `.` between query and body parameters when
/// both exist, the form parameters sorted as `kv`, then `.` and the nonce;
/// HMAC-SHA256 with the auth token, base64. The header may carry several
/// signatures separated by commas (token rotation).
pub fn plivo(
    auth_token: &str,
    url: &str,
    content_type: &str,
    body: &[u8],
    nonce: Option<&str>,
    signatures: Option<&str>,
) -> Result<(), Refusal> {
    let signatures = signatures.ok_or(Refusal::Missing("X-Plivo-Signature-V3"))?;
    let nonce = nonce.ok_or(Refusal::Missing("X-Plivo-Signature-V3-Nonce"))?;
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let sorted = |text: &[u8]| {
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(text).into_owned().collect();
        pairs.sort();
        pairs
    };
    let query = sorted(query.as_bytes());
    let params = if content_type.starts_with("application/x-www-form-urlencoded") {
        sorted(body)
    } else {
        Vec::new()
    };
    let mut data = base.to_owned();
    if !query.is_empty() || !params.is_empty() {
        data.push('?');
        let joined: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        data.push_str(&joined.join("&"));
    }
    if !query.is_empty() && !params.is_empty() {
        data.push('.');
    }
    for (k, v) in &params {
        data.push_str(k);
        data.push_str(v);
    }
    data.push('.');
    data.push_str(nonce);
    let mut mac = Hmac::<Sha256>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(data.as_bytes());
    let expected = mac.finalize().into_bytes();
    // Each candidate is compared in constant time.
    let matched = signatures.split(',').any(|candidate| {
        decode_base64(candidate).is_ok_and(|given| {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(auth_token.as_bytes()).expect("any key length");
            mac.update(data.as_bytes());
            given.len() == expected.len() && mac.verify_slice(&given).is_ok()
        })
    });
    if matched {
        Ok(())
    } else {
        Err(Refusal::Bad("signature does not match"))
    }
}

/// Vonage signed webhooks: `Authorization: Bearer <JWT>`, HS256 with the
/// account's signature secret, whose `payload_hash` claim is the hex
/// SHA-256 of the body. Returns the token's `iat` for the caller's clock
/// check.
pub fn vonage(
    signature_secret: &str,
    body: &[u8],
    authorization: Option<&str>,
) -> Result<i64, Refusal> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    #[derive(serde::Deserialize)]
    struct Claims {
        iat: i64,
        payload_hash: Option<String>,
    }
    let token = authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or(Refusal::Missing("Authorization: Bearer"))?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = decode::<Claims>(
        token.trim(),
        &DecodingKey::from_secret(signature_secret.as_bytes()),
        &validation,
    )
    .map_err(|_| Refusal::Bad("signature does not match"))?
    .claims;
    match claims.payload_hash {
        Some(hash) if hash.eq_ignore_ascii_case(&hex(&Sha256::digest(body))) => Ok(claims.iat),
        None if body.is_empty() => Ok(claims.iat),
        _ => Err(Refusal::Bad("body does not match payload_hash")),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twilio's own documented example (the "Validating requests" page):
    /// auth token 12345, this URL and these parameters give this signature.
    #[test]
    fn twilio_documented_example() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let body = b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
        let good = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
        assert_eq!(
            twilio(
                "12345",
                url,
                "application/x-www-form-urlencoded",
                body,
                Some(good)
            ),
            Ok(())
        );
        assert!(matches!(
            twilio(
                "54321",
                url,
                "application/x-www-form-urlencoded",
                body,
                Some(good)
            ),
            Err(Refusal::Bad(_))
        ));
        assert!(matches!(
            twilio(
                "12345",
                url,
                "application/x-www-form-urlencoded",
                body,
                None
            ),
            Err(Refusal::Missing(_))
        ));
    }

    /// The string Plivo's SDK signs for a POST with query and form
    /// parameters, computed here independently.
    #[test]
    fn plivo_v3_signs_url_query_params_and_nonce() {
        let url = "https://example.com/plivo?b=2&a=1";
        let body = b"To=%2B14155550120&From=%2B1415&Status=delivered";
        let signed =
            "https://example.com/plivo?a=1&b=2.From+1415StatusdeliveredTo+14155550120.nonce-1";
        let mut mac = Hmac::<Sha256>::new_from_slice(b"token").unwrap();
        mac.update(signed.as_bytes());
        let good = BASE64.encode(mac.finalize().into_bytes());
        let form = "application/x-www-form-urlencoded";
        let both = format!("old-signature,{good}");
        assert_eq!(
            plivo("token", url, form, body, Some("nonce-1"), Some(&both)),
            Ok(())
        );
        assert!(plivo("token", url, form, body, Some("nonce-2"), Some(&good)).is_err());
        assert!(plivo("other", url, form, body, Some("nonce-1"), Some(&good)).is_err());
        assert!(matches!(
            plivo("token", url, form, body, None, Some(&good)),
            Err(Refusal::Missing(_))
        ));
    }

    #[test]
    fn vonage_jwt_covers_the_body() {
        use jsonwebtoken::{EncodingKey, Header, encode};
        let body = br#"{"status":"delivered"}"#;
        let claims =
            serde_json::json!({"iat": 1_700_000_000, "payload_hash": hex(&Sha256::digest(body))});
        let token = encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        let bearer = format!("Bearer {token}");
        assert_eq!(vonage("secret", body, Some(&bearer)), Ok(1_700_000_000));
        assert!(vonage("other", body, Some(&bearer)).is_err());
        assert!(vonage("secret", b"{}", Some(&bearer)).is_err());
        assert!(matches!(
            vonage("secret", body, None),
            Err(Refusal::Missing(_))
        ));
    }

    #[test]
    fn mailgun_checks_the_token_and_timestamp() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key-1").unwrap();
        mac.update(b"1700000000abc");
        let signature = hex(&mac.finalize().into_bytes());
        assert_eq!(mailgun("key-1", "1700000000", "abc", &signature), Ok(()));
        assert!(mailgun("key-1", "1700000001", "abc", &signature).is_err());
        assert!(mailgun("key-2", "1700000000", "abc", &signature).is_err());
    }

    #[test]
    fn sendgrid_verifies_p256_over_timestamp_and_body() {
        use p256::{
            ecdsa::{Signature, SigningKey, signature::Signer},
            pkcs8::EncodePublicKey,
        };
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let public = BASE64.encode(key.verifying_key().to_public_key_der().unwrap().as_bytes());
        let body = br#"[{"event":"delivered"}]"#;
        let signature: Signature = key.sign(&[b"1700000000".as_slice(), body].concat());
        let signature = BASE64.encode(signature.to_der().as_bytes());
        assert_eq!(sendgrid(&public, "1700000000", body, &signature), Ok(()));
        assert!(sendgrid(&public, "1700000001", body, &signature).is_err());
        assert!(sendgrid(&public, "1700000000", b"[]", &signature).is_err());
    }
}
