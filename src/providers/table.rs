//! Mapping tables: for one provider, which native attributes mean which
//! taxonomy class. Tables are data (TOML, one file per provider), embedded in
//! the binary and overridable from a directory, so that a provider's schema
//! change is fixed by editing a file, not the code.
//!
//! A rule matches when every attribute it names has one of the listed values
//! (case-insensitive; `""` matches an absent attribute). The most specific
//! matching rule wins (most attributes named; on a tie, the first in the
//! file). No matching rule means the event is unknown: it is dead-lettered,
//! never guessed.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::{Channel, Status};

/// One provider's table.
#[derive(Clone, Debug)]
pub struct Table {
    pub provider: String,
    pub version: String,
    /// The channel the provider's events are on unless a rule or the caller says otherwise.
    pub channel: Channel,
    pub source: String,
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub id: String,
    conditions: Vec<(String, Vec<String>)>,
    pub status: Status,
    pub channel: Option<Channel>,
    pub source: String,
    pub note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    provider: String,
    version: String,
    channel: Channel,
    source: String,
    #[serde(default)]
    rules: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    id: String,
    when: BTreeMap<String, OneOrMany>,
    class: String,
    source: String,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    channel: Option<Channel>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Table {
    /// Parses and checks a table file; `name` is what errors call it.
    pub fn parse(name: &str, text: &str) -> Result<Table, String> {
        let file: TableFile = toml::from_str(text).map_err(|e| format!("{name}: {e}"))?;
        let mut rules = Vec::with_capacity(file.rules.len());
        for r in file.rules {
            let status = Status::from_name(&r.class)
                .ok_or_else(|| format!("{name}: rule {:?}: unknown class {:?}", r.id, r.class))?;
            if r.when.is_empty() {
                return Err(format!("{name}: rule {:?} has no conditions", r.id));
            }
            if r.source.trim().is_empty() {
                return Err(format!("{name}: rule {:?} cites no source", r.id));
            }
            let conditions = r
                .when
                .into_iter()
                .map(|(key, values)| {
                    let values = match values {
                        OneOrMany::One(v) => vec![v],
                        OneOrMany::Many(v) => v,
                    };
                    (key, values.into_iter().map(|v| v.to_lowercase()).collect())
                })
                .collect();
            let rule = Rule {
                id: r.id,
                conditions,
                status,
                channel: r.channel,
                source: r.source,
                note: r.note,
            };
            if rules.iter().any(|other: &Rule| other.id == rule.id) {
                return Err(format!("{name}: duplicate rule id {:?}", rule.id));
            }
            if let Some(other) = rules
                .iter()
                .find(|other: &&Rule| other.conditions == rule.conditions)
            {
                return Err(format!(
                    "{name}: rules {:?} and {:?} have the same conditions",
                    other.id, rule.id
                ));
            }
            rules.push(rule);
        }
        // Most specific first; the sort is stable, so file order breaks ties.
        rules.sort_by_key(|r| std::cmp::Reverse(r.conditions.len()));
        Ok(Table {
            provider: file.provider,
            version: file.version,
            channel: file.channel,
            source: file.source,
            rules,
        })
    }

    /// The rule for an event with these attributes, if any.
    pub fn classify(&self, attributes: &BTreeMap<String, String>) -> Option<&Rule> {
        self.rules.iter().find(|rule| {
            rule.conditions.iter().all(|(key, values)| {
                let value = attributes
                    .get(key)
                    .map(|v| v.trim().to_lowercase())
                    .unwrap_or_default();
                values.contains(&value)
            })
        })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = r#"
provider = "demo"
version = "1"
channel = "sms"
source = "https://example.com/docs"

[[rules]]
id = "failed"
when = { status = ["failed", "undelivered"], error_code = "1" }
class = "BOUNCED_HARD"
source = "https://example.com/1"

[[rules]]
id = "delivered"
when = { status = "delivered" }
class = "DELIVERED"
source = "https://example.com/delivered"

[[rules]]
id = "delivered-no-code"
when = { status = "delivered", error_code = "" }
class = "DELIVERED"
source = "https://example.com/delivered"
"#;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_most_specific_rule_wins_and_unknown_codes_match_nothing() {
        let table = Table::parse("demo.toml", TABLE).unwrap();
        let id = |a: &[(&str, &str)]| table.classify(&attrs(a)).map(|r| r.id.clone());
        assert_eq!(
            id(&[("status", "Undelivered"), ("error_code", "1")]).as_deref(),
            Some("failed")
        );
        assert_eq!(id(&[("status", "undelivered"), ("error_code", "2")]), None);
        assert_eq!(
            id(&[("status", "delivered")]).as_deref(),
            Some("delivered-no-code")
        );
        assert_eq!(
            id(&[("status", "delivered"), ("error_code", "9")]).as_deref(),
            Some("delivered")
        );
        assert_eq!(id(&[("status", "mystery")]), None);
    }

    #[test]
    fn bad_tables_are_refused() {
        let bad_class = TABLE.replace("BOUNCED_HARD", "BOUNCED");
        assert!(
            Table::parse("t", &bad_class)
                .unwrap_err()
                .contains("unknown class")
        );
        let duplicate = format!(
            "{TABLE}\n[[rules]]\nid = \"failed\"\nwhen = {{ status = \"x\" }}\nclass = \"SENT\"\nsource = \"s\"\n"
        );
        assert!(
            Table::parse("t", &duplicate)
                .unwrap_err()
                .contains("duplicate rule id")
        );
        let same = format!(
            "{TABLE}\n[[rules]]\nid = \"again\"\nwhen = {{ status = \"delivered\" }}\nclass = \"SENT\"\nsource = \"s\"\n"
        );
        assert!(
            Table::parse("t", &same)
                .unwrap_err()
                .contains("same conditions")
        );
        let unsourced = TABLE.replace("source = \"https://example.com/1\"", "source = \"\"");
        assert!(
            Table::parse("t", &unsourced)
                .unwrap_err()
                .contains("cites no source")
        );
    }
}
