//! TCP: a connection's identity, and the reassembly of each of its directions into an
//! ordered byte stream.

mod flow;
mod reassembly;
mod recent;
mod seq;

pub use flow::FlowKey;
pub use reassembly::{Chunk, HalfStream, ReassemblyLimits};
pub use recent::Backing;

#[cfg(test)]
mod tests;
