//! OTLP/gRPC `LogsService/Export`: a thin adapter over [`Ingestor::export`].

use std::sync::Arc;
use std::time::Instant;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsService;
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

/// The gRPC service: `LogsService/Export` with gzip accepted, the 20 MiB
/// decoded-size cap, and record/attribute counts checked on the wire before the
/// message is decoded (as OTLP/HTTP does), so a small message cannot expand into
/// millions of structures. Routing mirrors the generated `LogsServiceServer`, whose
/// codec cannot be replaced.
#[derive(Clone)]
pub struct CheckedLogsServer {
    inner: Arc<LogsGrpc>,
}

pub fn logs_service(
    ingestor: Arc<Ingestor>,
    access: Arc<AccessStore>,
    limits: Arc<TokenLimits>,
) -> CheckedLogsServer {
    CheckedLogsServer {
        inner: Arc::new(LogsGrpc {
            ingestor,
            access,
            limits,
        }),
    }
}

impl tonic::server::NamedService for CheckedLogsServer {
    const NAME: &'static str =
        opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::SERVICE_NAME;
}

/// Prost's codec with the wire counts checked first.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckedCodec;

#[derive(Debug, Clone, Copy, Default)]
pub struct CheckedDecoder;

impl tonic::codec::Decoder for CheckedDecoder {
    type Item = ExportLogsServiceRequest;
    type Error = Status;

    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, Self::Error> {
        use prost::bytes::Buf;
        crate::decode::check_protobuf_counts(buf.chunk()).map_err(|e| to_status(&e))?;
        ExportLogsServiceRequest::decode(buf)
            .map(Some)
            .map_err(|e| {
                Status::invalid_argument(format!("invalid protobuf ExportLogsServiceRequest: {e}"))
            })
    }
}

impl tonic::codec::Codec for CheckedCodec {
    type Encode = ExportLogsServiceResponse;
    type Decode = ExportLogsServiceRequest;
    type Encoder = tonic_prost::ProstEncoder<ExportLogsServiceResponse>;
    type Decoder = CheckedDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder
    }
}

struct ExportSvc(Arc<LogsGrpc>);

impl tonic::server::UnaryService<ExportLogsServiceRequest> for ExportSvc {
    type Response = ExportLogsServiceResponse;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Self::Response>, Status>> + Send>,
    >;

    fn call(&mut self, request: Request<ExportLogsServiceRequest>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.export(request).await })
    }
}

impl<B> tower::Service<http::Request<B>> for CheckedLogsServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        if req.uri().path() != "/opentelemetry.proto.collector.logs.v1.LogsService/Export" {
            return Box::pin(async move {
                Ok(Status::unimplemented("only LogsService/Export is served here").into_http())
            });
        }
        Box::pin(async move {
            let mut accept = tonic::codec::EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(CheckedCodec)
                .apply_compression_config(accept, Default::default())
                .apply_max_message_size_config(Some(MAX_BODY_BYTES), None);
            Ok(grpc.unary(ExportSvc(inner), req).await)
        })
    }
}

/// The gRPC renderer: the kind's code and the public message; a retry hint as the
/// `retry-after` metadata OTLP exporters may read.
pub fn to_status(err: &IngestError) -> Status {
    let public = model::Public::of(err);
    let mut status = Status::new(Code::from_i32(public.kind.grpc_code()), public.message);
    if let Some(secs) = public.retry_after_secs
        && let Ok(value) = secs.to_string().parse()
    {
        status.metadata_mut().insert("retry-after", value);
    }
    status
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
