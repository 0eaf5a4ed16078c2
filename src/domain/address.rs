//! Addresses: the phone number, mailbox or push token a channel reaches.
//!
//! A contact can have several per channel (a work and a personal email), and
//! reach keeps its evidence per address. Addresses are validated and put in
//! canonical form when they come in (E.164 for phone numbers, with their type
//! from libphonenumber's metadata), so that one address always has one
//! identity, and so that a fixed line is known to be unable to take an SMS
//! before the first send fails.
//!
//! The store never needs the address itself: the engine keys each one by a
//! keyed hash ([`AddressId`]) and keeps a masked hint for people.

use std::{collections::HashMap, fmt, sync::Mutex};

use phonenumber::{PhoneNumber, country};

use crate::domain::{Channel, e164, numbering_plan};

/// What kind of address a channel takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AddressKind {
    #[default]
    Unknown,
    Phone,
    Email,
    PushToken,
}

impl AddressKind {
    pub const ALL: [AddressKind; 4] = [
        AddressKind::Unknown,
        AddressKind::Phone,
        AddressKind::Email,
        AddressKind::PushToken,
    ];

    pub fn of(channel: Channel) -> AddressKind {
        match channel {
            Channel::Sms | Channel::Voice => AddressKind::Phone,
            Channel::Email => AddressKind::Email,
            Channel::Push => AddressKind::PushToken,
        }
    }

    /// The channels an address of this kind is used on.
    pub fn channels(self) -> &'static [Channel] {
        match self {
            AddressKind::Phone => &[Channel::Sms, Channel::Voice],
            AddressKind::Email => &[Channel::Email],
            AddressKind::PushToken => &[Channel::Push],
            AddressKind::Unknown => &[],
        }
    }
}

/// The type of a phone number, from libphonenumber's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PhoneType {
    #[default]
    Unknown,
    Mobile,
    FixedLine,
    /// Numbering plans (the US, Canada...) that do not tell the two apart.
    FixedLineOrMobile,
    Voip,
    TollFree,
    PremiumRate,
    SharedCost,
    Personal,
    Pager,
    Other,
}

impl PhoneType {
    pub const ALL: [PhoneType; 11] = [
        PhoneType::Unknown,
        PhoneType::Mobile,
        PhoneType::FixedLine,
        PhoneType::FixedLineOrMobile,
        PhoneType::Voip,
        PhoneType::TollFree,
        PhoneType::PremiumRate,
        PhoneType::SharedCost,
        PhoneType::Personal,
        PhoneType::Pager,
        PhoneType::Other,
    ];

    fn from_metadata(t: phonenumber::Type) -> PhoneType {
        use phonenumber::Type as T;
        match t {
            T::Mobile => PhoneType::Mobile,
            T::FixedLine => PhoneType::FixedLine,
            T::FixedLineOrMobile => PhoneType::FixedLineOrMobile,
            T::Voip => PhoneType::Voip,
            T::TollFree => PhoneType::TollFree,
            T::PremiumRate => PhoneType::PremiumRate,
            T::SharedCost => PhoneType::SharedCost,
            T::PersonalNumber => PhoneType::Personal,
            T::Pager => PhoneType::Pager,
            T::Unknown => PhoneType::Unknown,
            _ => PhoneType::Other,
        }
    }

    /// Why a number of this type cannot take a text message, if it cannot.
    /// Mobile, VoIP and numbering plans that mix fixed and mobile lines can;
    /// a fixed line, a toll-free or premium number cannot.
    fn sms_refusal(self) -> Option<&'static str> {
        match self {
            PhoneType::Mobile
            | PhoneType::FixedLineOrMobile
            | PhoneType::Voip
            | PhoneType::Personal
            | PhoneType::Unknown => None,
            PhoneType::FixedLine => Some("a fixed line cannot receive SMS"),
            PhoneType::TollFree => Some("a toll-free number cannot receive SMS"),
            PhoneType::PremiumRate => Some("a premium-rate number cannot receive SMS"),
            PhoneType::SharedCost => Some("a shared-cost number cannot receive SMS"),
            PhoneType::Pager => Some("a pager cannot receive SMS"),
            PhoneType::Other => Some("this kind of number cannot receive SMS"),
        }
    }

    fn voice_refusal(self) -> Option<&'static str> {
        match self {
            PhoneType::Pager => Some("a pager cannot take a voice call"),
            _ => None,
        }
    }
}

impl fmt::Display for PhoneType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PhoneType::Unknown => "unknown type",
            PhoneType::Mobile => "mobile",
            PhoneType::FixedLine => "fixed line",
            PhoneType::FixedLineOrMobile => "fixed line or mobile",
            PhoneType::Voip => "VoIP",
            PhoneType::TollFree => "toll-free",
            PhoneType::PremiumRate => "premium rate",
            PhoneType::SharedCost => "shared cost",
            PhoneType::Personal => "personal number",
            PhoneType::Pager => "pager",
            PhoneType::Other => "other",
        })
    }
}

/// A string that holds a contact's address: never printed by `Debug`, so
/// that no log line or panic message can carry one.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Sensitive(pub String);

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

/// An address in canonical form, with what validation learned about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalAddress {
    /// E.164 for phone numbers, lower case for emails, as given for tokens.
    pub text: Sensitive,
    pub kind: AddressKind,
    pub phone_type: PhoneType,
    /// ISO 3166-1 alpha-2 region of a phone number.
    pub region: String,
}

/// Longest accepted address (a push token can be long; an email is at most
/// 254 by RFC 5321).
pub const MAX_ADDRESS_BYTES: usize = 4096;

/// Validates `raw` as an address for `channel` and puts it in canonical
/// form. Phone numbers without a leading `+` are read in `region` (the
/// event's country, else the configured default) if one is given.
pub fn canonicalize(
    channel: Channel,
    raw: &str,
    region: Option<&str>,
) -> Result<CanonicalAddress, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("is empty".into());
    }
    if raw.len() > MAX_ADDRESS_BYTES {
        return Err(format!(
            "is {} bytes, at most {MAX_ADDRESS_BYTES} allowed",
            raw.len()
        ));
    }
    match AddressKind::of(channel) {
        AddressKind::Phone => phone(raw, region),
        AddressKind::Email => email(raw),
        AddressKind::PushToken | AddressKind::Unknown => push_token(raw),
    }
}

/// Checks that `region` is a country libphonenumber knows.
pub fn check_region(region: &str) -> Result<(), String> {
    parse_region(region).map(|_| ())
}

fn parse_region(region: &str) -> Result<country::Id, String> {
    region
        .to_ascii_uppercase()
        .parse::<country::Id>()
        .map_err(|_| format!("region {region:?} is not a country libphonenumber knows"))
}

fn phone(raw: &str, region: Option<&str>) -> Result<CanonicalAddress, String> {
    let region_id = match region.filter(|r| !r.is_empty()) {
        Some(r) => Some(parse_region(r)?),
        None => None,
    };
    if region_id.is_none() && !raw.starts_with('+') {
        return Err(
            "is not in international format (+ and country code) and no country was given to read it in"
                .into(),
        );
    }
    let database = &phonenumber::metadata::DATABASE;
    // Most numbers come in E.164: read them without the crate's parser
    // (see `e164`), which reads them alike.
    if let Some(number) = e164::read(database, raw, region_id.as_ref().map(|id| id.as_ref())) {
        return Ok(phone_address(
            number.code,
            number.national,
            number.plan,
            number.kind,
        ));
    }
    let number: PhoneNumber =
        phonenumber::parse(region_id, raw).map_err(|e| format!("is not a phone number ({e})"))?;
    // The plan and type read with the national number whole, and the type
    // worked out once (see `numbering_plan`): the crate's own calls refused
    // Italian fixed lines and Ivorian numbers, and cost three type matches
    // for a +1 number.
    let (plan, number_type) = numbering_plan::plan_of(database, &number)
        .filter(|(_, kind)| *kind != phonenumber::Type::Unknown)
        .ok_or("is not a valid phone number for its country's numbering plan")?;
    let national = number.national().to_string();
    Ok(phone_address(
        number.code().value(),
        &national,
        plan,
        number_type,
    ))
}

/// A valid number's canonical address: its E.164 text, its type and the
/// country of its plan (none for a non-geographic code's).
fn phone_address(
    code: u16,
    national: &str,
    plan: &phonenumber::metadata::Metadata,
    number_type: phonenumber::Type,
) -> CanonicalAddress {
    let region = plan
        .id()
        .parse::<country::Id>()
        .map(|id| id.as_ref().to_string())
        .unwrap_or_default();
    CanonicalAddress {
        // What the crate's E.164 formatter writes; written directly, since
        // the formatter also looks up the country and picks a national
        // format by matching patterns, which E.164 does not use.
        text: Sensitive(format!("+{code}{national}")),
        kind: AddressKind::Phone,
        phone_type: PhoneType::from_metadata(number_type),
        region,
    }
}

fn email(raw: &str) -> Result<CanonicalAddress, String> {
    let parsed: email_address::EmailAddress = raw
        .parse()
        .map_err(|e| format!("is not an email address ({e})"))?;
    // Display names ("Ann <ann@example.com>") are not addresses.
    if parsed.email() != raw || !parsed.domain().contains('.') {
        return Err("is not a plain email address (local@domain.tld)".into());
    }
    // Mailbox providers treat local parts case-insensitively in practice;
    // one identity per mailbox matters more than RFC 5321's letter.
    Ok(CanonicalAddress {
        text: Sensitive(raw.to_lowercase()),
        kind: AddressKind::Email,
        phone_type: PhoneType::Unknown,
        region: String::new(),
    })
}

fn push_token(raw: &str) -> Result<CanonicalAddress, String> {
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a push token must be printable ASCII without spaces".into());
    }
    Ok(CanonicalAddress {
        text: Sensitive(raw.to_string()),
        kind: AddressKind::PushToken,
        phone_type: PhoneType::Unknown,
        region: String::new(),
    })
}

/// An address's identity in the store: a keyed 128-bit hash of its
/// canonical form (the engine holds the key).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AddressId(pub [u8; 16]);

impl AddressId {
    /// Every address of every reply carries its id: one `format!` per
    /// byte made this 4% of a `GetBestChannel`'s server CPU, and
    /// `hex::encode` (a string collected char by char) still 2%; written
    /// into a buffer, it is one allocation of the final size.
    pub fn to_hex(self) -> String {
        let mut text = [0u8; 32];
        hex::encode_to_slice(self.0, &mut text).expect("32 digits for 16 bytes");
        String::from_utf8_lossy(&text).into_owned()
    }

    pub fn from_hex(s: &str) -> Option<AddressId> {
        let mut id = [0u8; 16];
        hex::decode_to_slice(s, &mut id).ok()?;
        Some(AddressId(id))
    }
}

impl fmt::Debug for AddressId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AddressId({})", self.to_hex())
    }
}

/// What is kept about an address beside its evidence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AddressInfo {
    pub kind: AddressKind,
    pub phone_type: PhoneType,
    pub region: String,
    /// A masked form for people, e.g. `+1******4567`, `j***@example.com`.
    pub hint: String,
    /// The canonical address, only when plaintext storage is configured.
    pub plaintext: Option<Sensitive>,
    /// The caller's name for it (from UpsertContact), e.g. "work".
    pub label: String,
}

impl AddressInfo {
    pub fn new(address: &CanonicalAddress, keep_plaintext: bool) -> Self {
        AddressInfo {
            kind: address.kind,
            phone_type: address.phone_type,
            region: address.region.clone(),
            hint: hint(address),
            plaintext: keep_plaintext.then(|| address.text.clone()),
            label: String::new(),
        }
    }

    /// Why this address cannot be used on `channel`, if it cannot.
    pub fn refusal(&self, channel: Channel) -> Option<String> {
        if self.kind != AddressKind::Phone {
            return None;
        }
        let why = match channel {
            Channel::Sms => self.phone_type.sms_refusal(),
            Channel::Voice => self.phone_type.voice_refusal(),
            _ => None,
        }?;
        Some(format!("{}: {why}", self.hint))
    }
}

/// The secret that keys address hashes. Without it, an address id cannot
/// be tied back to a phone number by hashing every number of a country.
#[derive(Clone)]
pub struct AddressKey([u8; 32]);

impl fmt::Debug for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AddressKey(<redacted>)")
    }
}

/// 32 bytes from the operating system's CSPRNG.
pub fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the OS random source works");
    key
}

impl AddressKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        AddressKey(bytes)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, String> {
        let hex = hex.trim();
        if hex.len() != 64 {
            return Err(format!(
                "must be 64 hex digits (32 bytes), got {}",
                hex.len()
            ));
        }
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex, &mut key).map_err(|_| "must be hex digits".to_string())?;
        Ok(AddressKey(key))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The identity of a canonical address. Kinds are hashed apart so that
    /// a push token can never collide with a phone number's id.
    pub fn id(&self, address: &CanonicalAddress) -> AddressId {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(&[address.kind as u8]);
        hasher.update(address.text.0.as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        AddressId(id)
    }
}

/// An address as the engine resolved it: its id and what is kept about it.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedAddress {
    pub id: AddressId,
    pub info: AddressInfo,
}

/// How addresses are validated and kept (`[addresses]`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AddressConfig {
    /// Key of the address hashes, 64 hex digits. Empty: a key is generated
    /// once into `<data_dir>/address-hash.key` (back it up with the data).
    pub hash_key: String,
    /// Keep each address's canonical plaintext next to its hash (and return
    /// it in GetContact / GetBestChannel). Off by default: a leaked data
    /// dir then holds no phone number or email.
    pub store_plaintext: bool,
    /// Country (ISO 3166-1 alpha-2) in which phone numbers without `+` and
    /// a country code are read when the event names no country. Empty:
    /// such numbers are rejected.
    pub default_region: String,
}

/// Validates and identifies addresses with the configured key.
#[derive(Debug)]
pub struct AddressBook {
    key: AddressKey,
    config: AddressConfig,
    /// Recently resolved phone numbers: reading one and finding its plan
    /// and type in libphonenumber's metadata costs about 0.7 us (1.5 us
    /// through the crate's parser: see `e164`), and hashing and hinting it
    /// more, and a message's events (sent, delivered, opened...) name the
    /// same number again and again.
    recent: Mutex<HashMap<(String, String), ResolvedAddress>>,
}

/// Phone numbers kept resolved; the map is emptied when it fills up.
const RECENT_PHONES: usize = 4096;

impl AddressBook {
    pub fn new(key: AddressKey, config: AddressConfig) -> Self {
        AddressBook {
            key,
            config,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Canonicalizes `raw` for `channel` (reading national phone numbers in
    /// `region`, else the default region) and identifies it.
    pub fn resolve(
        &self,
        channel: Channel,
        raw: &str,
        region: &str,
    ) -> Result<ResolvedAddress, String> {
        let region = Some(region)
            .filter(|r| !r.is_empty())
            .or(Some(self.config.default_region.as_str()).filter(|r| !r.is_empty()));
        let lock = || self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let cache_key = (AddressKind::of(channel) == AddressKind::Phone)
            .then(|| (raw.to_string(), region.unwrap_or_default().to_string()));
        if let Some(key) = &cache_key
            && let Some(hit) = lock().get(key)
        {
            return Ok(hit.clone());
        }
        let canonical = canonicalize(channel, raw, region)?;
        let resolved = ResolvedAddress {
            id: self.key.id(&canonical),
            info: AddressInfo::new(&canonical, self.config.store_plaintext),
        };
        if let Some(key) = cache_key {
            let mut recent = lock();
            if recent.len() >= RECENT_PHONES {
                recent.clear();
            }
            recent.insert(key, resolved.clone());
        }
        Ok(resolved)
    }
}

/// A masked form of an address: enough to tell addresses apart in a
/// debugging session, not enough to contact anyone. Built in one
/// allocation: every new address of a bulk stream makes one, and
/// `format!` with `repeat` took 0.8% of a bulk write's CPU.
fn hint(address: &CanonicalAddress) -> String {
    let text = &address.text.0;
    match address.kind {
        AddressKind::Phone => {
            let tail = text.len().saturating_sub(2).max(1).min(text.len());
            let mut hint = String::with_capacity(text.len().max(1));
            hint.push('+');
            hint.extend(std::iter::repeat_n('*', tail.saturating_sub(1)));
            hint.push_str(&text[tail..]);
            hint
        }
        AddressKind::Email => match text.split_once('@') {
            Some((local, domain)) => {
                let mut hint = String::with_capacity(8 + domain.len());
                hint.extend(local.chars().take(1));
                hint.push_str("***@");
                hint.push_str(domain);
                hint
            }
            None => "***".into(),
        },
        AddressKind::PushToken | AddressKind::Unknown => {
            let head: String = text.chars().take(4).collect();
            format!("{head}...({} chars)", text.chars().count())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_become_e164_with_their_type() {
        let a = canonicalize(Channel::Sms, "+49 151 12345678", None).unwrap();
        assert_eq!(
            (a.text.0.as_str(), a.phone_type, a.region.as_str()),
            ("+4915112345678", PhoneType::Mobile, "DE")
        );
        let national = canonicalize(Channel::Voice, "020 7946 0000", Some("gb")).unwrap();
        assert_eq!(
            (national.text.0.as_str(), national.phone_type),
            ("+442079460000", PhoneType::FixedLine)
        );
        assert!(canonicalize(Channel::Sms, "(415) 555-2671", None).is_err());
        // The bench's numbers are valid ones.
        for n in ["+16502000000", "+16509999999", "+16505550123"] {
            assert!(canonicalize(Channel::Sms, n, None).is_ok(), "{n}");
        }
        assert!(canonicalize(Channel::Sms, "+1 000 000 0000", None).is_err());
        assert!(canonicalize(Channel::Sms, "not a number", Some("US")).is_err());
    }

    #[test]
    fn the_e164_text_is_the_crate_formatters() {
        // The numbering plans' own example numbers, in international and in
        // national form: Italian and Ivorian numbers keep their leading
        // zeros, and an extension is not part of E.164.
        let database = &phonenumber::metadata::DATABASE;
        let (mut checked, mut leading_zeros) = (0, 0);
        for region in [
            "IT", "CI", "GB", "US", "CA", "DE", "FR", "JP", "AU", "BR", "IN", "SM",
        ] {
            let meta = database.by_id(region).unwrap();
            let descriptors = meta.descriptors();
            for descriptor in [descriptors.fixed_line(), descriptors.mobile()]
                .into_iter()
                .flatten()
            {
                let Some(example) = descriptor.example() else {
                    continue;
                };
                let international = format!("+{} {example}", meta.country_code());
                let with_extension = format!("{international} ext. 12");
                for (raw, region) in [
                    (international.as_str(), None),
                    (with_extension.as_str(), None),
                    (example, Some(region)),
                ] {
                    let Ok(ours) = canonicalize(Channel::Voice, raw, region) else {
                        continue;
                    };
                    let region = region.map(|r| r.parse::<country::Id>().unwrap());
                    let number = phonenumber::parse(region, raw).unwrap();
                    let theirs = number.format().mode(phonenumber::Mode::E164).to_string();
                    assert_eq!(ours.text.0, theirs, "{raw}");
                    checked += 1;
                    leading_zeros += usize::from(number.national().zeros() > 0);
                }
            }
        }
        assert!(checked >= 60, "only {checked} numbers checked");
        assert!(
            leading_zeros >= 6,
            "only {leading_zeros} with leading zeros"
        );
    }

    #[test]
    fn a_fixed_line_takes_calls_not_texts() {
        let a = canonicalize(Channel::Voice, "+44 20 7946 0000", None).unwrap();
        let info = AddressInfo::new(&a, false);
        assert!(info.refusal(Channel::Sms).unwrap().contains("fixed line"));
        assert_eq!(info.refusal(Channel::Voice), None);
        assert_eq!(info.hint, "+**********00");
        let us = canonicalize(Channel::Sms, "+16502001234", None).unwrap();
        assert_eq!(AddressInfo::new(&us, false).hint, "+*********34");
    }

    #[test]
    fn emails_are_checked_and_lower_cased() {
        let a = canonicalize(Channel::Email, "Ann.Lee@Example.COM", None).unwrap();
        assert_eq!(a.text.0, "ann.lee@example.com");
        assert_eq!(AddressInfo::new(&a, false).hint, "a***@example.com");
        for bad in [
            "ann",
            "ann@",
            "Ann <ann@example.com>",
            "ann@localhost",
            "a b@c.com",
        ] {
            assert!(canonicalize(Channel::Email, bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_never_show_in_debug_output() {
        let a = canonicalize(Channel::Email, "ann@example.com", None).unwrap();
        let info = AddressInfo::new(&a, true);
        assert!(!format!("{a:?} {info:?}").contains("ann@"));
    }

    #[test]
    fn address_ids_round_trip_through_hex() {
        let id = AddressId([7; 16]);
        assert_eq!(AddressId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(AddressId::from_hex("zz"), None);
        let id = AddressId(std::array::from_fn(|i| i as u8 * 17));
        assert_eq!(id.to_hex(), "00112233445566778899aabbccddeeff");
        assert_eq!(
            AddressId::from_hex("00112233445566778899AABBCCDDEEFF"),
            Some(id)
        );
        // A sign is not a digit (`u8::from_str_radix` took "+1" as 1).
        assert_eq!(
            AddressId::from_hex("+1112233445566778899aabbccddeeff"),
            None
        );
        assert_eq!(
            AddressId::from_hex("00112233445566778899aabbccddeeff00"),
            None
        );
    }

    #[test]
    fn address_keys_are_64_hex_digits() {
        let key = AddressKey::new([0xab; 32]);
        assert_eq!(
            AddressKey::from_hex(&key.to_hex()).map(|k| k.0),
            Ok([0xab; 32])
        );
        assert!(AddressKey::from_hex(&"+1".repeat(32)).is_err());
        assert!(AddressKey::from_hex("ab").is_err());
    }
}
