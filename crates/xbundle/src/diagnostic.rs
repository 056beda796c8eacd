//! User-facing diagnostics: a message, where it is (file, line, column, with the source text
//! for a snippet), and a help line saying what to do.
//!
//! Human output renders through miette; `--message-format json` serializes the same fields.

use std::fmt;
use std::ops::Range;

use camino::Utf8PathBuf;
use miette::{LabeledSpan, NamedSource, SourceCode};
use serde::Serialize;

/// A diagnostic; boxed so that `Result<_, Diagnostic>` stays one pointer wide on the happy path.
#[derive(Debug, Clone)]
pub struct Diagnostic(Box<Details>);

#[derive(Debug, Clone)]
pub struct Details {
    pub message: String,
    pub file: Option<Utf8PathBuf>,
    /// The file's text, for the snippet.
    pub source: Option<String>,
    /// Byte range in `source`.
    pub span: Option<Range<usize>>,
    pub label: Option<String>,
    pub help: Option<String>,
    /// Process exit code this diagnostic leads to.
    pub exit_code: u8,
}

/// Exit codes: 0 success, 1 a task failed, 2 bad input (usage, bundle.toml), 3 an I/O or
/// internal error.
pub mod exit {
    pub const TASK_FAILED: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
    pub const INTERNAL: u8 = 3;

    /// The exit code of a run that did not succeed: bad input when a task that reads the
    /// definitions (analysis, secrets, assembly) failed, since its failure is a definition
    /// problem found when it ran; else a task failed.
    pub fn code_of_failures(summary: &engine::RunSummary) -> u8 {
        let definition = |id: &engine::TaskId| {
            ["analyze:", "secrets:", "assemble:"]
                .iter()
                .any(|prefix| id.as_str().starts_with(prefix))
        };
        if summary.failures.iter().any(|(id, _)| definition(id)) {
            BAD_INPUT
        } else {
            TASK_FAILED
        }
    }
}

impl Diagnostic {
    pub fn error(message: impl Into<String>) -> Diagnostic {
        Diagnostic(Box::new(Details {
            message: message.into(),
            file: None,
            source: None,
            span: None,
            label: None,
            help: None,
            exit_code: exit::BAD_INPUT,
        }))
    }

    pub fn internal(message: impl Into<String>) -> Diagnostic {
        let mut diagnostic = Diagnostic::error(message);
        diagnostic.exit_code = exit::INTERNAL;
        diagnostic
    }

    pub fn in_file(mut self, file: impl Into<Utf8PathBuf>, source: &str) -> Diagnostic {
        self.file = Some(file.into());
        self.source = Some(source.to_string());
        self
    }

    pub fn at(mut self, span: Range<usize>, label: impl Into<String>) -> Diagnostic {
        self.span = Some(span);
        self.label = Some(label.into());
        self
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Diagnostic {
        self.message = message.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// 1-based line and column of the span's start.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        let source = self.source.as_ref()?;
        let start = self.span.as_ref()?.start.min(source.len());
        let before = &source[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Some((line, column))
    }

    /// `file:line:col`, `file`, or nothing.
    pub fn location(&self) -> Option<String> {
        let file = self.file.as_ref()?;
        Some(match self.line_col() {
            Some((line, column)) => format!("{file}:{line}:{column}"),
            None => file.to_string(),
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Json<'a> {
            event: &'static str,
            level: &'static str,
            message: &'a str,
            file: Option<&'a str>,
            line: Option<usize>,
            column: Option<usize>,
            help: Option<&'a str>,
        }
        let (line, column) = self.line_col().unzip();
        serde_json::to_value(Json {
            event: "diagnostic",
            level: "error",
            message: &self.message,
            file: self.file.as_ref().map(|f| f.as_str()),
            line,
            column,
            help: self.help.as_deref(),
        })
        .expect("diagnostics serialize")
    }

    /// The human rendering: a located message, a source snippet, a help line.
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            miette::GraphicalTheme::unicode()
        } else {
            miette::GraphicalTheme::unicode_nocolor()
        };
        let handler = miette::GraphicalReportHandler::new_themed(theme)
            .with_context_lines(1)
            .with_width(100)
            .with_wrap_lines(false);
        // What the repository wrote (a file name, a pattern, a line of bundle.toml) never
        // reaches the terminal as control characters.
        let rendered = Rendered {
            message: visible(&self.to_string()).into_owned(),
            source: match (&self.file, &self.source) {
                (Some(file), Some(source)) => Some(NamedSource::new(
                    visible(file.as_str()),
                    same_length_visible(source),
                )),
                _ => None,
            },
            labels: self
                .span
                .iter()
                .map(|span| {
                    LabeledSpan::new_with_span(
                        self.label
                            .as_deref()
                            .map(|label| visible(label).into_owned()),
                        span.clone(),
                    )
                })
                .collect(),
            help: self.help.as_deref().map(|help| visible(help).into_owned()),
        };
        let mut out = String::new();
        if handler.render_report(&mut out, &rendered).is_err() {
            out = format!("error: {self}\n");
        }
        out
    }
}

/// `text` with every control character but newline and tab written out (`\x1b`, `\u{9b}`):
/// what a repository names (files, patterns, values) is printed, never interpreted by the
/// terminal (an escape sequence in a file name could retitle the window, or worse).
pub fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.contains(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !hidden(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `source` with every control character but newline, carriage return and tab replaced by as
/// many `?` as it has bytes: the spans of a diagnostic still point where they did.
fn same_length_visible(source: &str) -> String {
    source
        .chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\r' | '\t') {
                "?".repeat(c.len_utf8())
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl std::ops::Deref for Diagnostic {
    type Target = Details;

    fn deref(&self) -> &Details {
        &self.0
    }
}

impl std::ops::DerefMut for Diagnostic {
    fn deref_mut(&mut self) -> &mut Details {
        &mut self.0
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location() {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Diagnostic {}

#[derive(Debug)]
struct Rendered {
    message: String,
    source: Option<NamedSource<String>>,
    labels: Vec<LabeledSpan>,
    help: Option<String>,
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rendered {}

impl miette::Diagnostic for Rendered {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|help| Box::new(help) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|source| source as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.source.is_none() || self.labels.is_empty() {
            return None;
        }
        Some(Box::new(self.labels.iter().cloned()))
    }
}

/// The candidate closest to `name`, when it is close enough to be a likely typo (for "did you
/// mean" help lines).
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

impl From<std::io::Error> for Diagnostic {
    fn from(err: std::io::Error) -> Diagnostic {
        Diagnostic::internal(err.to_string())
    }
}
