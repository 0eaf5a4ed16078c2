//! The bare tonic echo service: the ceiling for any tonic service here.

use std::net::SocketAddr;

use tonic::{Request, Response, Status, transport::Server};

use crate::proto::bench::{
    EchoRequest, EchoResponse,
    echo_service_server::{EchoService, EchoServiceServer},
};

struct Echo;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let reply_bytes = request.into_inner().reply_bytes as usize;
        Ok(Response::new(EchoResponse {
            payload: vec![b'x'; reply_bytes.min(4 << 20)],
        }))
    }
}

/// Serves the echo service until the process is killed; prints the bound
/// address like `reach serve` does.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("reach listening on {}", listener.local_addr()?);
    Server::builder()
        .add_service(EchoServiceServer::new(Echo))
        .serve_with_incoming(crate::server::incoming(listener))
        .await?;
    Ok(())
}
