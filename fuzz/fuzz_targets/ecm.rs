//! An Encapsulated Control Message: type 8 forced, the rest fuzzed, so the inner IPv4 / IPv6
//! and UDP header parser is reached on every input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lisp_decent::wire::{ControlMessage, Ecm, Reader};

fuzz_target!(|data: &[u8]| {
    let mut b = Vec::with_capacity(data.len() + 4);
    b.extend_from_slice(&[0x80, 0, 0, 0]);
    b.extend_from_slice(data);
    if let Ok(e) = Ecm::parse(&mut Reader::new(&b)) {
        let m = ControlMessage::Ecm(e);
        let bytes = m.to_bytes().expect("a parsed ECM emits");
        assert_eq!(ControlMessage::parse(&bytes).expect("re-parse"), m);
    }
});
