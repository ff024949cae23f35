//! TCP: a connection's identity, and the reassembly of each of its directions into an
//! ordered byte stream.

mod flow;
mod reassembly;

pub use flow::FlowKey;
pub use reassembly::{Chunk, HalfStream, ReassemblyLimits};

#[cfg(test)]
mod tests;
