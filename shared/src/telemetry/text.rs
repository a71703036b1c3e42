//! The text log (`LOG_FORMAT=text`, for development): `tracing-subscriber`'s
//! default ("full") line without colours, with the request being served
//! (`super::request`) as its outermost span, where the `request` span
//! was:
//! `2026-11-29T16:00:00.123456Z  INFO request{method=POST route=/api/orders trace_id=...}: order_api::routes::orders: Order placed. order_id=...`

use super::json::timestamp;
use super::request::{RequestLog, with_request};
use std::fmt;
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats a line of the text log.
#[derive(Debug, Default, Clone, Copy)]
pub struct TextLine;

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Events of the `log` crate carry their own target and level.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        timestamp(&mut writer, std::time::SystemTime::now())?;
        write!(writer, " {:>5} ", meta.level())?;
        let mut scoped = with_request(|request| request_prefix(&mut writer, request))
            .transpose()?
            .is_some();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.metadata().name())?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, "{{{fields}}}")?;
                }
                writer.write_char(':')?;
                scoped = true;
            }
        }
        if scoped {
            writer.write_char(' ')?;
        }
        write!(writer, "{}: ", meta.target())?;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// `request{method=POST route=/api/orders trace_id=... order_id=...}:`,
/// as the stock format wrote the request's span (the order id once known).
fn request_prefix(out: &mut Writer<'_>, request: &RequestLog) -> fmt::Result {
    write!(
        out,
        "request{{method={} route={} trace_id={}",
        request.method, request.route, request.trace_id
    )?;
    if let Some(id) = request.order_id.get() {
        write!(out, " order_id={id}")?;
    }
    out.write_str("}:")
}
