//! TLS termination for the gateway's `tls_listen` sockets, with rustls (aws-lc-rs) driven sans-IO.
//!
//! An [`Engine`] (one per worker) holds the sites of the `ssls` resources in a table swapped
//! whole by a reload; a [`Connection`] (one per client) reads the ClientHello, takes the site of
//! its SNI (certificate, client-certificate verifier) from the table current at that moment,
//! and from then on turns each socket read into plaintext and each response into records.
//! The Cython protocol makes one call per read and one per write (`python` feature: PyO3).
mod connection;
mod site;
mod table;

#[cfg(feature = "python")]
pub mod python;

pub use connection::{Connection, TlsFailure};
pub use site::{Site, SiteSpec};
pub use table::{sni_candidates, Engine, SiteTable};

#[cfg(test)]
mod tests;
