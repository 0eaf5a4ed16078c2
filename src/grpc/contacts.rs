//! Conversions for addresses and contacts (UpsertContact, GetContact).

use crate::{
    domain::{
        ContactProfile, InvalidField, Reachability,
        address::{AddressId, AddressInfo, AddressKind, PhoneType, Sensitive},
        contact::ConsentRecord,
        scoring::AddressAssessment,
    },
    engine::{AddressUpdate, ContactUpdate},
    grpc::convert::{channel_from, channel_to, millis_from, timestamp},
    proto,
};

pub fn address_to(id: AddressId, info: &AddressInfo) -> proto::Address {
    proto::Address {
        address_id: id.to_hex(),
        kind: kind_to(info.kind).into(),
        phone_type: phone_type_to(info.phone_type).into(),
        region: info.region.clone(),
        hint: info.hint.clone(),
        address: info
            .plaintext
            .as_ref()
            .map(|p| p.0.clone())
            .unwrap_or_default(),
        label: info.label.clone(),
    }
}

pub fn address_score(a: AddressAssessment) -> proto::AddressScore {
    proto::AddressScore {
        address: Some(address_to(a.id, &a.info)),
        score: a.score,
        eligible: a.eligible,
        reason: a.reason,
    }
}

fn kind_to(kind: AddressKind) -> proto::AddressKind {
    match kind {
        AddressKind::Unknown => proto::AddressKind::Unspecified,
        AddressKind::Phone => proto::AddressKind::Phone,
        AddressKind::Email => proto::AddressKind::Email,
        AddressKind::PushToken => proto::AddressKind::PushToken,
    }
}

fn phone_type_to(t: PhoneType) -> proto::PhoneType {
    use proto::PhoneType as P;
    match t {
        PhoneType::Unknown => P::Unspecified,
        PhoneType::Mobile => P::Mobile,
        PhoneType::FixedLine => P::FixedLine,
        PhoneType::FixedLineOrMobile => P::FixedLineOrMobile,
        PhoneType::Voip => P::Voip,
        PhoneType::TollFree => P::TollFree,
        PhoneType::PremiumRate => P::PremiumRate,
        PhoneType::SharedCost => P::SharedCost,
        PhoneType::Personal => P::Personal,
        PhoneType::Pager => P::Pager,
        PhoneType::Other => P::Other,
    }
}

pub fn update_from(r: proto::UpsertContactRequest) -> Result<ContactUpdate, InvalidField> {
    let addresses = r
        .addresses
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            Ok(AddressUpdate {
                channel: channel_from(&format!("addresses[{i}].channel"), a.channel)?,
                address: Sensitive(a.address),
                label: a.label,
                region: a.region,
            })
        })
        .collect::<Result<_, InvalidField>>()?;
    let consents = r
        .consents
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let field = |name: &str| format!("consents[{i}].{name}");
            let at =
                c.at.as_ref()
                    .ok_or_else(|| InvalidField::new(field("at"), "is required"))
                    .and_then(|ts| millis_from(&field("at"), ts))?;
            Ok(ConsentRecord {
                channel: channel_from(&field("channel"), c.channel)?,
                granted: c.granted,
                source: c.source,
                at,
            })
        })
        .collect::<Result<_, InvalidField>>()?;
    Ok(ContactUpdate {
        contact_id: r.contact_id,
        time_zone: r.time_zone,
        lifecycle_stage: r.lifecycle_stage,
        value_tier: r.value_tier,
        addresses,
        consents,
    })
}

pub fn contact_to(contact_id: String, p: &ContactProfile, reach: &Reachability) -> proto::Contact {
    let addresses = p
        .addresses
        .iter()
        .map(|slot| {
            let judged = reach.channels[slot.channel.index()]
                .addresses
                .iter()
                .find(|a| a.id == slot.id);
            let c = &slot.state.counts;
            proto::ContactAddress {
                channel: channel_to(slot.channel).into(),
                address: Some(address_to(slot.id, &slot.info)),
                delivered: c.delivered,
                bounced_hard: c.bounced_hard,
                pending_retry: c.pending_retry,
                unconfirmed: c.unconfirmed,
                last_event_at: slot.state.last_event.map(timestamp),
                eligible: judged.is_some_and(|a| a.eligible),
                ineligible_reason: judged
                    .filter(|a| !a.eligible)
                    .map(|a| a.reason.clone())
                    .unwrap_or_default(),
            }
        })
        .collect();
    let info = &p.contact;
    proto::Contact {
        contact_id,
        time_zone: info.time_zone.clone(),
        lifecycle_stage: info.lifecycle_stage.clone(),
        value_tier: info.value_tier.clone(),
        addresses,
        consents: info
            .consents
            .iter()
            .map(|c| proto::ConsentRecord {
                channel: channel_to(c.channel).into(),
                granted: c.granted,
                source: c.source.clone(),
                at: Some(timestamp(c.at)),
            })
            .collect(),
        updated_at: info.updated_at.map(timestamp),
    }
}
