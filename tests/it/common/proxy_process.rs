//! The proxy binary as a child process, for the tests that need a process of its own:
//! signals (SIGTERM drain) and memory (the resident set of the proxy alone, read from
//! `/proc/<pid>/status`).

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct ProxyProcess {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ProxyProcess {
    /// Runs `mcp-vpce-proxy run --config <file>` with `toml` (whose `listen` must be
    /// `"127.0.0.1:0"`, as `common::proxy::head` writes it) on a free port, the admin
    /// listener off, and waits until it accepts connections.
    pub async fn start(toml: &str) -> ProxyProcess {
        ProxyProcess::start_with_args(toml, &[]).await
    }

    /// As [`ProxyProcess::start`], with more arguments for `run` (e.g. `--workers`).
    pub async fn start_with_args(toml: &str, args: &[&str]) -> ProxyProcess {
        let port = free_port();
        assert!(toml.contains("listen = \"127.0.0.1:0\""), "{toml}");
        let text = format!(
            "admin = \"off\"\n{}",
            toml.replace(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"127.0.0.1:{port}\"")
            )
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("proxy.toml");
        std::fs::write(&config, text).unwrap();
        // Warnings only, unless the test asks for another level.
        let level: &[&str] = if args.contains(&"--log-level") {
            &[]
        } else {
            &["--log-level", "warn"]
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-vpce-proxy"));
        cmd.arg("run")
            .args(level)
            .arg("--config")
            .arg(&config)
            .args(args);
        ProxyProcess::launch(&mut cmd, port, dir).await
    }

    /// Runs `cmd` (the binary with the arguments and environment the test chose, e.g. the
    /// configuration in `MCP_VPCE_PROXY_CONFIG_TOML`), whose agent listener is on `port`,
    /// and waits until it accepts connections. Its stderr is kept for [`ProxyProcess::log`].
    pub async fn spawn(cmd: &mut Command, port: u16) -> ProxyProcess {
        ProxyProcess::launch(cmd, port, tempfile::tempdir().unwrap()).await
    }

    async fn launch(cmd: &mut Command, port: u16, dir: tempfile::TempDir) -> ProxyProcess {
        let log = dir.path().join("proxy.log");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let process = ProxyProcess {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the proxy did not start listening: {}",
                process.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        process
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `http://127.0.0.1:<port>/mcp`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The resident set size in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the proxy process is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Asserts the resident set is below `limit_mib`.
    pub fn assert_rss_below(&self, limit_mib: u64, when: &str) {
        let rss = self.rss_kib();
        assert!(
            rss < limit_mib * 1024,
            "the proxy's resident set is {} MiB {when}, over the bound of {limit_mib} MiB",
            rss / 1024
        );
    }

    /// SIGHUP: reload the configuration.
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits (at most `bound`) for the process to exit.
    pub async fn wait_exit(&mut self, bound: Duration) -> ExitStatus {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the proxy did not exit within {bound:?}: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the listener still accepts connections.
    pub async fn accepting(&self) -> bool {
        tokio::net::TcpStream::connect(self.addr()).await.is_ok()
    }

    /// What the proxy wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
