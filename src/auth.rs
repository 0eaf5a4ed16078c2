//! Bearer-token authentication: each token maps to a tenant. Only hashes of
//! tokens are configured (BLAKE3, hex), and a presented token is compared
//! against every configured hash in constant time, so neither the config
//! file nor response timing gives a token away.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tonic::{Request, Status, metadata::MetadataMap};

use crate::storage::Tenant;

/// `[[auth.tokens]]` entries; authentication is on when there is at least one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub tokens: Vec<TokenEntry>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The tenant the token acts for: 1-64 of [a-z0-9_-].
    pub tenant: String,
    /// BLAKE3 of the token, 64 hex digits (`reach token hash`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token_blake3: String,
    /// Or its SHA-256, 64 hex digits, for tools that have no BLAKE3 (the
    /// Helm chart's generated token). Exactly one of the two.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token_sha256: String,
    /// May also call the AdminService (backups of every tenant).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

impl AuthConfig {
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    pub fn validate(&self) -> Result<(), String> {
        for (i, t) in self.tokens.iter().enumerate() {
            Tenant::new(&t.tenant).map_err(|e| format!("auth.tokens[{i}].tenant: {e}"))?;
            digest(t).map_err(|e| format!("auth.tokens[{i}]: {e}"))?;
        }
        Ok(())
    }
}

/// `[tls]`: TLS on the gRPC port, and client certificates (mTLS).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the server; with `key_file`, turns TLS on.
    pub cert_file: Option<std::path::PathBuf>,
    /// PEM private key of the server.
    pub key_file: Option<std::path::PathBuf>,
    /// PEM CA certificates: clients must present a certificate they signed.
    pub client_ca_file: Option<std::path::PathBuf>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Clients are authenticated by their certificates.
    pub fn mutual(&self) -> bool {
        self.enabled() && self.client_ca_file.is_some()
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err("tls.cert_file and tls.key_file go together".into());
        }
        if self.client_ca_file.is_some() && !self.enabled() {
            return Err("tls.client_ca_file needs tls.cert_file and tls.key_file".into());
        }
        for path in [&self.cert_file, &self.key_file, &self.client_ca_file]
            .into_iter()
            .flatten()
        {
            if !path.is_file() {
                return Err(format!("tls: {} is not a readable file", path.display()));
            }
        }
        Ok(())
    }

    /// The rustls settings of the server, `None` if TLS is off.
    pub fn server_config(&self) -> Result<Option<tonic::transport::ServerTlsConfig>, String> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Ok(None);
        };
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("tls: reading {}: {e}", p.display()))
        };
        let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
        let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca_file {
            tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
        }
        Ok(Some(tls))
    }
}

/// The configured tokens, ready to check requests against.
#[derive(Clone, Debug)]
pub struct Authenticator {
    tokens: Vec<(Digest, Tenant, bool)>,
}

/// A configured token's hash. Both kinds are held as `blake3::Hash`, whose
/// equality is constant-time, so comparing SHA-256 digests leaks no timing
/// either.
#[derive(Clone, Debug)]
enum Digest {
    Blake3(blake3::Hash),
    Sha256(blake3::Hash),
}

fn digest(entry: &TokenEntry) -> Result<Digest, String> {
    let parse = |hex: &str, name: &str| {
        blake3::Hash::from_hex(hex).map_err(|_| format!("{name} must be 64 hex digits"))
    };
    match (entry.token_blake3.is_empty(), entry.token_sha256.is_empty()) {
        (false, true) => parse(&entry.token_blake3, "token_blake3").map(Digest::Blake3),
        (true, false) => parse(&entry.token_sha256, "token_sha256").map(Digest::Sha256),
        _ => Err("give exactly one of token_blake3 (reach token hash) or token_sha256".into()),
    }
}

impl Authenticator {
    /// `None` when authentication is off (every call is the default tenant).
    pub fn new(config: &AuthConfig) -> Result<Option<Self>, String> {
        if !config.enabled() {
            return Ok(None);
        }
        config.validate()?;
        let tokens = config
            .tokens
            .iter()
            .map(|t| {
                let hash = digest(t).expect("validated");
                (hash, Tenant::new(&t.tenant).expect("validated"), t.admin)
            })
            .collect();
        Ok(Some(Authenticator { tokens }))
    }

    /// The tenant of the request's bearer token.
    pub fn tenant(&self, metadata: &MetadataMap) -> Result<Tenant, Status> {
        self.identify(metadata).map(|(tenant, _)| tenant)
    }

    /// Admits AdminService calls: only tokens configured with `admin = true`.
    pub fn admin(&self, request: Request<()>) -> Result<Request<()>, Status> {
        match self.identify(request.metadata())? {
            (_, true) => Ok(request),
            (_, false) => {
                metrics::counter!("reach_auth_failures_total", "reason" => "not_admin")
                    .increment(1);
                Err(Status::permission_denied(
                    "this token is not an admin token (admin = true in its [[auth.tokens]] entry)",
                ))
            }
        }
    }

    /// The tenant of the request's bearer token and whether it is an admin.
    fn identify(&self, metadata: &MetadataMap) -> Result<(Tenant, bool), Status> {
        let header = metadata.get("authorization").ok_or_else(|| {
            refuse(
                "missing",
                "missing authorization: send `authorization: Bearer <token>`",
            )
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| refuse("malformed", "authorization must be `Bearer <token>`"))?;
        let presented = blake3::hash(token.as_bytes());
        let presented_sha256 = blake3::Hash::from_bytes(Sha256::digest(token.as_bytes()).into());
        // Every entry is compared (blake3::Hash equality is constant-time),
        // so the time taken does not say which entry, if any, matched.
        let mut found = None;
        for (hash, tenant, admin) in &self.tokens {
            let matched = match hash {
                Digest::Blake3(hash) => *hash == presented,
                Digest::Sha256(hash) => *hash == presented_sha256,
            };
            if matched {
                found = Some((tenant.clone(), *admin));
            }
        }
        found.ok_or_else(|| refuse("unknown", "unknown token"))
    }

    /// A tonic interceptor putting the caller's tenant in the request's
    /// extensions.
    pub fn intercept(&self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let tenant = self.tenant(request.metadata())?;
        request.extensions_mut().insert(tenant);
        Ok(request)
    }
}

fn refuse(reason: &'static str, message: &'static str) -> Status {
    metrics::counter!("reach_auth_failures_total", "reason" => reason).increment(1);
    Status::unauthenticated(message)
}

/// A new random token (32 bytes, hex) and its hash, for `reach token new`.
pub fn new_token() -> (String, String) {
    let token: String = crate::domain::address::random_key()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let hash = blake3::hash(token.as_bytes()).to_hex().to_string();
    (token, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn tokens_map_to_tenants_and_bad_ones_are_refused() {
        let (token, hash) = new_token();
        let config = AuthConfig {
            tokens: vec![TokenEntry {
                tenant: "acme".into(),
                token_blake3: hash,
                token_sha256: String::new(),
                admin: false,
            }],
        };
        let auth = Authenticator::new(&config).unwrap().unwrap();
        let tenant = auth.tenant(&metadata(&format!("Bearer {token}"))).unwrap();
        assert_eq!(tenant.as_str(), "acme");
        for bad in ["Bearer nope", "Basic abc", "Bearer ", token.as_str()] {
            let status = auth.tenant(&metadata(bad)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{bad}");
        }
        assert_eq!(
            auth.tenant(&MetadataMap::new()).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert!(
            Authenticator::new(&AuthConfig::default())
                .unwrap()
                .is_none()
        );
        let bad = AuthConfig {
            tokens: vec![TokenEntry {
                tenant: "Acme!".into(),
                token_blake3: "xyz".into(),
                token_sha256: String::new(),
                admin: false,
            }],
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn sha256_entries_work_and_one_hash_kind_is_required() {
        let token = "generated-by-helm";
        let sha: String = Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let entry = TokenEntry {
            tenant: "default".into(),
            token_blake3: String::new(),
            token_sha256: sha.clone(),
            admin: true,
        };
        let config = AuthConfig {
            tokens: vec![entry.clone()],
        };
        let auth = Authenticator::new(&config).unwrap().unwrap();
        let tenant = auth.tenant(&metadata(&format!("Bearer {token}"))).unwrap();
        assert_eq!(tenant.as_str(), "default");
        assert!(auth.tenant(&metadata("Bearer other")).is_err());
        let both = TokenEntry {
            token_blake3: blake3::hash(b"x").to_hex().to_string(),
            ..entry.clone()
        };
        let neither = TokenEntry {
            token_sha256: String::new(),
            ..entry
        };
        for bad in [both, neither] {
            assert!(AuthConfig { tokens: vec![bad] }.validate().is_err());
        }
    }
}
