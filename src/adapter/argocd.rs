//! [`ArgoCd`] over Argo CD's REST API (CONTRACTS §7; paths and bodies as in argo-cd's
//! `assets/swagger.json`): `GET /api/v1/applications/{name}[?refresh=normal]` and
//! `POST /api/v1/applications/{name}/sync`, with `Authorization: Bearer <token>`. Errors come
//! back as grpc-gateway's `runtimeError {code, error, message}`; code 9 (FailedPrecondition) with
//! "another operation is already in progress" is [`ArgoError::Busy`].

use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::port::{ArgoApplication, ArgoCd, ArgoError};

/// Largest answer read.
const MAX_BODY: usize = 32 << 20;

#[derive(Clone)]
pub struct ArgoCdClient {
    http: reqwest::Client,
    base: String,
    token: SecretString,
    app_namespace: Option<String>,
}

impl ArgoCdClient {
    pub fn new(
        server: &str,
        token: SecretString,
        app_namespace: Option<String>,
    ) -> Result<Self, reqwest::Error> {
        Ok(ArgoCdClient {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()?,
            base: format!("{}/api/v1/applications/", server.trim_end_matches('/')),
            token,
            app_namespace,
        })
    }

    fn url(&self, app: &str, rest: &str) -> String {
        format!(
            "{}{}{rest}",
            self.base,
            utf8_percent_encode(app, NON_ALPHANUMERIC)
        )
    }

    async fn call(
        &self,
        op: &'static str,
        app: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<Value, ArgoError> {
        let unavailable = |message: String| ArgoError::Unavailable {
            op,
            app: app.to_owned(),
            message,
        };
        let resp = req
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .map_err(|e| unavailable(crate::lambda::sqs::error_chain(&e)))?;
        let status = resp.status().as_u16();
        // Read in chunks up to a cap: an Application with thousands of resources is a few MB,
        // and nothing the server sends may size our memory.
        let mut resp = resp;
        let mut raw = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| unavailable(crate::lambda::sqs::error_chain(&e)))?
        {
            if raw.len() + chunk.len() > MAX_BODY {
                return Err(unavailable(format!(
                    "the answer is larger than {MAX_BODY} bytes"
                )));
            }
            raw.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&raw);
        let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return if body.is_object() {
                Ok(body)
            } else {
                Err(unavailable(format!(
                    "answered {status} without a JSON object"
                )))
            };
        }
        let message = body["message"]
            .as_str()
            .or(body["error"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| text.chars().take(200).collect());
        let app = app.to_owned();
        Err(match status {
            401 | 403 => ArgoError::Refused {
                op,
                app,
                status,
                message,
            },
            _ if body["code"] == 9
                && message.contains("another operation is already in progress") =>
            {
                ArgoError::Busy { app }
            }
            408 | 429 => ArgoError::Unavailable { op, app, message },
            400..=499 => ArgoError::Rejected {
                op,
                app,
                status,
                message,
            },
            _ => ArgoError::Unavailable {
                op,
                app,
                message: format!("{status} {message}"),
            },
        })
    }
}

impl ArgoCd for ArgoCdClient {
    async fn application(&self, app: &str, refresh: bool) -> Result<ArgoApplication, ArgoError> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if refresh {
            query.push(("refresh", "normal"));
        }
        if let Some(ns) = &self.app_namespace {
            query.push(("appNamespace", ns));
        }
        let body = self
            .call("get", app, self.http.get(self.url(app, "")).query(&query))
            .await?;
        serde_json::from_value(body).map_err(|e| ArgoError::Unavailable {
            op: "get",
            app: app.to_owned(),
            message: format!("the Application does not parse: {e}"),
        })
    }

    async fn sync(&self, app: &str, revision: &str) -> Result<(), ArgoError> {
        let mut body = json!({"name": app, "revision": revision, "prune": false});
        if let Some(ns) = &self.app_namespace {
            body["appNamespace"] = ns.clone().into();
        }
        self.call(
            "sync",
            app,
            self.http.post(self.url(app, "/sync")).json(&body),
        )
        .await
        .map(drop)
    }
}
