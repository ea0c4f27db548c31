//! The container image's files and the health check it runs: the Dockerfile builds with
//! CI's own command (the profile-guided build/release.sh) for the platform it is built
//! for, and `healthcheck` asks a real admin
//! listener. The systemd unit, the Kubernetes manifests and the ECS task definition have
//! their own modules (deploy_systemd, deploy_kubernetes, deploy_ecs).

use crate::common::binary::{proxy, run};
use crate::common::repo_files::read;

const BINARY_IN_IMAGE: &str = "/usr/local/bin/mcp-vpce-proxy";

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
    // Both stages are built for the target platform (arm64 or amd64), so the binary the
    // build stage compiles natively is one the runtime stage's platform runs; a build
    // stage pinned to the build machine's platform would put an amd64 binary into an
    // arm64 image.
    for stage in &stages {
        assert!(!stage.contains("--platform"), "{stage}");
    }
    assert!(
        dockerfile.contains("docker buildx build --platform linux/arm64,linux/amd64"),
        "the multi-architecture build is documented"
    );

    // The image installs llvm-profdata and llvm-bolt as CI does, and builds with a command
    // CI runs.
    let runs: Vec<&str> = instructions
        .iter()
        .filter_map(|l| l.strip_prefix("RUN "))
        .collect();
    let [install, build] = runs[..] else {
        panic!("an install and a build: {runs:?}")
    };
    for package in ["llvm-19", "bolt-19"] {
        let installs = |line: &str| {
            line.contains("apt-get install") && line.split_whitespace().any(|w| w == package)
        };
        assert!(
            installs(install),
            "the image does not install {package}: {install}"
        );
        assert!(
            ci.lines().any(installs),
            ".ci/run does not install {package}"
        );
    }
    assert_eq!(build, "bash build/release.sh");
    assert!(
        ci.lines().any(|l| l.trim() == build),
        ".ci/run does not run `{build}`"
    );

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
    assert!(last("COPY ").ends_with(&format!("target/pgo/mcp-vpce-proxy {BINARY_IN_IMAGE}")));
    assert_eq!(last("ENTRYPOINT "), format!("[\"{BINARY_IN_IMAGE}\"]"));
    let health = last("HEALTHCHECK ");
    assert!(
        health.ends_with(&format!("CMD [\"{BINARY_IN_IMAGE}\", \"healthcheck\"]")),
        "{health}"
    );
    // Only what the build needs is sent to the builder.
    let ignore = read("deploy/container/Dockerfile.dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target"));
    // ...and the training the build runs needs its script, config and helpers.
    for needed in ["build", "examples", "src"] {
        assert!(
            !ignore.lines().any(|l| l.trim() == needed),
            "{needed} is ignored"
        );
    }
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
