//! The wsnoop command line: a thin front end over the library's pipeline.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

use wsnoop::analyzer::budget::MemoryPlan;
use wsnoop::analyzer::{
    Analyzer, AnalyzerOptions, FlowLimits, MidstreamOptions, Stats, TlsOptions,
};
use wsnoop::capture::{self, LiveOptions, Source};
use wsnoop::context::WsOptions;
use wsnoop::diagnose::{self, DiagnoseOptions, Diagnoser, Severity};
use wsnoop::event::{Direction, Grep, Selection, Selector};
use wsnoop::net::defrag::DefragLimits;
use wsnoop::net::tcp::ReassemblyLimits;
use wsnoop::output::{
    Buffered, CutLines, EveWriter, JsonWriter, OutputSink, Quiet, ReopeningFile, SelectedOutput,
    TextStyle, TextWriter, TimeFormat, stdout_columns,
};
use wsnoop::parallel::{self, Format};
use wsnoop::tls::KeyStore;
use wsnoop::{RunControl, RunEnd};

/// A line on stderr. Unlike `eprintln!`, which panics when stderr is a pipe whose reader has
/// gone, a failed write is ignored: the run ends with the exit code it would have had.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod cli;
// After the macro, which it uses.
mod process;
mod report_cli;
mod say;

use cli::{Cli, ColorChoice, Command, DiagnoseArgs, DirChoice, OutputFormat, Show, SourceArgs};
use process::{
    REOPEN, STOP, drop_privileges, install_hangup_handler, install_signal_handlers, print_all,
    reader_gone, stdout_was_closed,
};
use say::{
    filter_hint, report, say_drops, say_fragments_dropped, say_memory_plan, say_memory_shed,
    say_what_was_missed,
};

/// How every run stops: Ctrl-C or SIGTERM, `--duration`; drops are said every 5 s at most.
fn run_control<'a>(
    duration: Option<Duration>,
    on_drops: &'a mut dyn FnMut(capture::LiveStats),
    tls: &'a TlsOptions,
) -> RunControl<'a> {
    RunControl {
        stop: &STOP,
        duration,
        on_drops,
        drop_report_interval: Duration::from_secs(5),
        keys: tls.keys.as_deref(),
        unbuffered: false,
    }
}

/// The run's TLS secrets: the --keylog files, else $SSLKEYLOGFILE; a capture file may add its
/// own (pcapng Decryption Secrets Blocks). Live, the key logs are followed as they grow. With
/// none, TLS connections are still followed far enough to say why they stay encrypted.
fn tls_options(keylogs: &[PathBuf], source: &Source) -> anyhow::Result<TlsOptions> {
    let mut paths = keylogs.to_vec();
    if paths.is_empty()
        && let Some(path) = std::env::var_os("SSLKEYLOGFILE").filter(|p| !p.is_empty())
    {
        say!(
            "wsnoop: decrypting TLS with the key log in SSLKEYLOGFILE ({})",
            std::path::Path::new(&path).display()
        );
        paths.push(PathBuf::from(path));
    }
    let keys = KeyStore::new();
    for path in &paths {
        keys.follow(path)?;
    }
    keys.set_growing(source.is_live() && !paths.is_empty());
    Ok(TlsOptions {
        keys: Some(std::sync::Arc::new(keys)),
        keys_expected: !paths.is_empty(),
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if cli.list_interfaces {
        let mut out = io::stdout().lock();
        for line in capture::list_devices()? {
            writeln!(out, "{line}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if cli.write.as_deref() == Some(std::path::Path::new("-")) && !cli.quiet && cli.output.is_none()
    {
        bail!(
            "-w - writes the capture to standard output, where the events would go too: add -q, \
             or send the events elsewhere with --output FILE"
        );
    }
    let duration = seconds(cli.source.duration, "--duration")?;
    // -c stops at the packet where one thread's frame count reaches N, and its counts are
    // those of the packets read until then: one thread's work.
    let time = match cli.time {
        0 => TimeFormat::Clock,
        1 => TimeFormat::None,
        2 => TimeFormat::Epoch,
        3 => TimeFormat::Delta,
        4 => TimeFormat::DateTime,
        _ => TimeFormat::SinceFirst,
    };
    let style = TextStyle {
        time,
        utc: cli.utc,
        hex_dump: cli.hex > 0,
        pretty: cli.pretty,
    };
    // -c, and times relative to other lines, are one thread's: its counts, its lines.
    let one_thread =
        cli.count.is_some() || matches!(time, TimeFormat::Delta | TimeFormat::SinceFirst);
    let threads = if one_thread {
        1
    } else {
        let live = cli.source.read.is_none();
        cli.threads
            .map_or_else(|| parallel::default_threads(live), usize::from)
    };
    install_signal_handlers();
    let mut source = open_source(
        cli.source.read.as_deref(),
        LiveOptions {
            device: cli.source.interface.clone(),
            promiscuous: !cli.source.no_promiscuous,
            buffer_kib: cli.buffer_kib,
        },
        &cli.source.filter,
    )?;
    // As tcpdump does: the -w file is created by the user -Z names, not by root.
    if let Some(user) = &cli.user {
        drop_privileges(user)?;
    }
    if let Some(path) = &cli.write {
        source.save_to(path)?;
    }
    if source.is_live() {
        // As tcpdump says it; also tells a script that packets are being captured now.
        say!(
            "listening on {}, link-type {}, snapshot length {} bytes",
            source.name(),
            source.link_type_name(),
            capture::SNAPLEN
        );
    }
    let format = if cli.json {
        OutputFormat::Json
    } else {
        cli.format.unwrap_or(OutputFormat::Text)
    };
    // EVE writes the last frame of a message with the message's payload: it needs both.
    let show = match format {
        OutputFormat::Eve => Show::All,
        OutputFormat::Json => cli.show.unwrap_or(Show::All),
        OutputFormat::Text => cli.show.unwrap_or(Show::Frames),
    };
    let plan = MemoryPlan::new(cli.max_memory, cli.max_flows.max(1), cli.max_frag_bytes);
    say_memory_plan(&plan);
    let options = AnalyzerOptions {
        ws: WsOptions {
            // -q prints no event: keep no payload and build no frame or message event.
            max_payload: if cli.quiet && cli.har.is_none() {
                0
            } else {
                cli.max_payload
            },
            max_frames: cli.count,
            max_message: cli.max_message,
            // The HAR file takes every message and control frame, whatever is printed; the text
            // frame view shows a compressed message's inflated text on its last frame: it takes
            // the message events without printing them.
            show_frames: cli.har.is_some() || (!cli.quiet && show != Show::Messages),
            show_messages: cli.har.is_some()
                || (!cli.quiet
                    && (show != Show::Frames
                        || format == OutputFormat::Text
                        || cli.grep.is_some())),
        },
        reassembly: ReassemblyLimits {
            max_bytes: cli.max_ooo,
            ..ReassemblyLimits::default()
        },
        flows: FlowLimits {
            max_flows: plan.max_flows,
            idle_timeout_secs: cli.idle_timeout.max(1),
        },
        defrag: DefragLimits {
            max_bytes: plan.max_frag_bytes,
        },
        memory: plan.share(1),
        midstream: MidstreamOptions {
            ws_ports: cli.ws_ports.clone(),
            heuristics: !cli.no_heuristics,
        },
        report_connections: false,
        tls: tls_options(&cli.source.keylog, &source)?,
        // --grep decides a compressed message's last frame by its message: JSON's frame view
        // takes the messages then, without printing them.
        select: selection(
            &cli,
            cli.har.is_none() && format != OutputFormat::Text && show == Show::Frames,
        )?,
        // The run sets it from the source it reads.
        replay: None,
    };
    let har = cli
        .har
        .as_deref()
        .map(report_cli::HarFile::create)
        .transpose()?;
    let stdout = io::stdout();
    let out: Box<dyn Write + Send> = match &cli.output {
        Some(path) => {
            install_hangup_handler();
            Box::new(
                ReopeningFile::new(path, &REOPEN)
                    .with_context(|| format!("--output {}", path.display()))?,
            )
        }
        // A terminal's lines are cut at its width rather than wrapped, unless --wrap.
        None => match stdout_columns() {
            Some(width) if format == OutputFormat::Text && !cli.wrap => {
                Box::new(CutLines::new(stdout, width).following_stdout())
            }
            _ => Box::new(stdout),
        },
    };
    let color = cli.output.is_none() && use_color(cli.source.color, io::stdout().is_terminal());
    let mut on_drops = say_drops;
    let mut control = run_control(duration, &mut on_drops, &options.tls);
    control.unbuffered = cli.line_buffered || cli.packet_buffered;
    let (end, stats) = if threads > 1 && har.is_none() {
        let format = match format {
            _ if cli.quiet => Format::Quiet,
            OutputFormat::Json => Format::Json(source.precision()),
            OutputFormat::Eve => Format::Eve {
                pcap_cnt: !source.is_live(),
            },
            OutputFormat::Text => Format::Text {
                precision: source.precision(),
                color,
                summary: cli.summary,
                messages: show != Show::Frames,
                style,
            },
        };
        parallel::run(&mut source, &options, threads, format, out, control)?
    } else {
        let writer = Buffered::with_capacity(64 * 1024, out);
        let mut sink: Box<dyn OutputSink + Send> = match format {
            _ if cli.quiet => Box::new(Quiet),
            OutputFormat::Json => Box::new(JsonWriter::new(writer, source.precision())),
            OutputFormat::Eve => Box::new(EveWriter::new(writer, !source.is_live())),
            OutputFormat::Text => {
                let mut text = TextWriter::new(writer, source.precision(), color).with_style(style);
                if show == Show::Frames {
                    text = text.without_message_lines();
                }
                Box::new(if cli.summary {
                    text.with_summary()
                } else {
                    text
                })
            }
        };
        // What the writer takes: as the analyzer's options say without --har.
        let shown = (
            !cli.quiet && show != Show::Messages,
            !cli.quiet && (show != Show::Frames || format == OutputFormat::Text),
        );
        if let Some(har) = har {
            har.run(sink, shown, &mut source, &options, threads, control)?
        } else {
            let mut analyzer = Analyzer::new(options.clone());
            if let Some(selector) = Selector::new(&options.select) {
                sink = Box::new(SelectedOutput {
                    inner: sink,
                    selector,
                });
            }
            let end = wsnoop::run(&mut source, &mut analyzer, sink.as_mut(), control)?;
            (end, analyzer.stats())
        }
    };
    let mut stats = stats;
    if let Some(file) = source.file_stats() {
        stats.add_file(&file);
    }
    say_fragments_dropped(&stats, plan.max_frag_bytes);
    say_memory_shed(&stats, plan.max_memory);
    if cli.quiet || source.is_live() || end == RunEnd::Interrupted {
        report(&stats, source.live_stats());
    }
    say_what_was_missed(&stats, plan.max_flows);
    Ok(ExitCode::SUCCESS)
}

/// A capture file when `-r` was given, else a live capture; with the BPF filter applied.
fn open_source(
    read: Option<&std::path::Path>,
    live: LiveOptions,
    filter: &[String],
) -> anyhow::Result<Source> {
    let mut source = match read {
        Some(path) => Source::open_file(path)?,
        None => Source::open_live(&live)?,
    };
    if !filter.is_empty() {
        let expression = filter.join(" ");
        if let Err(e) = source.set_filter(&expression) {
            return Err(match filter_hint(&expression) {
                Some(hint) => anyhow::anyhow!("{e}\n{hint}"),
                None => e.into(),
            });
        }
    }
    Ok(source)
}

fn seconds(value: Option<f64>, flag: &str) -> anyhow::Result<Option<Duration>> {
    match value {
        Some(secs) if !(secs.is_finite() && secs >= 0.0) => {
            bail!("{flag} must be a number of seconds")
        }
        Some(secs) => Ok(Some(Duration::from_secs_f64(secs))),
        None => Ok(None),
    }
}

fn use_color(choice: ColorChoice, terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => terminal && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// `--flow`, `--client`, `--uri`, `--dir`, `--grep`; `frame_view`: messages are not printed.
fn selection(cli: &Cli, frame_view: bool) -> anyhow::Result<Selection> {
    let clients = cli
        .clients
        .iter()
        .map(|c| {
            if let Ok(addr) = c.parse::<std::net::SocketAddr>() {
                return Ok((addr.ip(), Some(addr.port())));
            }
            c.trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .map(|ip| (ip, None))
                .with_context(|| {
                    format!("--client {c}: not an address (10.0.0.1, 10.0.0.1:5000, [::1]:5000)")
                })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Selection {
        flows: cli.flows.clone(),
        clients,
        uri: cli.uri.clone(),
        dir: cli.dir.map(|d| match d {
            DirChoice::C2s => Direction::ClientToServer,
            DirChoice::S2c => Direction::ServerToClient,
        }),
        grep: cli
            .grep
            .as_deref()
            .map(Grep::new)
            .transpose()
            .context("--grep")?,
        hide_messages: cli.grep.is_some() && frame_view,
    })
}

/// A subcommand's run into a sink that takes events (the diagnoser, the report's): one
/// thread, or `threads` merged into one thread's order. The counts include the file's.
fn run_events(
    source: &mut Source,
    options: &AnalyzerOptions,
    threads: Option<u16>,
    duration: Option<Duration>,
    sink: &mut (dyn OutputSink + Send),
) -> anyhow::Result<Stats> {
    let mut on_drops = say_drops;
    let control = run_control(duration, &mut on_drops, &options.tls);
    let live = source.is_live();
    let threads = threads.map_or_else(|| parallel::default_threads(live), usize::from);
    let mut stats = if threads > 1 {
        parallel::run_events(source, options, threads, sink, control)?.1
    } else {
        let mut analyzer = Analyzer::new(options.clone());
        wsnoop::run(source, &mut analyzer, sink, control)?;
        analyzer.stats()
    };
    if let Some(file) = source.file_stats() {
        stats.add_file(&file);
    }
    Ok(stats)
}

/// The source of a subcommand (`diagnose`, `report`): its file or interface, with the
/// default kernel buffer; live, says that `doing` starts, and for how long.
fn subcommand_source(
    args: &SourceArgs,
    duration: Option<Duration>,
    doing: &str,
) -> anyhow::Result<Source> {
    install_signal_handlers();
    let source = open_source(
        args.read.as_deref(),
        LiveOptions {
            device: args.interface.clone(),
            promiscuous: !args.no_promiscuous,
            buffer_kib: None,
        },
        &args.filter,
    )?;
    if source.is_live() {
        say!(
            "wsnoop: {doing} on {}{}",
            source.name(),
            match duration {
                Some(d) => format!(" for {} s", d.as_secs_f64()),
                None => " until Ctrl-C".to_string(),
            }
        );
    }
    Ok(source)
}

fn run_diagnose(args: DiagnoseArgs) -> anyhow::Result<ExitCode> {
    let duration = seconds(args.source.duration, "--duration")?;
    let mut source = subcommand_source(&args.source, duration, "diagnosing")?;
    let options = AnalyzerOptions {
        ws: WsOptions {
            max_payload: 0,
            ..WsOptions::default()
        },
        report_connections: true,
        // As the main command does: sessions already open when the capture began are
        // diagnosed too.
        midstream: MidstreamOptions {
            ws_ports: Vec::new(),
            heuristics: true,
        },
        tls: tls_options(&args.source.keylog, &source)?,
        ..AnalyzerOptions::default()
    };
    let mut diagnoser = Diagnoser::new(
        args.ports.clone(),
        DiagnoseOptions {
            idle_secs: args.idle,
            keylog_given: options.tls.keys_expected,
        },
    );
    let stats = run_events(
        &mut source,
        &options,
        args.threads,
        duration,
        &mut diagnoser,
    )?;
    let findings = diagnoser.findings(&stats);
    let stdout = io::stdout();
    let terminal = stdout.is_terminal();
    let mut out = io::BufWriter::new(stdout.lock());
    let written = if args.json {
        diagnose::write_json(&mut out, &findings)
    } else {
        diagnose::write_text(&mut out, &findings, use_color(args.source.color, terminal))
    };
    match written.and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    let trouble = findings.iter().any(|f| f.severity > Severity::Info);
    Ok(if trouble {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let writes_stdout = match &cli.command {
        Some(Command::Diagnose(_) | Command::Completions { .. } | Command::Man) => true,
        Some(Command::Report(_)) => false,
        None => !cli.quiet || cli.write.as_deref() == Some(std::path::Path::new("-")),
    };
    if writes_stdout && stdout_was_closed() {
        say!("wsnoop: standard output is closed: the output would be lost (-q prints none)");
        return ExitCode::FAILURE;
    }
    let result = match cli.command.take() {
        Some(Command::Diagnose(args)) => run_diagnose(args),
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            // Into memory first: clap_complete panics on a failed write (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "wsnoop", &mut script);
            print_all(&script)
        }
        Some(Command::Man) => {
            use clap::CommandFactory;
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(anyhow::Error::from)
                .and_then(|()| print_all(&page))
        }
        Some(Command::Report(args)) => report_cli::run_report(args),
        None => run(cli),
    };
    match result {
        Ok(code) => code,
        // As with `wsnoop ... | head`: the reader of `-w -` had what it wanted.
        Err(e) if reader_gone(&e) => ExitCode::SUCCESS,
        Err(e) => {
            say!("wsnoop: {e:#}");
            ExitCode::FAILURE
        }
    }
}
