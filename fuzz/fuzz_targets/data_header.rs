//! Any bytes on UDP 4341: the data header and, for Instance-ID 0xFFFFFF, the inner IP + UDP
//! header and control message (LISP-Decent head-end replication).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lisp_decent::wire::{CONTROL_INSTANCE_ID, ControlMessage, DataHeader, IpUdp, Reader};

fuzz_target!(|data: &[u8]| {
    let Ok(h) = DataHeader::parse(data) else { return };
    let mut out = [0u8; 8];
    h.emit(&mut out).expect("8 bytes");
    assert_eq!(&out[..], &data[..8]);
    if h.instance_id() == Some(CONTROL_INSTANCE_ID) {
        let mut r = Reader::new(&data[8..]);
        if let Ok((_, mut body)) = IpUdp::parse(&mut r) {
            let _ = ControlMessage::parse_from(&mut body);
        }
    }
});
