//! The network stages: link, IP and TCP decoding of a captured packet, then TCP reassembly
//! of each connection into one ordered byte stream per direction.

pub mod decode;
pub mod tcp;
