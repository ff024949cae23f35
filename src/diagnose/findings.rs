//! What a diagnosis reports: findings, each with its severity, a detail and advice, written
//! for people or as JSON Lines.

use std::io::{self, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One thing the diagnosis found.
#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: &'static str,
    pub severity: Severity,
    pub count: u64,
    /// Example connection numbers.
    pub flows: Vec<u64>,
    /// What was seen, with an example connection and its time.
    pub detail: String,
    /// What it most likely means and what to check.
    pub advice: String,
}

/// Writes findings for people.
pub fn write_text(w: &mut impl Write, findings: &[Finding], color: bool) -> io::Result<()> {
    for f in findings {
        let (label, style) = match f.severity {
            Severity::Error => ("ERROR", "\x1b[1;31m"),
            Severity::Warning => ("WARNING", "\x1b[1;33m"),
            Severity::Info => ("OK", "\x1b[1;32m"),
        };
        if color {
            write!(w, "{style}{label}\x1b[0m")?;
        } else {
            w.write_all(label.as_bytes())?;
        }
        // Details quote what the wire said: escaped as the text view escapes it.
        write!(w, " {}: ", f.kind)?;
        crate::output::escaped(w, &f.detail)?;
        writeln!(w)?;
        writeln!(w, "  -> {}", f.advice)?;
    }
    Ok(())
}

/// Writes findings as JSON Lines: {"type":"finding", ...}.
pub fn write_json(w: &mut impl Write, findings: &[Finding]) -> io::Result<()> {
    for f in findings {
        let line = serde_json::json!({
            "type": "finding",
            "kind": f.kind,
            "severity": f.severity.name(),
            "count": f.count,
            "flows": f.flows,
            "detail": f.detail,
            "advice": f.advice,
        });
        serde_json::to_writer(&mut *w, &line).map_err(io::Error::other)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}
