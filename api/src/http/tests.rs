//! The pure helpers of the request middleware.

use super::request_metrics::status_label;
use super::{route_label, tidy_parameter_detail};

#[test]
fn parameter_errors_lose_the_framework_type_names() {
    let wrapped = "failed to parse parameter `cursor`: failed to parse \"string\": \
                   verification failed. pattern(\"^a$\") (occurred while parsing \"optional_string\")";
    assert_eq!(
        tidy_parameter_detail(wrapped),
        "failed to parse parameter `cursor`: verification failed. pattern(\"^a$\")"
    );
    let plain =
        "failed to parse parameter `limit`: verification failed. maximum(100, exclusive: false)";
    assert_eq!(tidy_parameter_detail(plain), plain);
    assert_eq!(
        tidy_parameter_detail("no parameter here"),
        "no parameter here"
    );
}

#[test]
fn status_labels_are_the_codes() {
    for code in [200, 201, 412, 429, 503, 418, 599] {
        assert_eq!(status_label(code).as_ref(), code.to_string());
    }
}

#[test]
fn routes_are_templated() {
    assert_eq!(route_label("/api/orders"), "/api/orders");
    assert_eq!(route_label("/api/orders/"), "/api/orders");
    assert_eq!(
        route_label("/api/orders/0190a6f0-0000-7000-8000-000000000001/cancel"),
        "/api/orders/{id}/cancel"
    );
    assert_eq!(route_label("/docs/index.css"), "/docs");
    assert_eq!(route_label("/wp-admin"), "unmatched");
    let id = "/api/orders/0190a6f0-0000-7000-8000-000000000001";
    assert_eq!(route_label(id), "/api/orders/{id}");
    for (tail, route) in [
        ("events", "/api/orders/{id}/events"),
        ("history", "/api/orders/{id}/history"),
        ("ship", "/api/orders/{id}/ship"),
        ("deliver", "/api/orders/{id}/deliver"),
        ("refund", "unmatched"),
        ("cancel/again", "unmatched"),
    ] {
        assert_eq!(route_label(&format!("{id}/{tail}")), route, "{tail}");
    }
    assert_eq!(route_label("/api/orders/events"), "/api/orders/events");
    assert_eq!(route_label("/api/openapi.json"), "/api/openapi.json");
    assert_eq!(route_label("/api/asyncapi.json"), "/api/asyncapi.json");
    assert_eq!(route_label("/health/ready"), "/health/ready");
    assert_eq!(route_label("/health/live/"), "/health/live");
    assert_eq!(route_label("/metrics"), "/metrics");
    assert_eq!(route_label("/metrics/extra"), "unmatched");
    assert_eq!(route_label("/api/orders/a/b/c/d/e"), "unmatched");
    assert_eq!(route_label("/"), "unmatched");
}
