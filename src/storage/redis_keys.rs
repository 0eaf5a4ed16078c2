//! How reach names its keys in a Redis Cluster.
//!
//! Every key of one contact carries the same hash tag (`{...}`, a BLAKE3
//! digest of tenant and contact id), so its profile and dedupe markers live
//! in one slot and a script can update them atomically. The digest keeps
//! arbitrary contact ids (which may contain braces) out of the tag. Keys
//! that are not per contact are spread over slots by their own tags.

use crate::storage::{Catalog, ContactKey, DedupeKey, Granularity, Tenant};

/// Names keys under one prefix (several deployments may share a cluster).
#[derive(Clone, Debug)]
pub struct KeySpace {
    prefix: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 128 bits of BLAKE3 over the length-prefixed parts.
fn digest(parts: &[&str]) -> String {
    let mut h = blake3::Hasher::new();
    for part in parts {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finalize().as_bytes()[..16])
}

impl KeySpace {
    pub fn new(prefix: &str) -> Self {
        KeySpace {
            prefix: prefix.to_owned(),
        }
    }

    fn contact_tag(key: &ContactKey) -> String {
        digest(&[key.tenant.as_str(), &key.contact_id])
    }

    /// The contact's hash: `v` (version), `d` (profile), `q`/`qr`
    /// (a quarantined record and why).
    pub fn contact(&self, key: &ContactKey) -> String {
        format!("{}:c:{{{}}}", self.prefix, Self::contact_tag(key))
    }

    /// A dedupe marker, in its contact's slot.
    pub fn marker(&self, key: &ContactKey, marker: &DedupeKey) -> String {
        format!(
            "{}:m:{{{}}}:{}",
            self.prefix,
            Self::contact_tag(key),
            hex(&marker.0)
        )
    }

    /// A short-lived key written in a contact's slot before a `WAIT` that
    /// must cover writes made on another connection.
    pub fn fence(&self, key: &ContactKey) -> String {
        format!("{}:f:{{{}}}", self.prefix, Self::contact_tag(key))
    }

    /// A tenant's dead letters: a hash by id and a lexically sorted index.
    pub fn dead_letters(&self, tenant: &Tenant) -> (String, String) {
        (
            format!("{}:dl:{{t:{tenant}}}", self.prefix),
            format!("{}:dli:{{t:{tenant}}}", self.prefix),
        )
    }

    pub fn catalog(&self, catalog: Catalog, tenant: &Tenant) -> String {
        let name = match catalog {
            Catalog::Senders => "senders",
            Catalog::SendPolicies => "policies",
        };
        format!("{}:cat:{{t:{tenant}}}:{name}", self.prefix)
    }

    /// One shard of a statistics bucket: day cells per tenant, minute
    /// cells of every tenant together (route health reads them all).
    pub fn stats(
        &self,
        granularity: Granularity,
        tenant: &Tenant,
        bucket: u32,
        shard: u32,
    ) -> String {
        match granularity {
            Granularity::Day => format!("{}:sd:{{{tenant}:{bucket}:{shard}}}", self.prefix),
            Granularity::Minute => format!("{}:sm:{{{bucket}:{shard}}}", self.prefix),
        }
    }

    /// One shard of the silence sweep's deadline index.
    pub fn deadlines(&self, shard: u32) -> String {
        format!("{}:dq:{{{shard}}}", self.prefix)
    }

    /// A tenant's action outbox (a stream).
    pub fn actions(&self, tenant: &Tenant) -> String {
        format!("{}:ax:{{t:{tenant}}}", self.prefix)
    }

    /// The tenants with an outbox, for trimming.
    pub fn action_tenants(&self) -> String {
        format!("{}:axt", self.prefix)
    }

    /// The address hash key shared by every replica.
    pub fn address_key(&self) -> String {
        format!("{}:address-hash-key", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot is computed from the text between the first `{` and the
    /// next `}`: both keys of a contact must yield the same tag.
    fn tag(key: &str) -> &str {
        let open = key.find('{').unwrap();
        let close = open + key[open..].find('}').unwrap();
        &key[open + 1..close]
    }

    #[test]
    fn a_contacts_keys_share_one_tag_whatever_its_id() {
        let keys = KeySpace::new("reach");
        let contact = ContactKey::new(&Tenant::default(), "a}b{c");
        let marker = DedupeKey::new(&contact, "event-1");
        assert_eq!(
            tag(&keys.contact(&contact)),
            tag(&keys.marker(&contact, &marker))
        );
        let other = ContactKey::new(&Tenant::new("other").unwrap(), "a}b{c");
        assert_ne!(tag(&keys.contact(&contact)), tag(&keys.contact(&other)));
    }
}
