//! TLS and mTLS on the gRPC port: handshakes that must work and ones that
//! must fail.

use std::time::Duration;

use reach::{
    auth::TlsConfig,
    config::Config,
    proto::{self, reachability_service_client::ReachabilityServiceClient},
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
    stranger: (String, String),
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>, issuer: &rcgen::Certificate, issuer_key: &KeyPair| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, issuer, issuer_key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let server = leaf(vec!["localhost".into()], &ca, &ca_key);
    let client = leaf(vec!["client.example".into()], &ca, &ca_key);
    // A client certificate from a CA the server does not trust.
    let other_key = KeyPair::generate().unwrap();
    let mut other_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    other_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other = other_params.self_signed(&other_key).unwrap();
    let stranger = leaf(vec!["stranger.example".into()], &other, &other_key);
    Pki {
        ca: ca.pem(),
        server,
        client,
        stranger,
    }
}

struct Running {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(pki: &Pki, mutual: bool) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let tls = TlsConfig {
        cert_file: Some(write("server.pem", &pki.server.0)),
        key_file: Some(write("server.key", &pki.server.1)),
        client_ca_file: mutual.then(|| write("ca.pem", &pki.ca)),
    };
    let config = Config {
        data_dir: dir.path().join("data"),
        tls,
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(reach::server::serve_with(
        config,
        reach::server::Listeners {
            grpc: listener,
            admin: None,
            webhooks: None,
        },
        async {
            let _ = stopped.await;
        },
    ));
    Running {
        port,
        stop: Some(stop),
        _dir: dir,
    }
}

async fn connect(port: u16, tls: Option<ClientTlsConfig>) -> Result<Channel, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://localhost:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    endpoint.connect().await.map_err(|e| format!("{e:?}"))
}

/// A call that needs the store open; retried while the store opens.
async fn call(channel: Channel) -> Result<(), tonic::Status> {
    let mut client = ReachabilityServiceClient::new(channel);
    let mut last = None;
    for _ in 0..50 {
        match client
            .get_best_channel(proto::GetBestChannelRequest {
                contact_id: "c1".into(),
                ..Default::default()
            })
            .await
        {
            Ok(_) => return Ok(()),
            Err(s) if s.code() == tonic::Code::Unavailable && s.message().contains("not open") => {
                last = Some(s);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => return Err(s),
        }
    }
    Err(last.unwrap())
}

fn client_tls(pki: &Pki, identity: Option<&(String, String)>) -> ClientTlsConfig {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    tls
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_serves_encrypted_calls_and_refuses_plaintext() {
    let pki = pki();
    let server = start(&pki, false).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let channel = connect(server.port, Some(client_tls(&pki, None)))
        .await
        .unwrap();
    call(channel).await.unwrap();
    // A plaintext client gets no answer from a TLS port.
    let plain = connect(server.port, None).await;
    let refused = match plain {
        Err(_) => true,
        Ok(channel) => call(channel).await.is_err(),
    };
    assert!(refused, "plaintext must not work against TLS");
    // A client that does not trust the server's CA refuses the handshake.
    let untrusting = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(rcgen_self_signed()))
        .domain_name("localhost");
    let result = match connect(server.port, Some(untrusting)).await {
        Err(_) => Err(()),
        Ok(channel) => call(channel).await.map_err(drop),
    };
    assert!(result.is_err(), "an unknown server certificate is refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_requires_a_client_certificate_from_the_configured_ca() {
    let pki = pki();
    let server = start(&pki, true).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let with_cert = connect(server.port, Some(client_tls(&pki, Some(&pki.client)))).await;
    call(with_cert.unwrap()).await.unwrap();
    for identity in [None, Some(&pki.stranger)] {
        let outcome = match connect(server.port, Some(client_tls(&pki, identity))).await {
            Err(_) => Err(()),
            Ok(channel) => call(channel).await.map_err(drop),
        };
        assert!(
            outcome.is_err(),
            "client certificate {:?} must be refused",
            identity.map(|_| "stranger")
        );
    }
}

fn rcgen_self_signed() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem()
}
