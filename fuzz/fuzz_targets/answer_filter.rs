//! The tool policy's answer filter (`mcp::response::McpBody`) against any gateway answer:
//! JSON or SSE, split into frames anywhere, with any ids (rewritten, long, duplicated,
//! missing), batches, and compressed bodies. Property: no tool the policy denies is ever
//! listed in what reaches the agent (`result.tools`, `structuredContent.tools`, and the
//! search tool's JSON text), and what cannot be read is withheld, never passed on.
//!
//! The first byte picks the answer kind (JSON, SSE, compressed), the frame size, the
//! filter bound and whether the request called the search tool.
#![no_main]

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use mcp_vpce_proxy::ops::audit::AuditSink;
use mcp_vpce_proxy::exchange::body::BoxError;
use mcp_vpce_proxy::mcp::config::PolicyConfig;
use mcp_vpce_proxy::mcp::ids;
use mcp_vpce_proxy::mcp::policy::ToolPolicy;
use mcp_vpce_proxy::mcp::response::{Kind, McpBody};
use mcp_vpce_proxy::mcp::sse::{Collect, Scanner};
use mcp_vpce_proxy::exchange::context::Recorder;
use mcp_vpce_proxy::mcp::watch::{Expect, Watch};
use serde_json::{json, Value};

/// The gateway's answer, handed over in fixed-size frames.
struct Frames(Vec<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(if self.0.is_empty() {
            None
        } else {
            Some(Ok(Frame::data(self.0.remove(0))))
        })
    }
}

fn policy() -> ToolPolicy {
    ToolPolicy::new(&PolicyConfig {
        deny_tools: vec!["Secret*".into()],
        ..PolicyConfig::default()
    })
    .unwrap()
}

fn names(tools: Option<&Value>) -> Vec<&str> {
    tools
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| t.get("name").and_then(Value::as_str).unwrap_or("(none)"))
        .collect()
}

/// Every tool listed in one message is allowed.
fn check_message(m: &Value, policy: &ToolPolicy, search: bool) {
    let Some(result) = m.get("result") else { return };
    let mut listed = names(result.get("tools"));
    listed.extend(names(result.get("structuredContent").and_then(|s| s.get("tools"))));
    // The search filter applies to a search call's answer, which (ids aside) is any
    // answer other than the tools/list request's.
    let list_answer = m.get("id").is_some_and(|id| ids::same(id, &json!(1)));
    if search && !list_answer {
        for block in result.get("content").and_then(Value::as_array).into_iter().flatten() {
            if let Some(Ok(text)) = block
                .get("text")
                .and_then(Value::as_str)
                .map(serde_json::from_str::<Value>)
            {
                let tools: Vec<String> = match &text {
                    Value::Array(_) => names(Some(&text)).into_iter().map(str::to_string).collect(),
                    other => names(other.get("tools")).into_iter().map(str::to_string).collect(),
                };
                for name in tools {
                    assert!(policy.allows(&name), "search text lists {name:?}: {m}");
                }
            }
        }
    }
    for name in listed {
        assert!(policy.allows(name), "a denied tool {name:?} reached the agent: {m}");
    }
}

fn check_json(text: &[u8], policy: &ToolPolicy, search: bool) {
    if text.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let value: Value = serde_json::from_slice(text)
        .unwrap_or_else(|e| panic!("a filtered answer is not JSON ({e}): {text:?}"));
    match &value {
        Value::Array(items) => items.iter().for_each(|m| check_message(m, policy, search)),
        one => check_message(one, policy, search),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, answer)) = data.split_first() else {
        return;
    };
    let kind = match control % 3 {
        0 => Kind::Json,
        1 => Kind::Sse,
        _ => Kind::Encoded,
    };
    let sse = control % 3 == 1;
    let frame = usize::from((control >> 2) % 8) * 13 + 1;
    let limit = if control & 0x20 != 0 { 96 } else { 1 << 16 };
    let search = control & 0x40 != 0;
    let policy = Arc::new(policy());
    let watch = Watch {
        recorder: Recorder::new("fuzz", &AuditSink::default()),
        calls: Default::default(),
        policy: policy.clone(),
        filtering: true,
        search,
        expected: vec![(json!(1), Expect::List), (json!("s"), Expect::Search)],
        extras: Vec::new(),
        batch: false,
        max_filter_bytes: limit,
        permit: None,
        throttles: None,
        subjects: Default::default(),
        lists: None,
    };
    let frames = answer.chunks(frame).map(Bytes::copy_from_slice).collect();
    let body = McpBody::new(Frames(frames).boxed_unsync(), watch, 200, kind);
    let mut body = std::pin::pin!(body);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::new();
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(f))) => out.extend_from_slice(&f.into_data().unwrap()),
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => break,
            Poll::Pending => panic!("a body that is ready never waits"),
        }
    }
    if !sse {
        // JSON, or a compressed answer replaced by errors: one JSON text.
        check_json(&out, &policy, search);
        return;
    }
    let mut scanner = Scanner::default();
    let mut rest = &out[..];
    loop {
        let mut event = Collect::default();
        let Some(used) = scanner.feed(rest, &mut event) else {
            break;
        };
        if event.has_data() {
            check_json(&event.data, &policy, search);
        }
        rest = &rest[used..];
    }
});
