//! The HTTP/1.1 stage of a TCP connection: the exchange before an upgrade, the WebSocket
//! opening handshake (RFC 6455 section 4) and its rules, and why a connection is given up.

pub mod exchange;
pub mod handshake;
mod head;
mod headbuf;
pub mod rules;
