//! TCP: a connection's identity, and the reassembly of each of its directions into an
//! ordered byte stream.

pub mod flow;
pub mod reassembly;

pub use flow::FlowKey;
pub use reassembly::{Chunk, HalfStream, ReassemblyLimits};

#[cfg(test)]
mod tests;
