//! Provisions the dev stack on moto the way the CDK app does on AWS: buckets (the data bucket
//! with EventBridge notifications), the custom bus, and per routed function a queue with a DLQ
//! and the rules from `events/routes.json` targeting it.

use std::collections::BTreeMap;

use anyhow::Context;
use aws_config::SdkConfig;
use aws_sdk_s3::types::{EventBridgeConfiguration, NotificationConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Deserialize;

use crate::adapter::aws::s3_client;

#[derive(Debug, Clone, Deserialize)]
pub struct Routes {
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Route {
    pub name: String,
    pub bus: String,
    pub pattern: serde_json::Value,
    pub target: String,
}

impl Routes {
    pub fn parse(text: &str) -> anyhow::Result<Routes> {
        serde_json::from_str(text).context("events/routes.json is not valid")
    }
}

/// Replaces `{{data_bucket}}` in every string of a pattern.
pub fn substitute(pattern: &serde_json::Value, data_bucket: &str) -> serde_json::Value {
    match pattern {
        serde_json::Value::String(s) => {
            serde_json::Value::String(s.replace("{{data_bucket}}", data_bucket))
        }
        serde_json::Value::Array(a) => a.iter().map(|v| substitute(v, data_bucket)).collect(),
        serde_json::Value::Object(o) => o
            .iter()
            .map(|(k, v)| (k.clone(), substitute(v, data_bucket)))
            .collect(),
        other => other.clone(),
    }
}

#[derive(Debug, Clone)]
pub struct StackSpec {
    /// Prefix of every resource name, so several stacks can share one moto.
    pub prefix: String,
    pub max_receive_count: u32,
    pub visibility_timeout_secs: u32,
}

#[derive(Debug, Clone)]
pub struct FunctionQueue {
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
}

#[derive(Debug, Clone)]
pub struct Stack {
    pub data_bucket: String,
    pub artifact_bucket: String,
    pub bus: String,
    pub queues: BTreeMap<String, FunctionQueue>,
}

impl Stack {
    pub fn queue(&self, function: &str) -> anyhow::Result<&FunctionQueue> {
        self.queues
            .get(function)
            .with_context(|| format!("no queue for function {function}"))
    }
}

pub async fn provision(
    sdk: &SdkConfig,
    spec: &StackSpec,
    routes: &Routes,
) -> anyhow::Result<Stack> {
    let s3 = s3_client(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let eb = aws_sdk_eventbridge::Client::new(sdk);
    let p = &spec.prefix;
    let stack = Stack {
        data_bucket: format!("{p}data"),
        artifact_bucket: format!("{p}artifacts"),
        bus: format!("{p}mlops"),
        queues: BTreeMap::new(),
    };
    for b in [&stack.data_bucket, &stack.artifact_bucket] {
        s3.create_bucket()
            .bucket(b)
            .send()
            .await
            .with_context(|| format!("creating bucket {b}"))?;
    }
    s3.put_bucket_notification_configuration()
        .bucket(&stack.data_bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .event_bridge_configuration(EventBridgeConfiguration::builder().build())
                .build(),
        )
        .send()
        .await
        .context("turning on EventBridge notifications")?;
    eb.create_event_bus()
        .name(&stack.bus)
        .send()
        .await
        .context("creating the bus")?;

    let mut stack = stack;
    for route in &routes.routes {
        if !stack.queues.contains_key(&route.target) {
            let q = function_queue(&sqs, spec, &route.target).await?;
            stack.queues.insert(route.target.clone(), q);
        }
        let bus = match route.bus.as_str() {
            "default" => "default".to_owned(),
            "mlops" => stack.bus.clone(),
            other => anyhow::bail!("route {} names unknown bus {other}", route.name),
        };
        let pattern = substitute(&route.pattern, &stack.data_bucket).to_string();
        let rule = format!("{p}{}", route.name);
        eb.put_rule()
            .name(&rule)
            .event_bus_name(&bus)
            .event_pattern(pattern)
            .send()
            .await
            .with_context(|| format!("creating rule {rule}"))?;
        let q = stack.queue(&route.target)?;
        eb.put_targets()
            .rule(&rule)
            .event_bus_name(&bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id(&route.target)
                    .arn(&q.arn)
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("targeting rule {rule}"))?;
    }
    Ok(stack)
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attrs: &[(QueueAttributeName, String)],
) -> anyhow::Result<(String, String)> {
    let mut req = sqs.create_queue().queue_name(name);
    for (k, v) in attrs {
        req = req.attributes(k.clone(), v);
    }
    let url = req
        .send()
        .await
        .with_context(|| format!("creating queue {name}"))?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("queue has no ARN")?;
    Ok((url, arn))
}

async fn function_queue(
    sqs: &aws_sdk_sqs::Client,
    spec: &StackSpec,
    function: &str,
) -> anyhow::Result<FunctionQueue> {
    let (dlq_url, dlq_arn) =
        create_queue(sqs, &format!("{}{function}-dlq", spec.prefix), &[]).await?;
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": spec.max_receive_count.to_string()});
    let (url, arn) = create_queue(
        sqs,
        &format!("{}{function}", spec.prefix),
        &[
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
            (
                QueueAttributeName::VisibilityTimeout,
                spec.visibility_timeout_secs.to_string(),
            ),
        ],
    )
    .await?;
    Ok(FunctionQueue { url, arn, dlq_url })
}
