//! The Prometheus text exposition (format 0.0.4) of a [`Snapshot`], written directly into one
//! buffer. A 10k-route store holds ~400k samples; building a Python object per sample and
//! formatting it in Python costs seconds of the master's CPU per scrape, this costs milliseconds.
//!
//! The families, names, help texts and labels are those of the Python collector
//! (`gateway/observability/metrics.py`), which stays the reference: the test suite parses both
//! with `prometheus_client.parser` and compares them.
use std::io::Write;

use crate::{Histogram, Snapshot, BUCKETS, LATENCY_BUCKETS_MS};

/// Separator between the label values packed into one store label.
pub const SEP: u8 = 0x1f;

/// What the exposition needs besides the snapshot.
pub struct ExpositionOptions<'a> {
    /// Metric name prefix (`gateway_`).
    pub prefix: &'a str,
    /// Value of `node_info`'s `hostname` label.
    pub hostname: &'a str,
    /// The store's slot capacity (`metrics_slots{state="capacity"}`).
    pub capacity: u64,
}

const STATUS_HELP: &str = "HTTP status codes per route, consumer and upstream node";
const LATENCY_HELP: &str = "Latency in milliseconds: the whole request (type=request) and \
                            waiting for the upstream's response head (type=upstream)";
const BANDWIDTH_HELP: &str =
    "Bytes received from clients (type=ingress) and sent to them (type=egress)";

/// Renders `snap` as the text exposition.
pub fn render(snap: &Snapshot, opts: &ExpositionOptions<'_>) -> Vec<u8> {
    // ~100 bytes per sample: one allocation for the whole scrape in the common case.
    let samples = snap.counters.len() + snap.series.len() * (2 * (BUCKETS + 2) + 2);
    let mut out = Vec::with_capacity(samples * 100 + 4096);
    let p = opts.prefix;
    let bounds: Vec<String> =
        LATENCY_BUCKETS_MS.iter().map(|&ms| go_float(ms)).chain(["+Inf".to_string()]).collect();

    header(&mut out, &format!("{p}http_status_total"), STATUS_HELP, "counter");
    for (label, value) in &snap.counters {
        let mut parts = label.splitn(4, |&b| b == SEP);
        let code = parts.next().unwrap_or_default();
        let series = Series::split(parts.next(), parts.next(), parts.next());
        sample_start(&mut out, p, "http_status_total");
        out.extend_from_slice(b"code=\"");
        escape_label(&mut out, code);
        out.extend_from_slice(b"\",");
        series.write(&mut out);
        sample_end(&mut out, *value);
    }

    header(&mut out, &format!("{p}http_latency"), LATENCY_HELP, "histogram");
    for s in &snap.series {
        let series = Series::from_label(&s.label);
        for (kind, histogram) in [("request", &s.request), ("upstream", &s.upstream)] {
            if histogram.count() == 0 {
                continue; // nothing proxied on this series: no histogram
            }
            histogram_samples(&mut out, p, kind, &series, histogram, &bounds);
        }
    }

    header(&mut out, &format!("{p}bandwidth_total"), BANDWIDTH_HELP, "counter");
    for s in &snap.series {
        let series = Series::from_label(&s.label);
        for (kind, value) in [("ingress", s.bytes_in), ("egress", s.bytes_out)] {
            sample_start(&mut out, p, "bandwidth_total");
            write!(out, "type=\"{kind}\",").unwrap();
            series.write(&mut out);
            sample_end(&mut out, value);
        }
    }

    let requests = format!("{p}http_requests_total");
    header(&mut out, &requests, "Requests recorded by the prometheus plugin", "counter");
    writeln!(out, "{requests} {}", snap.requests).unwrap();
    let dropped = format!("{p}metrics_dropped_total");
    header(
        &mut out,
        &dropped,
        "Observations lost because the shared metrics table was full",
        "counter",
    );
    writeln!(out, "{dropped} {}", snap.dropped).unwrap();
    let slots = format!("{p}metrics_slots");
    header(&mut out, &slots, "Label sets in the shared metrics table", "gauge");
    writeln!(out, "{slots}{{state=\"used\"}} {}", snap.used).unwrap();
    writeln!(out, "{slots}{{state=\"capacity\"}} {}", opts.capacity).unwrap();
    let info = format!("{p}node_info");
    header(&mut out, &info, "Information of the gateway node", "gauge");
    write!(out, "{info}{{hostname=\"").unwrap();
    escape_label(&mut out, opts.hostname.as_bytes());
    out.extend_from_slice(b"\"} 1\n");
    out
}

/// The route, consumer and node of a series; empty consumer and node labels are left out (a
/// missing label and an empty one mean the same to Prometheus).
struct Series<'a> {
    route: &'a [u8],
    consumer: &'a [u8],
    node: &'a [u8],
}

impl<'a> Series<'a> {
    fn from_label(label: &'a [u8]) -> Series<'a> {
        let mut parts = label.splitn(3, |&b| b == SEP);
        Series::split(parts.next(), parts.next(), parts.next())
    }

    fn split(route: Option<&'a [u8]>, consumer: Option<&'a [u8]>, node: Option<&'a [u8]>) -> Self {
        Series {
            route: route.unwrap_or_default(),
            consumer: consumer.unwrap_or_default(),
            node: node.unwrap_or_default(),
        }
    }

    /// `route="..."[,consumer="..."][,node="..."]`
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"route=\"");
        escape_label(out, self.route);
        out.push(b'"');
        if !self.consumer.is_empty() {
            out.extend_from_slice(b",consumer=\"");
            escape_label(out, self.consumer);
            out.push(b'"');
        }
        if !self.node.is_empty() {
            out.extend_from_slice(b",node=\"");
            escape_label(out, self.node);
            out.push(b'"');
        }
    }
}

fn histogram_samples(
    out: &mut Vec<u8>,
    prefix: &str,
    kind: &str,
    series: &Series<'_>,
    histogram: &Histogram,
    bounds: &[String],
) {
    for (le, value) in bounds.iter().zip(histogram.buckets.iter()) {
        sample_start(out, prefix, "http_latency_bucket");
        write!(out, "type=\"{kind}\",").unwrap();
        series.write(out);
        write!(out, ",le=\"{le}\"").unwrap();
        sample_end(out, *value);
    }
    sample_start(out, prefix, "http_latency_count");
    write!(out, "type=\"{kind}\",").unwrap();
    series.write(out);
    sample_end(out, histogram.count());
    sample_start(out, prefix, "http_latency_sum");
    write!(out, "type=\"{kind}\",").unwrap();
    series.write(out);
    writeln!(out, "}} {}", histogram.sum_us as f64 / 1000.0).unwrap();
}

fn header(out: &mut Vec<u8>, name: &str, help: &str, kind: &str) {
    // Help texts are ours: no backslash or newline to escape.
    writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}").unwrap();
}

fn sample_start(out: &mut Vec<u8>, prefix: &str, name: &str) {
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(b'{');
}

fn sample_end(out: &mut Vec<u8>, value: u64) {
    writeln!(out, "}} {value}").unwrap();
}

/// A label value as the exposition format escapes it (`\\`, `\"`, `\n`); bytes that are not
/// UTF-8 become U+FFFD, as the Python collector's `from_utf8_lossy` labels do.
fn escape_label(out: &mut Vec<u8>, value: &[u8]) {
    let text = String::from_utf8_lossy(value);
    for &b in text.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

/// A bucket bound the way Go (and prometheus_client's `floatToGoString`) spells it, so `le`
/// labels are identical to the other exporters': `5.0`, `60000.0`, `1e+06`.
pub fn go_float(ms: u64) -> String {
    if ms < 1_000_000 {
        return format!("{ms}.0");
    }
    let digits = ms.to_string();
    let mantissa = format!("{}.{}", &digits[..1], &digits[1..]);
    let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
    format!("{mantissa}e+{:02}", digits.len() - 1)
}
