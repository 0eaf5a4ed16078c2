//! `reach import` input: JSON Lines or CSV, of events or of a provider's
//! raw export. Input: a byte choosing the mode, then the file's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reach::client::import::{Format, parse_bytes};

fuzz_target!(|data: &[u8]| {
    let [mode, file @ ..] = data else {
        return;
    };
    let (format, provider) = match mode % 4 {
        0 => (Format::Jsonl, None),
        1 => (Format::Csv, None),
        2 => (Format::Jsonl, Some("sendgrid")),
        _ => (Format::Csv, Some("twilio")),
    };
    let _ = parse_bytes(format, provider, file);
});
