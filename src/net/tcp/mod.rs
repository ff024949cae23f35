//! TCP: the reassembly of each direction of a connection into an ordered byte stream.

mod reassembly;

pub use reassembly::*;
