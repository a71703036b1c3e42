//! The JSON log (`LOG_FORMAT=json`), written as text once. The lines are
//! those of `tracing-subscriber`'s JSON formatter with `flatten_event` and
//! the current span: `timestamp`, `level`, the event's fields, `target`,
//! `span` (the current span's fields and `name`) and `spans` (every span
//! from the root). The request the API is serving (`super::request`) reads
//! as the outermost span, named `request`, as its span did before.
//!
//! What differs is the cost. The stock formatter keeps each span's fields
//! as JSON text built through a map of `serde_json` values, and parses
//! that text back twice for every line logged in a span (for `span` and
//! for `spans`); a field recorded later (`Span::record`) parses it and
//! serialises it again; every string goes through an adaptor that checks
//! each chunk as UTF-8. The consumer opens a span per event, records the
//! order id into it and logs a line in it (the API did the same per
//! request, "Order placed."). Here a span's fields are written as JSON
//! text when they are recorded (in a per-thread scratch text, copied
//! once), a later field is appended, and a line copies the text in.
//! Strings are escaped eight bytes at a time, and a line's date is
//! formatted once per second per thread. Measured in `docs/benchmarks.md`
//! (twenty-fourth to twenty-sixth passes) and by
//! `cargo run --release -p order-shared --example span_cost`.

use super::request::with_request;
use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

/// Formats a span's fields as one JSON object, appending later ones.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpanJson;

thread_local! {
    /// A span's fields are formatted here first, so that the span's own
    /// text is allocated once, at its size, rather than grown a piece at
    /// a time (an allocation and four reallocations for a span of a
    /// request's size).
    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl<'w> FormatFields<'w> for SpanJson {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let object = |out: &mut dyn Write| {
            out.write_char('{')?;
            fields.record(&mut Entries::new(out, true));
            out.write_char('}')
        };
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut text) => {
                text.clear();
                object(&mut *text)?;
                writer.write_str(&text)
            }
            // In use by a caller up this thread's stack: written directly.
            Err(_) => object(&mut writer),
        })
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        if current.fields.is_empty() {
            return self.format_fields(current.as_writer(), fields);
        }
        // `{...}`: reopen the object, append the entries, close it again.
        current.fields.reserve(64);
        current.fields.pop();
        let first = current.fields.ends_with('{');
        fields.record(&mut Entries::new(&mut current.fields, first));
        current.fields.push('}');
        Ok(())
    }
}

/// Formats a line of the JSON log, with the spans' fields as [`SpanJson`]
/// wrote them.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLine;

impl<S> FormatEvent<S, SpanJson> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, SpanJson>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Events of the `log` crate carry their own target and level.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        writer.write_str("{\"timestamp\":\"")?;
        timestamp(&mut writer, std::time::SystemTime::now())?;
        write!(writer, "\",\"level\":\"{}\"", meta.level())?;
        event.record(&mut Entries::new(&mut writer, false));
        writer.write_str(",\"target\":")?;
        quoted_str(&mut writer, meta.target());
        let current = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        // The request being served, if any, is the outermost span.
        let in_request = with_request(|_| ()).is_some();
        if current.is_none() && !in_request {
            return writer.write_str("}\n");
        }
        writer.write_str(",\"span\":")?;
        match &current {
            Some(span) => span_object(&mut writer, span)?,
            None => request_object(&mut writer)?,
        }
        writer.write_str(",\"spans\":[")?;
        let mut first = true;
        if in_request {
            request_object(&mut writer)?;
            first = false;
        }
        if let Some(leaf) = ctx.lookup_current() {
            for span in leaf.scope().from_root() {
                if !first {
                    writer.write_char(',')?;
                }
                first = false;
                span_object(&mut writer, &span)?;
            }
        }
        writer.write_str("]}\n")
    }
}

/// The request being served as the `request` span's object was:
/// `{"method":...,"route":...,"trace_id":...,"order_id":...,"name":"request"}`
/// (the order id once known).
fn request_object(out: &mut dyn Write) -> fmt::Result {
    let written = with_request(|request| {
        out.write_str("{\"method\":")?;
        quoted_str(out, request.method);
        out.write_str(",\"route\":")?;
        quoted_str(out, request.route);
        out.write_str(",\"trace_id\":")?;
        quoted_str(out, &request.trace_id);
        if let Some(id) = request.order_id.get() {
            let mut text = uuid::Uuid::encode_buffer();
            out.write_str(",\"order_id\":")?;
            quoted_str(out, id.hyphenated().encode_lower(&mut text));
        }
        out.write_str(",\"name\":\"request\"}")
    });
    written.unwrap_or(Ok(()))
}

thread_local! {
    /// The second last written by this thread, and its text up to the `.`.
    static SECOND: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
}

/// Writes `at` as `tracing-subscriber`'s clock does: RFC 3339 in UTC with
/// microseconds (`2026-11-29T14:09:10.123456Z`). The date and time of day
/// are formatted once per second per thread; a line adds its microseconds.
pub(super) fn timestamp(out: &mut dyn Write, at: std::time::SystemTime) -> fmt::Result {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != secs {
            text.clear();
            let at = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
            write!(text, "{}", at.format("%Y-%m-%dT%H:%M:%S."))?;
            *second = secs;
        }
        out.write_str(text)
    })?;
    let mut micros = since.subsec_micros();
    let mut digits = *b"000000Z";
    for digit in digits[..6].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
}

/// A span as a JSON object: its fields, then its `name`.
fn span_object<'a, S>(out: &mut Writer<'_>, span: &SpanRef<'a, S>) -> fmt::Result
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    let extensions = span.extensions();
    let fields = extensions
        .get::<FormattedFields<SpanJson>>()
        .map_or("{}", |f| f.fields.as_str());
    // `{...}` without its `}`, then the name.
    let open = fields.strip_suffix('}').unwrap_or("{");
    out.write_str(open)?;
    if open != "{" {
        out.write_char(',')?;
    }
    out.write_str("\"name\":")?;
    quoted_str(out, span.metadata().name());
    out.write_char('}')
}

/// Appends `"name":value` entries, comma-separated, to a JSON object's
/// text: strings and values formatted with `Debug`/`Display` as JSON
/// strings, integers, floats and booleans as JSON numbers and booleans (as
/// `tracing-serde` writes them).
struct Entries<'a> {
    out: &'a mut dyn Write,
    first: bool,
}

impl<'a> Entries<'a> {
    fn new(out: &'a mut dyn Write, first: bool) -> Self {
        Entries { out, first }
    }

    fn key(&mut self, field: &Field) {
        if !self.first {
            let _ = self.out.write_char(',');
        }
        self.first = false;
        quoted_str(self.out, field.name());
        let _ = self.out.write_char(':');
    }
}

impl Visit for Entries<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        // serde_json's text for a float; JSON has no NaN or infinity: null.
        let _ = match serde_json::Number::from_f64(value) {
            Some(number) => write!(self.out, "{number}"),
            None => self.out.write_str("null"),
        };
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        quoted_str(self.out, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        quoted(self.out, format_args!("{value:?}"));
    }
}

/// Writes `value` as a JSON string.
fn quoted(out: &mut dyn Write, value: fmt::Arguments<'_>) {
    let _ = out.write_char('"');
    let _ = Escaped(out).write_fmt(value);
    let _ = out.write_char('"');
}

/// Writes `text` as a JSON string.
fn quoted_str(out: &mut dyn Write, text: &str) {
    let _ = out.write_char('"');
    let _ = Escaped(out).write_str(text);
    let _ = out.write_char('"');
}

/// Escapes what it is given for the inside of a JSON string, as serde_json
/// does.
struct Escaped<'a>(&'a mut dyn Write);

impl Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Runs of plain characters go through in one call. Every character
        // to escape is ASCII, so a byte scan never splits a character.
        let bytes = s.as_bytes();
        let mut plain = 0;
        let mut i = 0;
        while i < bytes.len() {
            // Eight bytes at a time while none of them is to be escaped.
            while let Some(chunk) = bytes.get(i..i + 8) {
                let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
                if to_escape(word) {
                    break;
                }
                i += 8;
            }
            let Some(&b) = bytes.get(i) else { break };
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..0x20 => "",
                _ => {
                    i += 1;
                    continue;
                }
            };
            self.0.write_str(&s[plain..i])?;
            match escape {
                "" => write!(self.0, "\\u{b:04x}")?,
                e => self.0.write_str(e)?,
            }
            i += 1;
            plain = i;
        }
        self.0.write_str(&s[plain..])
    }
}

/// Whether any of the eight bytes of `word` is a control character, `"`
/// or `\`: the bit tricks of "Bit Twiddling Hacks" (a byte below `n` for
/// `n` <= 128, a zero byte after an XOR). Bytes of 128 and over (UTF-8)
/// are never flagged.
fn to_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    (below(word, 0x20) | below(quote, 1) | below(backslash, 1)) != 0
}

#[cfg(test)]
mod tests;
