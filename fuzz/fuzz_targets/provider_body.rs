//! A provider's webhook body, as any of the built-in providers, through the
//! whole translation (parse, normalize, map, dead-letter decision).
//! Input: a byte choosing the provider, a byte choosing the content type,
//! then the body.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use reach::{
    domain::Millis,
    providers::{ProviderRequest, Providers, ProvidersConfig, built_in_providers},
};

const CONTENT_TYPES: [&str; 3] = [
    "application/x-www-form-urlencoded",
    "application/json",
    "text/plain",
];

fn providers() -> &'static Providers {
    static PROVIDERS: OnceLock<Providers> = OnceLock::new();
    PROVIDERS.get_or_init(|| Providers::load(ProvidersConfig::default()).expect("built-in tables"))
}

/// In the order of the built-in tables (the seeds' first byte, fuzz/seeds.py).
fn names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| built_in_providers().collect())
}

fuzz_target!(|data: &[u8]| {
    let [provider, content_type, body @ ..] = data else {
        return;
    };
    let names = names();
    let request = ProviderRequest {
        provider: names[*provider as usize % names.len()].into(),
        content_type: CONTENT_TYPES[*content_type as usize % CONTENT_TYPES.len()].into(),
        body: body.to_vec(),
        ..Default::default()
    };
    if let Ok(translated) = providers().translate(&request, Millis(1_795_000_000_000)) {
        for t in translated {
            let _ = t.event();
        }
    }
});
