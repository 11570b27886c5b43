//! The validation gate: per-metric thresholds, required metrics, regression against the
//! `champion` version, dataset sizes. Pure: the stage gathers the numbers, this decides.

use std::collections::BTreeMap;

use crate::config::ValidationConfig;
use crate::event::Check;

/// Verdicts a check can have.
pub const PASS: &str = "pass";
pub const FAIL: &str = "fail";
/// The metric (or manifest) the check needs is absent: a failure.
pub const MISSING: &str = "missing";
/// The check does not apply (the champion lacks the metric): not a failure.
pub const SKIPPED: &str = "skipped";

/// The version being judged, and what it is judged against.
#[derive(Debug, Clone)]
pub struct Evidence<'a> {
    pub metrics: &'a BTreeMap<String, f64>,
    /// The version behind the `champion` alias and its metrics, when there is one.
    pub champion: Option<(&'a str, &'a BTreeMap<String, f64>)>,
    /// Rows of the dataset version the run trained on: `(train, test)`, when its manifest was
    /// found.
    pub dataset_rows: Option<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub passed: bool,
    pub checks: Vec<Check>,
}

impl Verdict {
    /// A one-line reason naming every failed check, for `ModelRejected.reason`.
    pub fn reason(&self) -> String {
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.verdict == FAIL || c.verdict == MISSING)
            .map(|c| match c.value {
                Some(v) => format!("{} = {v} ({} needs {})", c.name, c.verdict, c.bound),
                None => format!("{} {} (needs {})", c.name, c.verdict, c.bound),
            })
            .collect();
        failed.join("; ")
    }
}

pub fn evaluate(cfg: &ValidationConfig, ev: &Evidence<'_>) -> Verdict {
    let mut checks = Vec::new();
    let check = |name: &str, value: Option<f64>, bound: String, ok: bool| Check {
        name: name.to_owned(),
        value: value.filter(|v| v.is_finite()),
        bound,
        verdict: match value {
            None => MISSING,
            Some(_) if ok => PASS,
            Some(_) => FAIL,
        }
        .to_owned(),
    };
    // A metric that is NaN or infinite fails every check that reads it, saying so in the bound.
    let finite_bound = |bound: String, value: Option<f64>| match value {
        Some(v) if !v.is_finite() => format!("{bound} (got {v})"),
        _ => bound,
    };
    for metric in &cfg.required {
        if cfg.thresholds.contains_key(metric) {
            continue;
        }
        let v = ev.metrics.get(metric).copied();
        let bound = finite_bound("present and finite".into(), v);
        checks.push(check(metric, v, bound, v.is_some_and(f64::is_finite)));
    }
    for (metric, b) in &cfg.thresholds {
        let v = ev.metrics.get(metric).copied();
        let bound = match (b.min, b.max) {
            (Some(lo), Some(hi)) => format!(">= {lo} and <= {hi}"),
            (Some(lo), None) => format!(">= {lo}"),
            (None, Some(hi)) => format!("<= {hi}"),
            (None, None) => "any finite value".into(),
        };
        let ok = v.is_some_and(|v| {
            v.is_finite() && b.min.is_none_or(|lo| v >= lo) && b.max.is_none_or(|hi| v <= hi)
        });
        checks.push(check(metric, v, finite_bound(bound, v), ok));
    }
    if let Some((champion, theirs)) = ev.champion {
        for (metric, allowed) in &cfg.max_regression {
            let name = format!("{metric} vs champion");
            let Some(c) = theirs.get(metric).copied().filter(|c| c.is_finite()) else {
                checks.push(Check {
                    name,
                    value: ev.metrics.get(metric).copied().filter(|v| v.is_finite()),
                    bound: format!("champion v{champion} has no finite {metric}"),
                    verdict: SKIPPED.into(),
                });
                continue;
            };
            let v = ev.metrics.get(metric).copied();
            let (bound, ok) = if cfg.lower_is_better(metric) {
                (
                    format!("<= {c} + {allowed} (champion v{champion})"),
                    v.is_some_and(|v| v.is_finite() && v <= c + allowed),
                )
            } else {
                (
                    format!(">= {c} - {allowed} (champion v{champion})"),
                    v.is_some_and(|v| v.is_finite() && v >= c - allowed),
                )
            };
            checks.push(check(&name, v, finite_bound(bound, v), ok));
        }
    }
    if let Some(d) = cfg.dataset {
        for (name, min, got) in [
            (
                "dataset.train_rows",
                d.min_train_rows,
                ev.dataset_rows.map(|r| r.0),
            ),
            (
                "dataset.test_rows",
                d.min_test_rows,
                ev.dataset_rows.map(|r| r.1),
            ),
        ] {
            if let Some(min) = min {
                let got = got.map(|g| g as f64);
                checks.push(check(
                    name,
                    got,
                    format!(">= {min}"),
                    got.is_some_and(|g| g >= min as f64),
                ));
            }
        }
    }
    let passed = checks
        .iter()
        .all(|c| c.verdict == PASS || c.verdict == SKIPPED);
    Verdict { passed, checks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Bound, DatasetChecks};

    fn cfg() -> ValidationConfig {
        serde_saphyr::from_str(
            "thresholds: {roc_auc: {min: 0.8}, f1: {min: 0.15, max: 1.0}, latency_ms: {max: 50}}\n\
             required: [accuracy]\n\
             max_regression: {roc_auc: 0.01, latency_ms: 5, log_loss: 0.02}\n\
             lower_is_better: [log_loss]\n\
             dataset: {min_train_rows: 1000, min_test_rows: 100}\n",
        )
        .expect("config")
    }

    fn m(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn good() -> BTreeMap<String, f64> {
        m(&[
            ("roc_auc", 0.9),
            ("f1", 0.4),
            ("latency_ms", 20.0),
            ("accuracy", 0.95),
            ("log_loss", 0.3),
        ])
    }

    fn verdicts(v: &Verdict) -> Vec<(&str, &str)> {
        v.checks
            .iter()
            .map(|c| (c.name.as_str(), c.verdict.as_str()))
            .collect()
    }

    #[test]
    fn a_good_first_model_passes_on_thresholds_alone() {
        let metrics = good();
        let v = evaluate(
            &cfg(),
            &Evidence {
                metrics: &metrics,
                champion: None,
                dataset_rows: Some((5000, 1000)),
            },
        );
        assert!(v.passed, "{v:?}");
        // No champion: no regression checks at all.
        assert!(v.checks.iter().all(|c| !c.name.ends_with("vs champion")));
        assert_eq!(v.checks.len(), 6);
        assert_eq!(v.reason(), "");
    }

    #[test]
    fn each_threshold_fails_on_its_own() {
        for (metric, bad) in [
            ("roc_auc", 0.79),
            ("f1", 0.1),
            ("f1", 1.5),
            ("latency_ms", 50.5),
        ] {
            let mut metrics = good();
            metrics.insert(metric.into(), bad);
            let v = evaluate(
                &cfg(),
                &Evidence {
                    metrics: &metrics,
                    champion: None,
                    dataset_rows: Some((5000, 1000)),
                },
            );
            assert!(!v.passed, "{metric}={bad}");
            let failed: Vec<_> = verdicts(&v)
                .into_iter()
                .filter(|(_, verdict)| *verdict != PASS)
                .collect();
            assert_eq!(failed, vec![(metric, FAIL)], "{metric}={bad}");
            assert!(
                v.reason().starts_with(&format!("{metric} = {bad}")),
                "{}",
                v.reason()
            );
        }
        // Bounds are inclusive.
        let mut metrics = good();
        metrics.insert("roc_auc".into(), 0.8);
        metrics.insert("latency_ms".into(), 50.0);
        let ev = Evidence {
            metrics: &metrics,
            champion: None,
            dataset_rows: Some((1000, 100)),
        };
        assert!(evaluate(&cfg(), &ev).passed);
    }

    #[test]
    fn regression_against_the_champion_in_each_direction() {
        let champion = m(&[("roc_auc", 0.92), ("latency_ms", 18.0), ("log_loss", 0.25)]);
        let run = |metrics: &BTreeMap<String, f64>| {
            evaluate(
                &cfg(),
                &Evidence {
                    metrics,
                    champion: Some(("3", &champion)),
                    dataset_rows: Some((5000, 1000)),
                },
            )
        };
        // roc_auc 0.90 < 0.92 - 0.01; latency 20 <= 18 + 5; log_loss 0.3 > 0.25 + 0.02.
        let v = run(&good());
        assert!(!v.passed);
        let regress: Vec<_> = verdicts(&v)
            .into_iter()
            .filter(|(n, _)| n.ends_with("vs champion"))
            .collect();
        assert_eq!(
            regress,
            vec![
                ("latency_ms vs champion", PASS),
                ("log_loss vs champion", FAIL),
                ("roc_auc vs champion", FAIL),
            ]
        );
        let roc = v
            .checks
            .iter()
            .find(|c| c.name == "roc_auc vs champion")
            .expect("check");
        assert_eq!(roc.bound, ">= 0.92 - 0.01 (champion v3)");
        // Within the allowed regression: passes.
        let mut better = good();
        better.insert("roc_auc".into(), 0.911);
        better.insert("log_loss".into(), 0.26);
        assert!(run(&better).passed, "{:?}", run(&better));
    }

    #[test]
    fn a_champion_without_the_metric_skips_the_comparison() {
        let champion = m(&[("roc_auc", 0.5)]);
        let metrics = good();
        let v = evaluate(
            &cfg(),
            &Evidence {
                metrics: &metrics,
                champion: Some(("1", &champion)),
                dataset_rows: Some((5000, 1000)),
            },
        );
        assert!(v.passed, "{v:?}");
        assert!(verdicts(&v).contains(&("log_loss vs champion", SKIPPED)));
    }

    #[test]
    fn missing_and_non_finite_metrics_fail() {
        for (metric, value) in [
            ("roc_auc", None),
            ("roc_auc", Some(f64::NAN)),
            ("roc_auc", Some(f64::INFINITY)),
            ("latency_ms", Some(f64::NEG_INFINITY)),
            ("accuracy", None),
            ("accuracy", Some(f64::NAN)),
        ] {
            let mut metrics = good();
            match value {
                Some(v) => metrics.insert(metric.into(), v),
                None => metrics.remove(metric),
            };
            let v = evaluate(
                &cfg(),
                &Evidence {
                    metrics: &metrics,
                    champion: None,
                    dataset_rows: Some((5000, 1000)),
                },
            );
            assert!(!v.passed, "{metric}={value:?}");
            let c = v.checks.iter().find(|c| c.name == metric).expect("check");
            assert_eq!(
                c.value, None,
                "non-finite values are not reported as numbers"
            );
            assert_eq!(
                c.verdict,
                if value.is_none() { MISSING } else { FAIL },
                "{metric}={value:?}"
            );
            if let Some(x) = value {
                assert!(c.bound.contains(&format!("got {x}")), "{}", c.bound);
            }
            // The report is JSON-serialisable whatever the metric was.
            serde_json::to_string(&v.checks).expect("json");
        }
    }

    #[test]
    fn dataset_checks_need_the_manifest() {
        let metrics = good();
        let at = |rows| {
            evaluate(
                &cfg(),
                &Evidence {
                    metrics: &metrics,
                    champion: None,
                    dataset_rows: rows,
                },
            )
        };
        assert!(!at(Some((999, 100))).passed);
        assert!(!at(Some((1000, 99))).passed);
        let none = at(None);
        assert!(!none.passed);
        assert!(verdicts(&none).contains(&("dataset.train_rows", MISSING)));
        // Without dataset checks configured, no manifest is needed.
        let mut c = cfg();
        c.dataset = None;
        assert!(
            evaluate(
                &c,
                &Evidence {
                    metrics: &metrics,
                    champion: None,
                    dataset_rows: None
                }
            )
            .passed
        );
        let _ = DatasetChecks::default();
    }

    #[test]
    fn config_is_checked() {
        let bad = |yaml: &str| {
            serde_saphyr::from_str::<ValidationConfig>(yaml)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate())
                .expect_err(yaml)
        };
        assert!(bad("thresholds: {a: {}}").contains("validation.thresholds.a"));
        assert!(bad("thresholds: {a: {min: 2, max: 1}}").contains("min 2 is above max 1"));
        assert!(bad("thresholds: {a: {min: .nan}}").contains("finite"));
        assert!(bad("max_regression: {a: -0.1}").contains("validation.max_regression.a"));
        assert!(bad("thresholds: {a: {minimum: 1}}").contains("unknown field"));
        assert!(bad("required: ['']").contains("validation.required"));
        let ok: ValidationConfig =
            serde_saphyr::from_str("thresholds: {loss: {max: 1}}").expect("yaml");
        assert!(ok.lower_is_better("loss"));
        assert_eq!(
            ok.thresholds["loss"],
            Bound {
                min: None,
                max: Some(1.0)
            }
        );
    }
}
