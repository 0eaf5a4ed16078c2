//! What a caller tells reach about a contact beyond events: time zone,
//! lifecycle stage, value tier, and consent per channel with its source and
//! time (the opt-in evidence regulators ask for).

use crate::domain::{Channel, ContactProfile, Millis};

/// Facts about a contact that UpsertContact sets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContactInfo {
    /// IANA time zone, e.g. `America/New_York`; empty if unknown.
    pub time_zone: String,
    pub lifecycle_stage: String,
    pub value_tier: String,
    /// Latest grant and latest revocation per channel, oldest first.
    pub consents: Vec<ConsentRecord>,
    pub updated_at: Option<Millis>,
}

/// A consent given or withdrawn on a channel, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRecord {
    pub channel: Channel,
    pub granted: bool,
    /// Where it was captured: "checkout form", "keyword START", "support call"...
    pub source: String,
    pub at: Millis,
}

impl ContactProfile {
    /// Records a consent and applies it channel-wide: a grant is an opt-in
    /// (and push permission) at its time, a revocation an opt-out. Only the
    /// latest grant and the latest revocation per channel are kept; an older
    /// or repeated record changes nothing, so upserts are idempotent and
    /// order-insensitive.
    pub fn record_consent(&mut self, record: ConsentRecord) {
        let kept = &mut self.contact.consents;
        match kept
            .iter_mut()
            .find(|r| r.channel == record.channel && r.granted == record.granted)
        {
            // Ties on time keep the lexically larger source so that the
            // result does not depend on the order records arrive in.
            Some(r) if (record.at, &record.source) <= (r.at, &r.source) => return,
            Some(r) => *r = record.clone(),
            None => kept.push(record.clone()),
        }
        kept.sort_by_key(|r| (r.at, r.channel, r.granted));
        let consent = &mut self.channel_mut(record.channel).consent;
        let latest =
            |slot: &mut Option<Millis>| *slot = Some(slot.map_or(record.at, |t| t.max(record.at)));
        if record.granted {
            latest(&mut consent.last_opt_in);
            latest(&mut consent.last_permission);
        } else {
            latest(&mut consent.last_opt_out);
        }
    }

    /// The latest consent record of `channel`, if any.
    pub fn latest_consent(&self, channel: Channel) -> Option<&ConsentRecord> {
        self.contact
            .consents
            .iter()
            .filter(|r| r.channel == channel)
            .max_by_key(|r| (r.at, !r.granted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(granted: bool, at: i64, source: &str) -> ConsentRecord {
        ConsentRecord {
            channel: Channel::Sms,
            granted,
            source: source.into(),
            at: Millis(at),
        }
    }

    #[test]
    fn consent_records_are_order_insensitive_and_idempotent() {
        let records = [
            record(true, 10, "web form"),
            record(false, 20, "keyword STOP"),
            record(true, 5, "import"),
        ];
        let mut a = ContactProfile::default();
        for r in &records {
            a.record_consent(r.clone());
            a.record_consent(r.clone());
        }
        let mut b = ContactProfile::default();
        for r in records.iter().rev() {
            b.record_consent(r.clone());
        }
        assert_eq!(a, b);
        assert_eq!(a.contact.consents.len(), 2);
        assert_eq!(
            a.channel_consent(Channel::Sms).opted_out(),
            Some(Millis(20))
        );
        assert_eq!(
            a.latest_consent(Channel::Sms).unwrap().source,
            "keyword STOP"
        );
    }
}
