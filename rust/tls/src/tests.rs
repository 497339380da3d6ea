//! The engine against rustls's client, in memory: SNI choice, refusal, mTLS, reload, data.
use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use crate::{Connection, Engine, SiteSpec};

struct Pem {
    cert: String,
    key: String,
    der: CertificateDer<'static>,
}

fn issue(names: &[&str]) -> Pem {
    let cert =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    Pem { cert: cert.cert.pem(), key: cert.key_pair.serialize_pem(), der: cert.cert.der().clone() }
}

fn spec(id: &str, snis: &[&str], pem: &Pem, ca: Option<&Pem>) -> SiteSpec {
    SiteSpec {
        id: id.into(),
        snis: snis.iter().map(|s| s.to_string()).collect(),
        cert_pem: pem.cert.clone(),
        key_pem: pem.key.clone(),
        client_ca_pem: ca.map(|c| c.cert.clone()),
    }
}

fn client(trust: &[&Pem], name: &str, identity: Option<&Pem>) -> ClientConnection {
    let mut roots = RootCertStore::empty();
    for pem in trust {
        roots.add(pem.der.clone()).unwrap();
    }
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                rustls::pki_types::pem::PemObject::from_pem_slice(id.key.as_bytes())
                    .map(|k: PrivatePkcs8KeyDer| k.secret_pkcs8_der().to_vec())
                    .unwrap(),
            ));
            builder.with_client_auth_cert(vec![id.der.clone()], key).unwrap()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    ClientConnection::new(Arc::new(config), ServerName::try_from(name.to_string()).unwrap())
        .unwrap()
}

/// Runs the handshake; Err(reason) when the server refuses it.
fn handshake(server: &mut Connection, client: &mut ClientConnection) -> Result<(), String> {
    for _ in 0..10 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let (mut plain, mut out) = (Vec::new(), Vec::new());
        let result = server.receive(&wire, &mut plain, &mut out);
        let mut slice = &out[..];
        while !slice.is_empty() {
            client.read_tls(&mut slice).unwrap();
        }
        let client_result = client.process_new_packets();
        result.map_err(|f| f.0)?;
        client_result.map_err(|e| e.to_string())?;
        if !server.is_handshaking() && !client.is_handshaking() {
            return Ok(());
        }
    }
    Err("handshake did not finish".into())
}

fn served_cert(client: &ClientConnection) -> CertificateDer<'static> {
    client.peer_certificates().unwrap()[0].clone().into_owned()
}

#[test]
fn exact_name_beats_wildcard_and_longest_wildcard_wins() {
    let (exact, wild, deep) =
        (issue(&["api.example.com"]), issue(&["*.example.com"]), issue(&["*.b.example.com"]));
    let engine = Arc::new(Engine::new(vec![b"http/1.1".to_vec()]).unwrap());
    engine
        .update(
            &[
                spec("wild", &["*.example.com"], &wild, None),
                spec("exact", &["api.example.com"], &exact, None),
                spec("deep", &["*.b.example.com"], &deep, None),
            ],
            None,
        )
        .unwrap();
    for (name, want, trust) in [
        ("api.example.com", &exact, &exact),
        ("www.example.com", &wild, &wild),
        ("a.b.example.com", &deep, &deep),
    ] {
        let mut server = Connection::new(engine.clone());
        let mut c = client(&[trust], name, None);
        handshake(&mut server, &mut c).unwrap();
        assert_eq!(served_cert(&c), want.der, "{name}");
        assert_eq!(server.server_name(), Some(name));
        assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(server.protocol(), Some("TLSv1.3"));
    }
}

#[test]
fn an_unknown_name_is_refused_with_an_alert() {
    let site = issue(&["api.example.com"]);
    let engine = Arc::new(Engine::new(vec![]).unwrap());
    engine.update(&[spec("a", &["api.example.com"], &site, None)], None).unwrap();
    let mut server = Connection::new(engine);
    let mut c = client(&[&site], "other.test", None);
    let err = handshake(&mut server, &mut c).unwrap_err();
    assert!(err.contains("no ssl serves"), "{err}");
    // the client read the alert
    let mut c2 = client(&[&site], "other.test", None);
    let mut server = Connection::new(Arc::new(Engine::new(vec![]).unwrap()));
    let mut wire = Vec::new();
    c2.write_tls(&mut wire).unwrap();
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    assert!(server.receive(&wire, &mut plain, &mut out).is_err());
    c2.read_tls(&mut &out[..]).unwrap();
    let err = c2.process_new_packets().unwrap_err().to_string();
    assert!(err.contains("UnrecognisedName"), "{err}");
}

#[test]
fn data_flows_both_ways_and_a_reload_keeps_open_connections() {
    let (old, new) = (issue(&["api.example.com"]), issue(&["api.example.com"]));
    let engine = Arc::new(Engine::new(vec![]).unwrap());
    engine.update(&[spec("a", &["api.example.com"], &old, None)], None).unwrap();
    let mut server = Connection::new(engine.clone());
    let mut c = client(&[&old], "api.example.com", None);
    handshake(&mut server, &mut c).unwrap();
    engine.update(&[spec("a", &["api.example.com"], &new, None)], None).unwrap();

    c.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut wire = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut wire).unwrap();
    }
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    server.receive(&wire, &mut plain, &mut out).unwrap();
    assert_eq!(plain, b"GET / HTTP/1.1\r\n\r\n");
    server.send(b"HTTP/1.1 200 OK\r\n\r\n", &mut out).unwrap();
    let mut slice = &out[..];
    while !slice.is_empty() {
        c.read_tls(&mut slice).unwrap();
    }
    c.process_new_packets().unwrap();
    let mut got = [0u8; 64];
    let n = c.reader().read(&mut got).unwrap();
    assert!(got[..n].ends_with(b"HTTP/1.1 200 OK\r\n\r\n"));

    let mut fresh = Connection::new(engine);
    let mut c = client(&[&new], "api.example.com", None);
    handshake(&mut fresh, &mut c).unwrap();
    assert_eq!(served_cert(&c), new.der);
}

#[test]
fn no_sni_takes_the_fallback_name() {
    let site = issue(&["api.example.com"]);
    let engine = Arc::new(Engine::new(vec![]).unwrap());
    engine
        .update(&[spec("a", &["api.example.com"], &site, None)], Some("api.example.com"))
        .unwrap();
    let table = engine.table();
    assert_eq!(table.find(None).unwrap().id, "a");
    assert_eq!(table.find(Some("127.0.0.1")).unwrap().id, "a");
    engine.update(&[spec("a", &["api.example.com"], &site, None)], None).unwrap();
    assert!(engine.table().find(None).is_none());
}

#[test]
fn mtls_verifies_the_client_and_allows_none() {
    let (site, ca, rogue) =
        (issue(&["secure.example.org"]), issue(&["alice"]), issue(&["mallory"]));
    let engine = Arc::new(Engine::new(vec![]).unwrap());
    engine.update(&[spec("s", &["secure.example.org"], &site, Some(&ca))], None).unwrap();
    // alice's self-signed certificate is its own CA here
    let mut server = Connection::new(engine.clone());
    handshake(&mut server, &mut client(&[&site], "secure.example.org", Some(&ca))).unwrap();
    assert!(server.client_cert().is_some());
    let mut server = Connection::new(engine.clone());
    handshake(&mut server, &mut client(&[&site], "secure.example.org", None)).unwrap();
    assert!(server.client_cert().is_none());
    assert!(server.site().unwrap().client_cert_required);
    let mut server = Connection::new(engine);
    assert!(
        handshake(&mut server, &mut client(&[&site], "secure.example.org", Some(&rogue))).is_err()
    );
}

#[test]
fn a_mismatched_key_is_refused() {
    let (a, b) = (issue(&["a.test"]), issue(&["b.test"]));
    let engine = Engine::new(vec![]).unwrap();
    let mut bad = spec("x", &["a.test"], &a, None);
    bad.key_pem = b.key.clone();
    let err = engine.check(&bad).unwrap_err();
    assert!(err.contains("mismatched key"), "{err}");
    assert_eq!(engine.update(&[bad], None).unwrap_err().0, 0);
}

#[test]
fn candidates_follow_nginx_order() {
    assert_eq!(
        crate::sni_candidates("A.b.Example.com."),
        vec!["a.b.example.com", "*.b.example.com", "*.example.com"]
    );
}
