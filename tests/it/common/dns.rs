//! A real DNS server (hickory-server) on `127.0.0.1:<random port>`, UDP and
//! TCP on the same port, answering A/AAAA queries from a table the test can
//! change while it runs.
//!
//! Only ever put loopback addresses (127.0.0.0/8, ::1) in the table: whatever
//! it answers, the code under test will dial.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

/// How the server treats queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsMode {
    /// Answer from the table.
    Answer,
    /// Answer every query with SERVFAIL.
    ServFail,
    /// Drop every query: resolvers time out.
    Silent,
}

struct Table {
    /// Lower-case names without the trailing dot.
    records: HashMap<String, Vec<IpAddr>>,
    ttl: u32,
    mode: DnsMode,
}

struct Shared {
    table: Mutex<Table>,
    queries: AtomicUsize,
}

/// A running DNS server; stops when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// Owns the server's tasks (a `JoinSet`, aborted on drop).
    _server: Server<TableHandler>,
}

pub const DEFAULT_TTL: u32 = 30;

impl DnsServer {
    /// Starts a server answering `records` (names without the trailing dot)
    /// with a TTL of [`DEFAULT_TTL`] seconds. A name listed twice gets all its
    /// addresses.
    pub async fn start(records: &[(&str, IpAddr)]) -> DnsServer {
        let mut table = HashMap::<String, Vec<IpAddr>>::new();
        for (name, ip) in records {
            assert_loopback(*ip);
            table.entry(normalize(name)).or_default().push(*ip);
        }
        let shared = Arc::new(Shared {
            table: Mutex::new(Table {
                records: table,
                ttl: DEFAULT_TTL,
                mode: DnsMode::Answer,
            }),
            queries: AtomicUsize::new(0),
        });

        // Bind UDP on a random port, then TCP on the same one. Another
        // process may hold that TCP port, so retry with a new UDP port.
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS UDP");
            let addr = udp.local_addr().expect("DNS UDP address");
            if let Ok(tcp) = TcpListener::bind(addr).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().expect("DNS UDP address");

        let mut server = Server::new(TableHandler {
            shared: shared.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 16);

        DnsServer {
            addr,
            shared,
            _server: server,
        }
    }

    /// Replaces a name's answers (all families).
    pub fn set(&self, name: &str, ips: Vec<IpAddr>) {
        ips.iter().copied().for_each(assert_loopback);
        self.table().records.insert(normalize(name), ips);
    }

    /// Forgets a name: queries for it then get NXDOMAIN.
    pub fn remove(&self, name: &str) {
        self.table().records.remove(&normalize(name));
    }

    /// The TTL of answers from now on.
    pub fn set_ttl(&self, secs: u32) {
        self.table().ttl = secs;
    }

    pub fn set_mode(&self, mode: DnsMode) {
        self.table().mode = mode;
    }

    /// Queries received so far, in any mode, over UDP and TCP.
    pub fn queries(&self) -> usize {
        self.shared.queries.load(Ordering::SeqCst)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.shared.table.lock().unwrap()
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn assert_loopback(ip: IpAddr) {
    assert!(
        ip.is_loopback(),
        "test DNS answers must be loopback addresses, got {ip}"
    );
}

/// What the handler decided, computed under the table lock and then sent.
enum Reply {
    Drop,
    Error(ResponseCode),
    /// NOERROR with these answers (possibly none).
    Answers(Vec<Record>),
}

struct TableHandler {
    shared: Arc<Shared>,
}

impl TableHandler {
    fn decide(&self, request: &Request) -> Reply {
        let table = self.shared.table.lock().unwrap();
        match table.mode {
            DnsMode::Silent => return Reply::Drop,
            DnsMode::ServFail => return Reply::Error(ResponseCode::ServFail),
            DnsMode::Answer => {}
        }
        let Ok(info) = request.request_info() else {
            return Reply::Error(ResponseCode::FormErr);
        };
        let query = info.query;
        let name = normalize(&query.name().to_string());
        let Some(ips) = table.records.get(&name) else {
            return Reply::Error(ResponseCode::NXDomain);
        };
        let wanted = query.query_type();
        let owner: Name = query.original().name().clone();
        let answers = ips
            .iter()
            .filter(|ip| match wanted {
                RecordType::A => ip.is_ipv4(),
                RecordType::AAAA => ip.is_ipv6(),
                _ => false,
            })
            .map(|ip| Record::from_rdata(owner.clone(), table.ttl, RData::from(*ip)))
            .collect();
        Reply::Answers(answers)
    }

    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        self.shared.queries.fetch_add(1, Ordering::SeqCst);
        let builder = MessageResponseBuilder::from_message_request(request);
        let sent = match self.decide(request) {
            Reply::Drop => {
                // Nothing goes on the wire; the server only wants a summary.
                return ResponseInfo::from(Header {
                    metadata: Metadata::response_from_request(&request.metadata),
                    counts: HeaderCounts::default(),
                });
            }
            Reply::Error(code) => {
                response
                    .send_response(builder.error_msg(&request.metadata, code))
                    .await
            }
            Reply::Answers(answers) => {
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.authoritative = true;
                metadata.recursion_available = true;
                response
                    .send_response(builder.build(metadata, answers.iter(), [], [], []))
                    .await
            }
        };
        sent.unwrap_or_else(|_| {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        })
    }
}

// `RequestHandler` is declared with `#[async_trait]`; this is the signature
// that macro expands to, written out so the crate needs no `async-trait`.
impl RequestHandler for TableHandler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: ResponseHandler + 'async_trait,
        T: Time + 'async_trait,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.respond(request, response_handle))
    }
}
