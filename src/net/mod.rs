//! The network stages: link, IP and TCP decoding of a captured packet, then TCP reassembly
//! of each connection into one ordered byte stream per direction.

pub mod segment;
pub mod tcp;

pub use segment as decode;
