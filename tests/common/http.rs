//! HTTP helpers for the webhook suites: raw HTTP/1.1 requests (plain or
//! TLS), an HTTPS server for stand-ins of provider endpoints, provider
//! fixtures, and the profile checks the suites share.

use std::{net::SocketAddr, sync::Arc};

use reach::proto::Channel;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{Client, counts};

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/providers/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// POSTs over HTTP/1.1; returns the status and body.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    exchange(stream, &addr.to_string(), path, content_type, headers, body).await
}

/// One HTTP/1.1 request on `stream` (plain TCP or TLS).
pub async fn exchange<S>(
    mut stream: S,
    host: &str,
    path: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    // A TLS peer may close without close_notify once it has answered.
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Hard bounces of a contact's email, on the channel or on its addresses.
pub async fn email_hard_bounces(client: &mut Client, contact: &str) -> u32 {
    let p = super::profile(client, contact).await;
    let on_addresses: u32 = p
        .addresses
        .iter()
        .filter_map(|a| a.state.as_ref())
        .filter(|s| s.channel == Channel::Email as i32)
        .filter_map(|s| s.counts)
        .map(|c| c.bounced_hard)
        .sum();
    counts(&p, Channel::Email).bounced_hard + on_addresses
}

pub fn summary(body: &str) -> (u64, u64, u64) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{body}"));
    let n = |k: &str| v[k].as_u64().unwrap();
    (n("recorded"), n("duplicates"), n("dead_lettered"))
}

/// Serves `app` over HTTPS with `certified` (an rcgen self-signed
/// certificate) on an ephemeral port, until the test process ends.
pub async fn serve_https(app: axum::Router, certified: &rcgen::CertifiedKey) -> SocketAddr {
    use hyper_util::{
        rt::{TokioExecutor, TokioIo},
        server::conn::auto::Builder,
        service::TowerToHyperService,
    };
    let key = PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .await;
                }
            });
        }
    });
    addr
}
