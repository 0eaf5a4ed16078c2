//! Senders: the identities messages go out from (a 10DLC long code, a
//! short code, an email domain...) and whether carriers and registries have
//! cleared them to send. A channel whose sender is not cleared is not
//! eligible: launching a campaign into certain compliance blocks helps no one.

use serde::{Deserialize, Serialize};

use crate::domain::{Channel, InvalidField, Millis};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SenderKind {
    TenDlc,
    TollFree,
    ShortCode,
    Alphanumeric,
    EmailDomain,
    PushApp,
    VoiceNumber,
}

impl SenderKind {
    /// The channels a sender of this kind sends on.
    pub fn channels(self) -> &'static [Channel] {
        match self {
            SenderKind::TenDlc | SenderKind::TollFree => &[Channel::Sms, Channel::Voice],
            SenderKind::ShortCode | SenderKind::Alphanumeric => &[Channel::Sms],
            SenderKind::EmailDomain => &[Channel::Email],
            SenderKind::PushApp => &[Channel::Push],
            SenderKind::VoiceNumber => &[Channel::Voice],
        }
    }

    /// Whether each campaign is registered on its own (10DLC campaigns with
    /// TCR, short-code programs with the carriers).
    pub fn registers_campaigns(self) -> bool {
        matches!(self, SenderKind::TenDlc | SenderKind::ShortCode)
    }

    pub fn describe(self) -> &'static str {
        match self {
            SenderKind::TenDlc => "10DLC long code",
            SenderKind::TollFree => "toll-free number",
            SenderKind::ShortCode => "short code",
            SenderKind::Alphanumeric => "alphanumeric sender id",
            SenderKind::EmailDomain => "email domain",
            SenderKind::PushApp => "push app",
            SenderKind::VoiceNumber => "voice caller id",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RegistrationState {
    Unregistered,
    Pending,
    Approved,
    Rejected,
    Suspended,
}

impl RegistrationState {
    fn describe(self) -> &'static str {
        match self {
            RegistrationState::Unregistered => "not registered",
            RegistrationState::Pending => "pending approval",
            RegistrationState::Approved => "approved",
            RegistrationState::Rejected => "rejected",
            RegistrationState::Suspended => "suspended",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CampaignRegistration {
    pub campaign_id: String,
    pub state: RegistrationState,
    pub since: Millis,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegistrationChange {
    /// Empty for the sender itself.
    pub campaign_id: String,
    pub state: RegistrationState,
    pub at: Millis,
    pub note: String,
}

/// Changes kept per sender, latest first.
pub const MAX_HISTORY: usize = 32;
/// Campaigns kept per sender.
pub const MAX_CAMPAIGNS: usize = 256;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sender {
    pub sender_id: String,
    pub channel: Channel,
    pub kind: SenderKind,
    pub state: RegistrationState,
    pub state_since: Millis,
    pub campaigns: Vec<CampaignRegistration>,
    pub registered_at: Millis,
    pub history: Vec<RegistrationChange>,
}

/// A RegisterSender request, validated by [`Sender::register`].
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    pub sender_id: String,
    pub channel: Channel,
    pub kind: SenderKind,
    pub state: RegistrationState,
    pub campaigns: Vec<(String, RegistrationState)>,
    pub note: String,
}

impl Sender {
    /// Registers a new sender or applies `r` to the existing one at `now`:
    /// state changes are timed and kept in the history; listed campaigns
    /// are updated, others kept.
    pub fn register(
        existing: Option<Sender>,
        r: Registration,
        now: Millis,
    ) -> Result<Sender, InvalidField> {
        if !r.kind.channels().contains(&r.channel) {
            return Err(InvalidField::new(
                "kind",
                format!("a {} does not send on {}", r.kind.describe(), r.channel),
            ));
        }
        let is_new = existing.is_none();
        let mut sender = existing.unwrap_or_else(|| Sender {
            sender_id: r.sender_id.clone(),
            channel: r.channel,
            kind: r.kind,
            state: r.state,
            state_since: now,
            campaigns: Vec::new(),
            registered_at: now,
            history: Vec::new(),
        });
        sender.channel = r.channel;
        sender.kind = r.kind;
        if is_new || sender.state != r.state {
            sender.state = r.state;
            sender.state_since = now;
            sender.note(String::new(), r.state, now, &r.note);
        }
        for (campaign_id, state) in r.campaigns {
            match sender
                .campaigns
                .iter_mut()
                .find(|c| c.campaign_id == campaign_id)
            {
                Some(c) if c.state == state => {}
                Some(c) => {
                    c.state = state;
                    c.since = now;
                    sender.note(campaign_id, state, now, &r.note);
                }
                None => {
                    if sender.campaigns.len() >= MAX_CAMPAIGNS {
                        return Err(InvalidField::new(
                            "campaigns",
                            format!("at most {MAX_CAMPAIGNS} campaigns per sender"),
                        ));
                    }
                    sender.campaigns.push(CampaignRegistration {
                        campaign_id: campaign_id.clone(),
                        state,
                        since: now,
                    });
                    sender.note(campaign_id, state, now, &r.note);
                }
            }
        }
        sender
            .campaigns
            .sort_by(|a, b| a.campaign_id.cmp(&b.campaign_id));
        Ok(sender)
    }

    fn note(&mut self, campaign_id: String, state: RegistrationState, at: Millis, note: &str) {
        self.history.insert(
            0,
            RegistrationChange {
                campaign_id,
                state,
                at,
                note: note.to_string(),
            },
        );
        self.history.truncate(MAX_HISTORY);
    }

    /// Why this sender may not send `campaign_id` (empty: any campaign),
    /// if it may not.
    pub fn refusal(&self, campaign_id: &str) -> Option<String> {
        let who = format!("sender {} ({})", self.sender_id, self.kind.describe());
        if self.state != RegistrationState::Approved {
            return Some(format!("{who}: registration {}", self.state.describe()));
        }
        if !self.kind.registers_campaigns() {
            return None;
        }
        if campaign_id.is_empty() {
            return (!self
                .campaigns
                .iter()
                .any(|c| c.state == RegistrationState::Approved))
            .then(|| format!("{who}: no campaign approved yet"));
        }
        match self.campaigns.iter().find(|c| c.campaign_id == campaign_id) {
            None => Some(format!(
                "{who}: campaign {campaign_id} is not registered with it"
            )),
            Some(c) if c.state != RegistrationState::Approved => Some(format!(
                "{who}: campaign {campaign_id} {}",
                c.state.describe()
            )),
            Some(_) => None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("sender serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Sender, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("sender does not decode: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(
        state: RegistrationState,
        campaigns: &[(&str, RegistrationState)],
    ) -> Registration {
        Registration {
            sender_id: "+15550100".into(),
            channel: Channel::Sms,
            kind: SenderKind::TenDlc,
            state,
            campaigns: campaigns.iter().map(|(c, s)| (c.to_string(), *s)).collect(),
            note: String::new(),
        }
    }

    #[test]
    fn a_10dlc_sender_needs_its_brand_and_the_campaign_approved() {
        use RegistrationState::*;
        let s = Sender::register(None, registration(Pending, &[]), Millis(1)).unwrap();
        assert!(
            s.refusal("spring")
                .unwrap()
                .contains("registration pending approval")
        );
        let s = Sender::register(
            Some(s),
            registration(Approved, &[("spring", Pending)]),
            Millis(2),
        )
        .unwrap();
        assert!(
            s.refusal("spring")
                .unwrap()
                .contains("campaign spring pending approval")
        );
        assert!(s.refusal("other").unwrap().contains("not registered"));
        assert!(s.refusal("").unwrap().contains("no campaign approved"));
        let s = Sender::register(
            Some(s),
            registration(Approved, &[("spring", Approved)]),
            Millis(3),
        )
        .unwrap();
        assert_eq!(s.refusal("spring"), None);
        assert_eq!(s.state_since, Millis(2));
        assert_eq!(s.history.len(), 4);
        assert_eq!(Sender::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn a_kind_must_suit_the_channel() {
        let mut r = registration(RegistrationState::Approved, &[]);
        r.kind = SenderKind::EmailDomain;
        assert_eq!(
            Sender::register(None, r, Millis(1)).unwrap_err().field,
            "kind"
        );
    }
}
