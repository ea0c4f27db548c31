//! The Kubernetes (EKS) deployment: the base under deploy/kubernetes/base and the example
//! overlay, rendered with `kubectl kustomize` as a user applies them. The pod exposes
//! nothing (admin listener on loopback, probes that run `healthcheck` inside the
//! sidecar), the only writable place is the audit volume and it holds what the audit
//! settings can write, the overlay sets both images, a NetworkPolicy admits no ingress,
//! and every proxy configuration is valid as written. (.ci/validate_deploy_files.py
//! validates the rendered manifests against the Kubernetes schemas.)

use std::path::Path;
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

use crate::common::binary::{proxy, run};
use crate::common::repo_files::{read, repo, tool};

const BINARY_IN_IMAGE: &str = "/usr/local/bin/mcp-vpce-proxy";
const OVERLAY: &str = "deploy/kubernetes/overlays/example";

fn yaml(path: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn strings(y: &Yaml) -> Vec<&str> {
    y.as_vec()
        .map(|v| v.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default()
}

fn find<'a>(list: &'a Yaml, name: &str) -> &'a Yaml {
    list.as_vec()
        .and_then(|v| v.iter().find(|i| i["name"].as_str() == Some(name)))
        .unwrap_or_else(|| panic!("no {name}"))
}

/// `1Gi`, `320Mi`, … in bytes.
fn quantity(text: &str) -> u64 {
    let (number, unit) =
        text.split_at(text.find(|c: char| c.is_alphabetic()).unwrap_or(text.len()));
    let scale = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => panic!("unit {other}"),
    };
    number.parse::<u64>().unwrap() * scale
}

/// Validates a proxy configuration as `check` does, and returns its parsed form.
fn checked_config(path: &str) -> toml::Value {
    let text = read(path);
    let config: toml::Value = toml::from_str(&text).unwrap();
    // The audit file lives on the pod's volume; here under a temporary directory.
    let dir = tempfile::tempdir().unwrap();
    let audit = config["audit"]["path"].as_str().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(
        &file,
        text.replace(audit, &dir.path().join("audit.jsonl").display().to_string()),
    )
    .unwrap();
    let (ok, out, err) = run(proxy().args(["check", "--config"]).arg(&file));
    assert!(ok, "{path}: {err}");
    assert!(out.contains("admin: 127.0.0.1:9901"), "{path}: {out}");
    config
}

#[test]
fn the_pod_exposes_nothing_and_probes_the_sidecar_from_inside() {
    let deployment = &yaml("deploy/kubernetes/base/deployment.yaml")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let sidecar = find(&pod["initContainers"], "mcp-vpce-proxy");
    // A native sidecar: an init container that keeps running.
    assert_eq!(sidecar["restartPolicy"].as_str(), Some("Always"));
    for container in pod["initContainers"]
        .as_vec()
        .unwrap()
        .iter()
        .chain(pod["containers"].as_vec().unwrap())
    {
        let name = container["name"].as_str().unwrap();
        assert!(container["ports"].is_badvalue(), "{name} declares ports");
        let sc = &container["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{name}");
        assert_eq!(
            sc["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{name}"
        );
        assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true), "{name}");
        assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{name}");
    }
    assert!(deployment["spec"]["template"]["metadata"]["annotations"].is_badvalue());

    // Every probe runs the binary's healthcheck against the loopback admin listener, the
    // readiness probe asking /readyz; the probe's own timeout outlasts the command's.
    let admin = checked_config("deploy/kubernetes/base/proxy.toml")["admin"]
        .as_str()
        .unwrap()
        .to_string();
    for (probe, ready) in [
        ("startupProbe", false),
        ("livenessProbe", false),
        ("readinessProbe", true),
    ] {
        let p = &sidecar[probe];
        let command = strings(&p["exec"]["command"]);
        assert!(p["httpGet"].is_badvalue(), "{probe}");
        assert_eq!(command[..2], [BINARY_IN_IMAGE, "healthcheck"], "{probe}");
        assert_eq!(command.contains(&"--ready"), ready, "{probe}");
        let at = command.iter().position(|a| *a == "--admin").unwrap();
        assert_eq!(command[at + 1], admin, "{probe}");
        let timeout = command.iter().position(|a| *a == "--timeout").unwrap();
        let command_secs = humantime::parse_duration(command[timeout + 1])
            .unwrap()
            .as_secs();
        assert!(
            p["timeoutSeconds"].as_i64().unwrap() as u64 > command_secs,
            "{probe}"
        );
        // The command is one the binary accepts.
        let (_, _, err) = run(proxy().args(&command[1..]).arg("--help"));
        assert!(err.is_empty(), "{probe}: {err}");
    }
}

#[test]
fn audit_goes_to_a_volume_that_holds_every_file_the_settings_keep() {
    let deployment = &yaml("deploy/kubernetes/base/deployment.yaml")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let sidecar = find(&pod["initContainers"], "mcp-vpce-proxy");
    let volume = find(&pod["volumes"], "audit");
    let mount = find(&sidecar["volumeMounts"], "audit");
    assert!(mount["readOnly"].is_badvalue());
    let size = quantity(volume["emptyDir"]["sizeLimit"].as_str().unwrap());
    for config in [
        "deploy/kubernetes/base/proxy.toml",
        &format!("{OVERLAY}/proxy.toml"),
    ] {
        let audit = &checked_config(config)["audit"];
        assert_eq!(audit["to"].as_str(), Some("file"), "{config}");
        let path = Path::new(audit["path"].as_str().unwrap());
        assert_eq!(
            path.parent().unwrap(),
            Path::new(mount["mountPath"].as_str().unwrap())
        );
        // The current file and max_files rotated ones.
        let most = audit["max_file_bytes"].as_integer().unwrap() as u64
            * (audit["max_files"].as_integer().unwrap() as u64 + 1);
        assert!(
            most <= size,
            "{config}: {most} bytes of audit files, volume {size}"
        );
    }
    // The configuration is mounted where --config points.
    let args = strings(&sidecar["args"]);
    let config_at = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    let config_mount = find(&sidecar["volumeMounts"], "proxy-config");
    assert_eq!(config_mount["readOnly"].as_bool(), Some(true));
    assert_eq!(
        Path::new(config_at).parent().unwrap(),
        Path::new(config_mount["mountPath"].as_str().unwrap())
    );
    assert!(args.contains(&"--watch-config"));
}

#[test]
fn the_base_gets_its_token_through_agentcore_identity_not_cognito() {
    for config in [
        "deploy/kubernetes/base/proxy.toml",
        &format!("{OVERLAY}/proxy.toml"),
    ] {
        let route = &checked_config(config)["route"][0];
        assert_eq!(
            route["credential"]["type"].as_str(),
            Some("agentcore_identity"),
            "{config}"
        );
        assert!(!read(config).contains("amazoncognito.com"), "{config}");
    }
    // The pod's role may get this workload's token from this provider, and no more.
    let policy: serde_json::Value =
        serde_json::from_str(&read("deploy/kubernetes/pod-role-policy.json")).unwrap();
    let credential = &checked_config(&format!("{OVERLAY}/proxy.toml"))["route"][0]["credential"];
    let workload = credential["workload_name"].as_str().unwrap();
    let provider = credential["provider_name"].as_str().unwrap();
    let text = policy.to_string();
    assert!(
        text.contains(&format!("workload-identity/{workload}\"")),
        "{text}"
    );
    assert!(
        text.contains(&format!("oauth2credentialprovider/{provider}\"")),
        "{text}"
    );
    assert!(!text.contains("\"*\""), "no wildcard resource: {text}");
}

#[test]
fn a_network_policy_admits_no_ingress_to_the_agents_pods() {
    let policy = &yaml("deploy/kubernetes/base/networkpolicy.yaml")[0];
    let deployment = &yaml("deploy/kubernetes/base/deployment.yaml")[0];
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        strings(&policy["spec"]["policyTypes"]),
        ["Ingress", "Egress"]
    );
    assert_eq!(policy["spec"]["ingress"].as_vec().map(Vec::len), Some(0));
    // Egress to the VPC endpoints on 443 only, covering the proxy's in-VPC ranges.
    let config = checked_config("deploy/kubernetes/base/proxy.toml");
    let ranges: Vec<&str> = config["dns"]["private_ranges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_str())
        .filter(|r| !r.contains(':'))
        .collect();
    let egress = policy["spec"]["egress"].as_vec().unwrap();
    let to_443 = egress
        .iter()
        .find(|rule| rule["ports"][0]["port"].as_i64() == Some(443))
        .expect("an egress rule for 443");
    let cidrs: Vec<&str> = to_443["to"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|t| t["ipBlock"]["cidr"].as_str())
        .collect();
    assert_eq!(cidrs, ranges);
    let kustomization = &yaml("deploy/kubernetes/base/kustomization.yaml")[0];
    assert!(strings(&kustomization["resources"]).contains(&"networkpolicy.yaml"));
}

#[test]
fn the_overlay_renders_with_its_images_namespace_and_configuration() {
    // The base names the images by a bare name the overlay's `images:` replaces.
    let deployment = &yaml("deploy/kubernetes/base/deployment.yaml")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let overlay = &yaml(&format!("{OVERLAY}/kustomization.yaml"))[0];
    let images = overlay["images"].as_vec().unwrap();
    for container in [&pod["initContainers"][0], &pod["containers"][0]] {
        let image = container["image"].as_str().unwrap();
        assert!(
            images.iter().any(|i| i["name"].as_str() == Some(image)),
            "the overlay does not set image {image}"
        );
    }
    if !tool("kubectl") {
        return;
    }
    let (ok, out, err) = run(Command::new("kubectl").arg("kustomize").arg(repo(OVERLAY)));
    assert!(ok, "kubectl kustomize: {err}");
    let rendered = YamlLoader::load_from_str(&out).unwrap();
    let kinds: Vec<&str> = rendered.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "NetworkPolicy"
        ]
    );
    let namespace = overlay["namespace"].as_str().unwrap();
    for doc in &rendered[1..] {
        assert_eq!(doc["metadata"]["namespace"].as_str(), Some(namespace));
    }
    assert_eq!(
        rendered[2]["data"]["config.toml"].as_str(),
        Some(read(&format!("{OVERLAY}/proxy.toml")).as_str()),
        "the overlay's proxy.toml replaces the base's, under the same name"
    );
    assert_eq!(
        rendered[2]["metadata"]["name"].as_str(),
        Some("mcp-vpce-proxy")
    );
    let pod = &rendered[3]["spec"]["template"]["spec"];
    for (container, image) in [
        (&pod["initContainers"][0], &images[0]),
        (&pod["containers"][0], &images[1]),
    ] {
        let expected = format!(
            "{}:{}",
            image["newName"].as_str().unwrap(),
            image["newTag"].as_str().unwrap()
        );
        assert_eq!(container["image"].as_str(), Some(expected.as_str()));
    }
}
