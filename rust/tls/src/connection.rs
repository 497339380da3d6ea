//! One client connection, sans-IO: bytes read from the socket go in, plaintext and the TLS
//! records to write come out. The first flight goes to an `Acceptor`, so the site (and with it
//! the certificate and the client verifier) is chosen from the ClientHello's SNI.
use std::io::{Read, Write};
use std::sync::Arc;

use rustls::server::{Accepted, Acceptor};
use rustls::{CipherSuite, ProtocolVersion, ServerConnection};

use crate::site::Site;
use crate::table::Engine;

/// TLS alert descriptions we send ourselves (RFC 8446 section 6).
const ALERT_HANDSHAKE_FAILURE: u8 = 40;
const ALERT_UNRECOGNIZED_NAME: u8 = 112;

enum State {
    Accepting(Box<Acceptor>),
    Open(Box<ServerConnection>),
    Failed,
}

/// Why a connection cannot go on; the alert (if any) is already in the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFailure(pub String);

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub struct Connection {
    engine: Arc<Engine>,
    state: State,
    site: Option<Arc<Site>>,
    server_name: Option<String>,
    peer_closed: bool,
}

impl Connection {
    pub fn new(engine: Arc<Engine>) -> Self {
        Connection {
            engine,
            state: State::Accepting(Box::default()),
            site: None,
            server_name: None,
            peer_closed: false,
        }
    }

    /// Takes the bytes of one socket read: appends their plaintext to `plain` and the records
    /// to send back (handshake, tickets, alerts) to `out`. On failure `out` holds the alert.
    pub fn receive(
        &mut self,
        data: &[u8],
        plain: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), TlsFailure> {
        let mut rest = data;
        if let State::Accepting(acceptor) = &mut self.state {
            let accepted = match accept(acceptor, &mut rest, out) {
                Ok(Some(accepted)) => accepted,
                Ok(None) => return Ok(()),
                Err(failure) => return Err(self.fail(failure)),
            };
            if let Err(failure) = self.open(accepted, out) {
                return Err(self.fail(failure));
            }
        }
        let State::Open(conn) = &mut self.state else {
            return Err(TlsFailure("the connection already failed".into()));
        };
        // the Acceptor may hand over records that followed the ClientHello: process first
        loop {
            let io = match conn.process_new_packets() {
                Ok(io) => io,
                Err(e) => {
                    drain(conn, out);
                    return Err(self.fail(TlsFailure(e.to_string())));
                }
            };
            let n = io.plaintext_bytes_to_read();
            if n > 0 {
                let start = plain.len();
                plain.resize(start + n, 0);
                conn.reader()
                    .read_exact(&mut plain[start..])
                    .expect("rustls said these bytes are readable");
            }
            self.peer_closed |= io.peer_has_closed();
            if rest.is_empty() {
                break;
            }
            if let Err(e) = conn.read_tls(&mut rest) {
                drain(conn, out);
                return Err(self.fail(TlsFailure(e.to_string())));
            }
        }
        drain(conn, out);
        Ok(())
    }

    /// Encrypts `plain` (a response, or part of one) into records appended to `out`.
    pub fn send(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), TlsFailure> {
        let State::Open(conn) = &mut self.state else {
            return Err(TlsFailure("no TLS session to send on".into()));
        };
        conn.writer().write_all(plain).map_err(|e| TlsFailure(e.to_string()))?;
        drain(conn, out);
        Ok(())
    }

    /// Appends a close_notify alert to `out` (nothing before the handshake chose a site).
    pub fn close_notify(&mut self, out: &mut Vec<u8>) {
        if let State::Open(conn) = &mut self.state {
            conn.send_close_notify();
            drain(conn, out);
        }
    }

    /// Still handshaking (the failed state is not: nothing more will come of it).
    pub fn is_handshaking(&self) -> bool {
        match &self.state {
            State::Accepting(_) => true,
            State::Open(conn) => conn.is_handshaking(),
            State::Failed => false,
        }
    }

    /// The client sent close_notify.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The site whose certificate this connection was served.
    pub fn site(&self) -> Option<&Arc<Site>> {
        self.site.as_ref()
    }

    /// The SNI the client sent (None: none, or an IP address).
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    fn open_conn(&self) -> Option<&ServerConnection> {
        match &self.state {
            State::Open(conn) => Some(conn),
            _ => None,
        }
    }

    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.open_conn()?.alpn_protocol()
    }

    /// "TLSv1.2" or "TLSv1.3" (nginx's $ssl_protocol).
    pub fn protocol(&self) -> Option<&'static str> {
        match self.open_conn()?.protocol_version()? {
            ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
            ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
            _ => None,
        }
    }

    /// The cipher suite's OpenSSL name (nginx's $ssl_cipher).
    pub fn cipher(&self) -> Option<&'static str> {
        openssl_cipher_name(self.open_conn()?.negotiated_cipher_suite()?.suite())
    }

    /// The client's certificate (DER) when it sent one that verified.
    pub fn client_cert(&self) -> Option<&[u8]> {
        Some(self.open_conn()?.peer_certificates()?.first()?.as_ref())
    }

    fn fail(&mut self, failure: TlsFailure) -> TlsFailure {
        self.state = State::Failed;
        failure
    }

    fn open(&mut self, accepted: Accepted, out: &mut Vec<u8>) -> Result<(), TlsFailure> {
        let sni = accepted.client_hello().server_name().map(str::to_owned);
        let table = self.engine.table();
        let Some(site) = table.find(sni.as_deref()) else {
            // no SNI and no fallback_sni, or a name no ssl serves: refused with an alert
            let (alert, reason) = match &sni {
                Some(name) => {
                    (ALERT_UNRECOGNIZED_NAME, format!("no ssl serves the server name {name:?}"))
                }
                None => (
                    ALERT_HANDSHAKE_FAILURE,
                    "no server name sent, and no fallback_sni".to_string(),
                ),
            };
            out.extend_from_slice(&plaintext_alert(alert));
            return Err(TlsFailure(reason));
        };
        match accepted.into_connection(site.config.clone()) {
            Ok(mut conn) => {
                // responses are encrypted as written: the caller's transport does the buffering
                conn.set_buffer_limit(None);
                self.site = Some(site.clone());
                self.server_name = sni;
                self.state = State::Open(Box::new(conn));
                Ok(())
            }
            Err((e, mut alert)) => {
                let _ = alert.write_all(out);
                Err(TlsFailure(e.to_string()))
            }
        }
    }
}

fn accept(
    acceptor: &mut Acceptor,
    rest: &mut &[u8],
    out: &mut Vec<u8>,
) -> Result<Option<Accepted>, TlsFailure> {
    while !rest.is_empty() {
        acceptor.read_tls(rest).map_err(|e| TlsFailure(e.to_string()))?;
        match acceptor.accept() {
            Ok(Some(accepted)) => return Ok(Some(accepted)),
            Ok(None) => {}
            Err((e, mut alert)) => {
                let _ = alert.write_all(out);
                return Err(TlsFailure(e.to_string()));
            }
        }
    }
    Ok(None)
}

fn drain(conn: &mut ServerConnection, out: &mut Vec<u8>) {
    while conn.wants_write() {
        if conn.write_tls(out).is_err() {
            break; // a Vec takes everything: never happens
        }
    }
}

/// A fatal alert record before any key is agreed (sent in the clear, as the ClientHello came).
fn plaintext_alert(description: u8) -> [u8; 7] {
    [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]
}

/// OpenSSL's names of the suites offered (aws-lc-rs's TLS 1.3 and 1.2 defaults), as nginx reports them.
fn openssl_cipher_name(suite: CipherSuite) -> Option<&'static str> {
    Some(match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "ECDHE-ECDSA-CHACHA20-POLY1305"
        }
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        _ => return None,
    })
}
