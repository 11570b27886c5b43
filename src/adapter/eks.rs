//! EKS connection from a Lambda (CONTRACTS §3): `DescribeCluster` for the endpoint and CA, a
//! `k8s-aws-v1.` bearer token (a SigV4-presigned STS `GetCallerIdentity` URL with the signed
//! `x-k8s-aws-id` header), and a kube client cached per cluster and per container, rebuilt before
//! the token's 15 minutes run out.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use tokio::sync::Mutex;

use super::kubernetes::KubeCluster;
use crate::config::WorkloadKind;
use crate::error::BoxError;
use crate::port::workload::Workload;
use crate::port::{Cluster, ClusterError, PendingPod, WorkloadState};

/// STS honours the presigned URL for 15 minutes; rebuild well before (aws-iam-authenticator and
/// `aws eks get-token` use 14 minutes; we leave room for a request in flight).
pub const TOKEN_REUSE: Duration = Duration::from_secs(10 * 60);

/// The EKS bearer token for `cluster`, presigned at `now`.
pub fn token(
    creds: &Credentials,
    region: &str,
    cluster: &str,
    now: SystemTime,
) -> Result<String, BoxError> {
    let identity = creds.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    // STS ignores the value; old authenticators required 0..=60.
    settings.expires_in = Some(Duration::from_secs(60));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()?
        .into();
    let url =
        format!("https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15");
    let request = SignableRequest::new(
        "GET",
        &url,
        [("x-k8s-aws-id", cluster)].into_iter(),
        SignableBody::Bytes(&[]),
    )?;
    let (instructions, _signature) = sign(request, &params)?.into_parts();
    let mut req = http::Request::get(&url)
        .header("x-k8s-aws-id", cluster)
        .body(())?;
    instructions.apply_to_request_http1x(&mut req);
    Ok(format!(
        "k8s-aws-v1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(req.uri().to_string())
    ))
}

/// An in-memory kubeconfig for one cluster with a static bearer token.
pub fn kubeconfig(
    cluster: &str,
    endpoint: &str,
    ca_base64: &str,
    token: &str,
) -> Result<kube::config::Kubeconfig, serde_json::Error> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": endpoint, "certificate-authority-data": ca_base64}}],
        "users": [{"name": "mlops", "user": {"token": token}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": "mlops"}}],
        "current-context": cluster,
    }))
}

/// Endpoint and CA of an ACTIVE cluster.
pub async fn describe(
    eks: &aws_sdk_eks::Client,
    cluster: &str,
) -> Result<(String, String), ClusterError> {
    let out = eks
        .describe_cluster()
        .name(cluster)
        .send()
        .await
        .map_err(|e| {
            let status = e.raw_response().map(|r| r.status().as_u16());
            match status {
                Some(404) | Some(403) => ClusterError::Rejected {
                    status: status.unwrap_or_default(),
                    reason: "DescribeCluster".into(),
                    message: format!(
                        "cluster {cluster}: {}",
                        aws_sdk_eks::error::DisplayErrorContext(&e)
                    ),
                },
                _ => ClusterError::Connect {
                    cluster: cluster.into(),
                    source: Box::new(e),
                },
            }
        })?;
    let c = out.cluster();
    let endpoint = c.and_then(|c| c.endpoint()).unwrap_or_default();
    let ca = c
        .and_then(|c| c.certificate_authority())
        .and_then(|a| a.data())
        .unwrap_or_default();
    if endpoint.is_empty() || ca.is_empty() {
        let status = c
            .and_then(|c| c.status())
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        return Err(ClusterError::Unavailable {
            status: 503,
            reason: "ClusterNotActive".into(),
            message: format!("cluster {cluster} has no endpoint yet (status {status})"),
        });
    }
    Ok((endpoint.to_owned(), ca.to_owned()))
}

/// Kube clients for the EKS clusters of the pipeline, built on first use and rebuilt after
/// [`TOKEN_REUSE`].
pub struct EksClusters {
    sdk: aws_config::SdkConfig,
    eks: aws_sdk_eks::Client,
    cache: Mutex<HashMap<String, (KubeCluster, Instant)>>,
}

impl EksClusters {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        EksClusters {
            sdk: sdk.clone(),
            eks: aws_sdk_eks::Client::new(sdk),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub async fn cluster(&self, name: &str) -> Result<KubeCluster, ClusterError> {
        let mut cache = self.cache.lock().await;
        if let Some((c, minted)) = cache.get(name)
            && minted.elapsed() < TOKEN_REUSE
        {
            return Ok(c.clone());
        }
        let connect = |source: BoxError| ClusterError::Connect {
            cluster: name.to_owned(),
            source,
        };
        let (endpoint, ca) = describe(&self.eks, name).await?;
        let provider = self
            .sdk
            .credentials_provider()
            .ok_or_else(|| connect("no AWS credentials provider".into()))?;
        let creds = provider
            .provide_credentials()
            .await
            .map_err(|e| connect(Box::new(e)))?;
        let region = self
            .sdk
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| connect("no AWS region".into()))?;
        let minted = Instant::now();
        let token = token(&creds, &region, name, SystemTime::now()).map_err(connect)?;
        let kc = kubeconfig(name, &endpoint, &ca, &token).map_err(|e| connect(Box::new(e)))?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| connect(Box::new(e)))?;
        let client = kube::Client::try_from(config).map_err(|e| connect(Box::new(e)))?;
        let c = KubeCluster::new(client, name);
        cache.insert(name.to_owned(), (c.clone(), minted));
        Ok(c)
    }
}

impl Cluster for EksClusters {
    async fn apply(&self, w: &Workload) -> Result<(), ClusterError> {
        self.cluster(&w.cluster).await?.apply(w).await
    }
    async fn get(
        &self,
        kind: WorkloadKind,
        cluster: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<WorkloadState>, ClusterError> {
        self.cluster(cluster)
            .await?
            .get(kind, cluster, namespace, name)
            .await
    }
    async fn list(
        &self,
        kind: WorkloadKind,
        cluster: &str,
        namespace: &str,
    ) -> Result<Vec<WorkloadState>, ClusterError> {
        self.cluster(cluster)
            .await?
            .list(kind, cluster, namespace)
            .await
    }
    async fn annotate(
        &self,
        w: &WorkloadState,
        key: &str,
        value: &str,
    ) -> Result<bool, ClusterError> {
        self.cluster(&w.cluster)
            .await?
            .annotate(w, key, value)
            .await
    }
    async fn pending_pods(&self, w: &WorkloadState) -> Result<Vec<PendingPod>, ClusterError> {
        self.cluster(&w.cluster).await?.pending_pods(w).await
    }
    async fn apply_secret(&self, s: &crate::port::SecretSpec) -> Result<(), ClusterError> {
        self.cluster(&s.cluster).await?.apply_secret(s).await
    }
    async fn pod_report(
        &self,
        w: &WorkloadState,
    ) -> Result<Option<crate::port::PodReport>, ClusterError> {
        self.cluster(&w.cluster).await?.pod_report(w).await
    }
}
