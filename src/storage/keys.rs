//! How tenants, contacts and dedupe markers are named in the store.

use std::{fmt, sync::Arc};

/// A tenant: every key is namespaced by one. Lower-case ASCII letters,
/// digits, `-` and `_`, 1 to 64 bytes, so it can never contain the separator.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tenant(Arc<str>);

impl Tenant {
    pub const DEFAULT: &'static str = "default";

    pub fn new(name: &str) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(format!("tenant {name:?} must be 1-64 of [a-z0-9_-]"));
        }
        Ok(Tenant(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant(Self::DEFAULT.into())
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One contact of one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContactKey {
    pub tenant: Tenant,
    pub contact_id: String,
}

impl ContactKey {
    pub fn new(tenant: &Tenant, contact_id: &str) -> Self {
        ContactKey {
            tenant: tenant.clone(),
            contact_id: contact_id.to_owned(),
        }
    }
}

/// The record that an event was applied: a 128-bit BLAKE3 digest of
/// (tenant, contact, event id). 16 bytes whatever the id lengths, and
/// collisions are out of reach (2^64 events for even odds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DedupeKey(pub [u8; 16]);

impl DedupeKey {
    pub fn new(key: &ContactKey, event_id: &str) -> Self {
        let mut h = blake3::Hasher::new();
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        for part in [key.tenant.as_str(), key.contact_id.as_str(), event_id] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&h.finalize().as_bytes()[..16]);
        DedupeKey(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_are_checked() {
        assert!(Tenant::new("acme-eu_1").is_ok());
        assert!(Tenant::new("").is_err());
        assert!(Tenant::new("Acme").is_err());
        assert!(Tenant::new("a\0b").is_err());
    }

    #[test]
    fn dedupe_keys_separate_their_parts() {
        let t = Tenant::default();
        let a = DedupeKey::new(&ContactKey::new(&t, "ab"), "c");
        let b = DedupeKey::new(&ContactKey::new(&t, "a"), "bc");
        assert_ne!(a, b);
        let other_tenant = Tenant::new("other").unwrap();
        assert_ne!(
            a,
            DedupeKey::new(&ContactKey::new(&other_tenant, "ab"), "c")
        );
    }
}
