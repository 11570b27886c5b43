//! [`Registry`] over MLflow's REST API (CONTRACTS §6): find the run a trainer tagged
//! `mlops.run_id`, the versions registered from it, and register its logged model when the
//! trainer did not. Auth as MLflow clients send it: Basic from `MLFLOW_TRACKING_USERNAME` and
//! `MLFLOW_TRACKING_PASSWORD`, else Bearer from `MLFLOW_TRACKING_TOKEN`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::port::{
    ModelRegistry, ModelVersion, Registry, RegistryError, RunRecord, TrackedRun, VersionStatus,
};

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

/// A metric value as MLflow's REST API returns it: a number, or the string `"NaN"` (JSON has
/// no NaN). MLflow stores ±inf as ±`f64::MAX` (measured with MLflow 3.17 on sqlite), so those
/// read back as ±inf: a diverged metric must not pass a threshold.
fn metric_value(v: &Value) -> Option<f64> {
    let x = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => f64::NAN,
            "Infinity" | "inf" => f64::INFINITY,
            "-Infinity" | "-inf" => f64::NEG_INFINITY,
            other => other.parse().ok()?,
        },
        _ => return None,
    };
    Some(if x == f64::MAX {
        f64::INFINITY
    } else if x == f64::MIN {
        f64::NEG_INFINITY
    } else {
        x
    })
}

fn key_values(v: &Value) -> BTreeMap<String, String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some((
                        t["key"].as_str()?.to_owned(),
                        t["value"].as_str().unwrap_or_default().to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A `ModelVersion` message (CONTRACTS §6.1).
fn model_version(model: &str, mv: &Value) -> ModelVersion {
    let status = match mv["status"].as_str().unwrap_or("READY") {
        "PENDING_REGISTRATION" => VersionStatus::Pending,
        "FAILED_REGISTRATION" => VersionStatus::Failed(
            mv["status_message"]
                .as_str()
                .unwrap_or("registration failed")
                .to_owned(),
        ),
        _ => VersionStatus::Ready,
    };
    ModelVersion {
        model: model.to_owned(),
        version: match &mv["version"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
        status,
        source: mv["source"].as_str().unwrap_or_default().to_owned(),
        mlflow_run_id: mv["run_id"]
            .as_str()
            .filter(|r| !r.is_empty())
            .map(str::to_owned),
        tags: key_values(&mv["tags"]),
        aliases: mv["aliases"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        created_ms: mv["creation_timestamp"].as_i64().unwrap_or_default(),
    }
}

fn not_found(body: &Value) -> bool {
    body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
}

impl MlflowRegistry {
    /// GET that maps RESOURCE_DOES_NOT_EXIST to `None`.
    async fn get_opt(
        &self,
        op: &'static str,
        query: &[(&str, &str)],
    ) -> Result<Option<Value>, RegistryError> {
        match self.call(op, self.get(op).query(query)).await? {
            (200, body) => Ok(Some(body)),
            (_, body) if not_found(&body) => Ok(None),
            (status, body) => Err(RegistryError::Api {
                op,
                status,
                message: error_message(&body),
            }),
        }
    }
}

impl ModelRegistry for MlflowRegistry {
    async fn version(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<ModelVersion>, RegistryError> {
        let Some(body) = self
            .get_opt(
                "model-versions/get",
                &[("name", model), ("version", version)],
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(model_version(model, &body["model_version"])))
    }

    async fn run(&self, mlflow_run_id: &str) -> Result<Option<RunRecord>, RegistryError> {
        let Some(body) = self
            .get_opt("runs/get", &[("run_id", mlflow_run_id)])
            .await?
        else {
            return Ok(None);
        };
        let data = &body["run"]["data"];
        let metrics = data["metrics"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| {
                        Some((m["key"].as_str()?.to_owned(), metric_value(&m["value"])?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(RunRecord {
            metrics,
            params: key_values(&data["params"]),
            tags: key_values(&data["tags"]),
        }))
    }

    async fn versions_since(
        &self,
        model: &str,
        since_ms: i64,
    ) -> Result<Vec<ModelVersion>, RegistryError> {
        const OP: &str = "model-versions/search";
        // The filter cannot name creation_timestamp (MLflow's model-version search filters on
        // name, run_id, source_path and tags): newest first, stop at the first older one.
        let filter = format!("name = {}", quote(model));
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut q = vec![
                ("filter", filter.clone()),
                ("order_by", "creation_timestamp DESC".to_owned()),
                ("max_results", "200".to_owned()),
            ];
            if let Some(p) = &page {
                q.push(("page_token", p.clone()));
            }
            let body = self.ok(OP, self.get(OP).query(&q)).await?;
            let mut older = false;
            for mv in body["model_versions"].as_array().into_iter().flatten() {
                let v = model_version(model, mv);
                if v.created_ms < since_ms {
                    older = true;
                    break;
                }
                out.push(v);
            }
            page = body["next_page_token"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if older || page.is_none() {
                break;
            }
        }
        out.reverse();
        Ok(out)
    }

    async fn alias(&self, model: &str, alias: &str) -> Result<Option<String>, RegistryError> {
        const OP: &str = "registered-models/alias";
        let req = self.get(OP).query(&[("name", model), ("alias", alias)]);
        match self.call(OP, req).await? {
            (200, b) => Ok(b["model_version"]["version"].as_str().map(str::to_owned)),
            // A missing model is RESOURCE_DOES_NOT_EXIST; a missing alias of an existing model
            // is INVALID_PARAMETER_VALUE "Registered model alias <a> not found." (MLflow 3.17).
            (_, b) if not_found(&b) => Ok(None),
            (400, b)
                if b["error_code"] == "INVALID_PARAMETER_VALUE"
                    && b["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("not found")) =>
            {
                Ok(None)
            }
            (status, b) => Err(RegistryError::Api {
                op: OP,
                status,
                message: error_message(&b),
            }),
        }
    }

    async fn set_version_tag(
        &self,
        model: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<(), RegistryError> {
        let body = json!({"name": model, "version": version, "key": key, "value": value});
        self.ok(
            "model-versions/set-tag",
            self.post("model-versions/set-tag", &body),
        )
        .await
        .map(drop)
    }

    async fn set_alias(
        &self,
        model: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), RegistryError> {
        let body = json!({"name": model, "alias": alias, "version": version});
        self.ok(
            "registered-models/alias",
            self.post("registered-models/alias", &body),
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_as_mlflow_sends_them() {
        assert!(metric_value(&json!("NaN")).is_some_and(f64::is_nan));
        assert_eq!(metric_value(&json!(f64::MAX)), Some(f64::INFINITY));
        assert_eq!(metric_value(&json!(f64::MIN)), Some(f64::NEG_INFINITY));
        assert_eq!(metric_value(&json!(0.5)), Some(0.5));
        assert_eq!(metric_value(&json!(3)), Some(3.0));
        assert_eq!(metric_value(&json!(null)), None);
        assert_eq!(metric_value(&json!("x")), None);
    }
}
