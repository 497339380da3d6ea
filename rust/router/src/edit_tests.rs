//! `Router::set_route` must leave the router as `Router::new` builds it: random edits (set,
//! add, remove) are compared, request by request, with a router built from the routes left.
use super::*;

/// xorshift64*: the edits are random but the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const PATHS: &[&str] = &[
    "/", "/*", "/a", "/a/", "/a/*", "/a/*rest", "/a/b", "/a/:x", "/a/:x/c", "/a/b/*", "/b/:y",
    "/b/:y/*", "/c", "/c/d/e", "/c/:z/e", "/a/b/:x", "/s1", "/s2", "/s3", "/s4", "/s5", "/s6",
    "/s7", "/s8", "/s9", "/a/k1", "/a/k2", "/a/k3", "/a/k4", "/a/k5", "/a/k6", "/a/k7", "/a/k8",
    "/a/k9", "/a/k10",
];
const HOSTS: &[&str] = &["x.example", "*.example", "y.example", "*.y.example"];
const METHODS: &[&str] = &["GET", "POST", "PURGE"];
const REQUEST_PATHS: &[&str] = &[
    "/", "/a", "/a/", "/a/b", "/a/q", "/a/q/c", "/a/b/c", "/a/b/c/d", "/b/1", "/b/1/2", "/c",
    "/c/d/e", "/c/q/e", "/s3", "/s9", "/a/k3", "/a/k10", "/zzz", "/a/b/",
];
const REQUEST_HOSTS: &[&str] = &["", "x.example", "q.example", "y.example", "a.y.example"];

fn spec(rng: &mut Rng) -> RouteSpec {
    let n = 1 + rng.next() % 2;
    let paths = (0..n).map(|_| rng.pick(PATHS).to_string()).collect();
    let hosts = match rng.next() % 3 {
        0 => vec![rng.pick(HOSTS).to_string()],
        1 => vec![rng.pick(HOSTS).to_string(), rng.pick(HOSTS).to_string()],
        _ => vec![],
    };
    let methods =
        if rng.next().is_multiple_of(3) { vec![rng.pick(METHODS).to_string()] } else { vec![] };
    RouteSpec { paths, hosts, methods, priority: (rng.next() % 3) as i32 - 1 }
}

fn outcome(rt: &Router, method: &str, host: &str, path: &str) -> (Outcome, Vec<(String, String)>) {
    let mut p = Params::new();
    let o = rt.find(method.as_bytes(), host.as_bytes(), path.as_bytes(), &mut p);
    let v =
        p.iter().map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned())).collect();
    (o, v)
}

#[test]
fn set_route_matches_a_router_built_from_the_routes_left() {
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut slots: Vec<Option<RouteSpec>> =
            (0..(rng.next() % 12)).map(|_| Some(spec(&mut rng))).collect();
        let initial: Vec<RouteSpec> = slots.iter().flatten().cloned().collect();
        let mut edited = Router::new(&initial).unwrap();
        for _ in 0..25 {
            let index = (rng.next() % (slots.len() as u64 + 1)) as usize;
            let new = if rng.next().is_multiple_of(4) && index < slots.len() {
                None
            } else {
                Some(spec(&mut rng))
            };
            edited.set_route(index, new.as_ref()).unwrap();
            if index == slots.len() {
                slots.push(new);
            } else {
                slots[index] = new;
            }
            // the reference: the routes left, in slot order; its index i is slot live[i]
            let live: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].is_some()).collect();
            let specs: Vec<RouteSpec> = live.iter().map(|&i| slots[i].clone().unwrap()).collect();
            let built = Router::new(&specs).unwrap();
            for method in ["GET", "POST", "PURGE", "DELETE"] {
                for host in REQUEST_HOSTS {
                    for path in REQUEST_PATHS {
                        let (want, want_params) = outcome(&built, method, host, path);
                        let want = match want {
                            Outcome::Found(i) => Outcome::Found(live[i as usize] as u32),
                            other => other,
                        };
                        let got = outcome(&edited, method, host, path);
                        assert_eq!(
                            got,
                            (want, want_params),
                            "seed {seed}: {method} {host} {path} with {slots:?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_failed_edit_leaves_the_router_unchanged() {
    let specs = vec![RouteSpec { paths: vec!["/a".into()], ..RouteSpec::default() }];
    let mut rt = Router::new(&specs).unwrap();
    let bad = RouteSpec { paths: vec!["/ok".into(), "no-slash".into()], ..RouteSpec::default() };
    assert!(matches!(rt.set_route(0, Some(&bad)), Err(BuildError::InvalidPath { .. })));
    assert!(rt.set_route(2, Some(&specs[0])).is_err()); // past the end
    assert_eq!(outcome(&rt, "GET", "", "/a").0, Outcome::Found(0));
    assert_eq!(outcome(&rt, "GET", "", "/ok").0, Outcome::NotFound);
    assert_eq!(rt.len(), 1);
}

#[test]
fn a_removed_route_keeps_its_index_and_matches_nothing() {
    let specs = vec![
        RouteSpec { paths: vec!["/a".into()], ..RouteSpec::default() },
        RouteSpec { paths: vec!["/b".into()], ..RouteSpec::default() },
    ];
    let mut rt = Router::new(&specs).unwrap();
    rt.set_route(0, None).unwrap();
    assert_eq!(outcome(&rt, "GET", "", "/a").0, Outcome::NotFound);
    assert_eq!(outcome(&rt, "GET", "", "/b").0, Outcome::Found(1));
    rt.set_route(2, Some(&specs[0])).unwrap();
    assert_eq!(outcome(&rt, "GET", "", "/a").0, Outcome::Found(2));
    assert_eq!(rt.len(), 3);
}
