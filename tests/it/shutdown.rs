//! SIGTERM: the proxy stops accepting, lets in-flight requests finish, then exits.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::client;
use crate::common::dns::DnsServer;
use crate::common::proxy::head;
use crate::common::upstream::{Upstream, ENDPOINT_HOST, GATEWAY_HOST};
use serde_json::json;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_until_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the proxy did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_refuses_new_ones() {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    let text = format!(
        "{}\n[[route]]\ngateway = \"https://{GATEWAY_HOST}:{}/mcp\"\nendpoint = \"{ENDPOINT_HOST}\"\nca_file = \"{}\"\n",
        head(&dns).replace("127.0.0.1:0", &format!("127.0.0.1:{port}")).replace("shutdown_grace = \"5s\"", "shutdown_grace = \"20s\""),
        upstream.port(),
        upstream.ca_file().display()
    );
    std::fs::write(&config, text).unwrap();
    let mut proxy = Running(
        Command::new(env!("CARGO_BIN_EXE_mcp-vpce-proxy"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until_listening(port).await;

    let agent = client::connect(&format!("http://127.0.0.1:{port}/mcp")).await;
    let mut progress = agent.service().take_progress();
    let call = client::start_tool_call(&agent, "DemoTarget___slow_progress", json!({})).await;
    progress.recv().await.expect("the call is in flight");

    let pid = proxy.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());

    // New connections are refused once the listener is closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        proxy.0.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );

    // The in-flight call still completes.
    upstream.release_progress();
    let result = call.result().await.expect("the in-flight call completes");
    assert_eq!(client::first_text(&result), Some("done"));
    agent.cancel().await.unwrap();

    // With nothing left in flight the process exits well before the 20 s grace period.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = proxy.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
}
