//! Protobuf bytes as the API receives them: a RecordEventRequest through
//! the proto-to-domain conversion and validation, and a
//! ProviderEventRequest through its conversion and the translation.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use reach::{
    domain::{EventLimits, Millis},
    grpc::{event_from, request_from},
    proto,
    providers::{Providers, ProvidersConfig},
};

fn providers() -> &'static Providers {
    static PROVIDERS: OnceLock<Providers> = OnceLock::new();
    PROVIDERS.get_or_init(|| Providers::load(ProvidersConfig::default()).expect("built-in tables"))
}

fuzz_target!(|data: &[u8]| {
    let now = Millis(1_795_000_000_000);
    if let Ok(request) = proto::RecordEventRequest::decode(data)
        && let Some(event) = request.event
        && let Ok(mut event) = event_from(event)
    {
        let _ = event.validate(&EventLimits::default(), now);
    }
    if let Ok(request) = proto::ProviderEventRequest::decode(data)
        && let Ok(request) = request_from(request)
    {
        let _ = providers().translate(&request, now);
    }
});
