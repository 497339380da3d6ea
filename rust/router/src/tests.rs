use super::*;
use std::borrow::Cow;

fn r(paths: &[&str]) -> RouteSpec {
    RouteSpec { paths: paths.iter().map(|s| s.to_string()).collect(), ..RouteSpec::default() }
}

fn rh(paths: &[&str], hosts: &[&str]) -> RouteSpec {
    RouteSpec { hosts: hosts.iter().map(|s| s.to_string()).collect(), ..r(paths) }
}

fn rm(paths: &[&str], methods: &[&str]) -> RouteSpec {
    RouteSpec { methods: methods.iter().map(|s| s.to_string()).collect(), ..r(paths) }
}

fn prio(mut spec: RouteSpec, p: i32) -> RouteSpec {
    spec.priority = p;
    spec
}

fn router(routes: Vec<RouteSpec>) -> Router {
    Router::new(&routes).unwrap()
}

fn find(rt: &Router, method: &str, host: &str, path: &str) -> Outcome {
    let mut p = Params::new();
    rt.find(method.as_bytes(), host.as_bytes(), path.as_bytes(), &mut p)
}

fn get(rt: &Router, path: &str) -> Outcome {
    find(rt, "GET", "example.com", path)
}

fn params_of(rt: &Router, path: &str) -> (Outcome, Vec<(String, String)>) {
    let mut p = Params::new();
    let o = rt.find(b"GET", b"example.com", path.as_bytes(), &mut p);
    let v =
        p.iter().map(|(n, v)| (n.to_string(), String::from_utf8(v.to_vec()).unwrap())).collect();
    (o, v)
}

fn pv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn build_err(routes: Vec<RouteSpec>) -> String {
    Router::new(&routes).unwrap_err().to_string()
}

fn norm(s: &str) -> Result<String, PathError> {
    normalize_path(s.as_bytes()).map(|c| String::from_utf8(c.into_owned()).unwrap())
}

use Outcome::*;

// ----- normalisation -----

#[test]
fn normalize_fast_path_borrows() {
    for p in ["/", "/api/users/42", "/a/b/", "/a.b/c..d", "/a-b_c~d", "/x/y.json"] {
        assert!(matches!(normalize_path(p.as_bytes()), Ok(Cow::Borrowed(_))), "{p}");
        assert_eq!(norm(p).unwrap(), p);
    }
}

#[test]
fn normalize_dot_segments() {
    assert_eq!(norm("/public/../admin").unwrap(), "/admin");
    assert_eq!(norm("/a/./b").unwrap(), "/a/b");
    assert_eq!(norm("/a/b/../c").unwrap(), "/a/c");
    assert_eq!(norm("/a/b/..").unwrap(), "/a/");
    assert_eq!(norm("/a/b/.").unwrap(), "/a/b/");
    assert_eq!(norm("/a/..").unwrap(), "/");
    assert_eq!(norm("/.").unwrap(), "/");
    assert_eq!(norm("/./././a").unwrap(), "/a");
    assert_eq!(norm("/a/b/c/../../d").unwrap(), "/a/d");
    // Not dot segments:
    assert_eq!(norm("/a/.../b").unwrap(), "/a/.../b");
    assert_eq!(norm("/a/..b/.c").unwrap(), "/a/..b/.c");
    assert!(matches!(normalize_path(b"/.well-known/x"), Ok(Cow::Borrowed(_))));
}

#[test]
fn normalize_encoded_dots() {
    assert_eq!(norm("/public/%2e%2e/admin").unwrap(), "/admin");
    assert_eq!(norm("/public/%2E./admin").unwrap(), "/admin");
    assert_eq!(norm("/public/.%2e/admin").unwrap(), "/admin");
    assert_eq!(norm("/a/%2e/b").unwrap(), "/a/b");
    assert_eq!(norm("/%2e%2e/admin"), Err(PathError::AboveRoot));
}

#[test]
fn normalize_above_root_is_error() {
    assert_eq!(norm("/.."), Err(PathError::AboveRoot));
    assert_eq!(norm("/../a"), Err(PathError::AboveRoot));
    assert_eq!(norm("/a/../../b"), Err(PathError::AboveRoot));
    assert_eq!(norm("/a/../.."), Err(PathError::AboveRoot));
    assert_eq!(norm("//../a"), Err(PathError::AboveRoot));
}

#[test]
fn normalize_slashes() {
    assert_eq!(norm("//a").unwrap(), "/a");
    assert_eq!(norm("/a//b///c").unwrap(), "/a/b/c");
    assert_eq!(norm("/a//").unwrap(), "/a/");
    assert_eq!(norm("//").unwrap(), "/");
    assert_eq!(norm("/a/.//b").unwrap(), "/a/b");
}

#[test]
fn normalize_escapes() {
    assert_eq!(norm("/%61dmin").unwrap(), "/admin");
    assert_eq!(norm("/%7e%2D%5f%2E%30").unwrap(), "/~-_.0");
    // Reserved / other characters stay encoded with uppercase hex.
    assert_eq!(norm("/a%2fb").unwrap(), "/a%2Fb");
    assert_eq!(norm("/a%2Fb").unwrap(), "/a%2Fb");
    assert_eq!(norm("/a%2f..%2fb").unwrap(), "/a%2F..%2Fb");
    assert_eq!(norm("/%20%3a%c3%a9").unwrap(), "/%20%3A%C3%A9");
    assert_eq!(norm("/100%25").unwrap(), "/100%25");
    // Unchanged after the slow path: borrowed.
    assert!(matches!(normalize_path(b"/a%2Fb"), Ok(Cow::Borrowed(_))));
}

#[test]
fn normalize_encodes_bytes_a_path_may_not_hold_raw() {
    // RFC 3986 section 3.3 (the grammar RFC 9112 section 3.2 gives the request-target): raw
    // UTF-8 and the excluded ASCII characters are encoded, as a client should have sent them
    assert_eq!(norm("/caf\u{e9}").unwrap(), "/caf%C3%A9");
    assert_eq!(norm("/a\"b<c>d").unwrap(), "/a%22b%3Cc%3Ed");
    assert_eq!(norm("/a{b}|c^d`e\\f[g]").unwrap(), "/a%7Bb%7D%7Cc%5Ed%60e%5Cf%5Bg%5D");
    // the byte a raw character and its escape are spelled alike once normal
    assert_eq!(norm("/a%7bb").unwrap(), norm("/a{b").unwrap());
    assert_eq!(norm("/caf%c3%a9").unwrap(), norm("/caf\u{e9}").unwrap());
    // a backslash is not a separator here, and is forwarded as one no server reads as '/'
    assert_eq!(norm("/public\\..\\admin").unwrap(), "/public%5C..%5Cadmin");
    // what a path may hold raw stays raw, and borrowed
    for p in ["/a:b@c!$&'()*+,;=d", "/v1/models/m:predict"] {
        assert!(matches!(normalize_path(p.as_bytes()), Ok(Cow::Borrowed(_))), "{p}");
    }
    // bytes the HTTP parser refuses are encoded too when the normaliser is called directly
    assert_eq!(normalize_path(b"/a b?c#d\x01").unwrap().as_ref(), b"/a%20b%3Fc%23d%01");
}

/// Found by the path_normalise fuzz target: a raw NUL was encoded as `%00`, a path that does not
/// normalise again (`%00` is an error); a raw NUL is the same error.
#[test]
fn normalize_raw_nul_is_an_error_like_its_escape() {
    assert_eq!(normalize_path(b"/a\x00b"), Err(PathError::NulByte));
    assert_eq!(normalize_path(b"/\x00"), Err(PathError::NulByte));
}

#[test]
fn find_matches_the_encoded_spelling_it_forwards() {
    let rt = router(vec![r(&["/caf\u{e9}"]), r(&["/files/:name"]), r(&["/public/*"])]);
    assert_eq!(get(&rt, "/caf\u{e9}"), Found(0));
    assert_eq!(get(&rt, "/caf%C3%A9"), Found(0));
    assert_eq!(params_of(&rt, "/files/a{b}").1, pv(&[("name", "a%7Bb%7D")]));
    let mut p = Params::new();
    assert_eq!(rt.find(b"GET", b"", b"/public/a\\..\\x", &mut p), Found(2));
    assert_eq!(p.path(), b"/public/a%5C..%5Cx");
    assert!(p.normalized_changed());
}

#[test]
fn normalize_invalid() {
    assert_eq!(norm("/%zz"), Err(PathError::InvalidEscape));
    assert_eq!(norm("/%2"), Err(PathError::InvalidEscape));
    assert_eq!(norm("/%"), Err(PathError::InvalidEscape));
    assert_eq!(norm("/a%g0/b"), Err(PathError::InvalidEscape));
    assert_eq!(norm("/a%00b"), Err(PathError::NulByte));
    assert_eq!(norm(""), Err(PathError::NotAbsolute));
    assert_eq!(norm("a/b"), Err(PathError::NotAbsolute));
    assert_eq!(norm("*"), Err(PathError::NotAbsolute));
    assert!(PathError::AboveRoot.to_string().contains(".."));
}

#[test]
fn find_uses_normalised_path() {
    let rt = router(vec![r(&["/admin"]), r(&["/public/*"]), r(&["/files/:name"])]);
    assert_eq!(get(&rt, "/public/../admin"), Found(0));
    assert_eq!(get(&rt, "/public/%2e%2e/admin"), Found(0));
    assert_eq!(get(&rt, "//admin"), Found(0));
    assert_eq!(get(&rt, "/%61dmin"), Found(0));
    assert_eq!(get(&rt, "/public/x/../y"), Found(1));
    assert_eq!(get(&rt, "/%2e%2e/admin"), BadPath);
    assert_eq!(get(&rt, "/%zz"), BadPath);
    assert_eq!(get(&rt, "/a%00"), BadPath);
    // %2F is not a separator.
    assert_eq!(params_of(&rt, "/files/a%2fb").1, pv(&[("name", "a%2Fb")]));
    assert_eq!(get(&rt, "/files/a/b"), NotFound);

    let mut p = Params::new();
    assert_eq!(rt.find(b"GET", b"", b"/public/../admin", &mut p), Found(0));
    assert!(p.normalized_changed());
    assert_eq!(p.path(), b"/admin");
    assert_eq!(rt.find(b"GET", b"", b"/admin", &mut p), Found(0));
    assert!(!p.normalized_changed());
    assert_eq!(p.path(), b"/admin");
    assert_eq!(rt.find(b"GET", b"", b"/../x", &mut p), BadPath);
    assert_eq!(p.path(), b"");
    assert_eq!(rt.find(b"GET", b"", b"//nothing", &mut p), NotFound);
    assert_eq!(p.path(), b"/nothing");
    assert!(p.normalized_changed());
}

// ----- path matching and specificity -----

#[test]
fn exact_paths() {
    let rt = router(vec![r(&["/api/users"]), r(&["/"]), r(&["/api/users/"])]);
    assert_eq!(get(&rt, "/api/users"), Found(0));
    assert_eq!(get(&rt, "/"), Found(1));
    assert_eq!(get(&rt, "/api/users/"), Found(2));
    assert_eq!(get(&rt, "/api"), NotFound);
    assert_eq!(get(&rt, "/api/users/1"), NotFound);
    assert_eq!(get(&rt, "/api/usersx"), NotFound);
}

#[test]
fn params_match_one_nonempty_segment() {
    let rt = router(vec![r(&["/api/users/:id"]), r(&["/a/:x/b/:y"])]);
    assert_eq!(params_of(&rt, "/api/users/42"), (Found(0), pv(&[("id", "42")])));
    assert_eq!(get(&rt, "/api/users/"), NotFound);
    assert_eq!(get(&rt, "/api/users"), NotFound);
    assert_eq!(get(&rt, "/api/users/42/x"), NotFound);
    assert_eq!(params_of(&rt, "/a/1/b/2"), (Found(1), pv(&[("x", "1"), ("y", "2")])));
    assert_eq!(get(&rt, "/a/1/c/2"), NotFound);
}

#[test]
fn param_with_trailing_slash_and_literal_colon() {
    let rt = router(vec![r(&["/u/:id/"]), r(&["/v1/models/m:predict"]), r(&["/v1/models/:m"])]);
    assert_eq!(get(&rt, "/u/5/"), Found(0));
    assert_eq!(get(&rt, "/u/5"), NotFound);
    assert_eq!(get(&rt, "/v1/models/m:predict"), Found(1));
    assert_eq!(params_of(&rt, "/v1/models/x:y"), (Found(2), pv(&[("m", "x:y")])));
}

#[test]
fn exact_beats_param_beats_wildcard() {
    let rt = router(vec![r(&["/*"]), r(&["/a/:x"]), r(&["/a/b"]), r(&["/a/*"])]);
    assert_eq!(get(&rt, "/a/b"), Found(2));
    assert_eq!(get(&rt, "/a/c"), Found(1));
    assert_eq!(get(&rt, "/a/c/d"), Found(3));
    assert_eq!(get(&rt, "/z"), Found(0));
    // Category first: a param pattern beats a wildcard even with a more static start.
    let rt = router(vec![r(&["/a/*"]), r(&["/:x/b"])]);
    assert_eq!(get(&rt, "/a/b"), Found(1));
    assert_eq!(get(&rt, "/a/c"), Found(0));
}

#[test]
fn static_segments_beat_params_from_the_left() {
    let rt = router(vec![r(&["/a/:y/c"]), r(&["/a/b/:x"]), r(&["/:z/b/c"])]);
    assert_eq!(params_of(&rt, "/a/b/c"), (Found(1), pv(&[("x", "c")])));
    assert_eq!(params_of(&rt, "/a/q/c"), (Found(0), pv(&[("y", "q")])));
    assert_eq!(params_of(&rt, "/q/b/c"), (Found(2), pv(&[("z", "q")])));
}

#[test]
fn path_backtracking_in_param_trie() {
    // `/a/b/:x` is tried first for /a/b/c/d but only matches 3 segments: back off to `/a/:y/c/d`.
    let rt = router(vec![r(&["/a/b/:x"]), r(&["/a/:y/c/d"])]);
    assert_eq!(params_of(&rt, "/a/b/c/d"), (Found(1), pv(&[("y", "b")])));
    assert_eq!(params_of(&rt, "/a/b/c"), (Found(0), pv(&[("x", "c")])));
}

#[test]
fn wildcards() {
    let rt = router(vec![r(&["/static/*"]), r(&["/files/*path"]), r(&["/*"])]);
    assert_eq!(get(&rt, "/static/"), Found(0));
    assert_eq!(get(&rt, "/static/a/b.css"), Found(0));
    // Documented decision: `/static/*` does not match `/static` itself.
    assert_eq!(get(&rt, "/static"), Found(2));
    assert_eq!(params_of(&rt, "/static/x").1, pv(&[]));
    assert_eq!(params_of(&rt, "/files/a/b/c.txt"), (Found(1), pv(&[("path", "a/b/c.txt")])));
    assert_eq!(params_of(&rt, "/files/"), (Found(1), pv(&[("path", "")])));
    assert_eq!(get(&rt, "/"), Found(2));
    assert_eq!(get(&rt, "/anything/at/all"), Found(2));

    let only = router(vec![r(&["/static/*"])]);
    assert_eq!(get(&only, "/static"), NotFound);
    assert_eq!(get(&only, "/staticx/a"), NotFound);
    let root = router(vec![r(&["/*rest"])]);
    assert_eq!(params_of(&root, "/"), (Found(0), pv(&[("rest", "")])));
    assert_eq!(params_of(&root, "/a/b/"), (Found(0), pv(&[("rest", "a/b/")])));
}

#[test]
fn longer_wildcard_prefix_wins() {
    let rt = router(vec![r(&["/a/*"]), r(&["/a/b/*"]), r(&["/a/b/c/*"])]);
    assert_eq!(get(&rt, "/a/x"), Found(0));
    assert_eq!(get(&rt, "/a/b"), Found(0));
    assert_eq!(get(&rt, "/a/b/"), Found(1));
    assert_eq!(get(&rt, "/a/b/x/y"), Found(1));
    assert_eq!(get(&rt, "/a/b/c/d"), Found(2));
    assert_eq!(get(&rt, "/a/b/c"), Found(1));
}

#[test]
fn wildcard_with_params() {
    let rt = router(vec![r(&["/api/:ver/*rest"]), r(&["/api/v1/*"])]);
    assert_eq!(params_of(&rt, "/api/v1/x"), (Found(1), pv(&[])));
    assert_eq!(params_of(&rt, "/api/v2/x/y"), (Found(0), pv(&[("ver", "v2"), ("rest", "x/y")])));
    // `//` collapses: `/api//x` is `/api/x`, which has no segment after `:ver`.
    assert_eq!(get(&rt, "/api//x"), NotFound);
    assert_eq!(params_of(&rt, "/api/x//").1, pv(&[("ver", "x"), ("rest", "")]));
}

#[test]
fn same_shape_different_param_names() {
    let rt = router(vec![
        rh(&["/u/:id"], &["a.com"]),
        r(&["/u/:name"]),
        r(&["/w/*p"]),
        prio(r(&["/w/*q"]), 1),
    ]);
    assert_eq!(
        {
            let mut p = Params::new();
            let o = rt.find(b"GET", b"a.com", b"/u/7", &mut p);
            (o, p.get("id").map(|v| v.to_vec()))
        },
        (Found(0), Some(b"7".to_vec()))
    );
    assert_eq!(params_of(&rt, "/u/7"), (Found(1), pv(&[("name", "7")])));
    assert_eq!(params_of(&rt, "/w/z"), (Found(3), pv(&[("q", "z")])));
}

#[test]
fn multiple_paths_per_route() {
    let rt = router(vec![r(&["/a", "/b/:x", "/c/*"]), r(&["/d"])]);
    assert_eq!(get(&rt, "/a"), Found(0));
    assert_eq!(get(&rt, "/b/1"), Found(0));
    assert_eq!(get(&rt, "/c/1/2"), Found(0));
    assert_eq!(get(&rt, "/d"), Found(1));
}

#[test]
fn same_route_two_paths_of_one_shape() {
    let rt = router(vec![r(&["/a/:x", "/a/:y"]), r(&["/a/:z"])]);
    assert_eq!(params_of(&rt, "/a/1"), (Found(0), pv(&[("x", "1")])));
}

#[test]
fn deep_paths_and_pattern_limit() {
    let deep = String::from("/:p") + &"/s".repeat(200);
    let rt = router(vec![r(&[&deep])]);
    assert_eq!(get(&rt, &format!("/v{}", "/s".repeat(200))), Found(0));
    // A very long request path is handled without recursion beyond the trie depth.
    let long = "/x".repeat(50_000);
    assert_eq!(get(&rt, &long), NotFound);
    let too_deep = "/s".repeat(300);
    assert!(build_err(vec![r(&[&too_deep])]).contains("more than 256 segments"));
}

#[test]
fn pattern_escapes_are_canonical() {
    let rt = router(vec![r(&["/%7euser/a%2fb"]), r(&["/x%41"])]);
    assert_eq!(get(&rt, "/~user/a%2Fb"), Found(0));
    assert_eq!(get(&rt, "/%7Euser/a%2fb"), Found(0));
    assert_eq!(get(&rt, "/xA"), Found(1));
    assert_eq!(get(&rt, "/x%41"), Found(1));
}

// ----- hosts -----

#[test]
fn host_exact_case_and_port() {
    let rt = router(vec![rh(&["/x"], &["API.example.com"])]);
    for h in [
        "api.example.com",
        "API.EXAMPLE.COM",
        "api.example.com:8080",
        "api.example.com.",
        "Api.Example.Com.:443",
    ] {
        assert_eq!(find(&rt, "GET", h, "/x"), Found(0), "{h}");
    }
    for h in ["example.com", "x.api.example.com", "", "api.example.com.evil", ":80"] {
        assert_eq!(find(&rt, "GET", h, "/x"), NotFound, "{h}");
    }
}

#[test]
fn host_ipv6_literals() {
    let rt = router(vec![
        rh(&["/x"], &["[::1]"]),
        rh(&["/y"], &["2001:DB8::1"]),
        rh(&["/z"], &["127.0.0.1"]),
    ]);
    assert_eq!(find(&rt, "GET", "[::1]", "/x"), Found(0));
    assert_eq!(find(&rt, "GET", "[::1]:8080", "/x"), Found(0));
    assert_eq!(find(&rt, "GET", "[::2]:8080", "/x"), NotFound);
    assert_eq!(find(&rt, "GET", "[2001:db8::1]:443", "/y"), Found(1));
    assert_eq!(find(&rt, "GET", "[2001:db8::1]", "/y"), Found(1));
    assert_eq!(find(&rt, "GET", "127.0.0.1:9080", "/z"), Found(2));
    assert_eq!(find(&rt, "GET", "[::1", "/x"), NotFound);
}

#[test]
fn wildcard_hosts() {
    let rt = router(vec![rh(&["/x"], &["*.example.com"])]);
    assert_eq!(find(&rt, "GET", "a.example.com", "/x"), Found(0));
    assert_eq!(find(&rt, "GET", "a.b.example.com:81", "/x"), Found(0));
    assert_eq!(find(&rt, "GET", "A.EXAMPLE.COM", "/x"), Found(0));
    assert_eq!(find(&rt, "GET", "example.com", "/x"), NotFound);
    assert_eq!(find(&rt, "GET", "aexample.com", "/x"), NotFound);
    assert_eq!(find(&rt, "GET", "a.example.org", "/x"), NotFound);
    assert_eq!(find(&rt, "GET", ".example.com", "/x"), NotFound);
}

#[test]
fn host_specificity_for_same_pattern() {
    let rt = router(vec![
        prio(r(&["/x"]), 100),
        prio(rh(&["/x"], &["*.com"]), 50),
        rh(&["/x"], &["*.example.com"]),
        rh(&["/x"], &["a.example.com"]),
        rh(&["/x"], &["*.b.example.com"]),
    ]);
    assert_eq!(find(&rt, "GET", "a.example.com", "/x"), Found(3));
    assert_eq!(find(&rt, "GET", "c.example.com", "/x"), Found(2));
    assert_eq!(find(&rt, "GET", "a.b.example.com", "/x"), Found(4));
    assert_eq!(find(&rt, "GET", "other.com", "/x"), Found(1));
    assert_eq!(find(&rt, "GET", "other.org", "/x"), Found(0));
    assert_eq!(find(&rt, "GET", "", "/x"), Found(0));
}

#[test]
fn route_with_several_hosts() {
    let rt =
        router(vec![rh(&["/x"], &["a.com", "*.b.com"]), rh(&["/x"], &["c.b.com"]), r(&["/x"])]);
    assert_eq!(find(&rt, "GET", "a.com", "/x"), Found(0));
    assert_eq!(find(&rt, "GET", "z.b.com", "/x"), Found(0));
    assert_eq!(find(&rt, "GET", "c.b.com", "/x"), Found(1));
    assert_eq!(find(&rt, "GET", "d.com", "/x"), Found(2));
}

#[test]
fn path_specificity_beats_host_specificity() {
    let rt = router(vec![rh(&["/a/*"], &["h.com"]), r(&["/a/b"])]);
    assert_eq!(find(&rt, "GET", "h.com", "/a/b"), Found(1));
    assert_eq!(find(&rt, "GET", "h.com", "/a/c"), Found(0));
}

#[test]
fn backtracking_over_host_and_method() {
    let rt = router(vec![r(&["/api/*"]), rh(&["/api/x"], &["other.com"])]);
    assert_eq!(find(&rt, "GET", "example.com", "/api/x"), Found(0));
    assert_eq!(find(&rt, "GET", "other.com", "/api/x"), Found(1));

    // Params level excluded by host, falls back to a shorter wildcard.
    let rt = router(vec![
        rh(&["/a/:x"], &["h1.com"]),
        rh(&["/a/b/*"], &["h2.com"]),
        r(&["/a/*"]),
        rm(&["/*"], &["POST"]),
    ]);
    assert_eq!(find(&rt, "GET", "h1.com", "/a/b"), Found(0));
    assert_eq!(find(&rt, "GET", "h2.com", "/a/b"), Found(2));
    assert_eq!(find(&rt, "GET", "h2.com", "/a/b/c"), Found(1));
    assert_eq!(find(&rt, "GET", "h3.com", "/a/b/c"), Found(2));
    assert_eq!(find(&rt, "POST", "h3.com", "/z"), Found(3));
    assert_eq!(find(&rt, "GET", "h3.com", "/z"), MethodNotAllowed);

    // Backtracking inside the param trie because of the method.
    let rt = router(vec![rm(&["/a/b/:x"], &["POST"]), r(&["/a/:y/c"])]);
    assert_eq!(params_of(&rt, "/a/b/c"), (Found(1), pv(&[("y", "b")])));
    let mut p = Params::new();
    assert_eq!(rt.find(b"POST", b"", b"/a/b/c", &mut p), Found(0));
    assert_eq!(p.get("x"), Some(&b"c"[..]));
    assert_eq!(p.get("y"), None);
}

// ----- methods -----

#[test]
fn methods_and_method_not_allowed() {
    let rt = router(vec![
        rm(&["/x"], &["GET", "HEAD"]),
        rm(&["/x"], &["POST"]),
        rm(&["/y"], &["PURGE"]),
        rh(&["/z"], &["a.com"]),
        rm(&["/w"], &[]),
    ]);
    assert_eq!(find(&rt, "GET", "", "/x"), Found(0));
    assert_eq!(find(&rt, "HEAD", "", "/x"), Found(0));
    assert_eq!(find(&rt, "POST", "", "/x"), Found(1));
    assert_eq!(find(&rt, "PUT", "", "/x"), MethodNotAllowed);
    assert_eq!(find(&rt, "get", "", "/x"), MethodNotAllowed);
    assert_eq!(find(&rt, "PURGE", "", "/y"), Found(2));
    assert_eq!(find(&rt, "GET", "", "/y"), MethodNotAllowed);
    assert_eq!(find(&rt, "PURGEX", "", "/y"), MethodNotAllowed);
    assert_eq!(find(&rt, "GET", "b.com", "/z"), NotFound); // host mismatch is not a 405
    assert_eq!(find(&rt, "BREW", "", "/w"), Found(4));
    assert_eq!(find(&rt, "GET", "", "/nope"), NotFound);
}

#[test]
fn method_not_allowed_only_when_nothing_else_matches() {
    let rt =
        router(vec![rm(&["/a/b"], &["POST"]), rm(&["/a/:x"], &["PUT"]), rm(&["/a/*"], &["GET"])]);
    assert_eq!(find(&rt, "GET", "", "/a/b"), Found(2));
    assert_eq!(find(&rt, "PUT", "", "/a/b"), Found(1));
    assert_eq!(find(&rt, "DELETE", "", "/a/b"), MethodNotAllowed);
}

// ----- priorities and definition order -----

#[test]
fn priority_then_definition_order() {
    let rt = router(vec![r(&["/x"]), r(&["/x"]), prio(r(&["/x"]), 5), prio(r(&["/x"]), 5)]);
    assert_eq!(get(&rt, "/x"), Found(2));
    let rt = router(vec![r(&["/x"]), r(&["/x"])]);
    assert_eq!(get(&rt, "/x"), Found(0));
    let rt = router(vec![prio(r(&["/x/:a"]), -1), r(&["/x/:b"])]);
    assert_eq!(get(&rt, "/x/1"), Found(1));
    // Priority does not override path specificity.
    let rt = router(vec![prio(r(&["/x/*"]), 1000), r(&["/x/:b"])]);
    assert_eq!(get(&rt, "/x/1"), Found(1));
    // Nor host specificity.
    let rt = router(vec![prio(r(&["/x"]), 1000), rh(&["/x"], &["example.com"])]);
    assert_eq!(get(&rt, "/x"), Found(1));
}

#[test]
fn priority_with_methods_falls_through() {
    let rt = router(vec![r(&["/x"]), prio(rm(&["/x"], &["POST"]), 9)]);
    assert_eq!(find(&rt, "POST", "", "/x"), Found(1));
    assert_eq!(find(&rt, "GET", "", "/x"), Found(0));
}

// ----- params struct -----

#[test]
fn params_reuse_and_clear() {
    let rt = router(vec![r(&["/a/:x/:y"]), r(&["/s/*rest"]), r(&["/plain"])]);
    let mut p = Params::new();
    assert_eq!(rt.find(b"GET", b"", b"/a/1/2", &mut p), Found(0));
    assert_eq!(p.len(), 2);
    let v: Vec<_> = p.iter().collect();
    assert_eq!(v, vec![("x", &b"1"[..]), ("y", &b"2"[..])]);
    assert_eq!(rt.find(b"GET", b"", b"/s/./q/%41", &mut p), Found(1));
    assert_eq!(p.iter().collect::<Vec<_>>(), vec![("rest", &b"q/A"[..])]);
    assert_eq!(p.path(), b"/s/q/A");
    assert_eq!(rt.find(b"GET", b"", b"/plain", &mut p), Found(2));
    assert!(p.is_empty());
    assert_eq!(rt.find(b"GET", b"", b"/a/1", &mut p), NotFound);
    assert!(p.is_empty());
    p.clear();
    assert_eq!(p.path(), b"");
    assert!(!p.normalized_changed());
}

// ----- build errors -----

#[test]
fn build_errors() {
    assert_eq!(
        build_err(vec![r(&["/ok"]), r(&["/ok"]), r(&["/ok"]), r(&["abc"])]),
        "route 3: path 'abc' must start with '/'"
    );
    assert!(build_err(vec![r(&["/a/:x/:x"])]).contains("duplicate param name 'x'"));
    assert!(build_err(vec![r(&["/a/:x/*x"])]).contains("duplicate param name 'x'"));
    assert!(build_err(vec![r(&["/a/*/b"])]).contains("'*' only at the end"));
    assert!(build_err(vec![r(&["/a*"])]).contains("'*' only at the end"));
    assert!(build_err(vec![r(&["/a/:"])]).contains("invalid param name"));
    assert!(build_err(vec![r(&["/a/:x.y"])]).contains("invalid param name"));
    assert!(build_err(vec![r(&["/a/*x.y"])]).contains("invalid wildcard name"));
    assert!(build_err(vec![r(&["/a//b"])]).contains("empty segment"));
    assert!(build_err(vec![r(&["/a/../b"])]).contains("'..' segment"));
    assert!(build_err(vec![r(&["/a/%2e/b"])]).contains("'..' segment"));
    assert!(build_err(vec![r(&["/a/%zz"])]).contains("invalid percent-escape"));
    assert!(build_err(vec![r(&["/a b"])]).contains("invalid character"));
    assert!(build_err(vec![r(&["/a?b"])]).contains("invalid character"));
    assert_eq!(build_err(vec![r(&[])]), "route 0: has no paths");

    let e = build_err(vec![r(&["/"]), rh(&["/"], &["a.com:80"])]);
    assert_eq!(e, "route 1: host 'a.com:80' must not contain a port");
    assert!(build_err(vec![rh(&["/"], &["a.*.com"])]).contains("'*'"));
    assert!(build_err(vec![rh(&["/"], &["*"])]).contains("host '*'"));
    assert!(build_err(vec![rh(&["/"], &["*."])]).contains("not a valid host"));
    assert!(build_err(vec![rh(&["/"], &[""])]).contains("not a valid host"));
    assert!(build_err(vec![rh(&["/"], &["a b.com"])]).contains("invalid character"));
    assert!(build_err(vec![rh(&["/"], &["[::1]:80"])]).contains("IPv6"));
    assert!(build_err(vec![rh(&["/"], &["[zz::1]"])]).contains("IPv6"));
    assert!(build_err(vec![rh(&["/"], &["bücher.de"])]).contains("ASCII"));

    assert_eq!(build_err(vec![rm(&["/"], &["get"])]), "route 0: method 'get' must be uppercase");
    assert!(build_err(vec![rm(&["/"], &["GE T"])]).contains("not a valid method"));
    assert!(build_err(vec![rm(&["/"], &[""])]).contains("empty"));

    // Valid edge cases.
    assert!(Router::new(&[r(&["/*"]), r(&["/"]), r(&["/:a/*b"]), rh(&["/"], &["x.com."])]).is_ok());
    let empty = Router::new(&[]).unwrap();
    assert!(empty.is_empty());
    assert_eq!(get(&empty, "/"), NotFound);
}

#[test]
fn router_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Router>();
    check::<Params>();
}

// ----- scale -----

/// 100k mixed routes (exact, params, prefixes, hosts): the first and last routes match. How
/// fast it builds and looks up is measured by the router benchmark (`bench/run.py
/// --router-sizes`), not asserted here.
#[test]
fn hundred_thousand_routes() {
    let n = 100_000;
    let mut routes = Vec::with_capacity(n);
    for i in 0..n {
        let spec = match i % 4 {
            0 => r(&[&format!("/svc{i}/users/:id")]),
            1 => r(&[&format!("/svc{i}/static/*path")]),
            2 => rm(&[&format!("/svc{i}/exact")], &["GET", "POST"]),
            _ => rh(&[&format!("/t/:tenant/r{i}")], &[&format!("h{i}.example.com")]),
        };
        routes.push(spec);
    }
    // The last route: a host-specific wildcard sharing a prefix with many others.
    routes.push(rh(&["/svc1/static/*path"], &["*.last.example.com"]));
    let rt = Router::new(&routes).unwrap();
    assert_eq!(rt.len(), n + 1);

    let mut p = Params::new();
    assert_eq!(rt.find(b"GET", b"x", b"/svc0/users/7", &mut p), Found(0));
    assert_eq!(p.get("id"), Some(&b"7"[..]));
    assert_eq!(rt.find(b"GET", b"x", b"/svc1/static/a/b", &mut p), Found(1));
    assert_eq!(p.get("path"), Some(&b"a/b"[..]));
    assert_eq!(
        rt.find(b"GET", b"q.last.example.com", b"/svc1/static/a/b", &mut p),
        Found(n as u32)
    );
    assert_eq!(p.get("path"), Some(&b"a/b"[..]));
    let last_plain = n - 1; // i % 4 == 3
    let path = format!("/t/acme/r{last_plain}");
    let host = format!("h{last_plain}.example.com:8443");
    assert_eq!(rt.find(b"GET", host.as_bytes(), path.as_bytes(), &mut p), Found(last_plain as u32));
    assert_eq!(p.get("tenant"), Some(&b"acme"[..]));
    assert_eq!(rt.find(b"GET", b"x", path.as_bytes(), &mut p), NotFound);
    assert_eq!(rt.find(b"GET", b"x", b"/svc99998/exact", &mut p), Found(99_998));
    assert_eq!(rt.find(b"DELETE", b"x", b"/svc99998/exact", &mut p), MethodNotAllowed);
    assert_eq!(rt.find(b"GET", b"x", b"/svc99997/static/", &mut p), Found(99_997));
    assert_eq!(rt.find(b"GET", b"x", b"/svc99997/static", &mut p), NotFound);

    for i in 0..10_000 {
        let path = format!("/svc{}/users/{i}", (i * 4) % n);
        assert_eq!(rt.find(b"GET", b"x", path.as_bytes(), &mut p), Found(((i * 4) % n) as u32));
    }
}

/// Many routes sharing one pattern and differing by host (multi-tenant `/*`): host index, not a
/// linear scan.
#[test]
fn many_hosts_on_one_pattern() {
    let mut routes: Vec<RouteSpec> =
        (0..10_000).map(|i| rh(&["/*"], &[&format!("tenant{i}.example.com")])).collect();
    routes.push(rh(&["/*"], &["*.example.com"]));
    routes.push(r(&["/*"]));
    let rt = router(routes);
    assert_eq!(find(&rt, "GET", "tenant0.example.com", "/a"), Found(0));
    assert_eq!(find(&rt, "GET", "TENANT9999.example.com", "/a"), Found(9999));
    assert_eq!(find(&rt, "GET", "zzz.example.com", "/a"), Found(10_000));
    assert_eq!(find(&rt, "GET", "example.com", "/a"), Found(10_001));
}

#[test]
fn wide_static_fanout_uses_map() {
    let routes: Vec<RouteSpec> = (0..100).map(|i| r(&[&format!("/p/s{i}/:id")])).collect();
    let rt = router(routes);
    for i in 0..100 {
        assert_eq!(get(&rt, &format!("/p/s{i}/1")), Found(i));
    }
    assert_eq!(get(&rt, "/p/s100/1"), NotFound);
}
