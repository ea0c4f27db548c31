//! The SSE event scanner that reads gateway streams (`mcp::sse`): never a panic or a
//! stall, the events it finds do not depend on how the stream was split into frames,
//! and an event it rewrites reads back the same. The first byte picks the frame size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_vpce_proxy::mcp::sse::{Collect, Scanner};

/// (data, id, event, has data, bytes the event took) for each complete event.
type Event = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>, bool, usize);

fn scan(stream: &[u8], frame_size: usize) -> Vec<Event> {
    let mut scanner = Scanner::default();
    let mut sink = Collect::default();
    let mut events = Vec::new();
    let mut taken = 0;
    for frame in stream.chunks(frame_size) {
        let mut rest = frame;
        while let Some(used) = scanner.feed(rest, &mut sink) {
            assert!(used > 0 && used <= rest.len(), "the scanner moves forward");
            taken += used;
            let event = std::mem::take(&mut sink);
            let has_data = event.has_data();
            events.push((event.data, event.id, event.event, has_data, taken));
            taken = 0;
            rest = &rest[used..];
        }
        taken += rest.len();
    }
    events
}

fn single_line(bytes: &[u8]) -> bool {
    !bytes.contains(&b'\n') && !bytes.contains(&b'\r')
}

fuzz_target!(|data: &[u8]| {
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let whole = scan(stream, stream.len().max(1));
    let framed = scan(stream, usize::from(size % 32) + 1);
    let fields = |events: &[Event]| -> Vec<_> {
        events
            .iter()
            .map(|e| (e.0.clone(), e.1.clone(), e.2.clone(), e.3))
            .collect()
    };
    assert_eq!(fields(&whole), fields(&framed));

    for (data, id, event, has_data, _) in whole {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        let plain = |f: &Option<Vec<u8>>| f.as_deref().is_none_or(single_line);
        if !has_data || !single_line(&data) || !plain(&id) || !plain(&event) {
            continue;
        }
        let mut original = Collect::default();
        original.id = id.clone();
        original.event = event.clone();
        let rewritten = original.rewrite(text);
        let again = scan(&rewritten, rewritten.len());
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].0, data);
        assert_eq!(again[0].1, id);
        assert_eq!(again[0].2, event);
        assert_eq!(again[0].4, rewritten.len());
    }
});
