//! Reading an import file: JSON Lines or CSV, of normalized events or of a
//! provider's raw callbacks, one item per line (or CSV record), each with
//! where it ends so that an interrupted import can resume there.

use std::{
    fs::File,
    io::{BufRead, BufReader, Seek, SeekFrom},
    path::Path,
};

use anyhow::Context;

use crate::{client::json, proto};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    pub fn of(path: &Path) -> anyhow::Result<Format> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => Ok(Format::Csv),
            Some("jsonl" | "ndjson" | "json") => Ok(Format::Jsonl),
            _ => anyhow::bail!(
                "cannot tell the format of {} from its name: pass --format jsonl or --format csv",
                path.display()
            ),
        }
    }
}

/// What one line asks to record.
#[derive(Clone, Debug)]
pub enum Payload {
    Event(proto::ChannelEvent),
    Provider(proto::ProviderEventRequest),
}

/// One line (or CSV record) of the file.
#[derive(Debug)]
pub struct Item {
    /// 1-based line number where it starts.
    pub line: u64,
    /// Byte offset just past it: where to resume after it.
    pub end: u64,
    /// Lines consumed through it (the resume point's line count).
    pub end_line: u64,
    /// The payload, or why the line cannot be one.
    pub payload: Result<Payload, String>,
    /// The line as read, for the rejected-lines file.
    pub text: String,
}

enum Reader {
    Lines {
        reader: BufReader<File>,
        offset: u64,
        line: u64,
    },
    Csv {
        reader: csv::Reader<File>,
        headers: csv::StringRecord,
    },
}

pub struct Source {
    reader: Reader,
    /// Raw callbacks of this provider, instead of normalized events.
    provider: Option<String>,
}

impl Source {
    /// Opens `path` positioned at `offset`: 0, or a checkpoint's offset with
    /// `line` the lines consumed before it.
    pub fn open(
        path: &Path,
        format: Format,
        provider: Option<String>,
        offset: u64,
        line: u64,
    ) -> anyhow::Result<Source> {
        let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let reader = match format {
            Format::Jsonl => {
                file.seek(SeekFrom::Start(offset))?;
                Reader::Lines {
                    reader: BufReader::with_capacity(1 << 16, file),
                    offset,
                    line,
                }
            }
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(file);
                let headers = reader
                    .headers()
                    .with_context(|| format!("reading the CSV header of {}", path.display()))?
                    .clone();
                if offset > 0 {
                    let mut at = csv::Position::new();
                    at.set_byte(offset).set_line(line + 1).set_record(line);
                    reader.seek(at)?;
                }
                Reader::Csv { reader, headers }
            }
        };
        Ok(Source { reader, provider })
    }

    /// The next item; `None` at the end of the file.
    pub fn next_item(&mut self) -> anyhow::Result<Option<Item>> {
        match &mut self.reader {
            Reader::Lines {
                reader,
                offset,
                line,
            } => loop {
                let mut bytes = Vec::new();
                let read = reader.read_until(b'\n', &mut bytes)?;
                if read == 0 {
                    return Ok(None);
                }
                *offset += read as u64;
                *line += 1;
                let text = String::from_utf8_lossy(&bytes).trim_end().to_string();
                if text.trim().is_empty() {
                    continue;
                }
                let payload = match std::str::from_utf8(&bytes) {
                    Ok(_) => json_payload(text.trim(), self.provider.as_deref()),
                    Err(e) => Err(format!("not UTF-8: {e}")),
                };
                return Ok(Some(Item {
                    line: *line,
                    end: *offset,
                    end_line: *line,
                    payload,
                    text,
                }));
            },
            Reader::Csv { reader, headers } => {
                let mut record = csv::StringRecord::new();
                let read = match reader.read_record(&mut record) {
                    Ok(read) => read,
                    Err(e) => {
                        // A malformed record (wrong field count, bad UTF-8)
                        // is a rejected line, not the end of the import.
                        let position = e.position().cloned();
                        let line = position.as_ref().map_or(0, |p| p.line());
                        return Ok(Some(Item {
                            line,
                            end: reader.position().byte(),
                            end_line: reader.position().line().saturating_sub(1),
                            payload: Err(format!("CSV: {e}")),
                            text: String::new(),
                        }));
                    }
                };
                if !read {
                    return Ok(None);
                }
                let line = record.position().map_or(0, |p| p.line());
                let text = record.iter().collect::<Vec<_>>().join(",");
                let payload = csv_payload(headers, &record, self.provider.as_deref());
                Ok(Some(Item {
                    line,
                    end: reader.position().byte(),
                    end_line: reader.position().line().saturating_sub(1),
                    payload,
                    text,
                }))
            }
        }
    }
}

/// Every item of `bytes` read as a whole file of `format`: the same parsing
/// as an import, without a file (for the fuzz targets).
pub fn parse_bytes(
    format: Format,
    provider: Option<&str>,
    bytes: &[u8],
) -> Vec<Result<Payload, String>> {
    match format {
        Format::Jsonl => bytes
            .split(|&b| b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(|line| match std::str::from_utf8(line) {
                Ok(text) => json_payload(text.trim(), provider),
                Err(e) => Err(format!("not UTF-8: {e}")),
            })
            .collect(),
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
            let Ok(headers) = reader.headers().cloned() else {
                return vec![Err("no CSV header".into())];
            };
            reader
                .records()
                .map(|record| match record {
                    Ok(record) => csv_payload(&headers, &record, provider),
                    Err(e) => Err(format!("CSV: {e}")),
                })
                .collect()
        }
    }
}

fn provider_request(provider: &str, content_type: &str, body: Vec<u8>) -> Payload {
    Payload::Provider(proto::ProviderEventRequest {
        provider: provider.to_string(),
        content_type: content_type.to_string(),
        body,
        ..Default::default()
    })
}

/// A JSON line: with a provider, that provider's callback body as is;
/// otherwise a ChannelEvent, bare or wrapped as a RecordEventRequest (the
/// format `reach simulate` writes and grpcurl reads).
fn json_payload(text: &str, provider: Option<&str>) -> Result<Payload, String> {
    if let Some(provider) = provider {
        serde_json::from_str::<serde_json::Value>(text).map_err(|e| format!("JSON: {e}"))?;
        return Ok(provider_request(
            provider,
            "application/json",
            text.as_bytes().to_vec(),
        ));
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("JSON: {e}"))?;
    let event = match value.get("event") {
        Some(event) if value.as_object().is_some_and(|o| o.len() == 1) => event,
        _ => &value,
    };
    json::from_value::<proto::ChannelEvent>(event, "reachability.v1.ChannelEvent")
        .map(Payload::Event)
        .map_err(|e| format!("{e:#}"))
}

/// A CSV record: with a provider, its fields as the form parameters of one
/// callback (how Twilio, Plivo and Vonage post them); otherwise a
/// ChannelEvent whose columns are named after its fields, where channel and
/// status may be short ("sms", "delivered").
fn csv_payload(
    headers: &csv::StringRecord,
    record: &csv::StringRecord,
    provider: Option<&str>,
) -> Result<Payload, String> {
    let cells = headers
        .iter()
        .zip(record.iter())
        .filter(|(_, value)| !value.is_empty());
    if let Some(provider) = provider {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(cells)
            .finish();
        return Ok(provider_request(
            provider,
            "application/x-www-form-urlencoded",
            body.into_bytes(),
        ));
    }
    let mut event = serde_json::Map::new();
    for (column, value) in cells {
        let value = match column {
            "channel" => enum_name("CHANNEL_", value),
            "status" => enum_name("STATUS_", value),
            _ => value.to_string(),
        };
        event.insert(column.to_string(), serde_json::Value::String(value));
    }
    json::from_value::<proto::ChannelEvent>(
        &serde_json::Value::Object(event),
        "reachability.v1.ChannelEvent",
    )
    .map(Payload::Event)
    .map_err(|e| format!("{e:#}"))
}

fn enum_name(prefix: &str, value: &str) -> String {
    let upper = value.trim().to_ascii_uppercase();
    if upper.starts_with(prefix) {
        upper
    } else {
        format!("{prefix}{upper}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(path: &Path, format: Format, provider: Option<&str>) -> Vec<Item> {
        let mut source = Source::open(path, format, provider.map(String::from), 0, 0).unwrap();
        let mut items = Vec::new();
        while let Some(item) = source.next_item().unwrap() {
            items.push(item);
        }
        items
    }

    #[test]
    fn jsonl_lines_numbered_and_resumable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let lines = [
            r#"{"event":{"eventId":"e1","contactId":"a","channel":"CHANNEL_SMS","status":"STATUS_DELIVERED","occurredAt":"2026-11-01T00:00:00Z"}}"#,
            "",
            r#"{"eventId":"e2","contactId":"a","channel":"CHANNEL_FAX"}"#,
            r#"{"eventId":"e3","contactId":"b","channel":"CHANNEL_EMAIL","status":"STATUS_OPTOUT","occurredAt":"2026-11-01T00:00:00Z"}"#,
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let items = read_all(&path, Format::Jsonl, None);
        assert_eq!(
            items.iter().map(|i| i.line).collect::<Vec<_>>(),
            vec![1, 3, 4]
        );
        assert!(items[0].payload.is_ok());
        assert!(
            items[1]
                .payload
                .as_ref()
                .unwrap_err()
                .contains("CHANNEL_FAX")
        );
        // Resuming after the second item reads the third only.
        let mut source =
            Source::open(&path, Format::Jsonl, None, items[1].end, items[1].end_line).unwrap();
        let next = source.next_item().unwrap().unwrap();
        assert_eq!(next.line, 4);
        assert!(source.next_item().unwrap().is_none());
    }

    #[test]
    fn csv_columns_are_event_fields_and_resumable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.csv");
        std::fs::write(
            &path,
            "event_id,contact_id,channel,status,occurred_at\n\
             e1,a,sms,delivered,2026-11-01T00:00:00Z\n\
             e2,a,sms,not-a-status,2026-11-01T00:00:00Z\n\
             e3,b,email,bounced_hard,2026-11-01T00:00:00Z\n",
        )
        .unwrap();
        let items = read_all(&path, Format::Csv, None);
        assert_eq!(
            items.iter().map(|i| i.line).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        match &items[2].payload {
            Ok(Payload::Event(e)) => assert_eq!(e.status, proto::Status::BouncedHard as i32),
            other => panic!("{other:?}"),
        }
        assert!(items[1].payload.is_err());
        let mut source =
            Source::open(&path, Format::Csv, None, items[0].end, items[0].end_line).unwrap();
        assert_eq!(source.next_item().unwrap().unwrap().line, 3);
    }

    #[test]
    fn provider_csv_rows_become_form_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twilio.csv");
        std::fs::write(
            &path,
            "MessageSid,MessageStatus,To\nSM1,delivered,+14155550100\n",
        )
        .unwrap();
        let items = read_all(&path, Format::Csv, Some("twilio"));
        match &items[0].payload {
            Ok(Payload::Provider(p)) => {
                assert_eq!(p.provider, "twilio");
                assert_eq!(
                    String::from_utf8_lossy(&p.body),
                    "MessageSid=SM1&MessageStatus=delivered&To=%2B14155550100"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
