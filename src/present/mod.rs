//! Presentation: LISP packets in words and JSON (`decent decode`, the control log lines,
//! the web UI's decode) and the captures they are read from (pcap, pcapng). It sits above
//! `wire` and `crypto` and below `node` and `cli`, so the tests and fuzz targets reach it
//! without the runtime or the command line.

pub mod capture;
pub mod describe;
