//! Live reload: the route table is swapped while agents keep working. Under a bounded
//! load, 20 reloads that add, change and remove routes fail no request of an unchanged
//! route, an SSE stream opened before them keeps flowing, and the unchanged route keeps
//! its pool (one upstream connection). A file that does not load is refused (SIGHUP or
//! `--watch-config`), counted, and the configuration in force stays.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::client;
use crate::common::dns::DnsServer;
use crate::common::http::{post_rpc, send};
use crate::common::proxy::head;
use crate::common::upstream::{Upstream, ENDPOINT_HOST, GATEWAY_HOST};
use mcp_vpce_proxy::config::{Config, Overrides};
use mcp_vpce_proxy::listener::server::Server;
use mcp_vpce_proxy::ops::metrics::{metrics, ResultLabels};
use serde_json::json;

const RELOADS: usize = 20;
const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

fn route(name: &str, path: &str, upstream: &Upstream, extra: &str) -> String {
    format!(
        "\n[[route]]\nname = \"{name}\"\npath = \"{path}\"\ngateway = \"https://{GATEWAY_HOST}:{}/mcp\"\nendpoint = \"{ENDPOINT_HOST}\"\nca_file = \"{}\"\n{extra}\n",
        upstream.port(),
        upstream.ca_file().display()
    )
}

/// Generation `i`: the unchanged route, a route whose settings change every time, and
/// an extra route that exists in even generations only (added, then removed).
fn generation(i: usize, dns: &DnsServer, stable: &Upstream, other: &Upstream) -> String {
    let mut text = head(dns);
    text.push_str(&route("stable", "/mcp", stable, ""));
    text.push_str(&route(
        "changing",
        "/changing",
        other,
        &format!("max_body_bytes = {}", 100_000 + i),
    ));
    if i.is_multiple_of(2) {
        text.push_str(&route(
            &format!("extra-{i}"),
            &format!("/extra-{i}"),
            other,
            "",
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_fail_nothing_on_the_unchanged_route() {
    let stable = Upstream::start().await;
    let other = Upstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let config = |i| {
        Config::parse(
            &generation(i, &dns, &stable, &other),
            "reload.toml",
            &Overrides::default(),
        )
        .unwrap()
    };
    let server = Server::bind(&config(0)).await.unwrap();
    let addr = server.local_addr();
    let routes = server.routes();
    let reloader = server.reloader();
    tokio::spawn(server.run(std::future::pending()));
    let url = format!("http://{addr}/mcp");
    let before = routes.load().get("/mcp").unwrap().clone();

    // An SSE stream that stays open across every reload: the first progress event has
    // arrived, the second waits for the test.
    let streaming = client::connect(&url).await;
    let mut progress = streaming.service().take_progress();
    let call = client::start_tool_call(&streaming, "DemoTarget___slow_progress", json!({})).await;
    let first = tokio::time::timeout(Duration::from_secs(10), progress.recv())
        .await
        .expect("first progress event")
        .unwrap();
    assert_eq!(first.progress, 1.0);

    // The load: two agents calling a tool back to back until the reloads are done.
    let done = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut agents = Vec::new();
    for agent in 0..2 {
        let (url, done, failures, calls) =
            (url.clone(), done.clone(), failures.clone(), calls.clone());
        agents.push(tokio::spawn(async move {
            let session = client::connect(&url).await;
            let mut n = 0usize;
            // Bounded even if `done` never came.
            while !done.load(Ordering::SeqCst) && n < 5_000 {
                let text = format!("agent {agent} call {n}");
                match client::try_call_tool(&session, "DemoTarget___echo", json!({"text": text}))
                    .await
                {
                    Ok(r) if client::first_text(&r) == Some(text.as_str()) => {}
                    other => {
                        eprintln!("failed call: {other:?}");
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
                calls.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
            session.cancel().await.unwrap();
        }));
    }
    // Let the load start before the first reload.
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls.load(Ordering::SeqCst) < 4 {
        assert!(Instant::now() < deadline, "the load did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let reloads_ok = metrics()
        .config_reloads
        .get_or_create(&ResultLabels {
            result: "ok".into(),
        })
        .get();
    let mut calls_during = Vec::new();
    for i in 1..=RELOADS {
        let at = calls.load(Ordering::SeqCst);
        reloader
            .apply(config(i))
            .expect("a valid configuration applies");
        // The new table is in force at once: the new extra route answers, the previous
        // one is gone, the changed route forwards.
        if i.is_multiple_of(2) {
            let added = post_rpc(&format!("http://{addr}/extra-{i}"), PING).await;
            assert_ne!(added.status, 404, "extra-{i}: {}", added.body);
        } else {
            let removed = post_rpc(&format!("http://{addr}/extra-{}", i - 1), PING).await;
            assert_eq!(removed.status, 404);
        }
        let changed = post_rpc(&format!("http://{addr}/changing"), PING).await;
        assert!(!changed.body.contains("mcp-vpce-proxy"), "{}", changed.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
        calls_during.push(calls.load(Ordering::SeqCst) - at);
    }
    done.store(true, Ordering::SeqCst);
    for agent in agents {
        agent.await.unwrap();
    }

    assert_eq!(failures.load(Ordering::SeqCst), 0);
    // The load really ran through the reloads.
    assert!(
        calls_during.iter().sum::<usize>() >= RELOADS,
        "{calls_during:?}"
    );
    assert_eq!(
        metrics()
            .config_reloads
            .get_or_create(&ResultLabels {
                result: "ok".into()
            })
            .get()
            - reloads_ok,
        RELOADS as u64
    );

    // The stream opened before the reloads still delivers its events and result.
    stable.release_progress();
    let second = tokio::time::timeout(Duration::from_secs(10), progress.recv())
        .await
        .expect("second progress event after the reloads")
        .unwrap();
    assert_eq!(second.progress, 2.0);
    let result = call.result().await.expect("the streamed call completes");
    assert_eq!(client::first_text(&result), Some("done"));
    streaming.cancel().await.unwrap();

    // The unchanged route is the same route, with the same pool: one connection carried
    // every request of the streams, sessions and calls above.
    let after = routes.load().get("/mcp").unwrap().clone();
    assert!(Arc::ptr_eq(&before, &after));
    assert_eq!(stable.connections(), 1);
    let paths = routes
        .load()
        .paths()
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>();
    assert_eq!(paths, ["/mcp", "/changing", "/extra-20"]);
}

/// The binary, run with `--config <file>` and its admin listener on.
struct Proxy {
    child: Child,
    port: u16,
    admin: u16,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Proxy {
    async fn start(body: &str, flags: &[&str]) -> Proxy {
        let (port, admin) = (free_port(), free_port());
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("proxy.toml");
        std::fs::write(&config, with_ports(body, port, admin)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mcp-vpce-proxy"))
            .args(["run", "--log-level", "warn", "--config"])
            .arg(&config)
            .args(flags)
            .env_remove("MCP_VPCE_PROXY_WATCH_CONFIG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("proxy.log")).unwrap())
            .spawn()
            .unwrap();
        let proxy = Proxy {
            child,
            port,
            admin,
            config,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", admin))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the proxy did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The port accepts once bound, before the proxy has started its tasks: a file
        // written or a SIGHUP sent then could be missed (the watcher's first look, or
        // the signal's default action). The admin listener answers only after them: its
        // task is spawned after the watcher's and the SIGHUP handler's on one thread.
        proxy.admin("/healthz").await;
        proxy
    }

    /// What the proxy logged (warnings and errors) so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("proxy.log")).unwrap_or_default()
    }

    fn write(&self, body: &str) {
        std::fs::write(&self.config, with_ports(body, self.port, self.admin)).unwrap();
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn admin(&self, path: &str) -> String {
        send(
            "GET",
            &format!("http://127.0.0.1:{}{path}", self.admin),
            &[],
            "",
        )
        .await
        .body
    }

    /// `config_reloads_total{result}` as scraped.
    async fn reloads(&self, result: &str) -> u64 {
        let series = format!("mcp_vpce_proxy_config_reloads_total{{result=\"{result}\"}} ");
        self.admin("/metrics")
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.parse().unwrap())
    }

    async fn route_names(&self) -> Vec<String> {
        let routes: serde_json::Value = serde_json::from_str(&self.admin("/routes").await).unwrap();
        routes["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Waits (bounded) until `check` holds.
    async fn eventually<F, Fut>(&self, what: &str, check: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check().await {
            assert!(Instant::now() < deadline, "not within 20 s: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn serves(&self) -> bool {
        let answer = post_rpc(&format!("http://127.0.0.1:{}/mcp", self.port), PING).await;
        !answer.body.contains("mcp-vpce-proxy")
    }
}

fn with_ports(body: &str, port: u16, admin: u16) -> String {
    format!(
        "admin = \"127.0.0.1:{admin}\"\n{}",
        body.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\"")
        )
    )
}

fn one_route(dns: &DnsServer, upstream: &Upstream, names: &[&str]) -> String {
    let mut text = head(dns);
    for (i, name) in names.iter().enumerate() {
        let path = if i == 0 {
            "/mcp".to_string()
        } else {
            format!("/{name}")
        };
        text.push_str(&route(name, &path, upstream, ""));
    }
    text
}

#[tokio::test]
async fn sighup_with_an_invalid_file_keeps_the_configuration_in_force() {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&one_route(&dns, &upstream, &["first"]), &[]).await;
    assert!(proxy.serves().await);

    proxy.write("[[route]]\ngateway = \"http://not-https.example.com/mcp\"\n");
    proxy.hangup();
    proxy
        .eventually("config_reloads{result=\"error\"} = 1", || async {
            proxy.reloads("error").await == 1
        })
        .await;
    assert_eq!(proxy.reloads("ok").await, 0);
    assert!(proxy.serves().await);
    assert_eq!(proxy.route_names().await, ["first"]);

    // A valid file is taken at the next SIGHUP.
    proxy.write(&one_route(&dns, &upstream, &["first", "second"]));
    proxy.hangup();
    proxy
        .eventually("config_reloads{result=\"ok\"} = 1", || async {
            proxy.reloads("ok").await == 1
        })
        .await;
    assert_eq!(proxy.route_names().await, ["first", "second"]);
    assert!(proxy.serves().await);
}

#[tokio::test]
async fn sighup_with_a_bad_route_policy_is_refused_at_load_naming_the_file_and_key() {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&one_route(&dns, &upstream, &["first"]), &[]).await;
    assert!(proxy.serves().await);

    // Valid but for the policy of the second route.
    let mut text = head(&dns);
    text.push_str(&route("first", "/mcp", &upstream, ""));
    text.push_str(&route(
        "second",
        "/second",
        &upstream,
        "[route.policy]\nallow_tools = [\"\"]",
    ));
    proxy.write(&text);
    proxy.hangup();
    proxy
        .eventually("config_reloads{result=\"error\"} = 1", || async {
            proxy.reloads("error").await == 1
        })
        .await;
    let expected = format!(
        "{}: route \"second\" (route[1]).policy.allow_tools[0]: an empty pattern matches nothing",
        proxy.config.display()
    );
    proxy
        .eventually("the refusal is logged with the file and key", || async {
            proxy.log().contains(&expected)
        })
        .await;
    assert!(proxy.log().contains("reload refused"), "{}", proxy.log());
    assert_eq!(proxy.reloads("ok").await, 0);
    assert_eq!(proxy.route_names().await, ["first"]);
    assert!(proxy.serves().await);
}

#[tokio::test]
async fn watch_config_applies_a_changed_file_and_refuses_a_broken_one() {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&one_route(&dns, &upstream, &["first"]), &["--watch-config"]).await;

    proxy.write(&one_route(&dns, &upstream, &["first", "added"]));
    proxy
        .eventually("the added route is in force", || async {
            proxy.route_names().await == ["first", "added"]
        })
        .await;
    assert_eq!(proxy.reloads("ok").await, 1);

    proxy.write("this is not TOML [");
    proxy
        .eventually("config_reloads{result=\"error\"} = 1", || async {
            proxy.reloads("error").await == 1
        })
        .await;
    assert_eq!(proxy.route_names().await, ["first", "added"]);
    assert!(proxy.serves().await);
}
