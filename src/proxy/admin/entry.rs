//! One proxy of the collection, of either kind. The routes stay kind-blind; only the few
//! operations whose shapes differ (JSON, toxics) branch here.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::http_entry::HttpProxy;
use super::model::{self, ApiError};
use crate::proxy::tcp::{Stream, TcpError, TcpProxy, Toxic, ToxicKind};

/// `"mode"` of a create request: `tcp` (Toxiproxy's, the default) or `http`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Tcp,
    Http,
}

impl Mode {
    pub fn parse(s: Option<&str>) -> Result<Mode, ApiError> {
        match s {
            None | Some("") | Some("tcp") => Ok(Mode::Tcp),
            Some("http") => Ok(Mode::Http),
            Some(other) => Err(ApiError::bad(format!(
                "bad request body: `mode` must be tcp or http, got `{other}`"
            ))),
        }
    }
}

#[derive(Clone)]
pub enum Entry {
    Tcp(Arc<TcpProxy>),
    Http(Arc<HttpProxy>),
}

impl Entry {
    /// A proxy that is not listening yet, drawing from `seed`; call `start`.
    pub fn new(mode: Mode, name: &str, listen: &str, upstream: &str, seed: u64) -> Entry {
        match mode {
            Mode::Tcp => Entry::Tcp(Arc::new(
                TcpProxy::new(name, listen, upstream).with_seed(seed),
            )),
            Mode::Http => Entry::Http(Arc::new(HttpProxy::new(name, listen, upstream, seed))),
        }
    }

    pub fn mode(&self) -> Mode {
        match self {
            Entry::Tcp(_) => Mode::Tcp,
            Entry::Http(_) => Mode::Http,
        }
    }

    pub async fn start(&self) -> Result<(), ApiError> {
        match self {
            Entry::Tcp(p) => p.start().await.map(|_| ()).map_err(ApiError::from),
            Entry::Http(p) => p.start().await,
        }
    }

    pub async fn stop(&self) {
        match self {
            Entry::Tcp(p) => p.stop().await,
            Entry::Http(p) => p.stop().await,
        }
    }

    /// Toxiproxy's proxy JSON, plus `mode`.
    pub async fn json(&self) -> Value {
        match self {
            Entry::Tcp(p) => model::proxy_json(&p.info().await),
            Entry::Http(p) => p.json().await,
        }
    }

    pub async fn update(
        &self,
        listen: Option<&str>,
        upstream: Option<&str>,
        enabled: Option<bool>,
    ) -> Result<Value, ApiError> {
        match self {
            Entry::Tcp(p) => Ok(model::proxy_json(
                &p.update(listen, upstream, enabled).await?,
            )),
            Entry::Http(p) => p.update(listen, upstream, enabled).await,
        }
    }

    pub async fn toxics(&self) -> Vec<Value> {
        match self {
            Entry::Tcp(p) => p.toxics().iter().map(Toxic::to_json).collect(),
            Entry::Http(p) => p.toxics().await,
        }
    }

    pub async fn toxic(&self, name: &str) -> Result<Value, ApiError> {
        match self {
            Entry::Tcp(p) => Ok(p.toxic(name).ok_or(TcpError::ToxicNotFound)?.to_json()),
            Entry::Http(p) => p.toxic(name).await,
        }
    }

    pub async fn add_toxic(&self, m: &Map<String, Value>) -> Result<Value, ApiError> {
        let p = match self {
            Entry::Tcp(p) => p,
            Entry::Http(p) => return p.add_toxic(m).await,
        };
        let kind_name = model::opt_str(m, "type")?.unwrap_or_default();
        let stream_name = model::opt_str(m, "stream")?.unwrap_or_else(|| "downstream".to_string());
        let stream = Stream::parse(&stream_name).ok_or_else(|| {
            ApiError::bad("stream was invalid, can be either upstream or downstream")
        })?;
        let empty = Map::new();
        let attrs = model::opt_object(m, "attributes")?.unwrap_or(&empty);
        let kind = ToxicKind::from_attributes(&kind_name, attrs, None).map_err(ApiError::bad)?;
        let toxic_name = model::opt_str(m, "name")?
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("{kind_name}_{stream_name}"));
        let toxicity = model::opt_f32(m, "toxicity")?.unwrap_or(1.0);
        Ok(p.add_toxic(Toxic::new(toxic_name, kind, stream, toxicity))?
            .to_json())
    }

    pub async fn update_toxic(
        &self,
        name: &str,
        m: &Map<String, Value>,
    ) -> Result<Value, ApiError> {
        match self {
            Entry::Tcp(p) => {
                let attrs = model::opt_object(m, "attributes")?;
                let toxicity = model::opt_f32(m, "toxicity")?;
                Ok(p.update_toxic(name, attrs, toxicity)?.to_json())
            }
            Entry::Http(p) => p.update_toxic(name, m).await,
        }
    }

    pub async fn remove_toxic(&self, name: &str) -> Result<(), ApiError> {
        match self {
            Entry::Tcp(p) => Ok(p.remove_toxic(name)?),
            Entry::Http(p) => p.remove_toxic(name).await,
        }
    }

    pub async fn remove_all_toxics(&self) {
        match self {
            Entry::Tcp(p) => p.remove_all_toxics(),
            Entry::Http(p) => p.remove_all_toxics().await,
        }
    }
}
