//! SMPP delivery receipt text (`id:... stat:DELIVRD err:000 ...`) through
//! the SMPP table.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use reach::{
    domain::Millis,
    providers::{ProviderRequest, Providers, ProvidersConfig},
};

fn providers() -> &'static Providers {
    static PROVIDERS: OnceLock<Providers> = OnceLock::new();
    PROVIDERS.get_or_init(|| Providers::load(ProvidersConfig::default()).expect("built-in tables"))
}

fuzz_target!(|data: &[u8]| {
    let request = ProviderRequest {
        provider: "smpp".into(),
        content_type: "text/plain".into(),
        body: data.to_vec(),
        ..Default::default()
    };
    if let Ok(translated) = providers().translate(&request, Millis(1_795_000_000_000)) {
        for t in translated {
            let _ = t.event();
        }
    }
});
