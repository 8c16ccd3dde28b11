//! The example tool: an in-memory file store served over gRPC, protected by
//! [`mandate_sdk::MandateLayer`]. The `planner_workers` binary drives it.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use mandate_sdk::{Authorized, MandateLayer, ToolVerifier};
use tonic::{Request, Response, Status};

/// Generated code for `files.v1`.
pub mod files {
    include!(concat!(env!("OUT_DIR"), "/files.v1.rs"));
}

use files::file_store_server::{FileStore, FileStoreServer};

/// The file store: resources are `files/<path>`.
#[derive(Clone, Debug, Default)]
pub struct FileStoreTool {
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

fn authorized<T>(req: &Request<T>) -> Result<Authorized, Status> {
    req.extensions()
        .get::<Authorized>()
        .cloned()
        .ok_or_else(|| Status::permission_denied("no Mandate authorisation"))
}

#[tonic::async_trait]
impl FileStore for FileStoreTool {
    async fn read(
        &self,
        req: Request<files::ReadRequest>,
    ) -> Result<Response<files::ReadResponse>, Status> {
        let auth = authorized(&req)?;
        let resource = format!("files/{}", req.get_ref().path);
        // The proof names the resource: this call must be for exactly that file.
        auth.require_resource(&resource)?;
        let files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        let content = files
            .get(&req.get_ref().path)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no file `{}`", req.get_ref().path)))?;
        Ok(Response::new(files::ReadResponse { content }))
    }

    async fn write(
        &self,
        req: Request<files::WriteRequest>,
    ) -> Result<Response<files::WriteResponse>, Status> {
        let auth = authorized(&req)?;
        auth.require_resource(&format!("files/{}", req.get_ref().path))?;
        let r = req.into_inner();
        let size = r.content.len() as u64;
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(r.path, r.content);
        Ok(Response::new(files::WriteResponse { size }))
    }
}

/// Serves the file store on `addr` behind Mandate until `shutdown` resolves; returns the
/// bound address.
pub async fn serve_tool(
    addr: SocketAddr,
    verifier: ToolVerifier,
    tool: FileStoreTool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let layer = MandateLayer::new(verifier)
        .action("/files.v1.FileStore/Read", "read")
        .action("/files.v1.FileStore/Write", "write");
    let handle = tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .layer(layer)
            .add_service(FileStoreServer::new(tool))
            .serve_with_incoming_shutdown(
                // No Nagle delay on small responses (see mandate-server's listener).
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown,
            )
            .await;
        if let Err(e) = result {
            tracing_free_log(&format!("tool server stopped: {e}"));
        }
    });
    Ok((local, handle))
}

fn tracing_free_log(msg: &str) {
    // Examples print to stderr; they do not set up tracing.
    eprintln!("{msg}");
}
