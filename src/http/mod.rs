//! The HTTP/1.1 stage of a TCP connection: the exchange before an upgrade and the WebSocket
//! opening handshake (RFC 6455 section 4).

pub mod give_up;
pub mod handshake;
