//! The provider translation layer: a provider's own words (a webhook body
//! or native fields) in, normalized events out, each with the table rule
//! that classified it. An event no rule covers is reported as unmapped, for
//! the dead-letter store; it is never guessed.

mod dead_letter;
mod native;
mod parse;
mod request;
mod table;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, RwLock},
};

use serde::{Deserialize, Serialize};

pub use dead_letter::DeadLetter;
pub use native::{NativeEvent, normalize_address};
pub use request::{NativeFields, ProviderRequest};
pub use table::{Rule, Table};

use crate::domain::{Channel, ChannelEvent, InvalidField, Millis, Status, event::EventMetadata};

/// Built-in tables, one per provider, compiled into the binary.
const BUILT_IN: [(&str, &str); 13] = [
    ("twilio", include_str!("tables/twilio.toml")),
    ("twilio-voice", include_str!("tables/twilio-voice.toml")),
    ("plivo", include_str!("tables/plivo.toml")),
    ("vonage", include_str!("tables/vonage.toml")),
    ("infobip", include_str!("tables/infobip.toml")),
    ("sinch", include_str!("tables/sinch.toml")),
    ("smpp", include_str!("tables/smpp.toml")),
    ("sendgrid", include_str!("tables/sendgrid.toml")),
    ("ses", include_str!("tables/ses.toml")),
    ("mailgun", include_str!("tables/mailgun.toml")),
    ("postmark", include_str!("tables/postmark.toml")),
    ("fcm", include_str!("tables/fcm.toml")),
    ("apns", include_str!("tables/apns.toml")),
];

/// The providers reach has a built-in table for.
pub fn built_in_providers() -> impl Iterator<Item = &'static str> {
    BUILT_IN.iter().map(|(name, _)| *name)
}

/// Settings of the translation layer (`[providers]` in the config file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    /// Directory of `<provider>.toml` tables that replace built-in ones or add
    /// providers; re-read on SIGHUP and by `ReloadProviderTables`.
    pub tables_dir: Option<PathBuf>,
    /// Per provider, the payload field that holds the contact id: a form key
    /// or a dotted JSON path (e.g. `sendgrid = "contact_id"` for a custom arg).
    pub contact_fields: BTreeMap<String, String>,
    /// Largest provider body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        ProvidersConfig {
            tables_dir: None,
            contact_fields: BTreeMap::new(),
            max_body_bytes: 256 * 1024,
        }
    }
}

/// The tables in force and where they came from.
pub struct Providers {
    config: ProvidersConfig,
    tables: RwLock<Arc<BTreeMap<String, Table>>>,
}

/// One event of a request after translation.
#[derive(Clone, Debug, PartialEq)]
pub struct Translated {
    /// Position of the event in the request's body.
    pub index: u32,
    pub event_id: String,
    pub contact_id: String,
    pub channel: Channel,
    pub occurred_at: Millis,
    pub sent_at: Option<Millis>,
    pub metadata: EventMetadata,
    /// The recipient as the provider named it (normalized), if it did.
    pub address: String,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Mapped {
        status: Status,
        rule_id: String,
        table_version: String,
    },
    /// No rule covers it: `code` is what was not understood.
    Unmapped { reason: String, code: String },
}

impl Translated {
    /// The normalized event, if the translation found a class.
    pub fn event(&self) -> Option<ChannelEvent> {
        match &self.outcome {
            Outcome::Mapped { status, .. } => Some(ChannelEvent {
                event_id: self.event_id.clone(),
                contact_id: self.contact_id.clone(),
                channel: self.channel,
                status: *status,
                occurred_at: self.occurred_at,
                sent_at: self.sent_at,
                metadata: self.metadata.clone(),
                address: crate::domain::EventAddress {
                    raw: crate::domain::address::Sensitive(self.address.clone()),
                    resolved: None,
                },
            }),
            Outcome::Unmapped { .. } => None,
        }
    }
}

/// What a table file says about itself, for `ReloadProviderTables`.
#[derive(Clone, Debug, PartialEq)]
pub struct TableInfo {
    pub provider: String,
    pub version: String,
    pub rules: usize,
    pub overridden: bool,
}

impl Providers {
    /// Loads the built-in tables, then the override directory.
    pub fn load(config: ProvidersConfig) -> Result<Self, String> {
        let tables = read_tables(&config)?;
        Ok(Providers {
            config,
            tables: RwLock::new(Arc::new(tables)),
        })
    }

    pub fn config(&self) -> &ProvidersConfig {
        &self.config
    }

    /// Re-reads the tables; on any error the tables in force stay.
    pub fn reload(&self) -> Result<Vec<TableInfo>, String> {
        let tables = read_tables(&self.config)?;
        *self.tables.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tables);
        Ok(self.info())
    }

    pub fn info(&self) -> Vec<TableInfo> {
        let tables = self.current();
        let overrides = override_names(&self.config);
        tables
            .values()
            .map(|t| TableInfo {
                provider: t.provider.clone(),
                version: t.version.clone(),
                rules: t.rules().len(),
                overridden: overrides.contains(&t.provider),
            })
            .collect()
    }

    fn current(&self) -> Arc<BTreeMap<String, Table>> {
        self.tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Translates every event of `request` at server time `now`. Malformed
    /// requests are refused with the field at fault; unknown providers,
    /// statuses and codes come back as [`Outcome::Unmapped`].
    pub fn translate(
        &self,
        request: &ProviderRequest,
        now: Millis,
    ) -> Result<Vec<Translated>, InvalidField> {
        if request.body.len() > self.config.max_body_bytes {
            return Err(InvalidField::new(
                "body",
                format!(
                    "is {} bytes, at most {} allowed",
                    request.body.len(),
                    self.config.max_body_bytes
                ),
            ));
        }
        let provider = request.provider.trim().to_lowercase();
        if provider.is_empty() {
            return Err(InvalidField::new("provider", "is required"));
        }
        let tables = self.current();
        let Some(table) = tables.get(&provider) else {
            return Ok(vec![self.unknown_provider(request, &provider, now)]);
        };
        let natives = self.natives(&provider, request)?;
        let many = natives.len() > 1;
        natives
            .into_iter()
            .enumerate()
            .map(|(i, native)| self.translate_one(table, request, native, i as u32, many, now))
            .collect()
    }

    fn natives(
        &self,
        provider: &str,
        request: &ProviderRequest,
    ) -> Result<Vec<NativeEvent>, InvalidField> {
        if request.body.is_empty() {
            if request.native.status.trim().is_empty() {
                return Err(InvalidField::new(
                    "native.status",
                    "is required when there is no body",
                ));
            }
            let mut event = NativeEvent::default();
            event.set("status", Some(request.native.status.clone()));
            event.set("error_code", Some(request.native.error_code.clone()));
            event.set("sub_type", Some(request.native.sub_type.clone()));
            return Ok(vec![event]);
        }
        let raw = parse::RawBody {
            content_type: &request.content_type,
            body: &request.body,
            native_status: &request.native.status,
        };
        match parse::parse(provider, &raw) {
            Some(Ok(events)) if events.is_empty() => {
                Err(InvalidField::new("body", "holds no event"))
            }
            Some(Ok(events)) => Ok(events),
            Some(Err(reason)) => Err(InvalidField::new("body", reason)),
            None => Err(InvalidField::new(
                "body",
                format!("reach cannot read {provider} bodies; send the native fields instead"),
            )),
        }
    }

    fn translate_one(
        &self,
        table: &Table,
        request: &ProviderRequest,
        native: NativeEvent,
        index: u32,
        many: bool,
        now: Millis,
    ) -> Result<Translated, InvalidField> {
        let field = |f: &str| {
            if many {
                format!("body[{index}].{f}")
            } else {
                f.to_string()
            }
        };
        let contact_id = self
            .contact(&table.provider, request, &native)
            .ok_or_else(|| {
                InvalidField::new(
                    field("contact_id"),
                    format!(
                        "is required: the {} event names no usable recipient",
                        table.provider
                    ),
                )
            })?;
        let event_id = if !request.event_id.is_empty() {
            if many {
                format!("{}:{index}", request.event_id)
            } else {
                request.event_id.clone()
            }
        } else {
            native
                .provider_event_id
                .as_ref()
                .map(|id| format!("{}:{id}", table.provider))
                .ok_or_else(|| {
                    InvalidField::new(
                        "event_id",
                        format!("is required: {} payloads carry no event id", table.provider),
                    )
                })?
        };
        let rule = table.classify(&native.attributes);
        let code = code_of(&native);
        let outcome = match rule {
            Some(rule) => Outcome::Mapped {
                status: rule.status,
                rule_id: format!("{}/{}", table.provider, rule.id),
                table_version: table.version.clone(),
            },
            None => Outcome::Unmapped {
                reason: format!("no {} rule for {}", table.provider, describe(&native)),
                code: code.clone(),
            },
        };
        let channel = request
            .channel
            .or(rule.and_then(|r| r.channel))
            .unwrap_or(table.channel);
        let pick = |given: &str, found: &Option<String>| {
            if given.is_empty() {
                found.clone().unwrap_or_default()
            } else {
                given.to_string()
            }
        };
        // Per-address state only when the contact is someone other than the
        // recipient itself (contact ids from the request or a payload
        // field): a contact that is its address has just the one.
        let address = native
            .address
            .as_deref()
            .and_then(normalize_address)
            .filter(|a| *a != contact_id)
            .unwrap_or_default();
        Ok(Translated {
            index,
            event_id,
            contact_id,
            channel,
            occurred_at: native.occurred_at.or(request.occurred_at).unwrap_or(now),
            sent_at: native.sent_at,
            metadata: EventMetadata {
                message_id: pick(&request.message_id, &native.message_id),
                provider: table.provider.clone(),
                provider_code: code,
                carrier: pick(&request.carrier, &native.carrier),
                country: pick(&request.country, &native.country),
                campaign_id: request.campaign_id.clone(),
                campaign_type: request.campaign_type.clone(),
                lifecycle_stage: request.lifecycle_stage.clone(),
                sender_id: request.sender_id.clone(),
            },
            address,
            outcome,
        })
    }

    /// The caller's contact id, else the configured payload field, else the
    /// normalized recipient address.
    fn contact(
        &self,
        provider: &str,
        request: &ProviderRequest,
        native: &NativeEvent,
    ) -> Option<String> {
        if !request.contact_id.trim().is_empty() {
            return Some(request.contact_id.trim().to_string());
        }
        if let Some(path) = self.config.contact_fields.get(provider)
            && let Some(id) = native
                .payload
                .lookup(path)
                .filter(|id| !id.trim().is_empty())
        {
            return Some(id.trim().to_string());
        }
        native.address.as_deref().and_then(normalize_address)
    }

    fn unknown_provider(
        &self,
        request: &ProviderRequest,
        provider: &str,
        now: Millis,
    ) -> Translated {
        let event_id = if request.event_id.is_empty() {
            format!(
                "{provider}:{}",
                hex(&blake3::hash(&request.body).as_bytes()[..12])
            )
        } else {
            request.event_id.clone()
        };
        Translated {
            index: 0,
            event_id,
            contact_id: request.contact_id.clone(),
            channel: request.channel.unwrap_or(Channel::Sms),
            occurred_at: request.occurred_at.unwrap_or(now),
            sent_at: None,
            metadata: EventMetadata {
                message_id: request.message_id.clone(),
                provider: provider.to_string(),
                ..EventMetadata::default()
            },
            address: String::new(),
            outcome: Outcome::Unmapped {
                reason: format!("unknown provider {provider:?}: no mapping table"),
                code: "provider".into(),
            },
        }
    }
}

/// `status/error_code/sub_type`, what the provider said, kept as the event's
/// provider_code and as the dead-letter metric's code label.
fn code_of(native: &NativeEvent) -> String {
    ["status", "error_code", "sub_type"]
        .iter()
        .map(|k| native.attribute(k))
        .filter(|v| !v.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

fn describe(native: &NativeEvent) -> String {
    let parts: Vec<String> = native
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    parts.join(" ")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn override_names(config: &ProvidersConfig) -> Vec<String> {
    let Some(dir) = &config.tables_dir else {
        return Vec::new();
    };
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    e.path()
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn read_tables(config: &ProvidersConfig) -> Result<BTreeMap<String, Table>, String> {
    let mut tables = BTreeMap::new();
    for (name, text) in BUILT_IN {
        let table = Table::parse(&format!("built-in {name}.toml"), text)?;
        tables.insert(name.to_string(), table);
    }
    let Some(dir) = &config.tables_dir else {
        return Ok(tables);
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("providers.tables_dir {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let table = Table::parse(&path.display().to_string(), &text)?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if table.provider != stem {
            return Err(format!(
                "{}: provider {:?} does not match the file name",
                path.display(),
                table.provider
            ));
        }
        tables.insert(stem, table);
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_table_loads_and_has_a_parser() {
        let providers = Providers::load(ProvidersConfig::default()).unwrap();
        let names: Vec<String> = providers.info().into_iter().map(|t| t.provider).collect();
        assert_eq!(names.len(), 13);
        for name in parse::PARSED {
            assert!(names.iter().any(|n| n == name), "{name}");
        }
    }
}
