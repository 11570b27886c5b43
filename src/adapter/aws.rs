//! Shared AWS SDK configuration: built once per process (per Lambda container).

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the SDK configuration from the environment (Lambda role, `AWS_ENDPOINT_URL`, …).
pub async fn load() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Configuration for a local emulator (moto) at `endpoint`, with static dummy credentials.
pub async fn local(endpoint: &str) -> SdkConfig {
    let creds =
        aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "mlops-local");
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .load()
        .await
}

/// An S3 client; path-style addressing when an endpoint override points at an emulator.
pub fn s3_client(cfg: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(cfg)
        .force_path_style(cfg.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}
