//! The network stages: link, IP and TCP decoding of a captured packet, IP fragment
//! reassembly, then TCP reassembly of each connection into one ordered byte stream per
//! direction.

pub mod defrag;
pub mod link;
pub mod segment;
pub mod tcp;

#[cfg(test)]
mod tests;
