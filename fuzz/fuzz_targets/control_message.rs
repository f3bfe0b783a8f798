//! Any bytes on UDP 4342: parse as a control message; whatever parses must re-emit and
//! parse back to itself, and authentication must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lisp_decent::crypto::auth;
use lisp_decent::wire::ControlMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ControlMessage::parse(data) {
        let bytes = m.to_bytes().expect("a parsed message emits");
        assert_eq!(ControlMessage::parse(&bytes).expect("re-parse"), m);
    }
    let _ = auth::verify(data, b"fuzz-key");
});
