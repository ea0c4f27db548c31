//! The resource every exported span carries: the service (name, version), the attributes
//! the operator set, and where the environment tells, the ECS task or the EKS pod.
//!
//! The ECS task metadata endpoint is read only when ECS set
//! `ECS_CONTAINER_METADATA_URI_V4`, once, on the export thread (start-up never waits for
//! it); a failure is logged and the spans go out without the task's attributes.

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use serde_json::Value;

use super::http_client::CollectorClient;
use super::settings::Settings;

/// Service, operator attributes and pod: what is known without asking anyone.
pub fn base(settings: &Settings) -> Vec<KeyValue> {
    let mut out = vec![
        KeyValue::new("service.name", settings.service_name.clone()),
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    ];
    for (key, value) in &settings.resource_attributes {
        out.push(KeyValue::new(key.clone(), value.clone()));
    }
    for (key, value) in &settings.pod {
        out.push(KeyValue::new(*key, value.clone()));
    }
    out
}

/// The resource: `base` plus the ECS task's attributes when they could be read. Operator
/// attributes win over detected ones.
pub fn build(base: Vec<KeyValue>, detected: Vec<KeyValue>) -> Resource {
    Resource::builder_empty()
        .with_attributes(detected)
        .with_attributes(base)
        .build()
}

/// Reads the task and container metadata documents.
pub async fn ecs(client: &CollectorClient, uri: &str) -> Result<Vec<KeyValue>, String> {
    let task = client.get_json(&format!("{uri}/task")).await?;
    let container = client.get_json(uri).await?;
    Ok(ecs_attributes(&task, &container))
}

/// The semantic-convention attributes of an ECS task (metadata endpoint v4 documents).
pub fn ecs_attributes(task: &Value, container: &Value) -> Vec<KeyValue> {
    let text = |doc: &Value, key: &str| {
        doc.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let mut out = vec![
        KeyValue::new("cloud.provider", "aws"),
        KeyValue::new("cloud.platform", "aws_ecs"),
    ];
    let task_arn = text(task, "TaskARN");
    // arn:aws:ecs:<region>:<account>:task/<cluster>/<task id>
    let arn_parts: Vec<&str> = task_arn.as_deref().unwrap_or("").split(':').collect();
    if let Some(arn) = &task_arn {
        out.push(KeyValue::new("aws.ecs.task.arn", arn.clone()));
        if let Some(id) = arn.rsplit('/').next() {
            out.push(KeyValue::new("aws.ecs.task.id", id.to_string()));
        }
        if arn_parts.len() >= 6 {
            out.push(KeyValue::new("cloud.region", arn_parts[3].to_string()));
            out.push(KeyValue::new("cloud.account.id", arn_parts[4].to_string()));
        }
    }
    if let Some(cluster) = text(task, "Cluster") {
        let arn = if cluster.starts_with("arn:") || arn_parts.len() < 6 {
            cluster
        } else {
            format!("{}:cluster/{cluster}", arn_parts[..5].join(":"))
        };
        out.push(KeyValue::new("aws.ecs.cluster.arn", arn));
    }
    if let Some(family) = text(task, "Family") {
        out.push(KeyValue::new("aws.ecs.task.family", family));
    }
    if let Some(revision) = text(task, "Revision") {
        out.push(KeyValue::new("aws.ecs.task.revision", revision));
    }
    if let Some(zone) = text(task, "AvailabilityZone") {
        out.push(KeyValue::new("cloud.availability_zone", zone));
    }
    if let Some(launch) = text(task, "LaunchType") {
        out.push(KeyValue::new(
            "aws.ecs.launchtype",
            launch.to_ascii_lowercase(),
        ));
    }
    if let Some(arn) = text(container, "ContainerARN") {
        out.push(KeyValue::new("aws.ecs.container.arn", arn));
    }
    if let Some(id) = text(container, "DockerId") {
        out.push(KeyValue::new("container.id", id));
    }
    if let Some(name) = text(container, "Name") {
        out.push(KeyValue::new("container.name", name));
    }
    if let Some(options) = container.get("LogOptions") {
        if let Some(group) = text(options, "awslogs-group") {
            out.push(KeyValue::new(
                "aws.log.group.names",
                opentelemetry::Value::Array(vec![opentelemetry::StringValue::from(group)].into()),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn find(attributes: &[KeyValue], key: &str) -> Option<String> {
        attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    #[test]
    fn an_ecs_task_is_described_by_its_arns() {
        let task = json!({
            "Cluster": "agents",
            "TaskARN": "arn:aws:ecs:us-east-1:111122223333:task/agents/0123456789abcdef",
            "Family": "agent-with-mcp-vpce-proxy",
            "Revision": "7",
            "AvailabilityZone": "us-east-1a",
            "LaunchType": "FARGATE"
        });
        let container = json!({
            "DockerId": "cafe01",
            "Name": "mcp-vpce-proxy",
            "ContainerARN": "arn:aws:ecs:us-east-1:111122223333:container/agents/0123/abc",
            "LogOptions": {"awslogs-group": "/ecs/agent"}
        });
        let a = ecs_attributes(&task, &container);
        assert_eq!(find(&a, "cloud.platform").as_deref(), Some("aws_ecs"));
        assert_eq!(find(&a, "cloud.region").as_deref(), Some("us-east-1"));
        assert_eq!(
            find(&a, "cloud.account.id").as_deref(),
            Some("111122223333")
        );
        assert_eq!(
            find(&a, "aws.ecs.cluster.arn").as_deref(),
            Some("arn:aws:ecs:us-east-1:111122223333:cluster/agents")
        );
        assert_eq!(
            find(&a, "aws.ecs.task.id").as_deref(),
            Some("0123456789abcdef")
        );
        assert_eq!(find(&a, "aws.ecs.task.revision").as_deref(), Some("7"));
        assert_eq!(find(&a, "aws.ecs.launchtype").as_deref(), Some("fargate"));
        assert_eq!(
            find(&a, "container.name").as_deref(),
            Some("mcp-vpce-proxy")
        );
        assert!(find(&a, "aws.log.group.names").is_some());
    }

    #[test]
    fn operator_attributes_win_over_detected_ones() {
        let resource = build(
            vec![KeyValue::new("cloud.region", "eu-west-3")],
            vec![KeyValue::new("cloud.region", "us-east-1")],
        );
        assert_eq!(
            resource.get(&opentelemetry::Key::from_static_str("cloud.region")),
            Some(opentelemetry::Value::from("eu-west-3"))
        );
    }
}
