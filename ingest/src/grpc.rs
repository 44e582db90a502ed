//! OTLP/gRPC `LogsService/Export`: a thin adapter over [`Ingestor::export`].

use std::sync::Arc;
use std::time::Instant;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;
use storage::access::AccessStore;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Response, Status};

use crate::limits::TokenLimits;
use crate::writer::Ingestor;
use crate::{IngestError, MAX_BODY_BYTES};

pub struct LogsGrpc {
    ingestor: Arc<Ingestor>,
    access: Arc<AccessStore>,
    limits: Arc<TokenLimits>,
}

/// The tonic service, with gzip accepted and the 20 MiB decoded-size cap.
pub fn logs_service(
    ingestor: Arc<Ingestor>,
    access: Arc<AccessStore>,
    limits: Arc<TokenLimits>,
) -> LogsServiceServer<LogsGrpc> {
    LogsServiceServer::new(LogsGrpc {
        ingestor,
        access,
        limits,
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .max_decoding_message_size(MAX_BODY_BYTES)
}

pub fn to_status(err: &IngestError) -> Status {
    let code = Code::from_i32(err.kind().grpc_code());
    let message = match err.kind() {
        model::ErrorKind::Internal => "internal error".to_string(),
        _ => err.to_string(),
    };
    Status::new(code, message)
}

#[tonic::async_trait]
impl LogsService for LogsGrpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let started = Instant::now();
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let source = request.remote_addr().map(|a| a.ip().to_string());
        let result = async {
            let grant = crate::authenticate_ingest(
                &self.access,
                &self.limits,
                header.as_deref(),
                source.as_deref(),
            )
            .await?;
            self.ingestor
                .metrics()
                .bytes
                .with_label_values(&["grpc"])
                .inc_by(request.get_ref().encoded_len() as u64);
            self.ingestor
                .export(grant.tenant_id, request.get_ref(), "grpc")
                .await
        }
        .await;
        let outcome = result.as_ref().map(|_| ()).map_err(IngestError::kind);
        self.ingestor.observe("grpc", started, outcome);
        match result {
            Ok(response) => Ok(Response::new(response)),
            Err(err) => {
                if err.kind() == model::ErrorKind::Unavailable {
                    tracing::warn!(error = %err, "grpc export unavailable");
                }
                Err(to_status(&err))
            }
        }
    }
}
