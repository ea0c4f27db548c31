mod common;
use common::dns::DnsServer;
use common::faulty_upstream::FaultyUpstream;
use common::proxy::{head, Proxy};
use common::upstream::ENDPOINT_HOST;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn read_all(s: &mut TcpStream, bound: Duration) -> (String, String) {
    let start = Instant::now();
    let mut out = Vec::new();
    let r = tokio::time::timeout(bound, s.read_to_end(&mut out)).await;
    let how = match r {
        Err(_) => "still open".to_string(),
        Ok(Ok(_)) => format!("EOF after {:?}", start.elapsed()),
        Ok(Err(e)) => format!("err {e} after {:?}", start.elapsed()),
    };
    (
        how,
        String::from_utf8_lossy(&out).chars().take(300).collect(),
    )
}

#[tokio::test]
async fn explore() {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&format!("{}\n[limits]\nheader_read_timeout = \"1s\"\nbody_read_timeout = \"1s\"\nmax_header_bytes = 16384\n{}", head(&dns), upstream.route(""))).await;
    let a = proxy.addr;
    // a silent
    let mut s = TcpStream::connect(a).await.unwrap();
    eprintln!(
        "SILENT: {:?}",
        read_all(&mut s, Duration::from_secs(4)).await
    );
    // b slow POST
    let mut s = TcpStream::connect(a).await.unwrap();
    let t = tokio::spawn(async move {
        for b in b"POST /mcp HTTP/1.1\r\nHost: x\r\nX-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n" { if s.write_all(&[*b]).await.is_err() { return format!("write failed"); } tokio::time::sleep(Duration::from_millis(100)).await; }
        let mut o = Vec::new();
        let _ = s.read_to_end(&mut o).await;
        String::from_utf8_lossy(&o).into_owned()
    });
    eprintln!("SLOW POST: {:?}", t.await);
    // c slow PRI
    let mut s = TcpStream::connect(a).await.unwrap();
    let t = tokio::spawn(async move {
        for b in b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r" {
            if s.write_all(&[*b]).await.is_err() {
                return format!("write failed");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (h, o) = read_all(&mut s, Duration::from_secs(3)).await;
        format!("{h} {o}")
    });
    eprintln!("SLOW PRI: {:?}", t.await);
    // d keep-alive idle
    let mut s = TcpStream::connect(a).await.unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    s.write_all(format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes()).await.unwrap();
    eprintln!(
        "KEEPALIVE IDLE: {:?}",
        read_all(&mut s, Duration::from_secs(5)).await
    );
    // e huge header
    let mut s = TcpStream::connect(a).await.unwrap();
    let _ = s
        .write_all(
            format!(
                "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
                "a".repeat(100_000)
            )
            .as_bytes(),
        )
        .await;
    eprintln!("HUGE: {:?}", read_all(&mut s, Duration::from_secs(5)).await);
    // f many headers
    let mut s = TcpStream::connect(a).await.unwrap();
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let _ = s
        .write_all(format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}\r\n").as_bytes())
        .await;
    eprintln!("MANY: {:?}", read_all(&mut s, Duration::from_secs(5)).await);
    for (name, req) in [
      ("TE+CL", format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", body.len())),
      ("CL,CL diff", format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nContent-Length: 5\r\n\r\n{body}", body.len())),
      ("CL,CL same", format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {0}\r\nContent-Length: {0}\r\nConnection: close\r\n\r\n{body}", body.len())),
      ("CL list", format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {0}, {0}\r\nConnection: close\r\n\r\n{body}", body.len())),
      ("TE chunked,identity", format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked, identity\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len())),
      ("TE xchunked", format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: xchunked\r\nContent-Length: {}\r\n\r\n{body}", body.len())),
      ("TE space", format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding : chunked\r\nContent-Length: {}\r\n\r\n{body}", body.len())),
      ("CL +", format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: +{}\r\n\r\n{body}", body.len())),
      ("http1.0 TE", format!("POST /mcp HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len())),
      ("garbage after", format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}\x00\x01\x02GARBAGE \r\n\r\n\r\n", body.len())),
      ("garbage only", "\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03 garbage\r\n\r\n".to_string()),
      ("bare LF", format!("POST /mcp HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\nContent-Length: {}\n\n{body}", body.len())),
      ("obs fold", format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Fold: a\r\n b\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())),
      ("endless body", format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"jsonrpc\"")),
    ] {
        let mut s = TcpStream::connect(a).await.unwrap();
        let _ = s.write_all(req.as_bytes()).await;
        eprintln!("{name}: {:?}", read_all(&mut s, Duration::from_secs(4)).await);
    }
    eprintln!(
        "UPSTREAM SAW: {:?}",
        upstream
            .requests()
            .iter()
            .map(|r| (
                r.method.clone(),
                r.target.clone(),
                String::from_utf8_lossy(&r.body).into_owned()
            ))
            .collect::<Vec<_>>()
    );
}
