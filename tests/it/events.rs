//! Every file in events/: schemas match the Rust types, each detail type has a sample that
//! validates and round-trips, inbound samples parse, and routes name known functions.

use std::path::Path;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use mlops::event::{S3ObjectDetail, all_schemas, roundtrip_detail, schema_files};

use crate::harness::root;

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v
}

#[test]
fn committed_schemas_are_current() {
    let dir = root().join("events/schemas");
    let mut stale = Vec::new();
    for (name, text) in schema_files() {
        if std::fs::read_to_string(dir.join(&name)).ok().as_deref() != Some(text.as_str()) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "stale schemas (regenerate with `cargo run -- schemas`): {stale:?}"
    );
    let on_disk = files("events/schemas").len();
    assert_eq!(
        on_disk,
        all_schemas().len(),
        "a schema file has no Rust type behind it"
    );
}

#[test]
fn every_detail_type_has_a_valid_sample_that_roundtrips() {
    let schemas = all_schemas();
    // ARCHITECTURE §1's detail-types plus PromotionFailed and DeploymentFailed (failures no retry
    // fixes), and the code-push path's ModelCodePushed, ImageBuildSubmitted, ImageBuilt and
    // ImageBuildFailed.
    assert_eq!(schemas.len(), 23, "every detail-type");
    for (name, function, _) in &schemas {
        let path = root().join(format!("events/samples/mlops/{name}.json"));
        let sample = json(&path);
        let env: EventBridgeEvent<serde_json::Value> =
            serde_json::from_value(sample.clone()).expect("envelope");
        assert_eq!(env.detail_type, *name, "{}", path.display());
        assert_eq!(
            env.source,
            format!("mlops.{function}"),
            "{}",
            path.display()
        );
        let schema = json(&root().join(format!("events/schemas/{name}.json")));
        let validator = jsonschema::validator_for(&schema).expect("schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(&env.detail)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{} fails its schema: {errors:?}",
            path.display()
        );
        assert_eq!(env.detail["schema_version"], "1");
        assert!(env.detail["run_id"].as_str().is_some_and(|r| !r.is_empty()));
        let back = roundtrip_detail(name, &env.detail).expect("typed parse");
        assert_eq!(back, env.detail, "{} does not round-trip", path.display());
        // A detail missing a required field must fail the schema (the test can fail).
        let mut broken = env.detail.clone();
        broken.as_object_mut().expect("object").remove("run_id");
        assert!(
            !validator.is_valid(&broken),
            "{name} schema accepts a detail without run_id"
        );
    }
    assert_eq!(
        files("events/samples/mlops").len(),
        schemas.len(),
        "a sample has no detail type"
    );
}

#[test]
fn inbound_samples_parse() {
    let inbound = files("events/samples/inbound");
    assert!(
        inbound.len() >= 3,
        "AWS and moto S3 events plus the SQS batch: {inbound:?}"
    );
    for path in inbound {
        let v = json(&path);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.starts_with("s3-object-created") {
            let env: EventBridgeEvent<serde_json::Value> =
                serde_json::from_value(v).expect("envelope");
            assert_eq!(
                (env.source.as_str(), env.detail_type.as_str()),
                ("aws.s3", "Object Created")
            );
            let d: S3ObjectDetail = serde_json::from_value(env.detail.clone()).expect("S3 detail");
            assert!(
                d.object.etag.is_some(),
                "{name}: etag (AWS) or eTag (moto) is read"
            );
            let again: S3ObjectDetail =
                serde_json::from_value(serde_json::to_value(&d).expect("ser")).expect("de");
            assert_eq!(again, d, "{name} round-trips");
        } else if name.starts_with("sqs-") {
            let ev: aws_lambda_events::event::sqs::SqsEvent =
                serde_json::from_value(v).expect("SqsEvent");
            for r in ev.records {
                let body = r.body.expect("body");
                let env: EventBridgeEvent<serde_json::Value> =
                    serde_json::from_str(&body).expect("body is an EventBridge event");
                let _: S3ObjectDetail = serde_json::from_value(env.detail).expect("S3 detail");
            }
        } else if let Some(kind) = name
            .strip_prefix("mlflow-")
            .and_then(|n| n.strip_suffix(".json"))
        {
            // Real deliveries captured from MLflow: they verify with the fixture secret at
            // their own timestamp, and parse into what their entity.action says.
            use mlops::stage::registry::webhook::{Headers, Limits, Payload, parse, verify};
            let header = |h: &str| v["headers"][h].as_str();
            let body = v["body"].as_str().expect("body").as_bytes();
            let h = Headers {
                delivery_id: header("X-MLflow-Delivery-Id"),
                timestamp: header("X-MLflow-Timestamp"),
                signature: header("X-MLflow-Signature"),
            };
            let at: i64 = h.timestamp.expect("timestamp").parse().expect("seconds");
            verify(&[b"fixture-secret"], &h, body, at, &Limits::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let p = parse(body).unwrap_or_else(|e| panic!("{name}: {e}"));
            let ok = match kind {
                "model_version.created" => matches!(p, Payload::VersionCreated { .. }),
                "model_version_tag.set" => matches!(p, Payload::TagSet { .. }),
                "model_version_alias.created" => {
                    matches!(
                        p,
                        Payload::AliasChanged {
                            version: Some(_),
                            ..
                        }
                    )
                }
                "model_version_alias.deleted" => {
                    matches!(p, Payload::AliasChanged { version: None, .. })
                }
                _ => false,
            };
            assert!(ok, "{name} parsed as {p:?}");
        } else {
            panic!("unexpected inbound sample {name}");
        }
    }
}

#[test]
fn routes_target_known_functions_on_known_buses() {
    let routes = json(&root().join("events/routes.json"));
    let functions: Vec<String> = std::fs::read_dir(root().join("functions"))
        .expect("functions/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let list = routes["routes"].as_array().expect("routes array");
    assert!(!list.is_empty());
    let mut names = std::collections::HashSet::new();
    for r in list {
        let name = r["name"].as_str().expect("name");
        assert!(names.insert(name), "route {name} is listed twice");
        let target = r["target"].as_str().expect("target");
        assert!(
            functions.iter().any(|f| f == target),
            "route {name} targets unknown function {target}"
        );
        assert!(
            matches!(r["bus"].as_str(), Some("default" | "mlops")),
            "route {name}: bus"
        );
        assert!(r["pattern"].is_object(), "route {name}: pattern");
    }
    // Every queue-fed function has a route; the CDK app's synth checks the reverse for each
    // function's kind (a function with no route, URL or schedule fails synth).
    let routed: std::collections::HashSet<&str> =
        list.iter().filter_map(|r| r["target"].as_str()).collect();
    for f in ["data-arrival", "ledger", "launch-training"] {
        assert!(routed.contains(f), "queue-fed function {f} has no route");
    }
}

#[test]
fn every_file_in_events_roundtrips() {
    // Walk the whole tree: each file is JSON, survives parse → serialize → parse unchanged, and
    // belongs to a category the tests above check.
    let mut stack = vec![root().join("events")];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p
                .strip_prefix(root())
                .expect("relative")
                .to_string_lossy()
                .into_owned();
            let v = json(&p);
            let again: serde_json::Value =
                serde_json::from_str(&serde_json::to_string_pretty(&v).expect("ser")).expect("de");
            assert_eq!(again, v, "{rel} does not round-trip");
            let known = rel == "events/routes.json"
                || rel.starts_with("events/schemas/")
                || rel.starts_with("events/samples/mlops/")
                || rel.starts_with("events/samples/inbound/");
            assert!(known, "{rel} is not covered by any events test");
            seen += 1;
        }
    }
    assert!(seen >= 17 * 2 + 4, "only {seen} files under events/");
}
