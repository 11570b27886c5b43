//! The `mlflow-webhook` handler served over plain HTTP on loopback, for the dev stack and the
//! tests: the same [`WebhookReceiver`] the Lambda runs, behind a minimal hyper server, so the
//! local MLflow server can deliver its signed webhooks to it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::error::BoxError;
use crate::port::{EventBus, ModelRegistry, ObjectStore};
use crate::stage::registry::receive::{Reply, SecretSource, WebhookReceiver};
use crate::stage::registry::webhook::{DELIVERY_ID, Headers, SIGNATURE, TIMESTAMP};

/// A fixed secret (the dev stack generates one per run).
pub struct StaticSecret(pub Vec<u8>);

impl SecretSource for StaticSecret {
    async fn secrets(&self) -> Result<Vec<Vec<u8>>, BoxError> {
        Ok(vec![self.0.clone()])
    }
}

/// Serves `receiver` on 127.0.0.1 (any free port) until the returned task is aborted.
pub async fn serve<K, R, B, S>(
    receiver: Arc<WebhookReceiver<K, R, B, S>>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)>
where
    K: SecretSource + 'static,
    R: ModelRegistry + 'static,
    B: EventBus + 'static,
    S: ObjectStore + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let receiver = receiver.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let receiver = receiver.clone();
                    async move { Ok::<_, Infallible>(handle(&receiver, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

/// One request through the receiver (the Lambda's conversion does the same with lambda_http).
pub async fn handle<K, R, B, S>(
    receiver: &WebhookReceiver<K, R, B, S>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>>
where
    K: SecretSource,
    R: ModelRegistry,
    B: EventBus,
    S: ObjectStore,
{
    let reply = if req.method() != hyper::Method::POST {
        Reply {
            status: 405,
            message: "POST only".into(),
        }
    } else {
        let (parts, body) = req.into_parts();
        let limit = receiver.settings.limits.max_body;
        match Limited::new(body, limit).collect().await {
            Err(_) => Reply {
                status: 413,
                message: format!("the body is over the limit of {limit} bytes"),
            },
            Ok(collected) => {
                let body = collected.to_bytes();
                let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
                let h = Headers {
                    delivery_id: header(DELIVERY_ID),
                    timestamp: header(TIMESTAMP),
                    signature: header(SIGNATURE),
                };
                receiver
                    .receive(&h, &body, chrono::Utc::now().timestamp())
                    .await
            }
        }
    };
    let mut resp = Response::new(Full::new(Bytes::from(
        serde_json::json!({"message": reply.message}).to_string(),
    )));
    *resp.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}
