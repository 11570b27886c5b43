//! A test double of Argo CD's API server, following argo-cd's `assets/swagger.json` (v3.6.0; the
//! operations and definitions used are copied into tests/data/argocd/swagger-subset.json):
//!
//! - `GET /api/v1/applications/{name}`: only the query parameters the operation declares
//!   (`refresh`, `appNamespace`, …); answers a `v1alpha1Application`.
//! - `POST /api/v1/applications/{name}/sync`: the body must be an
//!   `applicationApplicationSyncRequest` (valid against its schema, and no property the schema
//!   does not declare); answers the Application with `.operation` set (the sync is asynchronous).
//! - Errors are grpc-gateway's `runtimeError {code, error, message}` with the HTTP status
//!   grpc-gateway v1 maps the gRPC code to: 16 Unauthenticated → 401, 7 PermissionDenied → 403
//!   (also for an unknown application), 9 FailedPrecondition ("another operation is already in
//!   progress") → 400.
//!
//! Every Application it returns is first validated against `v1alpha1Application`; a request or
//! response that breaks the contract is recorded in `violations` (each test asserts there are
//! none) and answered 400/500.
//!
//! What each scenario sets (CONTRACTS §7): before a sync, the app is Synced and Healthy on the old
//! revision with a finished operation there. After the sync request, per GET: `operation` (a
//! pending request) until the controller "starts"; `status.operationState` {phase Running |
//! Succeeded | Failed, message, syncResult.revision, startedAt, finishedAt};
//! `status.reconciledAt` after `finishedAt` once reconciled; `status.sync` {status, revision};
//! `status.health` {status, message}.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Response};
use serde_json::{Value, json};

use crate::harness::root;

pub const TOKEN: &str = "argocd-test-token";

/// How an application behaves after a sync is asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Script {
    /// Synced, Healthy at the target on the first look.
    Healthy,
    /// `n` looks with the operation Running and health Progressing, then Healthy.
    ProgressingThen(u32),
    /// `n` looks still Healthy on the *old* revision with the request pending in `.operation`,
    /// then Healthy at the target.
    NotStartedThen(u32),
    /// The operation succeeds; the Deployment never becomes available.
    Degraded,
    /// The sync operation fails (an invalid manifest).
    OperationFailed,
    /// Running forever.
    NeverDone,
    /// The first `n` sync requests are refused: another operation is in progress.
    BusyThen(u32),
    /// Every request refused with this status (401 or 403).
    Refuse(u16),
    /// The first `n` requests answered 503 (grpc Unavailable, code 14), then Healthy.
    UnavailableThen(u32),
}

#[derive(Debug)]
struct App {
    script: Script,
    auto_sync: bool,
    old: String,
    /// Where an auto-synced app goes on a refresh (the branch head).
    head: Option<String>,
    target: Option<String>,
    looks: u32,
    busy_left: u32,
    down_left: u32,
}

#[derive(Debug, Default)]
pub struct Recorded {
    /// (app, revision) of every accepted sync request.
    pub syncs: Vec<(String, String)>,
    pub refused_syncs: u32,
    /// (app, refresh) of every GET.
    pub gets: Vec<(String, bool)>,
    pub violations: Vec<String>,
}

#[derive(Clone)]
pub struct ArgoDouble {
    pub url: String,
    apps: Arc<Mutex<BTreeMap<String, App>>>,
    pub recorded: Arc<Mutex<Recorded>>,
    server: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for ArgoDouble {
    fn drop(&mut self) {
        if Arc::strong_count(&self.server) == 1 {
            self.server.abort();
        }
    }
}

fn swagger() -> &'static Value {
    static S: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let text = std::fs::read_to_string(root().join("tests/data/argocd/swagger-subset.json"))
            .expect("swagger subset");
        serde_json::from_str(&text).expect("swagger json")
    })
}

/// A validator for one definition (its `$ref`s resolve inside the document).
fn validator(definition: &str) -> jsonschema::Validator {
    let mut doc = swagger().clone();
    if let Some(o) = doc.as_object_mut() {
        o.remove("paths");
        o.insert("$ref".into(), format!("#/definitions/{definition}").into());
    }
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&doc)
        .expect("schema compiles")
}

fn query_params(path: &str, method: &str) -> Vec<String> {
    swagger()["paths"][path][method]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "query")
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

const T0: &str = "2026-12-03T10:00:00Z";

fn time(secs: u32) -> String {
    (chrono::DateTime::parse_from_rfc3339(T0).expect("t0") + chrono::Duration::seconds(secs.into()))
        .to_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl App {
    fn render(&self, name: &str) -> Value {
        let mut spec = json!({
            "project": "default",
            "source": {"repoURL": "https://github.com/example/ml-manifests.git", "path": format!("deployments/mlflow/{name}"), "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "serving"},
        });
        if self.auto_sync {
            spec["syncPolicy"] = json!({"automated": {"prune": false, "selfHeal": true}});
        }
        let finished = |rev: &str, health: &str, message: &str, at: u32| {
            json!({
                "sync": {"status": "Synced", "revision": rev},
                "health": {"status": health, "message": message},
                "reconciledAt": time(at + 2),
                "operationState": {
                    "operation": {"sync": {"revision": rev}},
                    "phase": "Succeeded",
                    "message": "successfully synced (all tasks run)",
                    "syncResult": {"revision": rev, "resources": []},
                    "startedAt": time(at),
                    "finishedAt": time(at + 1)
                }
            })
        };
        let old = finished(&self.old, "Healthy", "", 0);
        let mut app = json!({
            "metadata": {"name": name, "namespace": "argocd", "resourceVersion": self.looks.to_string()},
            "spec": spec,
            "status": old,
        });
        let Some(target) = &self.target else {
            return app;
        };
        let k = self.looks;
        let start = 100 + 10 * k;
        let running = json!({
            "sync": {"status": "OutOfSync", "revision": target},
            "health": {"status": "Progressing", "message": "Waiting for rollout to finish: 1 old replicas are pending termination..."},
            "reconciledAt": time(start - 5),
            "operationState": {
                "operation": {"sync": {"revision": target}},
                "phase": "Running",
                "message": "waiting for healthy state of apps/Deployment/fraud-detection",
                "syncResult": {"revision": target, "resources": []},
                "startedAt": time(100)
            }
        });
        let healthy = finished(target, "Healthy", "", start);
        app["status"] = match self.script {
            Script::Healthy | Script::BusyThen(_) | Script::UnavailableThen(_) => healthy,
            Script::ProgressingThen(n) if k <= n => running,
            Script::ProgressingThen(_) => healthy,
            Script::NotStartedThen(n) if k <= n => {
                app["operation"] = json!({"sync": {"revision": target}, "initiatedBy": {"username": "mlops-deploy"}});
                app["status"].clone()
            }
            Script::NotStartedThen(_) => healthy,
            Script::Degraded => finished(
                target,
                "Degraded",
                "Deployment \"fraud-detection\" exceeded its progress deadline",
                start,
            ),
            Script::OperationFailed => json!({
                "sync": {"status": "OutOfSync", "revision": target},
                "health": {"status": "Healthy"},
                "reconciledAt": time(start + 2),
                "operationState": {
                    "operation": {"sync": {"revision": target}},
                    "phase": "Failed",
                    "message": "one or more objects failed to apply, reason: Deployment.apps \"fraud-detection\" is invalid: spec.template.spec.containers[0].image: Required value",
                    "syncResult": {"revision": target, "resources": []},
                    "startedAt": time(start),
                    "finishedAt": time(start + 1)
                }
            }),
            Script::NeverDone => running,
            Script::Refuse(_) => app["status"].clone(),
        };
        app
    }
}

fn error(status: u16, code: i32, message: &str) -> (u16, Value) {
    (
        status,
        json!({"error": message, "code": code, "message": message, "details": []}),
    )
}

impl ArgoDouble {
    pub async fn start() -> ArgoDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let apps: Arc<Mutex<BTreeMap<String, App>>> = Arc::default();
        let recorded: Arc<Mutex<Recorded>> = Arc::default();
        let (a, r) = (apps.clone(), recorded.clone());
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (a, r) = (a.clone(), r.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (a, r) = (a.clone(), r.clone());
                            async move {
                                let (status, body) = handle(req, &a, &r).await;
                                Ok::<_, std::convert::Infallible>(
                                    Response::builder()
                                        .status(status)
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(body.to_string())))
                                        .expect("response"),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ArgoDouble {
            url: format!("http://{addr}"),
            apps,
            recorded,
            server: Arc::new(server),
        }
    }

    /// Adds an application, Healthy on `old`.
    pub fn app(&self, name: &str, script: Script, auto_sync: bool, old: &str) {
        let (busy_left, down_left) = match script {
            Script::BusyThen(n) => (n, 0),
            Script::UnavailableThen(n) => (0, n),
            _ => (0, 0),
        };
        self.apps.lock().expect("lock").insert(
            name.into(),
            App {
                script,
                auto_sync,
                old: old.into(),
                head: None,
                target: None,
                looks: 0,
                busy_left,
                down_left,
            },
        );
    }

    /// Where an auto-synced app goes when it is refreshed (the branch head).
    pub fn set_head(&self, name: &str, head: &str) {
        if let Some(a) = self.apps.lock().expect("lock").get_mut(name) {
            a.head = Some(head.into());
        }
    }

    pub fn syncs(&self) -> Vec<(String, String)> {
        self.recorded.lock().expect("lock").syncs.clone()
    }

    pub fn gets(&self) -> Vec<(String, bool)> {
        self.recorded.lock().expect("lock").gets.clone()
    }

    pub fn refused_syncs(&self) -> u32 {
        self.recorded.lock().expect("lock").refused_syncs
    }

    pub fn assert_no_violations(&self) {
        let v = &self.recorded.lock().expect("lock").violations;
        assert!(v.is_empty(), "contract violations: {v:#?}");
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    apps: &Mutex<BTreeMap<String, App>>,
    recorded: &Mutex<Recorded>,
) -> (u16, Value) {
    let violation = |what: String| {
        recorded.lock().expect("lock").violations.push(what.clone());
        error(400, 3, &what)
    };
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query: Vec<(String, String)> = req.uri().query().map(url_pairs).unwrap_or_default();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return violation(format!("unreadable body: {e}")),
    };
    let Some(rest) = path.strip_prefix("/api/v1/applications/") else {
        return violation(format!(
            "{method} {path} is not an operation deploy-sync may call"
        ));
    };
    let (name, op) = match rest.split_once('/') {
        None => (rest.to_owned(), "get"),
        Some((n, "sync")) => (n.to_owned(), "sync"),
        Some(_) => {
            return violation(format!(
                "{method} {path} is not an operation deploy-sync may call"
            ));
        }
    };
    let name = percent_encoding::percent_decode_str(&name)
        .decode_utf8_lossy()
        .into_owned();
    if auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return error(401, 16, "invalid session: token signature is invalid");
    }
    let mut apps = apps.lock().expect("lock");
    let Some(app) = apps.get_mut(&name) else {
        return error(403, 7, "permission denied");
    };
    if app.down_left > 0 {
        app.down_left -= 1;
        return error(
            503,
            14,
            "connection error: desc = \"transport: Error while dialing: dial tcp 10.0.0.7:8081: connect: connection refused\"",
        );
    }
    if let Script::Refuse(status) = app.script {
        return if status == 401 {
            error(401, 16, "invalid session: token has expired")
        } else {
            error(
                403,
                7,
                &format!(
                    "permission denied: applications, {op}, default/{name}, sub: mlops-deploy"
                ),
            )
        };
    }
    let response = match (method.as_str(), op) {
        ("GET", "get") => {
            let allowed = query_params("/api/v1/applications/{name}", "get");
            if let Some((k, _)) = query.iter().find(|(k, _)| !allowed.contains(k)) {
                return violation(format!("GET application: unknown query parameter {k:?}"));
            }
            let refresh = query
                .iter()
                .any(|(k, v)| k == "refresh" && (v == "normal" || v == "hard"));
            recorded
                .lock()
                .expect("lock")
                .gets
                .push((name.clone(), refresh));
            if refresh && app.auto_sync && app.target.is_none() {
                app.target = app.head.clone();
            } else if app.target.is_some() {
                app.looks += 1;
            }
            app.render(&name)
        }
        ("POST", "sync") => {
            let Ok(req): Result<Value, _> = serde_json::from_slice(&body) else {
                return violation("sync: the body is not JSON".into());
            };
            let schema = &swagger()["definitions"]["applicationApplicationSyncRequest"];
            let errors: Vec<String> = validator("applicationApplicationSyncRequest")
                .iter_errors(&req)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect();
            if !errors.is_empty() {
                return violation(format!("sync request breaks its schema: {errors:?}"));
            }
            let declared = schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            if let Some(k) = req
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
                .find(|k| !declared.contains_key(*k))
            {
                return violation(format!("sync request has an undeclared property {k:?}"));
            }
            if req["name"] != name.as_str() {
                return violation(format!("sync request names {} for {name}", req["name"]));
            }
            let Some(revision) = req["revision"].as_str().map(str::to_owned) else {
                return violation("sync request has no revision".into());
            };
            if app.busy_left > 0 {
                app.busy_left -= 1;
                recorded.lock().expect("lock").refused_syncs += 1;
                return error(400, 9, "another operation is already in progress");
            }
            recorded
                .lock()
                .expect("lock")
                .syncs
                .push((name.clone(), revision.clone()));
            app.target = Some(revision);
            app.looks = 0;
            let mut a = app.render(&name);
            a["operation"] = json!({"sync": {"revision": app.target}});
            a
        }
        _ => {
            return violation(format!(
                "{method} {path} is not an operation deploy-sync may call"
            ));
        }
    };
    let errors: Vec<String> = validator("v1alpha1Application")
        .iter_errors(&response)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    if !errors.is_empty() {
        recorded.lock().expect("lock").violations.push(format!(
            "the double's own Application breaks v1alpha1Application: {errors:?}"
        ));
        return (
            500,
            json!({"error": "double", "code": 13, "message": "double"}),
        );
    }
    (200, response)
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let d = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (d(k), d(v))
        })
        .collect()
}
