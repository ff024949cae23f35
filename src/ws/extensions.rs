//! What the extensions negotiated in the 101 response change about framing (RFC 7692 7.1).

/// permessage-deflate parameters from the 101 response (RFC 7692 7.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeflateParams {
    pub client_no_context_takeover: bool,
    pub server_no_context_takeover: bool,
    pub client_max_window_bits: Option<u8>,
    pub server_max_window_bits: Option<u8>,
}

/// What the extensions negotiated in the 101 response change about framing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    pub deflate: Option<DeflateParams>,
}

impl Negotiated {
    /// Reads the server's Sec-WebSocket-Extensions values.
    pub fn from_server_extensions(extensions: &[String]) -> Negotiated {
        let mut negotiated = Negotiated::default();
        for ext in extensions {
            let mut parts = ext.split(';').map(str::trim);
            if !parts
                .next()
                .is_some_and(|n| n.eq_ignore_ascii_case("permessage-deflate"))
            {
                continue;
            }
            let mut params = DeflateParams::default();
            for param in parts {
                let (name, value) = match param.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (param, None),
                };
                let bits = value.and_then(|v| v.parse::<u8>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "client_no_context_takeover" => params.client_no_context_takeover = true,
                    "server_no_context_takeover" => params.server_no_context_takeover = true,
                    "client_max_window_bits" => params.client_max_window_bits = bits,
                    "server_max_window_bits" => params.server_max_window_bits = bits,
                    _ => {}
                }
            }
            negotiated.deflate = Some(params);
            break;
        }
        negotiated
    }
}
