//! [`ServingMetrics`] from a Prometheus HTTP API (`GET /api/v1/query`, instant vectors;
//! prometheus.io/docs/prometheus/latest/querying/api/): one query per signal, grouped by `pod`
//! (the label a PodMonitor or the Kubernetes SD adds), token rates from `rate(…[1m])`. The KV
//! gauge is read under both names (`kv_cache_usage_perc`, the older `gpu_cache_usage_perc`).
//! Plain HTTP(S) without signing: an Amazon Managed Prometheus workspace needs SigV4 and is not
//! supported here.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::port::{PodReading, ServingMetrics, VllmMetrics};

#[derive(Clone)]
pub struct PrometheusMetrics {
    http: reqwest::Client,
    query_url: String,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    metric: BTreeMap<String, String>,
    /// `[unix seconds, "value"]`.
    value: (f64, String),
}

/// A PromQL string literal.
fn literal(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A regex matching exactly these pod names.
fn pods_regex(pods: &[String]) -> String {
    pods.iter()
        .map(|p| {
            p.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c.to_string()
                    } else {
                        format!("\\{c}")
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("|")
}

impl PrometheusMetrics {
    pub fn new(base: &str) -> Result<Self, reqwest::Error> {
        Ok(PrometheusMetrics {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            query_url: format!("{}/api/v1/query", base.trim_end_matches('/')),
        })
    }

    /// Per pod, the value of one instant query.
    async fn query(&self, promql: &str) -> Result<BTreeMap<String, f64>, String> {
        let resp = self
            .http
            .get(&self.query_url)
            .query(&[("query", promql)])
            .send()
            .await
            .map_err(|e| format!("Prometheus unreachable: {e}"))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("Prometheus answer: {e}"))?;
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| {
            format!("Prometheus answered {status} with something that is not its API's JSON: {e}")
        })?;
        if answer.status != "success" {
            return Err(format!(
                "Prometheus answered {status}: {}",
                answer.error.unwrap_or_else(|| answer.status.clone())
            ));
        }
        let data = answer
            .data
            .ok_or("Prometheus answered success without data")?;
        if data.result_type != "vector" {
            return Err(format!(
                "Prometheus answered a {} for an instant query",
                data.result_type
            ));
        }
        Ok(data
            .result
            .into_iter()
            .filter_map(|s| {
                let v = s.value.1.parse::<f64>().ok().filter(|v| v.is_finite())?;
                Some((s.metric.get("pod")?.clone(), v))
            })
            .collect())
    }
}

impl ServingMetrics for PrometheusMetrics {
    async fn read(
        &self,
        namespace: &str,
        pods: &[String],
        model_name: Option<&str>,
        _port: u16,
    ) -> BTreeMap<String, Result<PodReading, String>> {
        if pods.is_empty() {
            return BTreeMap::new();
        }
        let mut sel = format!(
            "namespace={},pod=~{}",
            literal(namespace),
            literal(&pods_regex(pods))
        );
        if let Some(m) = model_name {
            sel.push_str(&format!(",model_name={}", literal(m)));
        }
        let queries = [
            format!("sum by (pod) (vllm:num_requests_running{{{sel}}})"),
            format!("sum by (pod) (vllm:num_requests_waiting{{{sel}}})"),
            format!(
                "avg by (pod) (vllm:kv_cache_usage_perc{{{sel}}}) or avg by (pod) (vllm:gpu_cache_usage_perc{{{sel}}})"
            ),
            format!("sum by (pod) (rate(vllm:prompt_tokens_total{{{sel}}}[1m]))"),
            format!("sum by (pod) (rate(vllm:generation_tokens_total{{{sel}}}[1m]))"),
        ];
        let answers = futures::future::join_all(queries.iter().map(|q| self.query(q))).await;
        let mut it = answers.into_iter();
        let (Some(running), Some(waiting), Some(kv), Some(prompt), Some(generated)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            return BTreeMap::new();
        };
        let (running, waiting) = match (running, waiting) {
            (Ok(r), Ok(w)) => (r, w),
            (Err(e), _) | (_, Err(e)) => {
                return pods.iter().map(|p| (p.clone(), Err(e.clone()))).collect();
            }
        };
        let (kv, prompt, generated) = (
            kv.unwrap_or_default(),
            prompt.unwrap_or_default(),
            generated.unwrap_or_default(),
        );
        pods.iter()
            .map(|p| {
                let reading = match (running.get(p), waiting.get(p)) {
                    (Some(r), Some(w)) => Ok(PodReading {
                        metrics: VllmMetrics {
                            running: *r,
                            waiting: *w,
                            kv_usage: kv.get(p).map(|k| k.clamp(0.0, 1.0)),
                            ..Default::default()
                        },
                        rates: prompt.get(p).copied().zip(generated.get(p).copied()),
                    }),
                    _ => Err(format!("Prometheus has no vLLM series for pod {p}")),
                };
                (p.clone(), reading)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_become_an_exact_alternation() {
        assert_eq!(
            pods_regex(&["vllm-a-5d9f-x1".into(), "b.c".into()]),
            "vllm-a-5d9f-x1|b\\.c"
        );
        assert_eq!(literal("a\"b"), "\"a\\\"b\"");
    }
}
