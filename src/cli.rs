//! The command line: what a user can ask for, parsed by clap. `main` turns it into the
//! library's options.

use std::path::PathBuf;

use clap::Parser;

use wsnoop::analyzer::FlowLimits;
use wsnoop::net::defrag::DefragLimits;
use wsnoop::net::tcp::ReassemblyLimits;
use wsnoop::parallel;
use wsnoop::report::Limits;

/// Passive WebSocket traffic analyzer: every handshake and frame of every connection, from a
/// capture file or a live interface.
#[derive(Parser, Debug)]
#[command(
    name = "wsnoop",
    version,
    about,
    after_help = "\
Examples:
  wsnoop -r capture.pcap                      every handshake and frame, one line each
  wsnoop -r capture.pcap --json | jq .        JSON Lines
  wsnoop -r big.pcap tcp port 8080            with a BPF filter, as tcpdump takes it
  wsnoop -i eth0 port 8080                    live, on a server interface
  tcpdump -i eth0 -U -w - port 8080 | wsnoop -r -"
)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    #[command(flatten)]
    pub(crate) source: SourceArgs,

    /// List the capture interfaces and exit.
    #[arg(short = 'D', long = "list-interfaces")]
    pub(crate) list_interfaces: bool,

    /// Emit JSON Lines instead of text (the same as --format json).
    #[arg(long, conflicts_with = "format")]
    pub(crate) json: bool,

    /// Output format: text (a line per event, for people), json (JSON Lines, every field
    /// wsnoop has) or eve (Suricata's EVE JSON, for SIEM pipelines that read Suricata's logs).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub(crate) format: Option<OutputFormat>,

    /// Append events to this file instead of writing them to standard output; on SIGHUP the
    /// file is opened again (by name), so that logrotate can move it away.
    #[arg(long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,

    /// Stop after this many frames.
    #[arg(short = 'c', value_name = "COUNT")]
    pub(crate) count: Option<u64>,

    /// As tcpdump's: wsnoop never looks names up, so -n (and -nn) change nothing.
    #[arg(short = 'n', action = clap::ArgAction::Count)]
    pub(crate) numeric: u8,

    /// Line-buffered output, as tcpdump's -l: each packet's events are written at once, also
    /// when reading a file.
    #[arg(short = 'l')]
    pub(crate) line_buffered: bool,

    /// Packet-buffered output, as tcpdump's -U (the same as -l here).
    #[arg(short = 'U')]
    pub(crate) packet_buffered: bool,

    /// Text lines' time, as tcpdump's: -t none, -tt seconds since the epoch, -ttt since the
    /// previous line, -tttt date and time, -ttttt since the first line (-ttt and -ttttt decode
    /// on one thread).
    #[arg(short = 't', action = clap::ArgAction::Count)]
    pub(crate) time: u8,

    /// Text output also shows each payload in hex and ASCII, under its line (-XX the same).
    #[arg(short = 'X', action = clap::ArgAction::Count)]
    pub(crate) hex: u8,

    /// Dates and times in UTC rather than local time (text output).
    #[arg(long)]
    pub(crate) utc: bool,

    /// Text output: JSON texts also pretty-printed, indented under their line.
    #[arg(long)]
    pub(crate) pretty: bool,

    /// Print only this connection's events (the JSON's "flow"; repeatable). Connections keep
    /// their numbers.
    #[arg(long = "flow", value_name = "N")]
    pub(crate) flows: Vec<u64>,

    /// Print only the connections of this client (an address, with a port or not; repeatable).
    #[arg(long = "client", value_name = "ADDR[:PORT]")]
    pub(crate) clients: Vec<String>,

    /// Print only the connections whose upgrade request's URI contains this.
    #[arg(long, value_name = "SUBSTRING")]
    pub(crate) uri: Option<String>,

    /// Print only the frames, messages and anomalies of this direction.
    #[arg(long, value_enum, value_name = "DIR")]
    pub(crate) dir: Option<DirChoice>,

    /// Print only the frames and messages whose payload matches this regular expression
    /// (Rust's regex syntax; `(?i)` ignores case). It searches what an event carries: the
    /// unmasked, inflated payload, its first --max-payload bytes, as bytes (binary payloads
    /// too). A compressed message's last frame goes with its message's text, a close frame by
    /// its reason; raw bytes are written `(?-u:\xca\xfe)`. Handshakes, closes and anomalies
    /// are not payload and are not printed; a connection's flow record (JSON, --summary) is
    /// printed when something of it matched. --flow N with --grep shows one connection's matches.
    #[arg(long, value_name = "REGEX")]
    pub(crate) grep: Option<String>,

    /// On a terminal, let long lines wrap instead of cutting them at its width with a `…`
    /// (text output; lines are never cut in a pipe or a file).
    #[arg(long)]
    pub(crate) wrap: bool,

    /// Payload bytes kept per frame in output (0 keeps none; control frames keep their close
    /// code and reason regardless).
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    pub(crate) max_payload: usize,

    /// Largest message, after decompression, that is inflated and checked whole; beyond it a
    /// message is cut and reported (a decompression bomb costs no more than this).
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub(crate) max_message: u64,

    /// Which data events to print: frames, messages or all [default: frames for text output,
    /// all for --json]. Handshakes, closes and anomalies are always printed.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub(crate) show: Option<Show>,

    /// In text output, end with a table of every WebSocket connection (the JSON "flow" events).
    #[arg(long)]
    pub(crate) summary: bool,

    /// Decode with this many threads [default: as many as CPUs reading a file, one live]: the
    /// one reading the capture and N-1 workers, connections shared out among them; the output
    /// is the same whatever N (1 asks for one thread). With -c the run uses one thread.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=i64::from(parallel::MAX_THREADS)))]
    pub(crate) threads: Option<u16>,

    /// Decode everything but print no events: only the counts at the end, on stderr.
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,

    /// Treat connections to this server port as WebSocket even without a captured handshake,
    /// as Wireshark's Decode As does (repeatable).
    #[arg(long = "ws-port", value_name = "PORT")]
    pub(crate) ws_ports: Vec<u16>,

    /// Do not recognise WebSocket connections from their frames alone when the handshake was
    /// not captured.
    #[arg(long)]
    pub(crate) no_heuristics: bool,

    /// Connections tracked at once; beyond it the longest-idle are ended ("evicted").
    #[arg(long, value_name = "N", default_value_t = FlowLimits::default().max_flows)]
    pub(crate) max_flows: usize,

    /// End a connection after this many seconds without a packet, in capture time.
    #[arg(long, value_name = "SECONDS", default_value_t = FlowLimits::default().idle_timeout_secs)]
    pub(crate) idle_timeout: i64,

    /// Out-of-order bytes held per direction while waiting for a missing segment.
    #[arg(long, value_name = "BYTES", default_value_t = ReassemblyLimits::default().max_bytes)]
    pub(crate) max_ooo: usize,

    /// Bytes the fragments of incomplete IP datagrams may hold together; beyond it the oldest
    /// datagrams are dropped (and counted on stderr).
    #[arg(long, value_name = "BYTES", default_value_t = DefragLimits::default().max_bytes)]
    pub(crate) max_frag_bytes: usize,

    /// What wsnoop's connections, fragments and output in flight may take together (K, M, G:
    /// KiB, MiB, GiB); beyond it the longest-idle connections give up what they hold, and are
    /// ended if that is not enough (said on stderr at the end).
    #[arg(long, value_name = "BYTES", default_value = "1G", value_parser = parse_bytes)]
    pub(crate) max_memory: usize,

    /// Also write the WebSocket sessions to this HAR file, as Chrome's DevTools export them
    /// (Network, Import HAR): handshakes, messages and control frames, within bounds.
    #[arg(long, value_name = "FILE")]
    pub(crate) har: Option<PathBuf>,

    /// Also write every packet read to this pcap file.
    #[arg(short = 'w', value_name = "FILE")]
    pub(crate) write: Option<PathBuf>,

    /// Kernel capture buffer size in KiB [default: 32768, 65536 on "any"].
    #[arg(
        short = 'B',
        long = "buffer-size",
        value_name = "KiB",
        value_parser = clap::value_parser!(i32).range(1..=2_097_151)
    )]
    pub(crate) buffer_kib: Option<i32>,

    /// After opening the interface, drop privileges to this user.
    #[arg(short = 'Z', long = "relinquish-privileges", value_name = "USER")]
    pub(crate) user: Option<String>,
}

/// Where packets come from: the same for every command.
#[derive(clap::Args, Debug)]
pub(crate) struct SourceArgs {
    /// Read packets from a pcap or pcapng file ("-" for standard input).
    #[arg(short = 'r', value_name = "FILE", conflicts_with = "interface")]
    pub(crate) read: Option<PathBuf>,

    /// Capture live on this interface ("any" for all). Without -i and -r, libpcap's default device.
    #[arg(short = 'i', value_name = "IFACE")]
    pub(crate) interface: Option<String>,

    /// Do not put the interface into promiscuous mode.
    #[arg(short = 'p', long = "no-promiscuous-mode")]
    pub(crate) no_promiscuous: bool,

    /// Stop capturing after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) duration: Option<f64>,

    /// Colour in text output.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub(crate) color: ColorChoice,

    /// Decrypt TLS (wss) with the secrets in this NSS key log (repeatable): what browsers write
    /// to SSLKEYLOGFILE. Default: $SSLKEYLOGFILE. Live, the file is followed as it grows.
    #[arg(long, value_name = "FILE")]
    pub(crate) keylog: Vec<PathBuf>,

    /// A BPF filter expression, as tcpdump takes it (e.g. tcp port 8080). Options may follow
    /// it, as with tcpdump on Linux.
    #[arg(value_name = "FILTER")]
    pub(crate) filter: Vec<String>,
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    /// Look at every connection attempt and WebSocket session and say in plain words what is
    /// wrong: closed ports, dropped SYNs, refused upgrades, TLS, one-way or idle sessions,
    /// abnormal closes, protocol violations. Exits 1 when something is wrong, 0 when healthy.
    #[command(after_help = "\
Examples:
  wsnoop diagnose -r capture.pcap
  wsnoop diagnose -i eth0 --duration 60 --port 8080 --port 8443
  wsnoop diagnose -r capture.pcap --json | jq 'select(.severity != \"info\")'")]
    Diagnose(DiagnoseArgs),
    /// Print a shell completion script: `wsnoop completions bash > /etc/bash_completion.d/wsnoop`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `wsnoop man > /usr/local/share/man/man1/wsnoop.1`.
    Man,
    /// Write one self-contained HTML page to open in a browser: every connection, its
    /// messages DevTools-style with a filter, a timeline, and the diagnosis at the top.
    #[command(after_help = "\
Examples:
  wsnoop report -r capture.pcap -o report.html
  wsnoop report -i eth0 --duration 60 -o report.html --har session.har port 8080")]
    Report(ReportArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct DiagnoseArgs {
    #[command(flatten)]
    pub(crate) source: SourceArgs,

    /// A server port to check (repeatable); default: every port seen.
    #[arg(long = "port", value_name = "PORT")]
    pub(crate) ports: Vec<u16>,

    /// A session this long without data frames is reported idle.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub(crate) idle: f64,

    /// Findings as JSON Lines.
    #[arg(long)]
    pub(crate) json: bool,

    /// Decode with this many threads [default: as many as CPUs reading a file, one live]; the
    /// findings are the same whatever N.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=i64::from(parallel::MAX_THREADS)))]
    pub(crate) threads: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Show {
    Frames,
    Messages,
    All,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DirChoice {
    C2s,
    S2c,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutputFormat {
    Text,
    Json,
    Eve,
}

/// A size in bytes, with an optional K, M or G (powers of 1024), as `--max-memory` takes it.
fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, shift) = match s.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&s[..s.len() - 1], 10),
        Some(b'M') => (&s[..s.len() - 1], 20),
        Some(b'G') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: usize = digits
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size: a number of bytes, or with K, M or G"))?;
    let bytes = n
        .checked_mul(1usize << shift)
        .ok_or_else(|| format!("{s} is more bytes than this machine can address"))?;
    if bytes < 1 << 20 {
        return Err(format!("{s} is less than the least wsnoop runs in (1M)"));
    }
    Ok(bytes)
}

#[derive(clap::Args, Debug)]
pub(crate) struct ReportArgs {
    #[command(flatten)]
    pub(crate) source: SourceArgs,

    /// The HTML file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub(crate) output: PathBuf,

    /// Also write a HAR file, as the plain run's --har.
    #[arg(long, value_name = "FILE")]
    pub(crate) har: Option<PathBuf>,

    /// Payload bytes kept per message and control frame.
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    pub(crate) max_payload: usize,

    /// Messages and control frames kept per connection (at most twice as many in all); past
    /// it they are counted, and the page and the HAR file say so.
    #[arg(long, value_name = "N", default_value_t = Limits::default().messages_per_connection)]
    pub(crate) max_messages: usize,

    /// A server port the diagnosis checks (repeatable); default: every port seen.
    #[arg(long = "port", value_name = "PORT")]
    pub(crate) ports: Vec<u16>,

    /// Treat connections to this server port as WebSocket without a captured handshake.
    #[arg(long = "ws-port", value_name = "PORT")]
    pub(crate) ws_ports: Vec<u16>,

    /// A session this long without data frames is reported idle.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub(crate) idle: f64,

    /// Decode with this many threads [default: as many as CPUs reading a file, one live]; the
    /// report is the same whatever N.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=i64::from(parallel::MAX_THREADS)))]
    pub(crate) threads: Option<u16>,
}
