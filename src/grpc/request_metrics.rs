//! Requests by method and gRPC status, and their latency, for Prometheus.
//! The status is read from the response headers: reach's errors are sent
//! "trailers-only", so they are there; a reply without one is OK (an error
//! in the middle of a response stream is counted as OK).
//!
//! The method label is the request's path only for methods the server has
//! (read from the descriptor sets it serves); any other path is counted as
//! `unknown`, so that a client cannot add series at will.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Instant,
};

use metrics::{Counter, Histogram};
use prost::Message;
use tower::{Layer, Service};

/// What a path is labelled with when the server has no such method.
const UNKNOWN_METHOD: &str = "unknown";

/// One method's series, resolved on first use and kept: building a metrics
/// key (labels allocated, hashed and looked up) on every call was about 1%
/// of a `GetBestChannel`'s server CPU.
#[derive(Debug)]
struct MethodSeries {
    label: String,
    duration: OnceLock<Histogram>,
    /// By `tonic::Code` (0 to 16).
    calls: [OnceLock<Counter>; 17],
}

impl MethodSeries {
    fn new(label: String) -> Self {
        MethodSeries {
            label,
            duration: OnceLock::new(),
            calls: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn record(&self, code: i32, elapsed: f64) {
        let code = usize::try_from(code)
            .ok()
            .filter(|c| *c < self.calls.len())
            .unwrap_or(tonic::Code::Unknown as usize);
        self.calls[code]
            .get_or_init(|| {
                let name = code_name(code as i32);
                metrics::counter!("reach_requests_total", "method" => self.label.clone(), "code" => name)
            })
            .increment(1);
        self.duration
            .get_or_init(|| {
                metrics::histogram!("reach_request_duration_seconds", "method" => self.label.clone())
            })
            .record(elapsed);
    }
}

/// The series of every method the server has, by path.
#[derive(Debug)]
struct Methods {
    known: foldhash::HashMap<String, Arc<MethodSeries>>,
    unknown: Arc<MethodSeries>,
}

impl Methods {
    /// Every method of every service in these encoded descriptor sets.
    fn of(descriptor_sets: &[&[u8]]) -> Self {
        let mut known = foldhash::HashMap::default();
        for set in descriptor_sets {
            // The sets are compiled in: one that does not decode is a build
            // defect, and its methods are then counted as unknown.
            let Ok(set) = prost_types::FileDescriptorSet::decode(*set) else {
                continue;
            };
            for file in set.file {
                for service in &file.service {
                    for method in &service.method {
                        let path = format!(
                            "/{}{}{}/{}",
                            file.package(),
                            if file.package().is_empty() { "" } else { "." },
                            service.name(),
                            method.name()
                        );
                        known.insert(path.clone(), Arc::new(MethodSeries::new(path)));
                    }
                }
            }
        }
        Methods {
            known,
            unknown: Arc::new(MethodSeries::new(UNKNOWN_METHOD.into())),
        }
    }

    fn series(&self, path: &str) -> Arc<MethodSeries> {
        self.known.get(path).unwrap_or(&self.unknown).clone()
    }
}

#[derive(Clone, Debug)]
pub struct RequestMetricsLayer {
    methods: Arc<Methods>,
}

impl RequestMetricsLayer {
    /// Counts the methods of the services in these encoded descriptor
    /// sets under their own paths.
    pub fn new(descriptor_sets: &[&[u8]]) -> Self {
        RequestMetricsLayer {
            methods: Arc::new(Methods::of(descriptor_sets)),
        }
    }
}

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics {
            inner,
            methods: self.methods.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RequestMetrics<S> {
    inner: S,
    methods: Arc<Methods>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<http::Request<B>> for RequestMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let series = self.methods.series(request.uri().path());
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(tonic::Code::Ok as i32),
                Err(_) => tonic::Code::Unavailable as i32,
            };
            series.record(code, started.elapsed().as_secs_f64());
            result
        })
    }
}

fn code_name(code: i32) -> &'static str {
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
