//! The container image's files and the health check it runs: the Dockerfile builds with
//! CI's own command for the platform it is built for, and `healthcheck` asks a real admin
//! listener. The systemd unit, the Kubernetes manifests and the ECS task definition have
//! their own modules (deploy_systemd, deploy_kubernetes, deploy_ecs).

use std::process::Command;

use crate::common::binary::{proxy, run};
use crate::common::repo_files::{read, repo, tool};

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

const BINARY_IN_IMAGE: &str = "/usr/local/bin/mcp-vpce-proxy";

fn yaml(path: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn s<'a>(y: &'a Yaml, key: &str) -> &'a Yaml {
    &y[key]
}

#[test]
fn the_kubernetes_example_runs_the_proxy_as_a_hardened_native_sidecar() {
    let deployment = &yaml("deploy/kubernetes/base/deployment.yaml")[0];
    assert_eq!(deployment["kind"].as_str(), Some("Deployment"));
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"].as_str(), Some("agent"));
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );

    let init = pod["initContainers"].as_vec().expect("initContainers");
    assert_eq!(init.len(), 1);
    let sidecar = &init[0];
    assert_eq!(sidecar["name"].as_str(), Some("mcp-vpce-proxy"));
    // A native sidecar: an init container that keeps running.
    assert_eq!(sidecar["restartPolicy"].as_str(), Some("Always"));
    let probe = &sidecar["readinessProbe"]["httpGet"];
    assert_eq!(probe["path"].as_str(), Some("/readyz"));
    assert_eq!(probe["port"].as_str(), Some("admin"));
    assert_eq!(
        sidecar["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    let admin_port = sidecar["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("admin"))
        .and_then(|p| p["containerPort"].as_i64())
        .expect("an admin port");
    assert!(sidecar["resources"]["requests"]["cpu"].as_str().is_some());
    assert!(sidecar["resources"]["requests"]["memory"]
        .as_str()
        .is_some());
    for container in init.iter().chain(pod["containers"].as_vec().unwrap()) {
        let sc = s(container, "securityContext");
        let name = container["name"].as_str().unwrap();
        assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{name}");
        assert_eq!(
            sc["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{name}"
        );
        assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true), "{name}");
        assert_eq!(
            sc["capabilities"]["drop"][0].as_str(),
            Some("ALL"),
            "{name}"
        );
    }
    let agent = &pod["containers"][0];
    let url = agent["env"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some("GATEWAY_URL"))
        .and_then(|e| e["value"].as_str());
    assert_eq!(url, Some("http://127.0.0.1:8080/mcp"));

    // The config comes from the ConfigMap the kustomization generates, mounted where the
    // sidecar's --config points; the client secret from a Secret.
    let args: Vec<&str> = sidecar["args"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_at = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    assert!(args.contains(&"--watch-config"));
    let mounts = sidecar["volumeMounts"].as_vec().unwrap();
    let mount_of = |volume: &str| {
        mounts
            .iter()
            .find(|m| m["name"].as_str() == Some(volume))
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_else(|| panic!("no mount of {volume}"))
    };
    let volumes = pod["volumes"].as_vec().unwrap();
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let kustomization = &yaml("deploy/kubernetes/base/kustomization.yaml")[0];
    let generator = &kustomization["configMapGenerator"][0];
    assert_eq!(
        volume("proxy-config")["configMap"]["name"].as_str(),
        generator["name"].as_str()
    );
    let key = generator["files"][0]
        .as_str()
        .unwrap()
        .split('=')
        .next()
        .unwrap();
    assert_eq!(config_at, format!("{}/{key}", mount_of("proxy-config")));
    let secret_dir = mount_of("oauth-client");
    assert!(volume("oauth-client")["secret"]["secretName"]
        .as_str()
        .is_some());

    let account = &yaml("deploy/kubernetes/base/serviceaccount.yaml")[0];
    assert!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:iam::")
    );

    // The sidecar's configuration is valid as written (with its Secret file present),
    // and its admin listener is the probed port, on an address the kubelet can reach.
    let text = read("deploy/kubernetes/base/proxy.toml");
    let secret_path = format!("{secret_dir}/client-secret");
    assert!(text.contains(&secret_path), "{secret_path}");
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        text.replace(&secret_path, &secret.display().to_string()),
    )
    .unwrap();
    let (ok, out, err) = run(proxy().args(["check", "--config"]).arg(&config));
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("admin: 0.0.0.0:{admin_port} ")),
        "{out}"
    );

    if !tool("kubectl") {
        println!("note: kubectl is not installed; the kustomize rendering is not checked");
        return;
    }
    let (ok, out, err) = run(Command::new("kubectl")
        .arg("kustomize")
        .arg(repo("deploy/kubernetes/base")));
    assert!(ok, "kubectl kustomize: {err}");
    let rendered = YamlLoader::load_from_str(&out).unwrap();
    let kinds: Vec<&str> = rendered.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["ServiceAccount", "ConfigMap", "Deployment"]);
    assert_eq!(
        rendered[1]["data"]["config.toml"].as_str(),
        Some(text.as_str())
    );
}

#[test]
fn the_ecs_task_waits_for_a_healthy_sidecar_configured_from_secrets_manager() {
    let task: Value = serde_json::from_str(&read("deploy/ecs/task-definition.json")).unwrap();
    assert_eq!(task["networkMode"], "awsvpc");
    let containers = task["containerDefinitions"].as_array().unwrap();
    let by_name = |name: &str| {
        containers
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no container {name}"))
    };
    let sidecar = by_name("mcp-vpce-proxy");
    let agent = by_name("agent");
    assert_eq!(
        agent["dependsOn"],
        serde_json::json!([{"containerName": "mcp-vpce-proxy", "condition": "HEALTHY"}])
    );
    let check = sidecar["healthCheck"]["command"].as_array().unwrap();
    assert_eq!(check[0], "CMD");
    assert_eq!(check[1], BINARY_IN_IMAGE);
    assert_eq!(check[2], "healthcheck");
    assert_eq!(sidecar["readonlyRootFilesystem"], true);
    for container in containers {
        assert_eq!(container["logConfiguration"]["logDriver"], "awslogs");
        assert!(container["logConfiguration"]["options"]["awslogs-group"].is_string());
    }
    let secrets = sidecar["secrets"].as_array().unwrap();
    assert!(!secrets.is_empty());
    for secret in secrets {
        assert!(secret["valueFrom"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:secretsmanager:"));
    }

    // The sidecar's environment is a valid zero-file configuration (every variable is
    // one the binary reads), with the secrets present as ECS injects them.
    let mut cmd = proxy();
    cmd.arg("check");
    for var in sidecar["environment"].as_array().unwrap() {
        cmd.env(
            var["name"].as_str().unwrap(),
            var["value"].as_str().unwrap(),
        );
    }
    for secret in secrets {
        cmd.env(secret["name"].as_str().unwrap(), "injected-secret");
    }
    let (ok, out, err) = run(&mut cmd);
    assert!(ok, "{err}");
    assert!(out.contains("VPC endpoint; private DNS off"), "{out}");
    assert!(!out.contains("injected-secret"));
    let command: Vec<&str> = sidecar["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(command[0], "run");
    let (ok, _, err) = run(proxy().arg("check").args(&command[1..]).env(
        "MCP_VPCE_PROXY_GATEWAY",
        "https://gw.gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp",
    ));
    assert!(ok, "{command:?}: {err}");
}

#[test]
fn the_dockerfile_builds_like_ci_and_checks_health_with_the_binary() {
    let dockerfile = read("deploy/container/Dockerfile");
    let ci = read(".ci/run");
    let instructions: Vec<String> = dockerfile
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let stages: Vec<&String> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    assert!(stages[1].contains("distroless"), "{}", stages[1]);

    // Every build command of the image is a command CI runs.
    let runs: Vec<&str> = instructions
        .iter()
        .filter_map(|l| l.strip_prefix("RUN "))
        .collect();
    assert_eq!(runs, ["cargo build --release --locked"]);
    for command in &runs {
        assert!(
            ci.lines().any(|l| l.trim() == *command),
            ".ci/run does not run `{command}`"
        );
    }

    let after_runtime: Vec<&String> = instructions
        .iter()
        .skip_while(|l| !l.contains("distroless"))
        .collect();
    let last = |prefix: &str| {
        after_runtime
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix}in the runtime stage"))
    };
    assert_eq!(last("USER "), "65532:65532");
    assert!(last("COPY ").ends_with(&format!("target/release/mcp-vpce-proxy {BINARY_IN_IMAGE}")));
    assert_eq!(last("ENTRYPOINT "), format!("[\"{BINARY_IN_IMAGE}\"]"));
    let health = last("HEALTHCHECK ");
    assert!(
        health.ends_with(&format!("CMD [\"{BINARY_IN_IMAGE}\", \"healthcheck\"]")),
        "{health}"
    );
    // Only what the build needs is sent to the builder.
    let ignore = read("deploy/container/Dockerfile.dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target"));
}

/// The image's HEALTHCHECK and the ECS health check run `healthcheck`: 0 when the admin
/// listener answers 200, non-zero with the reason otherwise.
#[tokio::test]
async fn the_healthcheck_subcommand_asks_the_admin_listener() {
    use crate::common::dns::DnsServer;
    use crate::common::proxy::head;
    use crate::common::upstream::{ENDPOINT_HOST, GATEWAY_HOST};
    use mcp_vpce_proxy::config::{Config, Overrides};
    use mcp_vpce_proxy::listener::admin::Admin;
    use mcp_vpce_proxy::listener::server::Server;

    // One route that resolves, one whose name does not exist: live, not ready.
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let toml = format!(
        "{}\n[[route]]\ngateway = \"https://{GATEWAY_HOST}/mcp\"\nendpoint = \"{ENDPOINT_HOST}\"\n\
         [[route]]\npath = \"/gone\"\ngateway = \"https://{GATEWAY_HOST}/mcp\"\nendpoint = \"vpce-gone.example.com\"\n",
        head(&dns)
    );
    let config = Config::parse(&toml, "t.toml", &Overrides::default()).unwrap();
    let server = Server::bind(&config).await.unwrap();
    let admin = Admin::bind("127.0.0.1:0".parse().unwrap(), server.routes())
        .await
        .unwrap();
    let addr = admin.local_addr().to_string();
    tokio::spawn(admin.run(std::future::pending()));

    let healthcheck = |args: Vec<String>| async move {
        let mut cmd = proxy();
        cmd.arg("healthcheck").args(args);
        tokio::task::spawn_blocking(move || run(&mut cmd))
            .await
            .unwrap()
    };
    let (ok, out, err) = healthcheck(vec!["--admin".into(), addr.clone()]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "/healthz: ok\n");

    let (ok, _, err) = healthcheck(vec!["--admin".into(), addr.clone(), "--ready".into()]).await;
    assert!(!ok);
    assert!(
        err.starts_with("mcp-vpce-proxy: /readyz: HTTP 503: {\"ready\":false,"),
        "{err}"
    );
    assert!(
        err.contains("vpce-gone.example.com has no addresses"),
        "{err}"
    );

    // The variable the image and the task definition set is read too.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cmd = proxy();
    cmd.arg("healthcheck")
        .env("MCP_VPCE_PROXY_ADMIN", closed.to_string());
    let (ok, _, err) = tokio::task::spawn_blocking(move || run(&mut cmd))
        .await
        .unwrap();
    assert!(!ok);
    assert!(
        err.starts_with(&format!("mcp-vpce-proxy: http://{closed}/healthz: ")),
        "{err}"
    );
    assert!(err.contains("refused"), "{err}");
}
