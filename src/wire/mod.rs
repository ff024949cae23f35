//! What the bytes on the wire say, as plain values: a WebSocket frame header and the heads of
//! the HTTP upgrade. The stages that parse the bytes (`http/`, `ws/`) and the events that carry
//! the results (`event/`) both take them from here, so this module uses nothing else of the
//! crate's.

pub mod frame;
pub mod http;
