//! The router against a reference matcher: random route sets (paths with static, `:param` and
//! wildcard segments, exact and wildcard hosts, methods, priorities) and random lookups; the
//! router's outcome and captured parameters must be those of the reference, which tries every
//! (route, path) pair and sorts the matches by the documented order (lib.rs "Match order").
//!
//! Input: a byte program. The route set first (count, then per route: paths, hosts, methods,
//! priority, each drawn from small tables so routes collide often), then lookups until the end.
#![no_main]
use gateway_router::{normalize_path, Outcome, Params, RouteSpec, Router};
use libfuzzer_sys::fuzz_target;

// "{" and "é" are outside the path grammar: routes and requests meet on their escapes
const PATTERN_SEGS: [&str; 9] = ["a", "b", "c", "a:b", "~", ":x", ":y", "{", "caf\u{e9}"];
const PATH_SEGS: [&str; 16] = [
    "a", "b", "c", "x", "a:b", "", ".", "..", "%61", "%7E", "%2F", "~", "{", "%7b", "caf\u{e9}",
    "caf%c3%A9",
];
const ROUTE_HOSTS: [&str; 5] = ["a.com", "*.a.com", "b.a.com", "*.b.a.com", "[::1]"];
const REQUEST_HOSTS: [&str; 9] =
    ["", "a.com", "A.COM:8080", "b.a.com", "x.b.a.com", "a.com.", "xa.com", "[::1]:80", "::1"];
const ROUTE_METHODS: [&str; 3] = ["GET", "POST", "PURGE"];
const REQUEST_METHODS: [&str; 5] = ["GET", "POST", "HEAD", "PURGE", "get"];

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Static,
    Param,
    Wild,
}

fn pick<'a>(table: &[&'a str], b: u8) -> &'a str {
    table[b as usize % table.len()]
}

fn gen_pattern(bytes: &mut Bytes<'_>) -> Option<String> {
    let shape = bytes.next()?;
    let mut p = String::new();
    let mut names = Vec::new();
    for _ in 0..(shape % 4) {
        p.push('/');
        let seg = pick(&PATTERN_SEGS, bytes.next()?);
        p.push_str(seg);
        if seg.starts_with(':') {
            // a name repeated in one pattern is a build error: number the repeats
            if names.contains(&seg) {
                p.push_str(&names.len().to_string());
            }
            names.push(seg);
        }
    }
    match (shape >> 2) % 4 {
        0 => {}
        1 => p.push('/'), // a significant trailing slash
        2 => p.push_str("/*"),
        _ => p.push_str("/*rest"),
    }
    if p.is_empty() {
        p.push('/');
    }
    Some(p)
}

fn gen_routes(bytes: &mut Bytes<'_>) -> Option<Vec<RouteSpec>> {
    let count = bytes.next()? % 8 + 1;
    let mut routes = Vec::new();
    for _ in 0..count {
        let head = bytes.next()?;
        let paths = (0..1 + head % 2).map(|_| gen_pattern(bytes)).collect::<Option<Vec<_>>>()?;
        let host_bits = bytes.next()?;
        let hosts = ROUTE_HOSTS
            .iter()
            .enumerate()
            .filter(|(i, _)| host_bits & (1 << i) != 0)
            .map(|(_, h)| h.to_string())
            .collect();
        let methods = ROUTE_METHODS
            .iter()
            .enumerate()
            .filter(|(i, _)| head & (2 << i) != 0)
            .map(|(_, m)| m.to_string())
            .collect();
        let priority = i32::from((head >> 4) % 3) - 1;
        routes.push(RouteSpec { paths, hosts, methods, priority });
    }
    Some(routes)
}

/// The request host as routes see it: lowercase, no port, one trailing dot dropped.
fn request_host(raw: &str) -> Option<String> {
    let h = raw.to_ascii_lowercase();
    let h = if let Some(v6) = h.strip_prefix('[') {
        v6.split(']').next().unwrap_or("").to_string()
    } else if h.matches(':').count() > 1 {
        h // a bare IPv6 address: no port to strip
    } else {
        h.split(':').next().unwrap_or("").to_string()
    };
    let h = h.strip_suffix('.').map(str::to_string).unwrap_or(h);
    (!h.is_empty()).then_some(h)
}

/// The host rank of a route for a request host: exact, then wildcard (longer suffix first),
/// then no hosts; None when the route's hosts exclude the request.
fn host_rank(hosts: &[String], req: Option<&str>) -> Option<(u8, i64)> {
    if hosts.is_empty() {
        return Some((2, 0));
    }
    let req = req?;
    let mut best = None;
    for h in hosts {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        let rank = if let Some(suffix) = h.strip_prefix("*.") {
            let dotted = format!(".{suffix}");
            (req.len() > dotted.len() && req.ends_with(&dotted))
                .then(|| (1, -(suffix.len() as i64)))
        } else {
            (h == req).then_some((0, 0))
        };
        if rank.is_some() && (best.is_none() || rank < best) {
            best = rank;
        }
    }
    best
}

struct Match {
    key: (u8, Vec<Kind>),
    params: Vec<(String, String)>,
}

/// A static pattern segment spelled as in a normalised path (escapes canonical, bytes outside the
/// grammar encoded), as the router compiles it.
fn static_segment(seg: &str) -> String {
    let raw = format!("/{seg}");
    let norm = normalize_path(raw.as_bytes()).expect("table segments are valid");
    String::from_utf8(norm[1..].to_vec()).expect("a normalised path is ASCII")
}

fn static_equal(seg: &str, part: &str) -> bool {
    if seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'~') {
        seg == part
    } else {
        static_segment(seg) == part
    }
}

/// Whether `pattern` matches the normalised path `parts` (split after the leading '/').
fn match_pattern(pattern: &str, parts: &[&str]) -> Option<Match> {
    let segs: Vec<&str> = pattern[1..].split('/').collect();
    let (prefix, wild) = match segs.last() {
        Some(w) if w.starts_with('*') => (&segs[..segs.len() - 1], Some(&w[1..])),
        _ => (&segs[..], None),
    };
    let mut kinds = Vec::new();
    let mut params = Vec::new();
    if wild.is_some() {
        if parts.len() <= prefix.len() {
            return None;
        }
    } else if parts.len() != prefix.len() {
        return None;
    }
    for (seg, part) in prefix.iter().zip(parts) {
        if let Some(name) = seg.strip_prefix(':') {
            if part.is_empty() {
                return None;
            }
            kinds.push(Kind::Param);
            params.push((name.to_string(), part.to_string()));
        } else if static_equal(seg, part) {
            kinds.push(Kind::Static);
        } else {
            return None;
        }
    }
    let category = if let Some(name) = wild {
        kinds.push(Kind::Wild);
        if !name.is_empty() {
            params.push((name.to_string(), parts[prefix.len()..].join("/")));
        }
        2
    } else if kinds.contains(&Kind::Param) {
        1
    } else {
        0
    };
    Some(Match { key: (category, kinds), params })
}

fn reference(
    routes: &[RouteSpec],
    method: &str,
    host: &str,
    path: &[u8],
) -> (Outcome, Vec<(String, String)>) {
    let Ok(norm) = normalize_path(path) else { return (Outcome::BadPath, vec![]) };
    // raw UTF-8 in the tables comes out encoded: the forwarded path is ASCII
    let norm = String::from_utf8(norm.into_owned()).expect("a normalised path is ASCII");
    let parts: Vec<&str> = norm[1..].split('/').collect();
    let req_host = request_host(host);
    let mut candidates = Vec::new();
    for (idx, route) in routes.iter().enumerate() {
        let Some(rank) = host_rank(&route.hosts, req_host.as_deref()) else { continue };
        for (k, pattern) in route.paths.iter().enumerate() {
            if let Some(m) = match_pattern(pattern, &parts) {
                candidates.push(((m.key.clone(), rank, -route.priority, idx, k), m.params, idx));
            }
        }
    }
    candidates.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, params, idx) in &candidates {
        let methods = &routes[*idx].methods;
        if methods.is_empty() || methods.iter().any(|m| m == method) {
            return (Outcome::Found(*idx as u32), params.clone());
        }
    }
    let outcome = if candidates.is_empty() { Outcome::NotFound } else { Outcome::MethodNotAllowed };
    (outcome, vec![])
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = Bytes(data);
    let Some(routes) = gen_routes(&mut bytes) else { return };
    let router = Router::new(&routes).unwrap_or_else(|e| panic!("{e} for {routes:?}"));
    let mut params = Params::new();
    while let (Some(m), Some(h), Some(shape)) = (bytes.next(), bytes.next(), bytes.next()) {
        let method = pick(&REQUEST_METHODS, m);
        let host = pick(&REQUEST_HOSTS, h);
        let mut path = String::new();
        for _ in 0..shape % 6 {
            path.push('/');
            path.push_str(pick(&PATH_SEGS, bytes.next().unwrap_or(0)));
        }
        if shape & 0x40 != 0 || path.is_empty() {
            path.push('/');
        }
        let got = router.find(method.as_bytes(), host.as_bytes(), path.as_bytes(), &mut params);
        let got_params: Vec<(String, String)> = params
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        let want = reference(&routes, method, host, path.as_bytes());
        assert_eq!(
            (got, got_params),
            want,
            "{method} host {host:?} path {path:?} routes {routes:?}"
        );
    }
});
