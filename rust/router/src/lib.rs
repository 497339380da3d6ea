//! `gateway-router`: the request router, compiled once from the config's routes and matched once
//! per request on the hot path (host + path, then method, by priority).
//!
//! # Why not `matchit` (evaluated as asked by the issue)
//!
//! We evaluated axum's `matchit` 0.9 (the radix-trie router behind axum). It is fast and its
//! static > parameter > catch-all ordering is close to ours, but it does not fit a gateway:
//! - `Router::at` yields exactly one value per path and inserting the same pattern twice is an
//!   `InsertError::Conflict`, so several routes sharing a pattern (same path, different hosts,
//!   methods or priorities) would need a side table of candidates per pattern;
//! - it backtracks only while the *path* fails to match. Once the most specific pattern matches,
//!   we cannot ask it for the next, less specific one when every route of that pattern is excluded
//!   by host or method (our "`/api/*` still serves `/api/x` for another host" rule); emulating that
//!   means re-querying with modified paths or keeping a second router per fallback level;
//! - it has no host dimension (no host trie, no wildcard hosts) and no route priorities;
//! - catch-alls must be named and never match an empty rest (`/static/{*p}` rejects `/static/`),
//!   its syntax is `{x}` rather than the APISIX `:x` / `*` used by our config, and it takes `&str`
//!   while our hot path has raw bytes (an extra UTF-8 validation per request).
//!
//! So we wrote our own segment trie with backtracking. Matching is on whole `/`-separated
//! segments (a parameter always spans a whole segment), which keeps the trie simple: every node
//! has its static children (small sorted-by-insertion vec, or a hash map when wide), at most one
//! parameter child and at most one pattern ending there. Fully static patterns skip the trie
//! altogether and are found with one hash lookup of the whole normalised path.
//!
//! # Pattern syntax (APISIX style)
//! - exact: `/api/users`; a trailing slash is significant (`/api/users/` is another path).
//! - parameter: `/api/users/:id` - `:name` is a whole segment and matches one non-empty segment.
//!   A `:` elsewhere in a segment is a literal (`/v1/models/m:predict`).
//! - prefix wildcard: `/static/*` or `/static/*path` - `*` must be the whole last segment. It
//!   matches `/static/` and everything below it, but **not** `/static` itself (as in APISIX: the
//!   prefix is `/static/`; add a `/static` path to the route if that is wanted). The named form
//!   captures the rest after `/static/` (possibly empty) as param `path`. `/*` matches every path.
//! - static segments are normalised like request paths (unreserved escapes decoded, other
//!   escapes uppercased); `//`, `.` and `..` segments are build errors.
//!
//! # Hosts
//! Exact (`api.example.com`) or wildcard (`*.example.com`: matches `a.example.com` and
//! `a.b.example.com`, not `example.com`). Comparison is ASCII case-insensitive; one trailing dot
//! is ignored on both sides; the port of the Host header is stripped (`[::1]:8080` -> `::1`).
//! IPv6 route hosts are written `[::1]` or `::1`. A route with no hosts matches any host,
//! including a request without a Host header.
//!
//! # Match order
//! 1. Path specificity. Categories first: an exact (fully static) path beats a parameter pattern,
//!    which beats a wildcard pattern. Within the parameter and wildcard categories patterns are
//!    compared segment by segment from the left, a static segment beating a parameter
//!    (`/a/b/:x` beats `/a/:y/c` for `/a/b/c`); among wildcards a deeper one wins, i.e. the longer
//!    static prefix (`/a/b/*` beats `/a/*`).
//! 2. For the same path pattern (same shape; param names do not matter): routes whose exact host
//!    matches, then routes whose wildcard host matches (longer suffix first), then routes without
//!    hosts. A route with hosts that do not match the request is not a candidate at all.
//! 3. Then higher `priority`, then earlier definition (lower route index).
//!
//! The method is checked last: a candidate whose methods exclude the request is skipped and the
//! search goes on. If every candidate of the most specific pattern is skipped, the search
//! backtracks to the next less specific pattern that matches the path. If no route matches but
//! some route matched path and host and was skipped only for its method, the outcome is
//! [`Outcome::MethodNotAllowed`] (so the gateway can answer 405 rather than 404).
//!
//! Methods are case-sensitive tokens (RFC 9110) and must be written in uppercase in the config;
//! an empty list allows every method. HEAD is not implied by GET.
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

mod path;
pub use path::{normalize_path, PathError};

#[cfg(feature = "python")]
pub mod python;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod edit_tests;

const NONE: u32 = u32::MAX;
/// Nodes with more static children than this use a hash map instead of a linear scan.
const SMALL_CHILDREN: usize = 8;
/// Longest host name we match (DNS limit is 253 octets); longer Host headers match only
/// host-less routes.
const MAX_HOST: usize = 255;
/// Most segments in a pattern: bounds the recursion depth of the trie walk.
const MAX_SEGMENTS: usize = 256;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// One route of the config, as given to [`Router::new`]. The route index is its position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSpec {
    pub paths: Vec<String>,
    pub hosts: Vec<String>,
    pub methods: Vec<String>,
    pub priority: i32,
}

/// Why the routes cannot be compiled. `Display` names the route index, the offending value and
/// the reason, e.g. `route 3: path 'abc' must start with '/'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// The route has an empty `paths` list.
    NoPaths {
        route: usize,
    },
    InvalidPath {
        route: usize,
        path: String,
        reason: String,
    },
    InvalidHost {
        route: usize,
        host: String,
        reason: String,
    },
    InvalidMethod {
        route: usize,
        method: String,
        reason: String,
    },
    /// More routes than fit the `u32` route index.
    TooManyRoutes,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NoPaths { route } => write!(f, "route {route}: has no paths"),
            BuildError::InvalidPath { route, path, reason } => {
                write!(f, "route {route}: path '{path}' {reason}")
            }
            BuildError::InvalidHost { route, host, reason } => {
                write!(f, "route {route}: host '{host}' {reason}")
            }
            BuildError::InvalidMethod { route, method, reason } => {
                write!(f, "route {route}: method '{method}' {reason}")
            }
            BuildError::TooManyRoutes => write!(f, "too many routes"),
        }
    }
}

impl std::error::Error for BuildError {}

/// The result of [`Router::find`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The index of the matched route in the slice given to [`Router::new`].
    Found(u32),
    /// No route matches path and host.
    NotFound,
    /// Some route matches path and host but none allows the method.
    MethodNotAllowed,
    /// The path cannot be normalised (see [`normalize_path`]): answer 400.
    BadPath,
}

/// Reusable per-request scratch and result of [`Router::find`]: the normalised path and the
/// captured parameters. Reusing one `Params` between requests avoids any allocation once its
/// buffers have grown to the sizes seen.
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// The normalised path of the last `find` (empty after `BadPath`).
    path: Vec<u8>,
    changed: bool,
    /// Parameter values captured during the trie walk: byte ranges into `path`.
    caps: Vec<(u32, u32)>,
    /// Copies of the matched parameter names, concatenated.
    names: String,
    /// (name start, name end, value start, value end): ranges into `names` and `path`.
    items: Vec<(u32, u32, u32, u32)>,
}

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    /// The normalised path of the last `find` (set for every outcome except `BadPath`).
    pub fn path(&self) -> &[u8] {
        &self.path
    }

    /// Whether the normalised path differs from the raw path given to the last `find`.
    pub fn normalized_changed(&self) -> bool {
        self.changed
    }

    /// `(name, value)` pairs in pattern order; a named wildcard comes last.
    pub fn iter(&self) -> ParamsIter<'_> {
        ParamsIter { params: self, next: 0 }
    }

    /// The value of the parameter `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Forgets the path and parameters, keeping the buffers' capacity.
    pub fn clear(&mut self) {
        self.path.clear();
        self.changed = false;
        self.caps.clear();
        self.names.clear();
        self.items.clear();
    }
}

/// Iterator over `(name, value)` of [`Params`].
pub struct ParamsIter<'a> {
    params: &'a Params,
    next: usize,
}

impl<'a> Iterator for ParamsIter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let &(ns, ne, vs, ve) = self.params.items.get(self.next)?;
        self.next += 1;
        Some((
            &self.params.names[ns as usize..ne as usize],
            &self.params.path[vs as usize..ve as usize],
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.params.items.len() - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for ParamsIter<'_> {}

/// The compiled router. `Send + Sync`: share it between threads behind an `Arc` and swap the
/// `Arc` on reload. [`Router::set_route`] changes one route in place (clone it first to keep
/// serving the old one meanwhile).
#[derive(Debug, Clone)]
pub struct Router {
    route_count: usize,
    /// Method filter per route index.
    methods: Vec<MethodSet>,
    /// Hosts and priority per route index (to place a route set later among the others).
    route_hosts: Vec<Vec<HostPat>>,
    route_priority: Vec<i32>,
    /// One entry per (route, path).
    entries: Vec<Entry>,
    /// Candidate sets, one per distinct pattern shape.
    leaves: Vec<Leaf>,
    /// Fully static patterns: normalised path -> leaf.
    statics: FxMap<Box<[u8]>, u32>,
    /// Patterns with parameters and no wildcard; node 0 is the root (before the first segment).
    param_trie: Vec<Node>,
    /// Patterns ending in a wildcard; a node's leaf is the wildcard below that node.
    wild_trie: Vec<Node>,
    /// Whether any route has hosts (otherwise the Host header is not even parsed).
    any_hosts: bool,
}

impl Router {
    /// Compiles the routes; the route index is the position in `routes`.
    pub fn new(routes: &[RouteSpec]) -> Result<Router, BuildError> {
        if routes.len() >= NONE as usize {
            return Err(BuildError::TooManyRoutes);
        }
        let mut b = Builder::default();
        let mut methods = Vec::with_capacity(routes.len());
        let mut any_hosts = false;
        for (idx, spec) in routes.iter().enumerate() {
            let parsed = ParsedRoute::parse(idx, spec)?;
            any_hosts |= !parsed.hosts.is_empty();
            methods.push(parsed.methods);
            b.route_hosts.push(parsed.hosts);
            b.route_priority.push(spec.priority);
            for pattern in parsed.patterns {
                b.insert(idx as u32, pattern);
            }
        }
        Ok(b.finish(routes.len(), methods, any_hosts))
    }

    /// Sets route `index` to `spec` (`index == len()` adds a route), or removes it (`None`: the
    /// index stays taken and matches nothing, so the other routes keep theirs). The route is
    /// placed among the others as [`Router::new`] would place it at that index. On an error the
    /// router is unchanged.
    pub fn set_route(&mut self, index: usize, spec: Option<&RouteSpec>) -> Result<(), BuildError> {
        if index > self.route_count || index + 1 >= NONE as usize {
            return Err(BuildError::TooManyRoutes);
        }
        let parsed = spec.map(|s| ParsedRoute::parse(index, s)).transpose()?;
        let route = index as u32;
        if index == self.route_count {
            self.route_count += 1;
            self.methods.push(MethodSet::parse(index, &[])?);
            self.route_hosts.push(Vec::new());
            self.route_priority.push(0);
        } else {
            self.remove_entries(route);
        }
        let Some(parsed) = parsed else {
            return Ok(());
        };
        self.any_hosts |= !parsed.hosts.is_empty();
        self.methods[index] = parsed.methods;
        self.route_hosts[index] = parsed.hosts;
        self.route_priority[index] = spec.map_or(0, |s| s.priority);
        for pattern in parsed.patterns {
            self.insert_entry(route, pattern);
        }
        Ok(())
    }

    /// Takes every entry of `route` out of its leaf.
    fn remove_entries(&mut self, route: u32) {
        for e in 0..self.entries.len() {
            if self.entries[e].route != route {
                continue;
            }
            self.entries[e].route = NONE;
            let e = e as u32;
            let leaf = &mut self.leaves[self.entries[e as usize].leaf as usize];
            let without =
                |list: &[u32]| -> Box<[u32]> { list.iter().copied().filter(|&x| x != e).collect() };
            leaf.no_host = without(&leaf.no_host);
            if let Some(hosts) = &mut leaf.hosts {
                for map in [&mut hosts.exact, &mut hosts.wild] {
                    for list in map.values_mut() {
                        *list = without(list);
                    }
                    map.retain(|_, list| !list.is_empty());
                }
            }
        }
    }

    /// Adds one (route, path) entry: the trie nodes and leaf it needs, then the entry in the
    /// leaf's candidate lists in the builder's order.
    fn insert_entry(&mut self, route: u32, pattern: Pattern) {
        let (params, wildcard, is_wild, is_static) = pattern.entry_parts();
        let next_leaf = self.leaves.len() as u32;
        let leaf = if is_static {
            *self.statics.entry(pattern.static_key()).or_insert(next_leaf)
        } else {
            let trie = if is_wild { &mut self.wild_trie } else { &mut self.param_trie };
            if trie.is_empty() {
                trie.push(Node::empty());
            }
            let mut node = 0usize;
            for s in pattern.segs {
                let next = trie.len() as u32;
                let child = match s {
                    Seg::Static(bytes) => match trie[node].statics.get(&bytes) {
                        Some(c) => c,
                        None => {
                            trie[node].statics.insert(bytes, next);
                            trie.push(Node::empty());
                            next
                        }
                    },
                    Seg::Param(_) => {
                        if trie[node].param == NONE {
                            trie[node].param = next;
                            trie.push(Node::empty());
                        }
                        trie[node].param
                    }
                };
                node = child as usize;
            }
            if trie[node].leaf == NONE {
                trie[node].leaf = next_leaf;
            }
            trie[node].leaf
        };
        if leaf == next_leaf {
            self.leaves.push(Leaf { no_host: Box::new([]), hosts: None });
        }
        let e = self.entries.len() as u32;
        self.entries.push(Entry { route, params, wildcard, leaf });
        let (entries, priority) = (&self.entries, &self.route_priority);
        let placed = |list: &[u32]| -> Box<[u32]> {
            let mut v = list.to_vec();
            v.push(e);
            sort_candidates(&mut v, entries, priority);
            v.into_boxed_slice()
        };
        let hosts = &self.route_hosts[route as usize];
        let leaf = &mut self.leaves[leaf as usize];
        if hosts.is_empty() {
            leaf.no_host = placed(&leaf.no_host);
        }
        for h in hosts {
            let index = leaf.hosts.get_or_insert_with(Default::default);
            let (map, key) = match h {
                HostPat::Exact(h) => (&mut index.exact, h),
                HostPat::Suffix(s) => (&mut index.wild, s),
            };
            let list = map.entry(key.clone()).or_insert_with(|| Box::new([]));
            *list = placed(list);
        }
    }

    /// Number of routes the router was built from.
    pub fn len(&self) -> usize {
        self.route_count
    }

    pub fn is_empty(&self) -> bool {
        self.route_count == 0
    }

    /// Matches a request. `path` is the raw path (no query string); it is normalised into
    /// `params` first (see [`normalize_path`]) and parameters are byte ranges of the normalised
    /// path. `host` is the Host header value (port allowed, may be empty). No allocation happens
    /// once `params` has been used for paths of similar length.
    pub fn find(&self, method: &[u8], host: &[u8], path: &[u8], params: &mut Params) -> Outcome {
        params.clear();
        match path::normalize_into(path, &mut params.path) {
            Ok(changed) => params.changed = changed,
            Err(_) => return Outcome::BadPath,
        }
        let mut host_buf = [0u8; MAX_HOST];
        let host = if self.any_hosts { request_host(host, &mut host_buf) } else { None };
        let mut req = Req { method, method_bit: method_bit(method), host, blocked: false };
        let Params { path, caps, names, items, .. } = params;
        let p: &[u8] = path;

        // 1. exact paths
        if let Some(&leaf) = self.statics.get(p) {
            if let Some(e) = self.pick(leaf, &mut req) {
                return Outcome::Found(self.entries[e as usize].route);
            }
        }
        // 2. parameter patterns
        if self.param_trie.len() > 1 {
            if let Some(e) = self.walk_params(0, p, 1, caps, &mut req) {
                return self.found(e, caps, None, names, items);
            }
            caps.clear();
        }
        // 3. wildcard patterns
        if !self.wild_trie.is_empty() {
            if let Some((e, rest)) = self.walk_wild(0, p, 1, caps, &mut req) {
                return self.found(e, caps, Some((rest as u32, p.len() as u32)), names, items);
            }
        }
        if req.blocked {
            Outcome::MethodNotAllowed
        } else {
            Outcome::NotFound
        }
    }

    fn found(
        &self,
        e: u32,
        caps: &[(u32, u32)],
        rest: Option<(u32, u32)>,
        names: &mut String,
        items: &mut Vec<(u32, u32, u32, u32)>,
    ) -> Outcome {
        let entry = &self.entries[e as usize];
        let mut push = |name: &str, (vs, ve): (u32, u32)| {
            let ns = names.len() as u32;
            names.push_str(name);
            items.push((ns, names.len() as u32, vs, ve));
        };
        for (name, &range) in entry.params.iter().zip(caps) {
            push(name, range);
        }
        if let (Some(name), Some(range)) = (&entry.wildcard, rest) {
            push(name, range);
        }
        Outcome::Found(entry.route)
    }

    /// Depth-first walk of the parameter trie from `node`, whose next segment starts at `pos`.
    /// Static child before parameter child: the first leaf with an acceptable route is the most
    /// specific match.
    fn walk_params(
        &self,
        node: u32,
        p: &[u8],
        pos: usize,
        caps: &mut Vec<(u32, u32)>,
        req: &mut Req<'_>,
    ) -> Option<u32> {
        let n = &self.param_trie[node as usize];
        let end = segment_end(p, pos);
        let seg = &p[pos..end];
        let last = end == p.len();
        if let Some(child) = n.statics.get(seg) {
            if let Some(e) = self.param_step(child, p, end, last, caps, req) {
                return Some(e);
            }
        }
        if n.param != NONE && !seg.is_empty() {
            caps.push((pos as u32, end as u32));
            if let Some(e) = self.param_step(n.param, p, end, last, caps, req) {
                return Some(e);
            }
            caps.pop();
        }
        None
    }

    #[inline]
    fn param_step(
        &self,
        child: u32,
        p: &[u8],
        end: usize,
        last: bool,
        caps: &mut Vec<(u32, u32)>,
        req: &mut Req<'_>,
    ) -> Option<u32> {
        if last {
            let leaf = self.param_trie[child as usize].leaf;
            if leaf != NONE {
                return self.pick(leaf, req);
            }
            None
        } else {
            self.walk_params(child, p, end + 1, caps, req)
        }
    }

    /// Depth-first walk of the wildcard trie: deeper wildcards (longer prefixes) first, static
    /// before parameter at each segment, then the wildcard of `node` itself, which matches the
    /// rest of the path from `pos` (possibly empty). Returns the entry and the rest's start.
    fn walk_wild(
        &self,
        node: u32,
        p: &[u8],
        pos: usize,
        caps: &mut Vec<(u32, u32)>,
        req: &mut Req<'_>,
    ) -> Option<(u32, usize)> {
        let n = &self.wild_trie[node as usize];
        let end = segment_end(p, pos);
        // A deeper wildcard needs a '/' after the next segment.
        if end < p.len() {
            let seg = &p[pos..end];
            if let Some(child) = n.statics.get(seg) {
                if let Some(r) = self.walk_wild(child, p, end + 1, caps, req) {
                    return Some(r);
                }
            }
            if n.param != NONE && !seg.is_empty() {
                caps.push((pos as u32, end as u32));
                if let Some(r) = self.walk_wild(n.param, p, end + 1, caps, req) {
                    return Some(r);
                }
                caps.pop();
            }
        }
        if n.leaf != NONE {
            if let Some(e) = self.pick(n.leaf, req) {
                return Some((e, pos));
            }
        }
        None
    }

    /// The best acceptable entry of a pattern's candidates: exact host, then wildcard hosts by
    /// decreasing suffix length, then host-less routes; each bucket is sorted by priority then
    /// definition order. Records in `req.blocked` that a host-matching route failed the method.
    #[inline]
    fn pick(&self, leaf: u32, req: &mut Req<'_>) -> Option<u32> {
        let leaf = &self.leaves[leaf as usize];
        if let (Some(hosts), Some(h)) = (&leaf.hosts, req.host) {
            if !hosts.exact.is_empty() {
                if let Some(list) = hosts.exact.get(h) {
                    if let Some(e) = self.first_allowed(list, req) {
                        return Some(e);
                    }
                }
            }
            if !hosts.wild.is_empty() {
                // Suffixes after each '.', longest first; the first label is never a suffix, so
                // `*.example.com` does not match `example.com`.
                let mut i = 0;
                while let Some(off) = h[i..].iter().position(|&c| c == b'.') {
                    let dot = i + off;
                    if dot > 0 && dot + 1 < h.len() {
                        if let Some(list) = hosts.wild.get(&h[dot + 1..]) {
                            if let Some(e) = self.first_allowed(list, req) {
                                return Some(e);
                            }
                        }
                    }
                    i = dot + 1;
                }
            }
        }
        self.first_allowed(&leaf.no_host, req)
    }

    #[inline]
    fn first_allowed(&self, list: &[u32], req: &mut Req<'_>) -> Option<u32> {
        for &e in list {
            let route = self.entries[e as usize].route;
            if self.methods[route as usize].allows(req.method_bit, req.method) {
                return Some(e);
            }
            req.blocked = true;
        }
        None
    }
}

#[inline]
fn segment_end(p: &[u8], pos: usize) -> usize {
    match p[pos..].iter().position(|&c| c == b'/') {
        Some(i) => pos + i,
        None => p.len(),
    }
}

// ---------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------

/// Per-request matching state.
struct Req<'a> {
    method: &'a [u8],
    method_bit: u16,
    /// Lowercased host without port, `None` when absent or not matchable.
    host: Option<&'a [u8]>,
    /// A route matched path and host but not the method.
    blocked: bool,
}

/// One (route, path) pair: a candidate in its pattern's leaf.
#[derive(Debug, Clone)]
struct Entry {
    /// NONE once the route was removed or set again.
    route: u32,
    leaf: u32,
    /// Names of the `:params` in order (the pattern's own names).
    params: Box<[Box<str>]>,
    /// Name of a named wildcard.
    wildcard: Option<Box<str>>,
}

#[derive(Debug, Clone)]
struct Leaf {
    /// Entries of routes without hosts, best first.
    no_host: Box<[u32]>,
    hosts: Option<Box<HostIndex>>,
}

#[derive(Debug, Default, Clone)]
struct HostIndex {
    /// exact host -> entries, best first
    exact: FxMap<Box<[u8]>, Box<[u32]>>,
    /// wildcard suffix (`example.com` for `*.example.com`) -> entries, best first
    wild: FxMap<Box<[u8]>, Box<[u32]>>,
}

#[derive(Debug, Clone)]
struct Node {
    statics: Children,
    /// The `:param` child, or NONE.
    param: u32,
    /// Leaf of the pattern ending at this node (param trie) / wildcard below it (wildcard trie).
    leaf: u32,
}

#[derive(Debug, Clone)]
enum Children {
    Small(Box<[(Box<[u8]>, u32)]>),
    Map(FxMap<Box<[u8]>, u32>),
}

impl Node {
    fn empty() -> Node {
        Node { statics: Children::Small(Box::new([])), param: NONE, leaf: NONE }
    }
}

impl Children {
    /// Adds a static child after the others (the builder's insertion order).
    fn insert(&mut self, seg: Box<[u8]>, child: u32) {
        match self {
            Children::Small(v) => {
                let mut list = std::mem::take(v).into_vec();
                list.push((seg, child));
                *self = if list.len() > SMALL_CHILDREN {
                    Children::Map(list.into_iter().collect())
                } else {
                    Children::Small(list.into_boxed_slice())
                };
            }
            Children::Map(m) => {
                m.insert(seg, child);
            }
        }
    }

    #[inline]
    fn get(&self, seg: &[u8]) -> Option<u32> {
        match self {
            Children::Small(v) => v.iter().find(|(k, _)| **k == *seg).map(|&(_, c)| c),
            Children::Map(m) => m.get(seg).copied(),
        }
    }
}

// ----- methods -----

const ANY_METHOD: u16 = 1 << 15;

#[inline]
fn method_bit(m: &[u8]) -> u16 {
    match m {
        b"GET" => 1,
        b"HEAD" => 1 << 1,
        b"POST" => 1 << 2,
        b"PUT" => 1 << 3,
        b"DELETE" => 1 << 4,
        b"PATCH" => 1 << 5,
        b"OPTIONS" => 1 << 6,
        b"TRACE" => 1 << 7,
        b"CONNECT" => 1 << 8,
        _ => 0,
    }
}

#[derive(Debug, Clone)]
struct MethodSet {
    bits: u16,
    others: Box<[Box<[u8]>]>,
}

impl MethodSet {
    fn parse(route: usize, methods: &[String]) -> Result<MethodSet, BuildError> {
        if methods.is_empty() {
            return Ok(MethodSet { bits: ANY_METHOD, others: Box::new([]) });
        }
        let mut bits = 0;
        let mut others: Vec<Box<[u8]>> = Vec::new();
        for m in methods {
            let err = |reason: &str| BuildError::InvalidMethod {
                route,
                method: m.clone(),
                reason: reason.to_string(),
            };
            if m.is_empty() {
                return Err(err("is empty"));
            }
            // tchar of RFC 9110, uppercase letters only.
            let tchar = |c: u8| {
                c.is_ascii_uppercase() || c.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&c)
            };
            if m.bytes().any(|c| c.is_ascii_lowercase()) {
                return Err(err("must be uppercase"));
            }
            if !m.bytes().all(tchar) {
                return Err(err("is not a valid method token"));
            }
            match method_bit(m.as_bytes()) {
                0 => {
                    if !others.iter().any(|o| **o == *m.as_bytes()) {
                        others.push(m.as_bytes().into())
                    }
                }
                bit => bits |= bit,
            }
        }
        Ok(MethodSet { bits, others: others.into_boxed_slice() })
    }

    #[inline]
    fn allows(&self, bit: u16, method: &[u8]) -> bool {
        if self.bits & (ANY_METHOD | bit) != 0 {
            return true;
        }
        bit == 0 && self.others.iter().any(|o| **o == *method)
    }
}

// ----- hosts -----

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPat {
    Exact(Box<[u8]>),
    /// `*.example.com` stored as `example.com`.
    Suffix(Box<[u8]>),
}

fn parse_host(raw: &str) -> Result<HostPat, String> {
    if !raw.is_ascii() {
        return Err("must be ASCII (use the punycode form)".into());
    }
    let s = raw.to_ascii_lowercase();
    let ipv6 = |inner: &str| -> Result<HostPat, String> {
        if inner.matches(':').count() < 2
            || !inner.bytes().all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        {
            return Err("is not a valid IPv6 literal".into());
        }
        Ok(HostPat::Exact(inner.as_bytes().into()))
    };
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.strip_suffix(']') {
            Some(inner) => ipv6(inner),
            None => Err("must be a bracketed IPv6 literal without a port".into()),
        };
    }
    let colons = s.matches(':').count();
    if colons >= 2 {
        return ipv6(&s);
    }
    if colons == 1 {
        return Err("must not contain a port".into());
    }
    let (wild, name) = match s.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, s.as_str()),
    };
    if name.contains('*') {
        return Err("may use '*' only as a leading '*.' label".into());
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.starts_with('.') || name.contains("..") {
        return Err("is not a valid host name".into());
    }
    if name.len() > 253 {
        return Err("is too long".into());
    }
    if !name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_')) {
        return Err("contains an invalid character".into());
    }
    let name: Box<[u8]> = name.as_bytes().into();
    Ok(if wild { HostPat::Suffix(name) } else { HostPat::Exact(name) })
}

/// The request host for matching: port stripped, brackets of an IPv6 literal removed, one
/// trailing dot removed, lowercased into `buf`. `None` when empty or too long.
fn request_host<'b>(raw: &[u8], buf: &'b mut [u8; MAX_HOST]) -> Option<&'b [u8]> {
    let h = if raw.first() == Some(&b'[') {
        let close = raw.iter().position(|&c| c == b']')?;
        &raw[1..close]
    } else {
        match raw.iter().position(|&c| c == b':') {
            // A single colon separates the port; several mean an unbracketed IPv6 literal.
            Some(i) if !raw[i + 1..].contains(&b':') => &raw[..i],
            _ => raw,
        }
    };
    let h = h.strip_suffix(b".").unwrap_or(h);
    if h.is_empty() || h.len() > MAX_HOST {
        return None;
    }
    let out = &mut buf[..h.len()];
    for (o, &c) in out.iter_mut().zip(h) {
        *o = c.to_ascii_lowercase();
    }
    Some(out)
}

// ----- patterns -----

#[derive(Debug)]
enum Seg {
    Static(Box<[u8]>),
    Param(Box<str>),
}

#[derive(Debug)]
struct Pattern {
    segs: Vec<Seg>,
    /// `Some(None)`: unnamed `*`; `Some(Some(name))`: `*name`.
    wildcard: Option<Option<Box<str>>>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// Whether a raw pattern segment is `.` or `..`, also when spelled with `%2e`.
fn is_dot_segment(seg: &str) -> bool {
    let s = seg.to_ascii_lowercase().replace("%2e", ".");
    s == "." || s == ".."
}

fn parse_pattern(raw: &str) -> Result<Pattern, String> {
    if !raw.starts_with('/') {
        return Err("must start with '/'".into());
    }
    let raw_segs: Vec<&str> = raw[1..].split('/').collect();
    let count = raw_segs.len();
    if count > MAX_SEGMENTS {
        return Err(format!("has more than {MAX_SEGMENTS} segments"));
    }
    let mut segs = Vec::with_capacity(count);
    let mut wildcard = None;
    let mut names: Vec<&str> = Vec::new();
    for (i, seg) in raw_segs.iter().enumerate() {
        let last = i + 1 == count;
        if let Some(name) = seg.strip_prefix('*') {
            if !last {
                return Err("may have '*' only at the end ('/prefix/*' or '/prefix/*name')".into());
            }
            if name.is_empty() {
                wildcard = Some(None);
            } else {
                if !valid_name(name) {
                    return Err(format!("has an invalid wildcard name '{name}'"));
                }
                if names.contains(&name) {
                    return Err(format!("has a duplicate param name '{name}'"));
                }
                wildcard = Some(Some(name.into()));
            }
        } else if let Some(name) = seg.strip_prefix(':') {
            if !valid_name(name) {
                return Err(format!(
                    "has an invalid param name '{name}' (letters, digits, '_' and '-')"
                ));
            }
            if names.contains(&name) {
                return Err(format!("has a duplicate param name '{name}'"));
            }
            names.push(name);
            segs.push(Seg::Param(name.into()));
        } else {
            if seg.contains('*') {
                return Err("may have '*' only at the end ('/prefix/*' or '/prefix/*name')".into());
            }
            if seg.is_empty() && !last {
                return Err("has an empty segment ('//')".into());
            }
            if is_dot_segment(seg) {
                return Err("has a '.' or '..' segment".into());
            }
            if let Some(c) = seg.bytes().find(|&c| c <= b' ' || c == 0x7f || c == b'?' || c == b'#')
            {
                return Err(format!("contains the invalid character {:?}", c as char));
            }
            // Canonicalise escapes the way request paths are normalised.
            let mut buf = Vec::with_capacity(seg.len() + 1);
            buf.push(b'/');
            buf.extend_from_slice(seg.as_bytes());
            let norm = normalize_path(&buf).map_err(|e| format!("is invalid: {e}"))?;
            segs.push(Seg::Static(norm[1..].into()));
        }
    }
    Ok(Pattern { segs, wildcard })
}

/// A route's spec, checked and parsed.
struct ParsedRoute {
    methods: MethodSet,
    hosts: Vec<HostPat>,
    patterns: Vec<Pattern>,
}

impl ParsedRoute {
    fn parse(idx: usize, spec: &RouteSpec) -> Result<ParsedRoute, BuildError> {
        if spec.paths.is_empty() {
            return Err(BuildError::NoPaths { route: idx });
        }
        let mut hosts = Vec::with_capacity(spec.hosts.len());
        for h in &spec.hosts {
            let pat = parse_host(h).map_err(|reason| BuildError::InvalidHost {
                route: idx,
                host: h.clone(),
                reason,
            })?;
            if !hosts.contains(&pat) {
                hosts.push(pat);
            }
        }
        let methods = MethodSet::parse(idx, &spec.methods)?;
        let mut patterns = Vec::with_capacity(spec.paths.len());
        for p in &spec.paths {
            patterns.push(parse_pattern(p).map_err(|reason| BuildError::InvalidPath {
                route: idx,
                path: p.clone(),
                reason,
            })?);
        }
        Ok(ParsedRoute { methods, hosts, patterns })
    }
}

/// (param names, wildcard name, is a wildcard pattern, is fully static)
type EntryParts = (Box<[Box<str>]>, Option<Box<str>>, bool, bool);

impl Pattern {
    fn entry_parts(&self) -> EntryParts {
        let params: Box<[Box<str>]> = self
            .segs
            .iter()
            .filter_map(|s| match s {
                Seg::Param(n) => Some(n.clone()),
                Seg::Static(_) => None,
            })
            .collect();
        let is_static = params.is_empty() && self.wildcard.is_none();
        let (wildcard, is_wild) = match &self.wildcard {
            Some(name) => (name.clone(), true),
            None => (None, false),
        };
        (params, wildcard, is_wild, is_static)
    }

    /// The normalised path of a fully static pattern.
    fn static_key(&self) -> Box<[u8]> {
        let mut key = Vec::new();
        for s in &self.segs {
            if let Seg::Static(bytes) = s {
                key.push(b'/');
                key.extend_from_slice(bytes);
            }
        }
        key.into_boxed_slice()
    }
}

/// A leaf's candidates best first: higher priority, then earlier route, then earlier path of
/// that route; a route listed twice in one bucket (two paths of the same shape) keeps one entry.
fn sort_candidates(list: &mut Vec<u32>, entries: &[Entry], priority: &[i32]) {
    list.sort_by_key(|&e| {
        let r = entries[e as usize].route;
        (std::cmp::Reverse(priority[r as usize]), r, e)
    });
    list.dedup_by_key(|&mut e| entries[e as usize].route);
}

// ----- builder -----

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A small, fast non-cryptographic hasher for short byte strings (path segments, host names).
/// The keys come from the config; request bytes are only looked up, never inserted, so flooding
/// the tables is not possible.
#[derive(Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let rem = chunks.remainder();
        if !rem.is_empty() {
            let mut w = [0u8; 8];
            w[..rem.len()].copy_from_slice(rem);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Final avalanche so that the low bits used by the table depend on every input bit.
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

#[derive(Default)]
struct BNode {
    statics: FxMap<Box<[u8]>, u32>,
    /// Insertion order of static children (keeps the small-vec form deterministic).
    order: Vec<u32>,
    param: u32,
    leaf: u32,
}

impl BNode {
    fn new() -> BNode {
        BNode { statics: FxMap::default(), order: Vec::new(), param: NONE, leaf: NONE }
    }
}

#[derive(Default)]
struct Builder {
    route_hosts: Vec<Vec<HostPat>>,
    route_priority: Vec<i32>,
    entries: Vec<Entry>,
    /// Entries of each leaf.
    leaves: Vec<Vec<u32>>,
    statics: FxMap<Box<[u8]>, u32>,
    param_trie: Vec<BNode>,
    wild_trie: Vec<BNode>,
}

impl Builder {
    fn insert(&mut self, route: u32, pattern: Pattern) {
        let (params, wildcard, is_wild, is_static) = pattern.entry_parts();
        let entry = self.entries.len() as u32;

        let leaf = if is_static {
            let next = self.leaves.len() as u32;
            let leaf = *self.statics.entry(pattern.static_key()).or_insert(next);
            if leaf == next {
                self.leaves.push(Vec::new());
            }
            leaf
        } else {
            let trie = if is_wild { &mut self.wild_trie } else { &mut self.param_trie };
            if trie.is_empty() {
                trie.push(BNode::new());
            }
            let mut node = 0usize;
            for s in pattern.segs {
                let next = trie.len() as u32;
                let child = match s {
                    Seg::Static(bytes) => {
                        let n = &mut trie[node];
                        let child = *n.statics.entry(bytes).or_insert(next);
                        if child == next {
                            n.order.push(next);
                        }
                        child
                    }
                    Seg::Param(_) => {
                        let n = &mut trie[node];
                        if n.param == NONE {
                            n.param = next;
                        }
                        n.param
                    }
                };
                if child == next {
                    trie.push(BNode::new());
                }
                node = child as usize;
            }
            let next = self.leaves.len() as u32;
            if trie[node].leaf == NONE {
                trie[node].leaf = next;
                self.leaves.push(Vec::new());
            }
            trie[node].leaf
        };
        self.entries.push(Entry { route, params, wildcard, leaf });
        self.leaves[leaf as usize].push(entry);
    }

    fn finish(self, route_count: usize, methods: Vec<MethodSet>, any_hosts: bool) -> Router {
        let Builder {
            route_hosts,
            route_priority,
            entries,
            leaves,
            statics,
            param_trie,
            wild_trie,
        } = self;
        let sort = |list: &mut Vec<u32>| sort_candidates(list, &entries, &route_priority);
        let leaves = leaves
            .into_iter()
            .map(|list| {
                let mut no_host = Vec::new();
                let mut exact: FxMap<Box<[u8]>, Vec<u32>> = FxMap::default();
                let mut wild: FxMap<Box<[u8]>, Vec<u32>> = FxMap::default();
                for e in list {
                    let hosts = &route_hosts[entries[e as usize].route as usize];
                    if hosts.is_empty() {
                        no_host.push(e);
                    }
                    for h in hosts {
                        match h {
                            HostPat::Exact(h) => exact.entry(h.clone()).or_default().push(e),
                            HostPat::Suffix(s) => wild.entry(s.clone()).or_default().push(e),
                        }
                    }
                }
                sort(&mut no_host);
                let finish_map = |m: FxMap<Box<[u8]>, Vec<u32>>| {
                    m.into_iter()
                        .map(|(k, mut v)| {
                            sort(&mut v);
                            (k, v.into_boxed_slice())
                        })
                        .collect::<FxMap<_, _>>()
                };
                let hosts = if exact.is_empty() && wild.is_empty() {
                    None
                } else {
                    Some(Box::new(HostIndex { exact: finish_map(exact), wild: finish_map(wild) }))
                };
                Leaf { no_host: no_host.into_boxed_slice(), hosts }
            })
            .collect();
        let freeze = |trie: Vec<BNode>| -> Vec<Node> {
            trie.into_iter()
                .map(|mut n| {
                    let statics = if n.statics.len() > SMALL_CHILDREN {
                        n.statics.shrink_to_fit();
                        Children::Map(n.statics)
                    } else {
                        let mut v: Vec<(Box<[u8]>, u32)> = n.statics.into_iter().collect();
                        v.sort_by_key(|&(_, c)| n.order.iter().position(|&o| o == c));
                        Children::Small(v.into_boxed_slice())
                    };
                    Node { statics, param: n.param, leaf: n.leaf }
                })
                .collect()
        };
        Router {
            route_count,
            methods,
            route_hosts,
            route_priority,
            entries,
            leaves,
            statics,
            param_trie: freeze(param_trie),
            wild_trie: freeze(wild_trie),
            any_hosts,
        }
    }
}
