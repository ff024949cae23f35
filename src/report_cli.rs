//! `wsnoop report` and `--har`, the command line's side: arguments, files, what is said on
//! stderr. What they write is the library's ([`wsnoop::report`]).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use wsnoop::analyzer::{Analyzer, AnalyzerOptions, MidstreamOptions, Stats};
use wsnoop::capture::Source;
use wsnoop::context::WsOptions;
use wsnoop::diagnose::{DiagnoseOptions, Diagnoser};
use wsnoop::event::Timestamp;
use wsnoop::event::{Selected, Selector};
use wsnoop::output::OutputSink;
use wsnoop::parallel;
use wsnoop::report::{Collector, HarTee, Limits, ReportSink, har, html};
use wsnoop::{RunControl, RunEnd};

use super::seconds;
use crate::cli::ReportArgs;

/// A file to write, created before the run so that a bad path fails at once.
struct Target {
    path: PathBuf,
    file: BufWriter<File>,
}

impl Target {
    fn create(path: &Path, what: &str) -> anyhow::Result<Target> {
        let file = File::create(path).with_context(|| format!("{what} {}", path.display()))?;
        Ok(Target {
            path: path.to_owned(),
            file: BufWriter::with_capacity(64 * 1024, file),
        })
    }

    fn write(
        mut self,
        what: &str,
        body: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
    ) -> anyhow::Result<()> {
        body(&mut self.file)
            .and_then(|()| self.file.flush())
            .with_context(|| format!("writing {what} {}", self.path.display()))
    }
}

/// What the caps left out is said, as the file says it.
fn say_cuts(collector: &Collector, file: &Path) {
    if let Some(cuts) = collector.cuts() {
        say!("wsnoop: {}: {cuts}", file.display());
    }
}

/// `--har FILE` of the plain run.
pub struct HarFile(Target);

impl HarFile {
    pub fn create(path: &Path) -> anyhow::Result<HarFile> {
        Target::create(path, "--har").map(HarFile)
    }

    /// Runs with the output writer `out` (printing the data events `shown` names: frames,
    /// messages) and the HAR collector side by side, then writes the HAR file.
    pub fn run(
        self,
        out: Box<dyn OutputSink + Send>,
        shown: (bool, bool),
        source: &mut Source,
        options: &AnalyzerOptions,
        threads: usize,
        control: RunControl<'_>,
    ) -> anyhow::Result<(RunEnd, Stats)> {
        let live = source.is_live() || source.is_stream();
        let mut tee = HarTee::new(
            out,
            Limits::default(),
            shown.0,
            shown.1,
            live && threads > 1,
        );
        let (end, stats) = if threads > 1 {
            let ran = parallel::run_events(source, options, threads, &mut tee, control)?;
            match tee.finish() {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                    return Err(anyhow::Error::new(e).context("writing output"));
                }
                _ => {}
            }
            ran
        } else {
            let mut analyzer = Analyzer::new(options.clone());
            // The selection holds for the HAR as for what is printed, as with threads.
            let end = match Selector::new(&options.select) {
                Some(selector) => {
                    let mut selected = Selected::new(tee, selector);
                    let end = wsnoop::run(source, &mut analyzer, &mut selected, control)?;
                    tee = selected.inner;
                    end
                }
                None => wsnoop::run(source, &mut analyzer, &mut tee, control)?,
            };
            (end, analyzer.stats())
        };
        say_cuts(&tee.collector, &self.0.path);
        self.0.write("--har", |w| har::write(w, &tee.collector))?;
        Ok((end, stats))
    }
}

pub fn run_report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let duration = seconds(args.source.duration, "--duration")?;
    let mut source = super::subcommand_source(&args.source, duration, "recording a report")?;
    let page = Target::create(&args.output, "-o")?;
    let har_file = args.har.as_deref().map(HarFile::create).transpose()?;
    let name = match &args.source.read {
        Some(path) => path.display().to_string(),
        None => format!("live capture on {}", source.name()),
    };
    let options = AnalyzerOptions {
        ws: WsOptions {
            max_payload: args.max_payload,
            ..WsOptions::default()
        },
        // The diagnosis at the top needs every TCP connection, as `wsnoop diagnose` does.
        report_connections: true,
        midstream: MidstreamOptions {
            ws_ports: args.ws_ports.clone(),
            heuristics: true,
        },
        tls: super::tls_options(&args.source.keylog, &source)?,
        ..AnalyzerOptions::default()
    };
    let limits = Limits {
        messages_per_connection: args.max_messages,
        messages: args.max_messages.saturating_mul(2),
        ..Limits::default()
    };
    let mut sink = ReportSink {
        collector: Collector::new(limits),
        diagnoser: Diagnoser::new(
            args.ports.clone(),
            DiagnoseOptions {
                idle_secs: args.idle,
                keylog_given: options.tls.keys_expected,
            },
        ),
    };
    let stats = super::run_events(&mut source, &options, args.threads, duration, &mut sink)?;
    let findings = sink.diagnoser.findings(&stats);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let info = html::PageInfo {
        source: &name,
        generated: Timestamp {
            secs: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
            nanos: now.subsec_nanos(),
        },
    };
    say_cuts(&sink.collector, &args.output);
    page.write("the report", |w| {
        html::write(w, &sink.collector, &findings, &info)
    })?;
    if let Some(har_file) = har_file {
        har_file
            .0
            .write("--har", |w| har::write(w, &sink.collector))?;
    }
    say!(
        "wsnoop: {} connections, {} messages and control frames in {}",
        sink.collector.connections().len(),
        sink.collector.items(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
