//! The Amazon ECS (Fargate) deployment: deploy/ecs/task-definition.json with the proxy's
//! whole configuration injected from a secret (MCP_VPCE_PROXY_CONFIG_TOML) and its roles'
//! policies beside it. The roles allow exactly what the task uses — the two images, the
//! log group (which exists: no logs:CreateLogGroup), the configuration secret for the
//! execution role, the gateway token's secret for the task role — and the configuration
//! is valid as the task passes it. (.ci/validate_deploy_files.py validates the task
//! definition against botocore's RegisterTaskDefinition model and the policies' actions
//! against botocore's operations.)

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::binary::{proxy, run};
use crate::common::repo_files::read;

const BINARY_IN_IMAGE: &str = "/usr/local/bin/mcp-vpce-proxy";

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn container<'a>(task: &'a Value, name: &str) -> &'a Value {
    task["containerDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn list(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
        _ => vec![],
    }
}

/// Every (action, resource) pair a policy allows.
fn grants(policy: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow");
        for action in list(&statement["Action"]) {
            for resource in list(&statement["Resource"]) {
                out.insert((action.clone(), resource));
            }
        }
    }
    out
}

/// Whether an IAM resource pattern (`*` wildcards) matches an ARN.
fn matches(pattern: &str, arn: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = arn;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    rest.is_empty()
}

/// The ARN of the secret a Secrets Manager `valueFrom` names, without the random suffix
/// the policies leave to `-*`.
fn secret_name_arn(value_from: &str) -> &str {
    value_from
        .rsplit_once('-')
        .map_or(value_from, |(name, _)| name)
}

#[test]
fn the_roles_allow_exactly_what_the_task_uses() {
    let task = json("deploy/ecs/task-definition.json");
    let execution = grants(&json("deploy/ecs/execution-role-policy.json"));
    let task_role = grants(&json("deploy/ecs/task-role-policy.json"));
    let account = task["executionRoleArn"]
        .as_str()
        .unwrap()
        .split(':')
        .nth(4)
        .unwrap()
        .to_string();
    let region = container(&task, "mcp-vpce-proxy")["logConfiguration"]["options"]
        ["awslogs-region"]
        .as_str()
        .unwrap()
        .to_string();

    // What the task definition makes ECS do with the execution role.
    let mut needed: BTreeSet<(String, String)> = BTreeSet::new();
    needed.insert(("ecr:GetAuthorizationToken".into(), "*".into()));
    let mut log_groups = BTreeSet::new();
    for c in task["containerDefinitions"].as_array().unwrap() {
        let image = c["image"].as_str().unwrap();
        let (registry, rest) = image.split_once('/').unwrap();
        assert_eq!(
            registry,
            format!("{account}.dkr.ecr.{region}.amazonaws.com"),
            "{image}"
        );
        let repository = rest.split(':').next().unwrap();
        for action in [
            "ecr:BatchCheckLayerAvailability",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
        ] {
            needed.insert((
                action.into(),
                format!("arn:aws:ecr:{region}:{account}:repository/{repository}"),
            ));
        }
        let logs = &c["logConfiguration"];
        assert_eq!(logs["logDriver"], "awslogs");
        // The group is created beforehand (docs/deploy-ecs.md): creating it would need
        // logs:CreateLogGroup, which the execution role does not get.
        assert!(
            logs["options"].get("awslogs-create-group").is_none(),
            "{}",
            c["name"]
        );
        assert_eq!(logs["options"]["awslogs-region"], region.as_str());
        log_groups.insert(
            logs["options"]["awslogs-group"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        for secret in c["secrets"].as_array().into_iter().flatten() {
            let from = secret["valueFrom"].as_str().unwrap();
            needed.insert((
                "secretsmanager:GetSecretValue".into(),
                format!("{}-*", secret_name_arn(from)),
            ));
        }
    }
    for group in &log_groups {
        for action in ["logs:CreateLogStream", "logs:PutLogEvents"] {
            needed.insert((
                action.into(),
                format!("arn:aws:logs:{region}:{account}:log-group:{group}:*"),
            ));
        }
    }
    assert_eq!(execution, needed, "the execution role's grants");
    assert!(!execution.iter().any(|(a, _)| a == "logs:CreateLogGroup"));

    // The task role: what the proxy's configuration reads at run time.
    let config: toml::Value = toml::from_str(&read("deploy/ecs/proxy.toml")).unwrap();
    let secret_id = config["route"][0]["credential"]["secret_id"]
        .as_str()
        .unwrap();
    let token_arn = format!("arn:aws:secretsmanager:{region}:{account}:secret:{secret_id}-AbCdEf");
    assert_eq!(task_role.len(), 1, "{task_role:?}");
    let (action, resource) = task_role.iter().next().unwrap();
    assert_eq!(action, "secretsmanager:GetSecretValue");
    assert!(matches(resource, &token_arn), "{resource} vs {token_arn}");
    assert!(!matches(
        resource,
        &token_arn.replace("gateway-token", "gateway-token2/x")
    ));

    // Both roles are the ones the task names, assumable by ECS tasks of this account.
    for arn in [&task["executionRoleArn"], &task["taskRoleArn"]] {
        assert!(arn
            .as_str()
            .unwrap()
            .starts_with(&format!("arn:aws:iam::{account}:role/")));
    }
    let trust = json("deploy/ecs/ecs-tasks-trust-policy.json");
    assert_eq!(
        trust["Statement"][0]["Principal"]["Service"],
        "ecs-tasks.amazonaws.com"
    );
    assert_eq!(
        trust["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"],
        account.as_str()
    );
}

#[test]
fn the_agent_waits_for_a_healthy_sidecar_that_asks_its_own_admin_listener() {
    let task = json("deploy/ecs/task-definition.json");
    let sidecar = container(&task, "mcp-vpce-proxy");
    let agent = container(&task, "agent");
    assert_eq!(
        agent["dependsOn"],
        serde_json::json!([{"containerName": "mcp-vpce-proxy", "condition": "HEALTHY"}])
    );
    let check = list(&sidecar["healthCheck"]["command"]);
    assert_eq!(check, ["CMD", BINARY_IN_IMAGE, "healthcheck"]);
    // run and healthcheck read the same variable, so they agree on the admin address
    // whatever the configuration says.
    let admin = sidecar["environment"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "MCP_VPCE_PROXY_ADMIN")
        .and_then(|v| v["value"].as_str())
        .expect("MCP_VPCE_PROXY_ADMIN");
    let config: toml::Value = toml::from_str(&read("deploy/ecs/proxy.toml")).unwrap();
    assert_eq!(config["admin"].as_str(), Some(admin));
    assert!(admin.starts_with("127.0.0.1:"));
    assert_eq!(sidecar["readonlyRootFilesystem"], true);
    assert_eq!(sidecar["user"], "65532:65532");
    let grace = humantime::parse_duration(config["shutdown_grace"].as_str().unwrap()).unwrap();
    assert!(grace.as_secs() < sidecar["stopTimeout"].as_u64().unwrap());
    let url = agent["environment"][0]["value"].as_str().unwrap();
    assert_eq!(
        url,
        format!(
            "http://{}{}",
            config["listen"].as_str().unwrap(),
            config["route"][0]["path"].as_str().unwrap()
        )
    );
    // Both architectures are described; the one shipped is Graviton.
    assert_eq!(task["runtimePlatform"]["cpuArchitecture"], "ARM64");
    assert!(read("docs/deploy-ecs.md").contains("\"X86_64\""));
}

/// The configuration reaches the proxy as ECS injects it: the whole file in
/// MCP_VPCE_PROXY_CONFIG_TOML. Runs where the binary reads that variable (issue 17
/// item 3); until then it says so and checks nothing.
#[test]
fn the_configuration_from_the_secret_is_valid_as_the_task_passes_it() {
    let task = json("deploy/ecs/task-definition.json");
    let sidecar = container(&task, "mcp-vpce-proxy");
    let secrets = sidecar["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 1, "only the configuration is injected");
    assert_eq!(secrets[0]["name"], "MCP_VPCE_PROXY_CONFIG_TOML");
    let config = read("deploy/ecs/proxy.toml");
    // 64 KiB is the most a Secrets Manager secret holds.
    assert!(config.len() < 64 * 1024);

    let (_, help, _) = run(proxy().arg("--help"));
    if !help.contains("MCP_VPCE_PROXY_CONFIG_TOML") {
        println!("note: this binary does not read MCP_VPCE_PROXY_CONFIG_TOML yet; not checked");
        return;
    }
    let mut cmd = proxy();
    cmd.arg("check").env("MCP_VPCE_PROXY_CONFIG_TOML", &config);
    // ECS sets AWS_REGION (the task's region) in every container; the secret's region
    // comes from it.
    let region = sidecar["logConfiguration"]["options"]["awslogs-region"]
        .as_str()
        .unwrap();
    cmd.env("AWS_REGION", region);
    for var in sidecar["environment"].as_array().unwrap() {
        cmd.env(
            var["name"].as_str().unwrap(),
            var["value"].as_str().unwrap(),
        );
    }
    let command = list(&sidecar["command"]);
    assert_eq!(command[0], "run");
    cmd.args(&command[1..]);
    let (ok, out, err) = run(&mut cmd);
    assert!(ok, "{err}");
    assert!(out.contains("VPC endpoint; private DNS off"), "{out}");
    // The credential is the secret's, named by its id (never its value).
    let parsed: toml::Value = toml::from_str(&config).unwrap();
    let secret_id = parsed["route"][0]["credential"]["secret_id"]
        .as_str()
        .unwrap();
    assert!(out.contains(secret_id), "{out}");
}
