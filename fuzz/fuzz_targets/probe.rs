//! The streaming JSON probe that reads gateway answers as they pass (tool-call
//! outcomes): never a panic, and the facts it finds do not depend on how the answer was
//! split into frames. The first byte picks the frame size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_vpce_proxy::mcp::probe::Probe;

fuzz_target!(|data: &[u8]| {
    let Some((&size, answer)) = data.split_first() else {
        return;
    };
    let size = usize::from(size % 64) + 1;
    let mut whole = Probe::default();
    whole.feed(answer);
    let mut framed = Probe::default();
    for frame in answer.chunks(size) {
        framed.feed(frame);
    }
    assert_eq!(whole.take_done(), framed.take_done());
    assert_eq!(whole.current(), framed.current());
});
