//! How the client subcommands reach a server: address, token, TLS.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tonic::{
    Request, Status,
    metadata::AsciiMetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::proto::{
    admin_service_client::AdminServiceClient,
    reachability_service_client::ReachabilityServiceClient,
};

/// Connection flags shared by every client subcommand.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The server: http://host:port, or https://host:port for TLS.
    #[arg(
        long,
        env = "REACH_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub server: String,
    /// Bearer token (see `reach token new`).
    #[arg(long, env = "REACH_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// PEM CA certificate to verify the server with (https only; the system
    /// roots are not consulted).
    #[arg(long, env = "REACH_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate and key, for servers that require mTLS.
    #[arg(
        long,
        env = "REACH_CLIENT_CERT",
        requires = "client_key",
        global = true
    )]
    pub client_cert: Option<PathBuf>,
    #[arg(
        long,
        env = "REACH_CLIENT_KEY",
        requires = "client_cert",
        global = true
    )]
    pub client_key: Option<PathBuf>,
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct BearerToken(Option<AsciiMetadataValue>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Client = ReachabilityServiceClient<InterceptedService<Channel, BearerToken>>;
pub type AdminClient = AdminServiceClient<InterceptedService<Channel, BearerToken>>;

impl ClientArgs {
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let (channel, token) = self.channel().await?;
        Ok(ReachabilityServiceClient::with_interceptor(channel, token))
    }

    pub async fn connect_admin(&self) -> anyhow::Result<AdminClient> {
        let (channel, token) = self.channel().await?;
        Ok(AdminServiceClient::with_interceptor(channel, token))
    }

    async fn channel(&self) -> anyhow::Result<(Channel, BearerToken)> {
        let mut endpoint = Endpoint::from_shared(self.server.clone())
            .with_context(|| format!("--server {:?} is not a URL", self.server))?;
        if self.server.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(path) = &self.ca_cert {
                let pem = std::fs::read(path)
                    .with_context(|| format!("reading --ca-cert {}", path.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
                let cert = std::fs::read(cert)
                    .with_context(|| format!("reading --client-cert {}", cert.display()))?;
                let key = std::fs::read(key)
                    .with_context(|| format!("reading --client-key {}", key.display()))?;
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(tls).context("TLS settings")?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {}", self.server))?;
        let token = match &self.token {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse()
                    .context("--token has characters not allowed in a header")?,
            ),
            None => None,
        };
        Ok((channel, BearerToken(token)))
    }
}

/// A failed call, in words an operator can act on.
pub fn describe(status: &Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}
