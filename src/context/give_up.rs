//! Why the HTTP layer stops following a connection, and how often it did: a value the HTTP
//! stage returns and the run's counters ([`WsStats`](super::WsStats)) count, kept here with the
//! counters so that counting them needs nothing of the HTTP stage.

/// Why the HTTP layer stopped following a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GiveUp {
    /// Bytes that cannot start an HTTP head where one was expected.
    NotHttp,
    /// A head whose start line is not HTTP even to the lenient parser.
    MalformedHead,
    /// A head over `MAX_HEAD_LEN` (`http::handshake`, 64 KiB).
    HeadTooLarge,
    /// A chunked body whose chunk sizes or line ends are broken.
    BadChunkedBody,
    /// A response body delimited by the connection's close: nothing HTTP can follow it.
    BodyUntilClose,
    /// More than `MAX_PENDING_REQUESTS` (32) requests without their responses.
    TooManyPipelined,
    /// The client sent over `MAX_HEAD_LEN` (`http::handshake`, 64 KiB) bytes after an upgrade request, before its response.
    EarlyClientBytes,
    /// A final response to no captured request.
    ResponseWithoutRequest,
    /// A switch to a protocol other than WebSocket (a 101 to an h2c upgrade, a CONNECT tunnel).
    OtherProtocol,
    /// Bytes of the HTTP phase were not captured.
    Gap,
}

impl GiveUp {
    pub const ALL: [GiveUp; 10] = [
        GiveUp::NotHttp,
        GiveUp::MalformedHead,
        GiveUp::HeadTooLarge,
        GiveUp::BadChunkedBody,
        GiveUp::BodyUntilClose,
        GiveUp::TooManyPipelined,
        GiveUp::EarlyClientBytes,
        GiveUp::ResponseWithoutRequest,
        GiveUp::OtherProtocol,
        GiveUp::Gap,
    ];

    /// The reason's stable name: the counter's, and the first word of the anomaly's detail.
    pub fn name(self) -> &'static str {
        self.describe().0
    }

    /// What happened, in words.
    pub fn sentence(self) -> &'static str {
        self.describe().1
    }

    fn describe(self) -> (&'static str, &'static str) {
        match self {
            GiveUp::NotHttp => (
                "not_http",
                "bytes that are not HTTP where a head was expected",
            ),
            GiveUp::MalformedHead => (
                "malformed_head",
                "a head whose start line is not HTTP, even read leniently",
            ),
            GiveUp::HeadTooLarge => ("head_too_large", "a head over 64 KiB"),
            GiveUp::BadChunkedBody => ("bad_chunked_body", "a chunked body with broken framing"),
            GiveUp::BodyUntilClose => (
                "body_until_close",
                "a response body that runs until the connection closes",
            ),
            GiveUp::TooManyPipelined => (
                "too_many_pipelined",
                "more than 32 pipelined requests awaiting their responses",
            ),
            GiveUp::EarlyClientBytes => (
                "early_client_bytes",
                "over 64 KiB from the client after its upgrade request, before the response",
            ),
            GiveUp::ResponseWithoutRequest => (
                "response_without_request",
                "a response to no captured request",
            ),
            GiveUp::OtherProtocol => (
                "other_protocol",
                "a switch to a protocol other than WebSocket",
            ),
            GiveUp::Gap => ("gap", "bytes of the HTTP phase were not captured"),
        }
    }

    /// The HTTP itself is broken (not a limit of wsnoop's, nor the capture's): worth an anomaly
    /// on a connection that spoke HTTP, even one that never asked for WebSocket.
    pub(crate) fn breaks_http(self) -> bool {
        matches!(
            self,
            GiveUp::NotHttp | GiveUp::MalformedHead | GiveUp::BadChunkedBody
        )
    }
}

/// Connections the HTTP layer gave up on, per [`GiveUp`] reason (indexed as `GiveUp::ALL`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GiveUps {
    pub counts: [u64; GiveUp::ALL.len()],
    /// How many of them were reported with an `http_abandoned` anomaly.
    pub reported: u64,
}

impl GiveUps {
    pub fn get(&self, reason: GiveUp) -> u64 {
        self.counts[reason as usize]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// "gap 2, not_http 1": the reasons seen, most frequent first.
    pub fn summary(&self) -> String {
        let mut seen: Vec<(u64, &str)> = GiveUp::ALL
            .iter()
            .map(|r| (self.get(*r), r.name()))
            .filter(|(n, _)| *n > 0)
            .collect();
        seen.sort_by_key(|s| std::cmp::Reverse(s.0));
        seen.iter()
            .map(|(n, name)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::ops::AddAssign<&GiveUps> for GiveUps {
    fn add_assign(&mut self, other: &GiveUps) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.reported += other.reported;
    }
}
