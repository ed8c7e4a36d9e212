//! A probe's answer on the wire: the query it was asked with, and the
//! `text/plain` or `application/health+json` body it gets.

use std::fmt::Write as _;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::registry::{CheckReport, ProbeReport};
use super::status::{Probe, Status};
use crate::reject::push_json_string;

/// How much of the checks a request may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Details {
    /// The probe's status alone (default): nothing about the checks, so
    /// nothing internal leaks to whoever can reach the route.
    #[default]
    StatusOnly,
    /// Each check's name and status too (`?verbose`, the JSON `checks`),
    /// but never its output or measured value.
    Names,
    /// Everything: names, statuses, outputs, measured values, times.
    Full,
}

/// What the query string asks for. Anything it cannot read is ignored.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Query<'a> {
    pub(crate) verbose: bool,
    pub(crate) json: bool,
    pub(crate) exclude: Vec<&'a str>,
}

impl<'a> Query<'a> {
    /// `verbose` (with or without a value), `format=json`, and `exclude=`
    /// (repeatable; also comma-separated).
    pub(crate) fn parse(query: Option<&'a str>) -> Query<'a> {
        let mut parsed = Query::default();
        for pair in query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "verbose" => parsed.verbose = value.is_empty() || value == "true" || value == "1",
                "format" => parsed.json = value == "json",
                "exclude" => parsed
                    .exclude
                    .extend(value.split(',').filter(|name| !name.is_empty())),
                _ => {}
            }
        }
        parsed
    }
}

/// Whether the client asked for `application/health+json` (or plain
/// `application/json`) in `Accept`.
pub(crate) fn wants_json(headers: &HeaderMap) -> bool {
    headers.get_all(ACCEPT).iter().any(|value| {
        value.to_str().is_ok_and(|accept| {
            accept.split(',').any(|range| {
                let media = range.split(';').next().unwrap_or("").trim();
                media.eq_ignore_ascii_case("application/health+json")
                    || media.eq_ignore_ascii_case("application/json")
            })
        })
    })
}

/// The HTTP answer to a probe: 200 for pass and warn, 503 for fail, never
/// cached.
pub(crate) fn answer(
    probe: Probe,
    report: &ProbeReport,
    details: Details,
    query: &Query<'_>,
    json: bool,
    head_only: bool,
) -> Response<Bytes> {
    let (body, content_type) = if json {
        (render_json(report, details), "application/health+json")
    } else {
        (
            render_text(probe, report, details, query.verbose),
            "text/plain; charset=utf-8",
        )
    };
    let mut response = Response::new(if head_only {
        Bytes::new()
    } else {
        Bytes::from(body)
    });
    *response.status_mut() = status_code(report.status);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(crate) fn status_code(status: Status) -> StatusCode {
    match status {
        Status::Pass | Status::Warn => StatusCode::OK,
        Status::Fail => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `ok`, `warn` or `fail`; with `?verbose` and names allowed, a line per
/// check as Kubernetes prints them (`[+]database ok`, `[-]cache failed:
/// reason withheld`) and a last line with the verdict.
fn render_text(probe: Probe, report: &ProbeReport, details: Details, verbose: bool) -> String {
    let word = match report.status {
        Status::Pass => "ok",
        Status::Warn => "warn",
        Status::Fail => "fail",
    };
    if !verbose || details == Details::StatusOnly {
        return format!("{word}\n");
    }
    let mut text = String::new();
    for check in &report.checks {
        let (mark, verdict) = match check.status {
            Status::Pass => ("+", "ok"),
            Status::Warn => ("!", "warn"),
            Status::Fail => ("-", "failed"),
        };
        let _ = write!(text, "[{mark}]{} {verdict}", check.name);
        if check.status != Status::Pass {
            match (&check.output, details) {
                (Some(output), Details::Full) => {
                    let _ = write!(text, ": {}", one_line(output));
                }
                _ => text.push_str(": reason withheld"),
            }
        }
        text.push('\n');
    }
    let short = match probe {
        Probe::Startup => "startupz",
        Probe::Liveness => "livez",
        Probe::Readiness => "readyz",
    };
    let _ = writeln!(
        text,
        "{short} check {}",
        if report.status == Status::Fail {
            "failed"
        } else {
            "passed"
        }
    );
    text
}

/// An output on one line, so it cannot forge the lines after it.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// The IETF health-check draft's document: `status`, and with names
/// allowed `checks` keyed by check name, each an array of one object.
fn render_json(report: &ProbeReport, details: Details) -> String {
    let mut json = String::from("{\"status\":");
    push_json_string(&mut json, report.status.as_str());
    if details != Details::StatusOnly && !report.checks.is_empty() {
        json.push_str(",\"checks\":{");
        for (index, check) in report.checks.iter().enumerate() {
            if index > 0 {
                json.push(',');
            }
            push_json_string(&mut json, &check.name);
            json.push_str(":[");
            render_check(&mut json, check, details);
            json.push(']');
        }
        json.push('}');
    }
    json.push_str("}\n");
    json
}

fn render_check(json: &mut String, check: &CheckReport, details: Details) {
    json.push_str("{\"componentType\":");
    push_json_string(json, check.component_type.as_str());
    json.push_str(",\"status\":");
    push_json_string(json, check.status.as_str());
    if details == Details::Full {
        if let Some((value, unit)) = &check.observed {
            json.push_str(",\"observedValue\":");
            if value.is_finite() {
                let _ = write!(json, "{value}");
            } else {
                json.push_str("null");
            }
            json.push_str(",\"observedUnit\":");
            push_json_string(json, unit);
        }
        if let Some(time) = check.time {
            json.push_str(",\"time\":");
            push_json_string(json, &rfc3339(time));
        }
        if let Some(output) = &check.output {
            json.push_str(",\"output\":");
            push_json_string(json, output);
        }
    }
    json.push('}');
}

/// `2026-11-29T17:00:00Z`: UTC, to the second.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let days = seconds / 86_400;
    let (year, month, day) = civil_from_days(days);
    let of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// The Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn queries_are_read_leniently() {
        let query = Query::parse(Some(
            "verbose&exclude=db&exclude=cache,queue&format=json&x=%zz",
        ));
        assert!(query.verbose && query.json);
        assert_eq!(query.exclude, ["db", "cache", "queue"]);
        assert_eq!(Query::parse(None), Query::default());
        assert!(!Query::parse(Some("verbose=false")).verbose);
        assert!(Query::parse(Some("verbose=1")).verbose);
        for odd in [
            "",
            "&&",
            "=",
            "==",
            "exclude",
            "exclude=",
            "format",
            "%",
            "verbose=%00",
        ] {
            let query = Query::parse(Some(odd));
            assert!(query.exclude.is_empty(), "{odd}");
        }
    }

    #[test]
    fn json_is_asked_for_in_accept() {
        let accept = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
            wants_json(&headers)
        };
        assert!(accept("application/health+json"));
        assert!(accept("text/html, application/json;q=0.9"));
        assert!(!accept("text/plain"));
        assert!(!accept("*/*"));
        assert!(!wants_json(&HeaderMap::new()));
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let at = |seconds: u64| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_973_999), "2026-11-29T17:39:59Z");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z");
    }
}
