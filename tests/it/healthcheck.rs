//! `healthcheck`, what a container's health check runs: it finds the admin address as
//! `run` does (`--admin` or `MCP_VPCE_PROXY_ADMIN`, else `admin` in the configuration
//! given by `--config`, `MCP_VPCE_PROXY_CONFIG` or `MCP_VPCE_PROXY_CONFIG_TOML`, else
//! the default), and when nothing answers it says which address it tried and where that
//! address came from.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::binary::{proxy, run};
use crate::common::proxy_process::{free_port, ProxyProcess};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    free_port()
}

fn healthcheck(configure: impl FnOnce(&mut Command)) -> (bool, String, String) {
    let mut cmd = proxy();
    cmd.arg("healthcheck");
    configure(&mut cmd);
    run(&mut cmd)
}

fn config_text(listen: u16, admin: &str) -> String {
    format!(
        "listen = \"127.0.0.1:{listen}\"\nadmin = \"{admin}\"\n[dns]\nprivate_ranges = [\"127.0.0.0/8\"]\n\
         [[route]]\ngateway = \"https://gw.example.com/mcp\"\naddresses = [\"127.0.0.1\"]\n"
    )
}

/// The case: `admin` set in the file the proxy runs with, on another port than
/// the default; the health check finds it from the file, its variable, the text
/// variable, or the flag.
#[tokio::test]
async fn healthcheck_asks_the_admin_address_the_running_proxy_was_configured_with() {
    let (port, admin) = (free_port(), free_port());
    let admin_addr = format!("127.0.0.1:{admin}");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    let text = config_text(port, &admin_addr);
    std::fs::write(&config, &text).unwrap();
    let _proxy = ProxyProcess::spawn(
        proxy()
            .args(["run", "--log-level", "warn", "--config"])
            .arg(&config),
        port,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(&admin_addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the admin listener did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let file = config.display().to_string();
    /// How the address is given, with the arguments and variables that give it.
    type Given<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let cases: Vec<Given> = vec![
        ("--config", vec!["--config", &file], vec![]),
        (
            "MCP_VPCE_PROXY_CONFIG",
            vec![],
            vec![("MCP_VPCE_PROXY_CONFIG", &file)],
        ),
        (
            "MCP_VPCE_PROXY_CONFIG_TOML",
            vec![],
            vec![("MCP_VPCE_PROXY_CONFIG_TOML", &text)],
        ),
        ("--admin", vec!["--admin", &admin_addr], vec![]),
        (
            "MCP_VPCE_PROXY_ADMIN",
            vec![],
            vec![("MCP_VPCE_PROXY_ADMIN", &admin_addr)],
        ),
    ];
    for (given_by, args, envs) in cases {
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let envs: Vec<(String, String)> = envs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (ok, out, err) = tokio::task::spawn_blocking(move || {
            healthcheck(|cmd| {
                cmd.args(args).envs(envs);
            })
        })
        .await
        .unwrap();
        assert!(ok, "{given_by}: {err}");
        assert_eq!(out, "/healthz: ok\n", "{given_by}");
    }

    // The flag wins over the file, as for `run`; the failure names it.
    let closed = closed_port();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        healthcheck(|cmd| {
            cmd.arg("--config")
                .arg(&config)
                .args(["--admin", &format!("127.0.0.1:{closed}")]);
        })
    })
    .await
    .unwrap();
    assert!(!ok);
    assert_eq!(
        err,
        format!(
            "mcp-vpce-proxy: http://127.0.0.1:{closed}/healthz: Connection refused (os error 111) \
             [admin address 127.0.0.1:{closed} from --admin / MCP_VPCE_PROXY_ADMIN]\n"
        )
    );
}

#[test]
fn a_failed_healthcheck_says_which_address_it_tried_and_where_it_came_from() {
    let closed = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    let f = config.display();

    std::fs::write(&config, config_text(8080, &format!("127.0.0.1:{closed}"))).unwrap();
    let (ok, _, err) = healthcheck(|cmd| {
        cmd.arg("--config").arg(&config);
    });
    assert!(!ok);
    assert_eq!(
        err,
        format!(
            "mcp-vpce-proxy: http://127.0.0.1:{closed}/healthz: Connection refused (os error 111) \
             [admin address 127.0.0.1:{closed} from `admin` in {f}]\n"
        )
    );

    let (ok, _, err) = healthcheck(|cmd| {
        cmd.env(
            "MCP_VPCE_PROXY_CONFIG_TOML",
            config_text(8080, &format!("0.0.0.0:{closed}")),
        );
    });
    assert!(!ok);
    assert_eq!(
        err,
        format!(
            "mcp-vpce-proxy: http://127.0.0.1:{closed}/healthz: Connection refused (os error 111) \
             [admin address 0.0.0.0:{closed} from `admin` in $MCP_VPCE_PROXY_CONFIG_TOML, asked on loopback]\n"
        )
    );

    std::fs::write(&config, config_text(8080, "off")).unwrap();
    let (ok, _, err) = healthcheck(|cmd| {
        cmd.env("MCP_VPCE_PROXY_CONFIG", &config);
    });
    assert!(!ok);
    assert_eq!(
        err,
        format!(
            "mcp-vpce-proxy: the admin listener is off (admin address off from `admin` in {f}); \
             there is nothing to ask\n"
        )
    );

    std::fs::write(&config, "admin = \"localhost:9901\"\n").unwrap();
    let (ok, _, err) = healthcheck(|cmd| {
        cmd.arg("--config").arg(&config);
    });
    assert!(!ok);
    assert_eq!(
        err,
        format!(
            "mcp-vpce-proxy: {f}: admin: \"localhost:9901\" is not an address like 127.0.0.1:9901 (or \"off\")\n"
        )
    );
}
