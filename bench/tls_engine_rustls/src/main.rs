//! Server-side CPU of rustls, driven sans-IO in memory: per keep-alive request (decrypt a
//! ~80-byte request, encrypt a ~200-byte response) and per full handshake, with each crypto
//! provider. Prints one JSON line per provider.
//!
//!     tls-engine-rustls [REQUESTS] [HANDSHAKES] [CERT.pem KEY.pem]
//!
//! Without a certificate, a self-signed ECDSA P-256 one is made.
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

const REQUEST: &[u8] = b"GET /bench HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: wrk\r\n\r\n";

fn response() -> Vec<u8> {
    let body = vec![b'x'; 128];
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

fn identity() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let mut args = std::env::args().skip(3);
    if let (Some(cert), Some(key)) = (args.next(), args.next()) {
        return (CertificateDer::from_pem_file(cert).unwrap(), PrivateKeyDer::from_pem_file(key).unwrap());
    }
    let cert = rcgen::generate_simple_self_signed(vec!["bench.test".to_string()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    (der, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der())))
}

fn configs(provider: &Arc<CryptoProvider>) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let (der, key) = identity();
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(server), Arc::new(client))
}

/// Moves every pending TLS record from one side to the other; returns the bytes moved.
fn pump_client(from: &mut ClientConnection, to: &mut ServerConnection, buf: &mut Vec<u8>) {
    buf.clear();
    while from.wants_write() {
        from.write_tls(buf).unwrap();
    }
    let mut slice = &buf[..];
    while !slice.is_empty() {
        to.read_tls(&mut slice).unwrap();
    }
}

fn handshake(
    server_cfg: &Arc<ServerConfig>,
    client_cfg: &Arc<ClientConfig>,
) -> (ServerConnection, ClientConnection, Duration) {
    let name = ServerName::try_from("bench.test").unwrap();
    let mut client = ClientConnection::new(client_cfg.clone(), name).unwrap();
    let mut spent = Duration::ZERO;
    let t = Instant::now();
    let mut server = ServerConnection::new(server_cfg.clone()).unwrap();
    spent += t.elapsed();
    let mut buf = Vec::with_capacity(16384);
    while client.is_handshaking() || server.is_handshaking() {
        pump_client(&mut client, &mut server, &mut buf);
        let t = Instant::now();
        server.process_new_packets().unwrap();
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        spent += t.elapsed();
        let mut slice = &buf[..];
        while !slice.is_empty() {
            client.read_tls(&mut slice).unwrap();
        }
        client.process_new_packets().unwrap();
    }
    (server, client, spent)
}

fn main() {
    let requests: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(200_000);
    let handshakes: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(2_000);
    #[allow(deprecated)] // ring lacks post-quantum key exchange: measured all the same
    let ring = rustls::crypto::ring::default_provider();
    for (name, provider) in [("aws-lc-rs", rustls::crypto::aws_lc_rs::default_provider()), ("ring", ring)] {
        measure(name, &Arc::new(provider), requests, handshakes);
    }
}

fn measure(provider_name: &str, provider: &Arc<CryptoProvider>, requests: usize, handshakes: usize) {
    let (server_cfg, client_cfg) = configs(provider);

    let mut hs_total = Duration::ZERO;
    for _ in 0..handshakes {
        hs_total += handshake(&server_cfg, &client_cfg).2;
    }

    let (mut server, mut client, _) = handshake(&server_cfg, &client_cfg);
    let resp = response();
    let mut wire = Vec::with_capacity(16384);
    let mut plain = vec![0u8; 16384];
    let mut spent = Duration::ZERO;
    for _ in 0..requests {
        client.writer().write_all(REQUEST).unwrap();
        wire.clear();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        // server side: one read's worth of records -> plaintext, then the response -> records
        let t = Instant::now();
        let mut slice = &wire[..];
        while !slice.is_empty() {
            server.read_tls(&mut slice).unwrap();
        }
        server.process_new_packets().unwrap();
        let n = server.reader().read(&mut plain).unwrap();
        assert_eq!(n, REQUEST.len());
        server.writer().write_all(&resp).unwrap();
        wire.clear();
        while server.wants_write() {
            server.write_tls(&mut wire).unwrap();
        }
        spent += t.elapsed();
        let mut slice = &wire[..];
        while !slice.is_empty() {
            client.read_tls(&mut slice).unwrap();
        }
        client.process_new_packets().unwrap();
        let _ = client.reader().read(&mut plain);
    }
    println!(
        "{{\"engine\": \"rustls 0.23 ({provider_name}), sans-IO in Rust\", \"request_us\": {:.3}, \"handshake_us\": {:.1}}}",
        spent.as_secs_f64() * 1e6 / requests as f64,
        hs_total.as_secs_f64() * 1e6 / handshakes as f64
    );
}
