//! The `git-webhook` Lambda behind a Function URL: a signed push of the manifests repo in
//! (GitHub `X-Hub-Signature-256` or GitLab `X-Gitlab-Token`), `GitPushed` on the bus, a status
//! code back (see `mlops::stage::deploy::receive`).

use lambda_http::{Body, Request, Response, service_fn};
use mlops::stage::deploy::push::PushHeaders;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    mlops::lambda::init_tracing();
    let receiver = mlops::lambda::git_webhook::from_env().await?;
    let receiver = &receiver;
    lambda_http::run(service_fn(move |req: Request| async move {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let h = PushHeaders {
            content_type: header("content-type"),
            github_event: header("x-github-event"),
            github_delivery: header("x-github-delivery"),
            hub_signature_256: header("x-hub-signature-256"),
            gitlab_event: header("x-gitlab-event"),
            gitlab_token: header("x-gitlab-token"),
            gitlab_event_uuid: header("x-gitlab-event-uuid"),
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
            receiver.receive(&h, body).await
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
