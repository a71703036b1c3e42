//! The request metrics, `http_requests_total` and
//! `http_request_duration_seconds` by method, route and status, with the
//! handles of each label set registered once per thread.
//!
//! The `metrics` macros build a key from the labels, hash it and compare
//! it in the recorder's registry on every call: about 3,700 instructions
//! a request for the two metrics (callgrind, `docs/benchmarks.md`,
//! twenty-seventh pass). A handle is the registry's own counter or
//! histogram behind an `Arc`, so recording through one kept is the same as
//! recording through the macro. The handles come from the recorder
//! installed when a thread first records a label set; the binaries install
//! theirs before they serve.

use metrics::{Counter, Histogram, SharedString};
use std::cell::RefCell;

/// The status code as a metric label, without an allocation for the
/// statuses this API answers.
pub(super) fn status_label(status: u16) -> SharedString {
    macro_rules! known {
        ($($code:literal),*) => {
            match status {
                $($code => SharedString::const_str(stringify!($code)),)*
                _ => SharedString::from_owned(status.to_string()),
            }
        };
    }
    known!(
        200, 201, 204, 304, 400, 401, 403, 404, 405, 406, 408, 409, 411, 412, 413, 415, 422, 429,
        431, 500, 501, 503
    )
}

/// Label sets a thread keeps handles for; the rest (a route or status
/// this API does not answer, which the labels keep bounded anyway) go
/// through the macros.
const KEPT: usize = 64;

/// One label set's handles.
struct Handles {
    method: &'static str,
    route: &'static str,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

impl Handles {
    fn register(method: &'static str, route: &'static str, status: u16) -> Self {
        let labels = [
            ("method", SharedString::const_str(method)),
            ("route", SharedString::const_str(route)),
            ("status", status_label(status)),
        ];
        Handles {
            method,
            route,
            status,
            requests: metrics::counter!("http_requests_total", &labels),
            duration: metrics::histogram!("http_request_duration_seconds", &labels),
        }
    }

    fn is(&self, method: &str, route: &str, status: u16) -> bool {
        self.status == status && self.route == route && self.method == method
    }

    fn record(&self, elapsed_secs: f64) {
        self.requests.increment(1);
        self.duration.record(elapsed_secs);
    }
}

thread_local! {
    /// A short list: a thread sees a few dozen label sets at most.
    static KEPT_HANDLES: RefCell<Vec<Handles>> = const { RefCell::new(Vec::new()) };
}

/// Counts one request and its duration.
pub(super) fn record(method: &'static str, route: &'static str, status: u16, elapsed_secs: f64) {
    KEPT_HANDLES.with_borrow_mut(|kept| {
        if let Some(handles) = kept.iter().find(|h| h.is(method, route, status)) {
            return handles.record(elapsed_secs);
        }
        let handles = Handles::register(method, route, status);
        handles.record(elapsed_secs);
        if kept.len() < KEPT {
            kept.push(handles);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    /// Records in a thread of its own (an empty list of handles) under a
    /// recorder of its own, and returns what that recorder renders.
    fn rendered(requests: &'static [(&'static str, &'static str, u16)]) -> String {
        std::thread::spawn(move || {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::with_local_recorder(&recorder, || {
                for &(method, route, status) in requests {
                    record(method, route, status, 0.002);
                }
            });
            handle.render()
        })
        .join()
        .unwrap()
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn each_label_set_counts_every_request_through_its_kept_handles() {
        let text = rendered(&[
            ("POST", "/api/orders", 201),
            ("POST", "/api/orders", 201),
            ("GET", "/api/orders/{id}", 200),
            ("POST", "/api/orders", 201),
            ("POST", "/api/orders", 400),
        ]);
        let count = |labels: &str| value(&text, &format!("http_requests_total{{{labels}}}"));
        assert_eq!(
            count(r#"method="POST",route="/api/orders",status="201""#),
            Some(3.0),
            "{text}"
        );
        assert_eq!(
            count(r#"method="POST",route="/api/orders",status="400""#),
            Some(1.0)
        );
        assert_eq!(
            count(r#"method="GET",route="/api/orders/{id}",status="200""#),
            Some(1.0)
        );
        let durations = value(
            &text,
            r#"http_request_duration_seconds_count{method="POST",route="/api/orders",status="201"}"#,
        );
        assert_eq!(durations, Some(3.0), "{text}");
    }

    #[test]
    fn label_sets_past_the_kept_ones_are_still_counted() {
        // More statuses than a thread keeps handles for: every one counts.
        static MANY: std::sync::LazyLock<Vec<(&'static str, &'static str, u16)>> =
            std::sync::LazyLock::new(|| {
                (0..KEPT as u16 + 10)
                    .flat_map(|i| [("GET", "/metrics", 600 + i); 2])
                    .collect()
            });
        let text = rendered(&MANY[..]);
        for i in [0, KEPT as u16 - 1, KEPT as u16, KEPT as u16 + 9] {
            let series = format!(
                r#"http_requests_total{{method="GET",route="/metrics",status="{}"}}"#,
                600 + i
            );
            assert_eq!(value(&text, &series), Some(2.0), "{series} in {text}");
        }
    }
}
