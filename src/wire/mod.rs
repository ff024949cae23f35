//! What the bytes on the wire say, as plain values: a WebSocket frame header, the heads of
//! the HTTP upgrade and what a TLS handshake negotiated. The stages that parse the bytes (`http/`, `ws/`) and the events that carry
//! the results (`event/`) both take them from here, so this module uses nothing else of the
//! crate's.

pub mod frame;
pub mod http;
pub mod tls;
