//! `mcp-vpce-proxy demo`: a demo gateway plus the proxy in front of it in
//! private-DNS-off mode, a walkthrough of an MCP session through the proxy, then the
//! proxy keeps serving so that a user can point their own agent at it.

mod gateway;
mod modern;
mod walkthrough;

use std::path::PathBuf;

use crate::cmd::app::runtime;
use crate::cmd::app::Proxy;
use crate::cmd::cli::DemoArgs;
use crate::config::{Config, CredentialConfig, RouteConfig};
use crate::listener::server::shutdown_signal;

pub use gateway::{DemoGateway, ENDPOINT_HOST, GATEWAY_HOST, TOOL_NAME};
pub use modern::MODERN_VERSION;

pub fn run(args: DemoArgs) -> Result<(), String> {
    crate::ops::logging::init(&args.runtime.log_level, args.runtime.log_format)?;
    runtime()?.block_on(demo(args))
}

/// Files the demo writes (the CA certificate, the token), removed when it ends.
struct DemoFiles(PathBuf);

impl Drop for DemoFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn demo(args: DemoArgs) -> Result<(), String> {
    let token = random_token()?;
    let gateway = DemoGateway::start(&token).await?;

    let dir =
        DemoFiles(std::env::temp_dir().join(format!("mcp-vpce-proxy-demo-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).map_err(|e| format!("{}: {e}", dir.0.display()))?;
    let ca_file = dir.0.join("demo-ca.pem");
    let token_file = dir.0.join("gateway-token");
    std::fs::write(&ca_file, &gateway.ca_pem).map_err(|e| format!("{}: {e}", ca_file.display()))?;
    write_private(&token_file, &token)?;

    let mut route = RouteConfig::new(format!("https://{GATEWAY_HOST}/mcp"));
    route.name = Some("demo".into());
    route.endpoint = Some(ENDPOINT_HOST.into());
    // The demo cannot publish DNS records: pin the endpoint name to the demo gateway's
    // address, like curl's --resolve. The in-VPC check still applies to it.
    route.addresses = vec![gateway.addr.to_string()];
    route.ca_file = Some(ca_file.clone());
    route.credential = CredentialConfig::File { path: token_file };
    let mut config = Config {
        listen: args.listen,
        admin: crate::config::parse_admin(&args.admin).map_err(|e| format!("--admin: {e}"))?,
        routes: vec![route],
        ..Config::default()
    };
    config.dns.private_ranges = vec!["127.0.0.0/8".parse().expect("valid constant")];

    let server = Proxy::start(&config).await?;
    let url = format!("http://{}/mcp", server.local_addr());
    println!("mcp-vpce-proxy demo");
    println!("  gateway       https://{GATEWAY_HOST}/mcp");
    println!(
        "                (a local demo gateway: TLS, certificate for that name, served on {})",
        gateway.addr
    );
    println!("  VPC endpoint  {ENDPOINT_HOST}");
    println!("                (private DNS off: the proxy dials the endpoint, SNI and Host carry the gateway name)");
    println!("  in-VPC ranges 127.0.0.0/8 (the demo's stand-in for the VPC CIDR)");
    println!("  credential    a bearer token the proxy attaches itself; the agent sends none");
    println!("  proxy         {url}");
    if let Some(admin) = server.admin_addr() {
        println!("  admin         http://{admin}/metrics, /healthz, /readyz, /routes");
    }
    println!();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = stopped => {}
        }
    }));

    let outcome = walkthrough::run(&url, &gateway).await;
    match &outcome {
        Ok(()) if args.once => {}
        Ok(()) => {
            println!();
            println!("The proxy keeps serving. Point your agent at it:");
            println!("  GATEWAY_URL={url}");
            println!("Press Ctrl-C to stop.");
        }
        Err(e) => println!("walkthrough failed: {e}"),
    }
    if args.once || outcome.is_err() {
        let _ = stop.send(());
    }
    let _ = serving.await;
    outcome
}

fn random_token() -> Result<String, String> {
    let mut bytes = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| "no randomness available".to_string())?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_private(path: &std::path::Path, contents: &str) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}
