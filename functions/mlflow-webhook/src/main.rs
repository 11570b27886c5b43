//! The `mlflow-webhook` Lambda behind a Function URL: a signed MLflow delivery in, a pipeline
//! event on the bus, a status code back (see `mlops::stage::registry::receive`).

use lambda_http::{Body, Request, Response, service_fn};
use mlops::stage::registry::webhook::{DELIVERY_ID, Headers, SIGNATURE, TIMESTAMP};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    // reqwest (MLflow) and the AWS SDK both use rustls; pick the process-wide provider first.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    mlops::lambda::init_tracing();
    let receiver = mlops::lambda::mlflow_webhook::from_env().await?;
    let receiver = &receiver;
    lambda_http::run(service_fn(move |req: Request| async move {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let h = Headers {
            delivery_id: header(DELIVERY_ID),
            timestamp: header(TIMESTAMP),
            signature: header(SIGNATURE),
        };
        let body: &[u8] = match req.body() {
            Body::Empty => b"",
            Body::Text(t) => t.as_bytes(),
            Body::Binary(b) => b,
            _ => b"",
        };
        let reply = if req.method() != "POST" {
            mlops::stage::registry::receive::Reply {
                status: 405,
                message: "POST only".into(),
            }
        } else {
            receiver
                .receive(&h, body, chrono::Utc::now().timestamp())
                .await
        };
        Response::builder()
            .status(reply.status)
            .header("content-type", "application/json")
            .body(Body::Text(
                serde_json::json!({ "message": reply.message }).to_string(),
            ))
            .map_err(lambda_http::Error::from)
    }))
    .await
}
