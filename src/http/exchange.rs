//! The HTTP/1.1 exchange on a connection before it upgrades: requests and responses head by
//! head, bodies skipped by length or by chunks, until a 101 switches to WebSocket or the
//! connection is given up ([`GiveUp`]).

use std::collections::VecDeque;

use super::handshake::{self, MAX_HEAD_LEN};
use super::headbuf::{HeadBuf, take_head};
use super::rules::check_handshake;
use crate::anomaly::AnomalyKind;
use crate::context::Context;
use crate::context::GiveUp;
use crate::event::{Direction, Event, HandshakeEvent, Timestamp};
use crate::wire::http::{
    AcceptVerdict, BodyLength, UpgradeRequest, UpgradeResponse, looks_like_request_start,
    looks_like_response_start,
};
use crate::ws::Negotiated;

/// Requests may be pipelined; more unanswered than this and the connection is not followed.
pub(crate) const MAX_PENDING_REQUESTS: usize = 32;

#[derive(Debug)]
pub(crate) enum HttpSide {
    Head,
    SkipBody(u64),
    Chunked(ChunkedBody),
    /// The rest of a request head too large to hold.
    HeadTail(HeadTail),
}

/// The rest of a head over [`MAX_HEAD_LEN`], read without being held: only for where it ends
/// and for an `Upgrade: websocket` line, so padding a header cannot hide an upgrade.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadTail {
    /// The current line's first bytes: enough for `Upgrade: websocket`.
    pub(crate) line: [u8; HeadTail::KEEP],
    /// Bytes of the current line so far.
    pub(crate) len: usize,
    pub(crate) upgrade: bool,
}

impl HeadTail {
    const KEEP: usize = 48;

    /// Starts inside the line that `held` (the bytes held so far) ends with.
    pub(crate) fn after(held: &[u8]) -> HeadTail {
        let start = held
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        let mut tail = HeadTail {
            line: [0; HeadTail::KEEP],
            len: 0,
            upgrade: handshake::partial_head_upgrades(held),
        };
        tail.scan(&held[start..]);
        tail
    }

    /// Reads head bytes; at the head's end, returns how many of `input` it used.
    pub(crate) fn scan(&mut self, input: &[u8]) -> Option<usize> {
        for (i, &b) in input.iter().enumerate() {
            if b != b'\n' {
                if let Some(slot) = self.line.get_mut(self.len) {
                    *slot = b;
                }
                self.len = self.len.saturating_add(1);
                continue;
            }
            let kept = &self.line[..self.len.min(HeadTail::KEEP)];
            let kept = kept.strip_suffix(b"\r").unwrap_or(kept);
            if self.len <= 1 && kept.is_empty() {
                return Some(i + 1);
            }
            self.upgrade |= handshake::line_upgrades(kept);
            self.len = 0;
        }
        None
    }
}

/// Where a chunked body (RFC 9112 7.1) is being skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkedBody {
    /// In a chunk-size line; `line` counts its bytes so a runaway line is caught.
    Size {
        size: u64,
        digits_done: bool,
        line: u16,
    },
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// In the trailer section, `line` bytes into the current line.
    Trailer {
        line: u16,
    },
}

/// A chunk-size or trailer line longer than this is not HTTP worth following.
pub(crate) const MAX_CHUNK_LINE: u16 = 4096;

impl ChunkedBody {
    pub(crate) fn start() -> ChunkedBody {
        ChunkedBody::Size {
            size: 0,
            digits_done: false,
            line: 0,
        }
    }

    /// Skips body bytes; returns Ok(true) once the body is over, Err on malformed framing.
    pub(crate) fn skip(&mut self, input: &mut &[u8]) -> Result<bool, GiveUp> {
        while let Some((&byte, rest)) = input.split_first() {
            match self {
                ChunkedBody::Data(remaining) => {
                    let take = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    *input = &input[take..];
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        *self = ChunkedBody::DataEnd;
                    }
                    continue;
                }
                ChunkedBody::DataEnd => match byte {
                    b'\r' => {}
                    b'\n' => *self = ChunkedBody::start(),
                    _ => return Err(GiveUp::BadChunkedBody),
                },
                ChunkedBody::Size {
                    size,
                    digits_done,
                    line,
                } => {
                    *line += 1;
                    if *line > MAX_CHUNK_LINE {
                        return Err(GiveUp::BadChunkedBody);
                    }
                    match (byte, *digits_done) {
                        (b'\n', _) if *line > 1 => {
                            *self = if *size == 0 {
                                ChunkedBody::Trailer { line: 0 }
                            } else {
                                ChunkedBody::Data(*size)
                            };
                        }
                        (b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F', false) => {
                            let digit = (byte as char).to_digit(16).unwrap_or(0);
                            *size = size.checked_mul(16).ok_or(GiveUp::BadChunkedBody)?
                                + u64::from(digit);
                        }
                        // Chunk extensions, whitespace and the CR are skipped to the line's end.
                        (_, _) if *line > 1 => *digits_done = true,
                        _ => return Err(GiveUp::BadChunkedBody),
                    }
                }
                ChunkedBody::Trailer { line } => match byte {
                    b'\n' if *line == 0 => {
                        *input = rest;
                        return Ok(true);
                    }
                    b'\n' => *line = 0,
                    b'\r' if *line == 0 => {}
                    _ => {
                        *line += 1;
                        if *line > MAX_CHUNK_LINE {
                            return Err(GiveUp::BadChunkedBody);
                        }
                    }
                },
            }
            *input = rest;
        }
        Ok(false)
    }
}

#[derive(Debug)]
pub(crate) struct PendingRequest {
    /// The request was a HEAD, whose answer has no body whatever its headers say: all that
    /// reading the response needs of its method, so no copy of the method is kept.
    pub(crate) head: bool,
    pub(crate) upgrade: Option<(Box<UpgradeRequest>, Timestamp)>,
}

#[derive(Debug)]
pub(crate) struct HttpState {
    pub(crate) client: HttpSide,
    pub(crate) server: HttpSide,
    pub(crate) request_head: HeadBuf,
    pub(crate) response_head: HeadBuf,
    pub(crate) pending: VecDeque<PendingRequest>,
    /// Client bytes sent after an upgrade request, before its response decides what they are.
    pub(crate) early_client_bytes: Vec<u8>,
    /// Where in `early_client_bytes` client bytes were lost, and how many.
    pub(crate) early_gap: Option<(usize, u64)>,
    pub(crate) awaiting_upgrade: bool,
    /// The connection showed it means to become WebSocket: an upgrade request or a 101.
    pub(crate) intent: bool,
    /// Complete heads parsed, both ways: the connection has spoken HTTP.
    pub(crate) heads: u32,
    /// An upgrade just refused, for the session to keep as its handshake.
    pub(crate) refused: Option<Box<Upgrade>>,
    /// A 101 to WebSocket seen before any client byte (captures of several interfaces, or
    /// reordered, show one before its request): held, with the server's bytes after it, until
    /// the client's first bytes say whether its request follows.
    pub(crate) early_response: Option<Box<EarlyResponse>>,
}

#[derive(Debug)]
pub(crate) struct EarlyResponse {
    response: UpgradeResponse,
    ts: Timestamp,
    /// The server's bytes after the 101: frames, bounded by `MAX_HEAD_LEN`.
    server_bytes: Vec<u8>,
}

impl EarlyResponse {
    /// The response had no request after all: the connection is followed without a handshake
    /// event, whose request half would be empty.
    pub(crate) fn without_request(self) -> HttpOutcome {
        let negotiated = Negotiated::from_server_extensions(&self.response.extensions);
        HttpOutcome::Upgraded {
            upgrade: Box::new(Upgrade {
                request: UpgradeRequest::default(),
                response: self.response,
                accept: AcceptVerdict::Missing,
                negotiated,
            }),
            server_rest: self.server_bytes,
        }
    }
}

/// The completed opening handshake of an upgraded connection.
#[derive(Debug)]
pub struct Upgrade {
    pub request: UpgradeRequest,
    pub response: UpgradeResponse,
    pub accept: AcceptVerdict,
    pub negotiated: Negotiated,
}

pub(crate) enum HttpOutcome {
    Continue,
    /// The HTTP layer cannot follow the connection any more.
    GiveUp(GiveUp),
    Upgraded {
        upgrade: Box<Upgrade>,
        server_rest: Vec<u8>,
    },
}

/// Skips body bytes; Err when the body's framing is broken.
pub(crate) fn skip_body(side: &mut HttpSide, input: &mut &[u8]) -> Result<(), GiveUp> {
    match side {
        HttpSide::SkipBody(remaining) => {
            let take = usize::try_from(*remaining)
                .unwrap_or(usize::MAX)
                .min(input.len());
            *input = &input[take..];
            *remaining -= take as u64;
            if *remaining == 0 {
                *side = HttpSide::Head;
            }
        }
        HttpSide::Chunked(body) => {
            if body.skip(input)? {
                *side = HttpSide::Head;
            }
        }
        HttpSide::Head | HttpSide::HeadTail(_) => {}
    }
    Ok(())
}

pub(crate) fn body_side(body: BodyLength) -> Result<HttpSide, GiveUp> {
    match body {
        BodyLength::None | BodyLength::Fixed(0) => Ok(HttpSide::Head),
        BodyLength::Fixed(n) => Ok(HttpSide::SkipBody(n)),
        BodyLength::Chunked => Ok(HttpSide::Chunked(ChunkedBody::start())),
        BodyLength::UntilClose => Err(GiveUp::BodyUntilClose),
    }
}

/// Counts a give-up; reports it when the connection meant WebSocket or its HTTP broke.
pub(crate) fn count_give_up(
    reason: GiveUp,
    dir: Direction,
    extra: &str,
    intent: bool,
    spoke_http: bool,
    ctx: &mut Context<'_>,
) {
    ctx.stats.http_given_up.counts[reason as usize] += 1;
    if !(intent || (reason.breaks_http() && spoke_http)) {
        return;
    }
    ctx.stats.http_given_up.reported += 1;
    let then = if intent {
        "; frames are looked for mid-stream"
    } else {
        ""
    };
    let detail = format!(
        "{}: {} ({} stream){extra}; wsnoop stopped following its HTTP{then}",
        reason.name(),
        reason.sentence(),
        dir.name()
    );
    ctx.anomaly(Some(dir), AnomalyKind::HttpAbandoned, &detail);
}

/// `input` after the complete HTTP head it starts with, if it starts with one.
pub(crate) fn after_head(dir: Direction, input: &[u8]) -> &[u8] {
    let len = match dir {
        Direction::ClientToServer => handshake::parse_request(input).map(|h| h.map(|h| h.1)),
        Direction::ServerToClient => {
            handshake::parse_response(input, "GET").map(|h| h.map(|h| h.1))
        }
    };
    match len {
        Ok(Some(n)) => &input[n..],
        _ => input,
    }
}

/// A head that had to be parsed leniently, on a connection that means WebSocket.
pub(crate) fn report_malformed(dir: Direction, what: Option<&str>, ctx: &mut Context<'_>) {
    if let Some(what) = what {
        let detail = format!("{what}; it was parsed leniently");
        ctx.anomaly(Some(dir), AnomalyKind::MalformedHttp, &detail);
    }
}

impl HttpState {
    /// What the HTTP layer keeps on the heap beyond its own box, for the memory budget: heads
    /// being read, client bytes held for an upgrade's answer, requests waiting for theirs.
    pub(crate) fn memory(&self) -> usize {
        let pending: usize = self
            .pending
            .iter()
            .map(|p| {
                p.upgrade.as_ref().map_or(0, |(request, _)| {
                    std::mem::size_of::<UpgradeRequest>() + request_memory(request)
                })
            })
            .sum();
        self.request_head.capacity()
            + self.response_head.capacity()
            + self.early_client_bytes.capacity()
            + self.pending.capacity() * std::mem::size_of::<PendingRequest>()
            + pending
            + self.early_response.as_ref().map_or(0, |e| {
                std::mem::size_of::<EarlyResponse>() + e.server_bytes.capacity()
            })
            + self.refused.as_deref().map_or(0, upgrade_memory)
    }

    /// Client bytes while a 101 seen first waits: its request (paired into the handshake) or,
    /// when the capture began between the two, the client's frames.
    fn client_after_early_response(&mut self, input: &[u8], ctx: &mut Context<'_>) -> HttpOutcome {
        if self.request_head.is_empty() && !looks_like_request_start(input) {
            return self.release_early_response(input);
        }
        let (request, used) =
            match take_head(&mut self.request_head, input, handshake::parse_request) {
                Ok(Some(done)) => done,
                Ok(None) => return HttpOutcome::Continue,
                Err(_) => {
                    // Not a request wsnoop can read: what the client sent stays unjudged.
                    self.request_head.clear();
                    return self.release_early_response(&[]);
                }
            };
        self.heads += 1;
        let Some(early) = self.early_response.take() else {
            return HttpOutcome::Continue;
        };
        if !request.upgrade_websocket {
            return HttpOutcome::GiveUp(GiveUp::ResponseWithoutRequest);
        }
        let rest = input.get(used..).unwrap_or_default();
        if rest.len() > MAX_HEAD_LEN {
            return HttpOutcome::GiveUp(GiveUp::EarlyClientBytes);
        }
        self.early_client_bytes.extend_from_slice(rest);
        let EarlyResponse {
            response,
            ts,
            server_bytes,
        } = *early;
        report_malformed(Direction::ClientToServer, request.malformed.as_deref(), ctx);
        // Captured after its response: the time between them says nothing of the server.
        let latency = ts.seconds_since(ctx.ts).abs();
        let (accept, negotiated) = report_handshake(&request, &response, true, latency, ctx);
        HttpOutcome::Upgraded {
            upgrade: Box::new(Upgrade {
                request,
                response,
                accept,
                negotiated,
            }),
            server_rest: server_bytes,
        }
    }

    /// The held 101 answers no request the capture will show: the connection is upgraded
    /// without one, and `client` (frames) is decoded after the server's held bytes.
    fn release_early_response(&mut self, client: &[u8]) -> HttpOutcome {
        let Some(early) = self.early_response.take() else {
            return HttpOutcome::Continue;
        };
        if self.early_client_bytes.len() + client.len() > MAX_HEAD_LEN {
            return HttpOutcome::GiveUp(GiveUp::EarlyClientBytes);
        }
        self.early_client_bytes.extend_from_slice(client);
        early.without_request()
    }

    /// A head could not be taken: a head cut short may still show that the connection meant
    /// WebSocket.
    pub(crate) fn head_failed(&mut self, reason: GiveUp) -> HttpOutcome {
        self.note_partial_heads();
        HttpOutcome::GiveUp(reason)
    }

    /// What the heads held so far say of WebSocket intent: an `Upgrade: websocket` line in
    /// either, or a response's status line switching protocols.
    pub(crate) fn note_partial_heads(&mut self) {
        self.intent |= handshake::partial_head_upgrades(&self.request_head)
            || handshake::partial_head_upgrades(&self.response_head)
            || self.response_head.get(8..13) == Some(&b" 101 "[..]);
    }

    pub(crate) fn client_data(&mut self, mut input: &[u8], ctx: &mut Context<'_>) -> HttpOutcome {
        if self.early_response.is_some() {
            return self.client_after_early_response(input, ctx);
        }
        while !input.is_empty() {
            if self.awaiting_upgrade {
                if self.early_client_bytes.len() + input.len() > MAX_HEAD_LEN {
                    return HttpOutcome::GiveUp(GiveUp::EarlyClientBytes);
                }
                self.early_client_bytes.extend_from_slice(input);
                return HttpOutcome::Continue;
            }
            if let HttpSide::HeadTail(tail) = &mut self.client {
                if tail.scan(input).is_none() {
                    return HttpOutcome::Continue;
                }
                self.intent |= tail.upgrade;
                return HttpOutcome::GiveUp(GiveUp::HeadTooLarge);
            }
            if !matches!(self.client, HttpSide::Head) {
                if let Err(reason) = skip_body(&mut self.client, &mut input) {
                    return HttpOutcome::GiveUp(reason);
                }
                continue;
            }
            if self.request_head.is_empty() && !looks_like_request_start(input) {
                return HttpOutcome::GiveUp(GiveUp::NotHttp);
            }
            let held = self.request_head.len();
            let (request, used) =
                match take_head(&mut self.request_head, input, handshake::parse_request) {
                    Ok(Some(done)) => done,
                    Ok(None) => return HttpOutcome::Continue,
                    Err(GiveUp::HeadTooLarge) => {
                        // Read on to the head's end: an upgrade may come after the padding.
                        let tail = HeadTail::after(&self.request_head);
                        input = &input[self.request_head.len() - held..];
                        self.request_head = HeadBuf::default();
                        self.client = HttpSide::HeadTail(tail);
                        continue;
                    }
                    Err(reason) => return self.head_failed(reason),
                };
            input = &input[used..];
            self.heads += 1;
            if self.pending.len() >= MAX_PENDING_REQUESTS {
                return HttpOutcome::GiveUp(GiveUp::TooManyPipelined);
            }
            let head = request.method().eq_ignore_ascii_case("HEAD");
            if request.upgrade_websocket {
                self.intent = true;
                report_malformed(Direction::ClientToServer, request.malformed.as_deref(), ctx);
                self.awaiting_upgrade = true;
                self.pending.push_back(PendingRequest {
                    head,
                    upgrade: Some((Box::new(request), ctx.ts)),
                });
            } else if request.method().eq_ignore_ascii_case("CONNECT") {
                // A tunnel: what follows its 2xx is another protocol, for the proxy to relay.
                return HttpOutcome::GiveUp(GiveUp::OtherProtocol);
            } else {
                self.client = match body_side(request.body) {
                    Ok(side) => side,
                    Err(reason) => return HttpOutcome::GiveUp(reason),
                };
                self.pending.push_back(PendingRequest {
                    head,
                    upgrade: None,
                });
            }
        }
        HttpOutcome::Continue
    }

    pub(crate) fn server_data(&mut self, mut input: &[u8], ctx: &mut Context<'_>) -> HttpOutcome {
        if let Some(early) = &mut self.early_response {
            if early.server_bytes.len() + input.len() > MAX_HEAD_LEN {
                // The client stays silent too long to wait for its request.
                let mut outcome = self.release_early_response(&[]);
                if let HttpOutcome::Upgraded { server_rest, .. } = &mut outcome {
                    server_rest.extend_from_slice(input);
                }
                return outcome;
            }
            early.server_bytes.extend_from_slice(input);
            return HttpOutcome::Continue;
        }
        while !input.is_empty() {
            if !matches!(self.server, HttpSide::Head) {
                if let Err(reason) = skip_body(&mut self.server, &mut input) {
                    return HttpOutcome::GiveUp(reason);
                }
                continue;
            }
            if self.response_head.is_empty() && !looks_like_response_start(input) {
                return HttpOutcome::GiveUp(GiveUp::NotHttp);
            }
            // With no request seen (the capture began between request and response), a GET
            // is the only request a 101 to WebSocket can answer.
            let method = match self.pending.front() {
                Some(PendingRequest { head: true, .. }) => "HEAD",
                Some(_) | None => "GET",
            };
            let (response, used) = match take_head(&mut self.response_head, input, |b| {
                handshake::parse_response(b, method)
            }) {
                Ok(Some(done)) => done,
                Ok(None) => return HttpOutcome::Continue,
                Err(reason) => return self.head_failed(reason),
            };
            input = &input[used..];
            self.heads += 1;
            if response.status != 101 && (100..200).contains(&response.status) {
                continue; // an interim response; the final one follows
            }
            let Some(pending) = self.pending.pop_front() else {
                if response.status == 101 && response.upgrade_websocket {
                    report_malformed(
                        Direction::ServerToClient,
                        response.malformed.as_deref(),
                        ctx,
                    );
                    let early = Box::new(EarlyResponse {
                        response,
                        ts: ctx.ts,
                        server_bytes: input.to_vec(),
                    });
                    // Before any client byte: its request may still come (reordered).
                    if self.heads == 1 && self.request_head.is_empty() {
                        self.intent = true;
                        self.early_response = Some(early);
                        return HttpOutcome::Continue;
                    }
                    return early.without_request();
                }
                return HttpOutcome::GiveUp(GiveUp::ResponseWithoutRequest);
            };
            match pending.upgrade {
                Some((request, request_ts)) => {
                    let upgraded = response.status == 101 && response.upgrade_websocket;
                    let latency = ctx.ts.seconds_since(request_ts);
                    let (accept, negotiated) =
                        report_handshake(&request, &response, upgraded, latency, ctx);
                    if !upgraded {
                        let (status, body) = (response.status, response.body);
                        self.refused = Some(Box::new(Upgrade {
                            request: *request,
                            response,
                            accept,
                            negotiated,
                        }));
                        if status == 101 {
                            // Switched, but not to WebSocket: what follows is not HTTP.
                            return HttpOutcome::GiveUp(GiveUp::OtherProtocol);
                        }
                        // Refused, the connection may go on: a retry with credentials, another
                        // path. Following it keeps a refused decoy from hiding a real upgrade.
                        self.awaiting_upgrade = false;
                        self.intent = false;
                        self.server = match body_side(body) {
                            Ok(side) => side,
                            Err(reason) => return HttpOutcome::GiveUp(reason),
                        };
                        if self.early_gap.is_some() {
                            return HttpOutcome::GiveUp(GiveUp::Gap);
                        }
                        let early = std::mem::take(&mut self.early_client_bytes);
                        match self.client_data(&early, ctx) {
                            HttpOutcome::Continue => continue,
                            other => return other,
                        }
                    }
                    return HttpOutcome::Upgraded {
                        upgrade: Box::new(Upgrade {
                            request: *request,
                            response,
                            accept,
                            negotiated,
                        }),
                        server_rest: input.to_vec(),
                    };
                }
                None if response.status == 101 => {
                    // A 101 that says WebSocket to a request that did not ask for it.
                    self.intent |= response.upgrade_websocket;
                    return HttpOutcome::GiveUp(GiveUp::OtherProtocol);
                }
                None => {
                    self.server = match body_side(response.body) {
                        Ok(side) => side,
                        Err(reason) => return HttpOutcome::GiveUp(reason),
                    };
                }
            }
        }
        HttpOutcome::Continue
    }
}

/// A request and its response make a handshake: counted, reported with what breaks its rules.
fn report_handshake(
    request: &UpgradeRequest,
    response: &UpgradeResponse,
    upgraded: bool,
    latency: f64,
    ctx: &mut Context<'_>,
) -> (AcceptVerdict, Negotiated) {
    let accept = handshake::accept_verdict(request, response);
    ctx.stats.handshakes += 1;
    ctx.stats.upgrades += u64::from(upgraded);
    ctx.sink.event(&Event::Handshake(HandshakeEvent {
        ts: ctx.ts,
        flow: ctx.flow,
        request,
        response,
        accept,
        upgraded,
        latency,
        tls: ctx.tls,
    }));
    report_malformed(
        Direction::ServerToClient,
        response.malformed.as_deref(),
        ctx,
    );
    check_handshake(request, response, accept, ctx);
    (
        accept,
        Negotiated::from_server_extensions(&response.extensions),
    )
}

fn strings(s: &[String]) -> usize {
    s.iter().map(String::capacity).sum::<usize>() + std::mem::size_of_val(s)
}

fn option(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::capacity)
}

/// What a request head keeps on the heap, for the memory budget.
pub(crate) fn request_memory(r: &UpgradeRequest) -> usize {
    r.text_capacity() + strings(&r.protocols) + strings(&r.extensions) + option(&r.malformed)
}

/// What a kept handshake costs, its box included, for the memory budget.
pub(crate) fn upgrade_memory(u: &Upgrade) -> usize {
    let r = &u.response;
    std::mem::size_of::<Upgrade>()
        + request_memory(&u.request)
        + r.text_capacity()
        + strings(&r.extensions)
        + option(&r.malformed)
}
