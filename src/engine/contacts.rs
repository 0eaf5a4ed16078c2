//! UpsertContact / GetContact: addresses, consents and facts a caller tells
//! reach about a contact, validated in full before anything is written.

use crate::{
    domain::{
        Channel, ContactProfile, InvalidField, Millis, Reachability,
        address::{AddressKind, ResolvedAddress, Sensitive},
        contact::ConsentRecord,
        event::check_id,
        quiet_hours::check_time_zone,
    },
    engine::Engine,
    error::Result,
    storage::{ContactKey, Store, Tenant},
};

/// Longest accepted address label.
pub const MAX_LABEL_BYTES: usize = 64;

/// An address to add, as the caller gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct AddressUpdate {
    pub channel: Channel,
    pub address: Sensitive,
    pub label: String,
    pub region: String,
}

/// An UpsertContact request in domain terms.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContactUpdate {
    pub contact_id: String,
    pub time_zone: String,
    pub lifecycle_stage: String,
    pub value_tier: String,
    pub addresses: Vec<AddressUpdate>,
    pub consents: Vec<ConsentRecord>,
}

/// An update whose every field was checked and every address resolved.
struct Checked {
    update: ContactUpdate,
    addresses: Vec<(Channel, ResolvedAddress, String)>,
}

impl<S: Store> Engine<S> {
    /// Applies `update` to the contact (creating it), durably; returns the
    /// contact as stored.
    pub async fn upsert_contact(
        &self,
        tenant: &Tenant,
        update: ContactUpdate,
        now: Millis,
    ) -> Result<(ContactProfile, Reachability)> {
        let checked = self.check_update(update, now)?;
        let key = ContactKey::new(tenant, &checked.update.contact_id);
        let written = self
            .update_profile(&key, now, |profile| {
                apply_update(profile, &checked, now);
                Some(())
            })
            .await?
            .expect("an upsert always writes");
        // Nothing follows from an upsert but its reply: an unconfirmed
        // write is the error, and the client's retry applies it again.
        if let Some(e) = written.unconfirmed {
            return Err(e.into());
        }
        let profile = written.profile;
        self.store.sync().await?;
        let reach = self.assess_on_routes(tenant, &profile, now).await?;
        Ok((profile, reach))
    }

    /// A stored contact and its addresses' assessments now; `NotFound` if
    /// nothing is stored.
    pub async fn contact(
        &self,
        tenant: &Tenant,
        contact_id: &str,
    ) -> Result<(ContactProfile, Reachability)> {
        let (_, profile) = self.profile(tenant, contact_id).await?;
        let reach = self
            .assess_on_routes(tenant, &profile, Millis::now())
            .await?;
        Ok((profile, reach))
    }

    fn check_update(&self, update: ContactUpdate, now: Millis) -> Result<Checked, InvalidField> {
        check_id("contact_id", &update.contact_id, &self.limits)?;
        if !update.time_zone.is_empty() {
            check_time_zone(&update.time_zone).map_err(|e| InvalidField::new("time_zone", e))?;
        }
        for (field, value) in [
            ("lifecycle_stage", &update.lifecycle_stage),
            ("value_tier", &update.value_tier),
        ] {
            self.check_length(field, value, self.limits.max_field_bytes)?;
        }
        let mut addresses = Vec::with_capacity(update.addresses.len());
        for (i, a) in update.addresses.iter().enumerate() {
            let field = |name: &str| format!("addresses[{i}].{name}");
            self.check_length(&field("label"), &a.label, MAX_LABEL_BYTES)?;
            let resolved = self
                .addresses
                .resolve(a.channel, &a.address.0, &a.region)
                .map_err(|reason| InvalidField::new(field("address"), reason))?;
            addresses.push((a.channel, resolved, a.label.clone()));
        }
        let latest = now.saturating_add(self.limits.max_future_skew);
        for (i, c) in update.consents.iter().enumerate() {
            let field = |name: &str| format!("consents[{i}].{name}");
            if c.source.is_empty() {
                return Err(InvalidField::new(
                    field("source"),
                    "is required: where the consent was captured",
                ));
            }
            self.check_length(&field("source"), &c.source, self.limits.max_field_bytes)?;
            if c.at.0 < 0 || c.at > latest {
                return Err(InvalidField::new(
                    field("at"),
                    "must be between 1970 and the server clock",
                ));
            }
        }
        Ok(Checked { update, addresses })
    }

    fn check_length(&self, field: &str, value: &str, max: usize) -> Result<(), InvalidField> {
        if value.len() > max {
            return Err(InvalidField::new(
                field,
                format!("is {} bytes, at most {max} allowed", value.len()),
            ));
        }
        Ok(())
    }
}

fn apply_update(profile: &mut ContactProfile, checked: &Checked, now: Millis) {
    let u = &checked.update;
    let info = &mut profile.contact;
    for (slot, value) in [
        (&mut info.time_zone, &u.time_zone),
        (&mut info.lifecycle_stage, &u.lifecycle_stage),
        (&mut info.value_tier, &u.value_tier),
    ] {
        if !value.is_empty() {
            *slot = value.clone();
        }
    }
    info.updated_at = Some(now);
    for (channel, address, label) in &checked.addresses {
        // A phone number is known on every channel that dials it.
        let channels: &[Channel] = match address.info.kind {
            AddressKind::Phone => AddressKind::Phone.channels(),
            _ => std::slice::from_ref(channel),
        };
        for &c in channels {
            let slot = profile.address_slot(c, address);
            if !label.is_empty() {
                slot.info.label = label.clone();
            }
        }
    }
    for consent in &u.consents {
        profile.record_consent(consent.clone());
    }
}
