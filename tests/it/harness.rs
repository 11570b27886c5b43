//! Shared test harness: one moto server for the whole test binary (spawned on a free loopback
//! port, killed when the binary exits), and a freshly provisioned stack per test, isolated by a
//! unique name prefix.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use mlops::cli::ROUTES_JSON;
use mlops::cli::dev::moto::{Moto, find_moto};
use mlops::cli::dev::stack::{Routes, Stack, StackSpec, provision};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn venv_python() -> PathBuf {
    let p = root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/venv.sh (make venv) first",
        p.display()
    );
    p
}

fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let bin = find_moto(Some(&root()));
        assert!(
            bin.exists(),
            "{} is missing: run scripts/venv.sh (make venv) first",
            bin.display()
        );
        Moto::start(&bin).expect("moto starts")
    })
}

pub async fn sdk() -> SdkConfig {
    mlops::adapter::aws::local(&moto().endpoint).await
}

/// A unique resource-name prefix per test.
pub fn prefix(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{test}-{}-{}-",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Provisions the stack from `events/routes.json`, plus a capture rule sending every `mlops.*`
/// event on the custom bus to a queue the test reads.
pub async fn stack(
    sdk: &SdkConfig,
    test: &str,
    max_receive_count: u32,
    visibility: u32,
) -> (Stack, String) {
    let spec = StackSpec {
        prefix: prefix(test),
        max_receive_count,
        visibility_timeout_secs: visibility,
    };
    let stack = provision(sdk, &spec, &Routes::parse(ROUTES_JSON).expect("routes"))
        .await
        .expect("provision");
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let eb = aws_sdk_eventbridge::Client::new(sdk);
    let url = sqs
        .create_queue()
        .queue_name(format!("{}capture", spec.prefix))
        .send()
        .await
        .expect("queue")
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let arn = queue_arn(&sqs, &url).await;
    let rule = format!("{}capture", spec.prefix);
    eb.put_rule()
        .name(&rule)
        .event_bus_name(&stack.bus)
        .event_pattern(r#"{"source":[{"prefix":"mlops."}]}"#)
        .send()
        .await
        .expect("rule");
    eb.put_targets()
        .rule(&rule)
        .event_bus_name(&stack.bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("capture")
                .arn(arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("targets");
    (stack, url)
}

pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attrs")
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("arn")
}

/// Receives every message currently on a queue (deleting them), waiting up to `wait` for at least `min`.
pub async fn drain(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    min: usize,
    wait: Duration,
) -> Vec<aws_sdk_sqs::types::Message> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    loop {
        let resp = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive");
        let msgs = resp.messages().to_vec();
        for m in &msgs {
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
        let got = !msgs.is_empty();
        out.extend(msgs);
        if (out.len() >= min && !got) || Instant::now() > deadline {
            return out;
        }
        if !got {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Parses captured messages into (detail-type, detail).
pub fn events_of(msgs: &[aws_sdk_sqs::types::Message]) -> Vec<(String, serde_json::Value)> {
    msgs.iter()
        .map(|m| {
            let v: serde_json::Value =
                serde_json::from_str(m.body().unwrap_or_default()).expect("event json");
            (
                v["detail-type"].as_str().unwrap_or_default().to_owned(),
                v["detail"].clone(),
            )
        })
        .collect()
}
