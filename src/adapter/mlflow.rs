//! [`Registry`] over MLflow's REST API (CONTRACTS §6): find the run a trainer tagged
//! `mlops.run_id`, the versions registered from it, and register its logged model when the
//! trainer did not. Auth as MLflow clients send it: Basic from `MLFLOW_TRACKING_USERNAME` and
//! `MLFLOW_TRACKING_PASSWORD`, else Bearer from `MLFLOW_TRACKING_TOKEN`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::port::{Registry, RegistryError, TrackedRun};

#[derive(Clone)]
pub struct MlflowRegistry {
    http: reqwest::Client,
    base: String,
    auth: Option<String>,
}

enum Auth {
    Basic(String, String),
    Bearer(String),
}

impl MlflowRegistry {
    pub fn new(
        tracking_uri: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, reqwest::Error> {
        let auth = match (
            lookup("MLFLOW_TRACKING_USERNAME"),
            lookup("MLFLOW_TRACKING_PASSWORD"),
            lookup("MLFLOW_TRACKING_TOKEN"),
        ) {
            (Some(u), Some(p), _) => Some(Auth::Basic(u, p)),
            (_, _, Some(t)) => Some(Auth::Bearer(t)),
            _ => None,
        };
        let auth = auth.map(|a| match a {
            Auth::Basic(u, p) => {
                use base64::Engine;
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            }
            Auth::Bearer(t) => format!("Bearer {t}"),
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()?;
        Ok(MlflowRegistry {
            http,
            base: format!("{}/api/2.0/mlflow/", tracking_uri.trim_end_matches('/')),
            auth,
        })
    }

    async fn call(
        &self,
        op: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<(u16, Value), RegistryError> {
        let req = match &self.auth {
            Some(a) => req.header(reqwest::header::AUTHORIZATION, a),
            None => req,
        };
        let resp = req.send().await.map_err(|e| RegistryError::Http {
            op,
            source: Box::new(e),
        })?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    async fn ok(
        &self,
        op: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<Value, RegistryError> {
        match self.call(op, req).await? {
            (200, body) => Ok(body),
            (status, body) => Err(RegistryError::Api {
                op,
                status,
                message: error_message(&body),
            }),
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }
    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base)).json(body)
    }
}

fn error_message(body: &Value) -> String {
    format!(
        "{} {}",
        body["error_code"].as_str().unwrap_or(""),
        body["message"].as_str().unwrap_or("")
    )
    .trim()
    .to_owned()
}

/// MLflow filter strings quote values with single quotes.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl Registry for MlflowRegistry {
    async fn find_run(
        &self,
        experiment: &str,
        mlops_run_id: &str,
    ) -> Result<Option<TrackedRun>, RegistryError> {
        let (status, body) = self
            .call(
                "experiments/get-by-name",
                self.get("experiments/get-by-name")
                    .query(&[("experiment_name", experiment)]),
            )
            .await?;
        let experiment_id = match status {
            200 => body["experiment"]["experiment_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            404 => return Ok(None),
            _ if body["error_code"] == "RESOURCE_DOES_NOT_EXIST" => return Ok(None),
            _ => {
                return Err(RegistryError::Api {
                    op: "experiments/get-by-name",
                    status,
                    message: error_message(&body),
                });
            }
        };
        let search = json!({
            "experiment_ids": [experiment_id],
            "filter": format!("tags.\"mlops.run_id\" = {}", quote(mlops_run_id)),
            "max_results": 1,
            "order_by": ["attributes.start_time DESC"],
        });
        let body = self
            .ok("runs/search", self.post("runs/search", &search))
            .await?;
        Ok(body["runs"]
            .as_array()
            .and_then(|r| r.first())
            .map(|r| TrackedRun {
                run_id: r["info"]["run_id"].as_str().unwrap_or_default().to_owned(),
                experiment_id: experiment_id.clone(),
                // The model logged at the largest step is the final one.
                model_id: r["outputs"]["model_outputs"]
                    .as_array()
                    .and_then(|m| m.iter().max_by_key(|o| o["step"].as_i64().unwrap_or(0)))
                    .and_then(|o| o["model_id"].as_str())
                    .map(str::to_owned),
            }))
    }

    async fn versions_of_run(
        &self,
        model: &str,
        run_id: &str,
    ) -> Result<Vec<String>, RegistryError> {
        let filter = format!("name = {} and run_id = {}", quote(model), quote(run_id));
        let body = self
            .ok(
                "model-versions/search",
                self.get("model-versions/search")
                    .query(&[("filter", filter.as_str())]),
            )
            .await?;
        Ok(body["model_versions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v["version"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn register(
        &self,
        model: &str,
        run: &TrackedRun,
        mlops_run_id: &str,
    ) -> Result<String, RegistryError> {
        match self
            .call(
                "registered-models/create",
                self.post("registered-models/create", &json!({"name": model})),
            )
            .await?
        {
            (200, _) => {}
            (_, body) if body["error_code"] == "RESOURCE_ALREADY_EXISTS" => {}
            (status, body) => {
                return Err(RegistryError::Api {
                    op: "registered-models/create",
                    status,
                    message: error_message(&body),
                });
            }
        }
        // MLflow 3 keeps a run's model under its logged model (`models:/m-…`); a `runs:/` source
        // registers but cannot be loaded there. `runs:/<id>/model` remains for MLflow 2 servers.
        let mut create = json!({
            "name": model,
            "source": format!("runs:/{}/model", run.run_id),
            "run_id": run.run_id,
            "tags": [{"key": "mlops.run_id", "value": mlops_run_id}],
        });
        if let Some(id) = &run.model_id {
            create["source"] = format!("models:/{id}").into();
            create["model_id"] = id.clone().into();
        }
        let body = self
            .ok(
                "model-versions/create",
                self.post("model-versions/create", &create),
            )
            .await?;
        Ok(body["model_version"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }
}
