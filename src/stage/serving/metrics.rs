//! vLLM's `/metrics` (Prometheus text exposition format 0.0.4, CONTRACTS §9) reduced to what the
//! scaling policy reads. Hand-written because the one Rust parser of this format on crates.io
//! (prometheus-parse 0.2.5) matches metric names with `\w+`, which rejects the colon every
//! `vllm:` name carries.
//!
//! Under data parallelism one pod exposes one series per `engine` label: gauges of requests are
//! summed, the KV-cache usage averaged, counters summed. With `model_name` given, only that
//! model's series count (a pod serving several LoRA names still reports one base model).

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

pub use crate::port::VllmMetrics;

/// Parses the text format; an error names the line.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(sample(line).map_err(|e| format!("line {}: {e}: {line:.120}", i + 1))?);
    }
    Ok(out)
}

fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("expected a metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        rest = labels_of(body, &mut labels)?;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse::<f64>()
            .map_err(|_| format!("value {v:?} is not a number"))?,
    };
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("timestamp {ts:?} is not an integer"))?;
    }
    if fields.next().is_some() {
        return Err("unexpected text after the timestamp".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Reads `name="value",…}` and returns what follows the closing brace.
fn labels_of<'a>(mut s: &'a str, into: &mut BTreeMap<String, String>) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = s.find('=').ok_or("a label without '='")?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?}"));
        }
        s = s[eq + 1..].trim_start();
        let body = s.strip_prefix('"').ok_or("a label value must be quoted")?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                },
                Some((j, '"')) => break j,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        into.insert(key.to_owned(), value);
        s = body[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

/// The policy's inputs from one pod's samples. Missing request gauges are an error (not a vLLM
/// server, or another model's); the rest are optional.
pub fn vllm(samples: &[Sample], model_name: Option<&str>) -> Result<VllmMetrics, String> {
    let ours =
        |s: &&Sample| model_name.is_none_or(|m| s.labels.get("model_name").is_none_or(|v| v == m));
    let values = |name: &str| -> Vec<f64> {
        samples
            .iter()
            .filter(ours)
            .filter(|s| s.name == name && s.value.is_finite())
            .map(|s| s.value)
            .collect()
    };
    let sum = |name: &str| {
        let v = values(name);
        (!v.is_empty()).then(|| v.iter().sum::<f64>())
    };
    let mean = |name: &str| {
        let v = values(name);
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let (Some(running), Some(waiting)) = (
        sum("vllm:num_requests_running"),
        sum("vllm:num_requests_waiting"),
    ) else {
        return Err(match model_name {
            Some(m) => format!(
                "no vllm:num_requests_running / vllm:num_requests_waiting for model_name {m:?}"
            ),
            None => "no vllm:num_requests_running / vllm:num_requests_waiting".into(),
        });
    };
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for s in samples
        .iter()
        .filter(ours)
        .filter(|s| s.name == "vllm:time_to_first_token_seconds_bucket")
    {
        let le = match s.labels.get("le").map(String::as_str) {
            Some("+Inf") => f64::INFINITY,
            Some(v) => match v.parse::<f64>() {
                Ok(le) => le,
                Err(_) => continue,
            },
            None => continue,
        };
        let e = buckets.entry(le.to_bits()).or_insert((le, 0.0));
        e.1 += s.value;
    }
    let mut ttft_buckets: Vec<(f64, f64)> = buckets.into_values().collect();
    ttft_buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(VllmMetrics {
        running,
        waiting,
        kv_usage: mean("vllm:kv_cache_usage_perc")
            .or_else(|| mean("vllm:gpu_cache_usage_perc"))
            .map(|k| k.clamp(0.0, 1.0)),
        prompt_tokens_total: sum("vllm:prompt_tokens_total"),
        generation_tokens_total: sum("vllm:generation_tokens_total"),
        ttft_buckets,
        ttft_count: sum("vllm:time_to_first_token_seconds_count"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_escapes_special_values_and_timestamps() {
        let s = parse(
            "# HELP x y\n# TYPE x gauge\n\
             a:b_c{l=\"q\\\"uote\",m=\"back\\\\slash\",n=\"new\\nline\",} 1.5e3 1700000000000\n\
             d +Inf\ne{x=\"1\"} NaN\n",
        )
        .expect("parse");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "a:b_c");
        assert_eq!(s[0].labels["l"], "q\"uote");
        assert_eq!(s[0].labels["m"], "back\\slash");
        assert_eq!(s[0].labels["n"], "new\nline");
        assert_eq!(s[0].value, 1500.0);
        assert_eq!(s[1].value, f64::INFINITY);
        assert!(s[2].value.is_nan());
    }

    #[test]
    fn errors_name_the_line() {
        for (text, needle) in [
            ("ok 1\nbad{l=\"x\" 2\n", "line 2"),
            ("x{l=unquoted} 1\n", "quoted"),
            ("x abc\n", "not a number"),
            ("x 1 2 3\n", "after the timestamp"),
            ("{l=\"x\"} 1\n", "metric name"),
            ("x{l=\"open} 1\n", "unterminated"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    /// vLLM V1's `/metrics` as it serves it: rendered by prometheus_client from the metric
    /// declarations of vllm/v1/metrics/loggers.py (`tests/fixtures/vllm_metrics.py` says how),
    /// two engines of one served model, another model's series, HELP/TYPE lines, `_created`
    /// samples and histograms.
    const V1: &str = include_str!("../../../tests/fixtures/vllm-metrics-v1.txt");

    #[test]
    fn vllms_own_text_sums_engines_and_keeps_to_the_served_model() {
        let samples = parse(V1).expect("vLLM's text parses");
        let m = vllm(&samples, Some("mistral-7b-support")).expect("ours");
        assert_eq!((m.running, m.waiting), (21.0, 4.0));
        assert!((m.kv_usage.expect("kv") - 0.55).abs() < 1e-12, "{m:?}");
        assert_eq!(m.prompt_tokens_total, Some(890_000.0));
        assert_eq!(m.generation_tokens_total, Some(177_000.0));
        // TTFT buckets summed over engines: 8 of the 10 first tokens within 1 s.
        assert_eq!(m.ttft_count, Some(10.0));
        let le = |bound: f64| m.ttft_buckets.iter().find(|b| b.0 == bound).map(|b| b.1);
        assert_eq!(le(1.0), Some(8.0));
        assert_eq!(le(f64::INFINITY), Some(10.0));
        assert_eq!(m.ttft_buckets.len(), 23, "22 bounds and +Inf");
        // Without a model name every series of the pod counts, the LoRA name's too.
        assert_eq!(vllm(&samples, None).expect("all").running, 61.0);
        // A vLLM before the rename exposes only vllm:gpu_cache_usage_perc.
        let old: String = V1
            .lines()
            .filter(|l| !l.contains("kv_cache_usage_perc"))
            .map(|l| format!("{l}\n"))
            .collect();
        let m = vllm(&parse(&old).expect("parses"), Some("mistral-7b-support")).expect("ours");
        assert!(
            (m.kv_usage.expect("old name") - 0.55).abs() < 1e-12,
            "{m:?}"
        );
    }

    #[test]
    fn another_models_series_and_missing_gauges_are_not_ours() {
        let s = parse(
            "vllm:num_requests_running{model_name=\"a\"} 3\n\
             vllm:num_requests_waiting{model_name=\"a\"} 1\n",
        )
        .expect("parse");
        assert_eq!(vllm(&s, Some("a")).expect("a").running, 3.0);
        let e = vllm(&s, Some("b")).expect_err("b");
        assert!(e.contains("\"b\""), "{e}");
        assert!(vllm(&[], None).is_err());
    }
}
