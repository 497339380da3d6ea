//! Server name -> site, for one config version, and the swap that replaces it on a reload.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use crate::site::{Shared, Site, SiteSpec};

/// The sites of one config version, by the names they serve.
#[derive(Debug, Default)]
pub struct SiteTable {
    names: HashMap<String, Arc<Site>>,
    fallback_sni: Option<String>,
}

/// The names that serve `name`, best first: the name itself, then the wildcards of its parent
/// domains, longest first (nginx's order: "a.b.example.com" is served by "*.b.example.com"
/// before "*.example.com").
pub fn sni_candidates(name: &str) -> Vec<String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').collect();
    let mut out = Vec::with_capacity(labels.len());
    for i in 1..labels.len().saturating_sub(1) {
        out.push(format!("*.{}", labels[i..].join(".")));
    }
    out.insert(0, name);
    out
}

impl SiteTable {
    /// The site serving a handshake that sent `server_name` (None: no SNI). RFC 6066 section
    /// 3: an SNI is never an IP address; clients that send one anyway (wrk does) are treated
    /// as sending none, and get the fallback name's site.
    pub fn find(&self, server_name: Option<&str>) -> Option<&Arc<Site>> {
        let name = match server_name {
            Some(name) if name.parse::<IpAddr>().is_err() => name,
            _ => self.fallback_sni.as_deref()?,
        };
        sni_candidates(name).iter().find_map(|candidate| self.names.get(candidate))
    }
}

/// Every worker's TLS state: the current table (swapped whole by `update`) and what all its
/// sites share. Handshakes take the table current when their ClientHello arrives; connections
/// keep the site they were made with, so a reload drops none.
#[derive(Debug)]
pub struct Engine {
    shared: Shared,
    table: RwLock<Arc<SiteTable>>,
}

impl Engine {
    /// An engine offering `alpn` (in preference order), with no sites yet.
    pub fn new(alpn: Vec<Vec<u8>>) -> Result<Self, String> {
        Ok(Engine {
            shared: Shared::new(alpn)?,
            table: RwLock::new(Arc::new(SiteTable::default())),
        })
    }

    /// The table handshakes consult now.
    pub fn table(&self) -> Arc<SiteTable> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Builds every site first, then swaps: a site rustls refuses leaves the running table and
    /// gives (index of the spec, reason). A site whose spec did not change is kept as it is.
    pub fn update(
        &self,
        specs: &[SiteSpec],
        fallback_sni: Option<&str>,
    ) -> Result<(), (usize, String)> {
        let current = self.table();
        let mut names = HashMap::new();
        for (i, spec) in specs.iter().enumerate() {
            let kept = current.names.values().find(|site| site.spec() == spec).cloned();
            let site = match kept {
                Some(site) => site,
                None => Arc::new(self.shared.site(spec).map_err(|reason| (i, reason))?),
            };
            for sni in &spec.snis {
                names.insert(sni.trim_end_matches('.').to_ascii_lowercase(), site.clone());
            }
        }
        let table = Arc::new(SiteTable { names, fallback_sni: fallback_sni.map(str::to_owned) });
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = table;
        Ok(())
    }

    /// rustls's verdict on one spec without installing it (the master's config check).
    pub fn check(&self, spec: &SiteSpec) -> Result<(), String> {
        self.shared.site(spec).map(|_| ())
    }
}
