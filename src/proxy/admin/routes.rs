//! One function per Toxiproxy route. Every request is validated whole before anything
//! changes, so a 400 leaves the proxies as they were.

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::model::{self, opt_bool, opt_f32, opt_object, opt_str, required_str, ApiError};
use super::Collection;
use crate::proxy::tcp::{Stream, TcpProxy, Toxic, ToxicKind};

/// The default for a proxy created without `listen`.
const DEFAULT_LISTEN: &str = "127.0.0.1:0";

pub type Answer = Result<(StatusCode, Option<Value>), ApiError>;

fn ok(v: Value) -> Answer {
    Ok((StatusCode::OK, Some(v)))
}

/// Routes one request; `body` is already read (empty for bodiless verbs).
pub async fn route(coll: &Collection, method: &Method, segments: &[&str], body: &[u8]) -> Answer {
    let m = method.as_str();
    match (segments, m) {
        (["version"], "GET") => ok(json!({ "version": env!("CARGO_PKG_VERSION") })),
        (["reset"], "POST") => reset(coll).await,
        (["proxies"], "GET") => index(coll).await,
        (["proxies"], "POST") => create(coll, body).await,
        (["populate"], "POST") => populate(coll, body).await,
        (["proxies", name], "GET") => ok(model::proxy_json(&get(coll, name).await?.info().await)),
        (["proxies", name], "POST" | "PATCH") => update(coll, name, body).await,
        (["proxies", name], "DELETE") => delete(coll, name).await,
        (["proxies", name, "toxics"], "GET") => {
            let p = get(coll, name).await?;
            ok(Value::Array(
                p.toxics().iter().map(Toxic::to_json).collect(),
            ))
        }
        (["proxies", name, "toxics"], "POST") => toxic_create(coll, name, body).await,
        (["proxies", name, "toxics", toxic], "GET") => {
            let p = get(coll, name).await?;
            let t = p
                .toxic(toxic)
                .ok_or(crate::proxy::tcp::TcpError::ToxicNotFound)?;
            ok(t.to_json())
        }
        (["proxies", name, "toxics", toxic], "POST" | "PATCH") => {
            toxic_update(coll, name, toxic, body).await
        }
        (["proxies", name, "toxics", toxic], "DELETE") => {
            get(coll, name).await?.remove_toxic(toxic)?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        (["version"] | ["reset"] | ["proxies"] | ["populate"], _)
        | (["proxies", _], _)
        | (["proxies", _, "toxics"], _)
        | (["proxies", _, "toxics", _], _) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {m} not allowed here"),
        )),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "not found")),
    }
}

async fn get(coll: &Collection, name: &str) -> Result<Arc<TcpProxy>, ApiError> {
    coll.lock()
        .await
        .get(name)
        .cloned()
        .ok_or_else(ApiError::proxy_not_found)
}

async fn index(coll: &Collection) -> Answer {
    let proxies: Vec<Arc<TcpProxy>> = coll.lock().await.values().cloned().collect();
    let mut out = Map::new();
    for p in proxies {
        let info = p.info().await;
        out.insert(info.name.clone(), model::proxy_json(&info));
    }
    ok(Value::Object(out))
}

/// A proxy as a create or populate request gives it, checked.
struct NewProxy {
    name: String,
    listen: String,
    upstream: String,
    enabled: bool,
}

fn new_proxy(m: &Map<String, Value>) -> Result<NewProxy, ApiError> {
    Ok(NewProxy {
        name: required_str(m, "name")?,
        upstream: required_str(m, "upstream")?,
        listen: opt_str(m, "listen")?
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string()),
        enabled: opt_bool(m, "enabled")?.unwrap_or(true),
    })
}

async fn create(coll: &Collection, body: &[u8]) -> Answer {
    let spec = new_proxy(&model::object(body)?)?;
    let mut map = coll.lock().await;
    if map.contains_key(&spec.name) {
        return Err(ApiError::new(StatusCode::CONFLICT, "proxy already exists"));
    }
    let proxy = Arc::new(TcpProxy::new(&spec.name, &spec.listen, &spec.upstream));
    if spec.enabled {
        proxy.start().await?;
    }
    map.insert(spec.name.clone(), Arc::clone(&proxy));
    drop(map);
    Ok((
        StatusCode::CREATED,
        Some(model::proxy_json(&proxy.info().await)),
    ))
}

async fn populate(coll: &Collection, body: &[u8]) -> Answer {
    let list = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(a)) => a,
        Ok(_) => {
            return Err(ApiError::bad(
                "bad request body: expected an array of proxies",
            ))
        }
        Err(e) => return Err(ApiError::bad(format!("bad request body: {e}"))),
    };
    let mut specs = Vec::with_capacity(list.len());
    for item in &list {
        let Value::Object(m) = item else {
            return Err(ApiError::bad(
                "bad request body: every proxy must be an object",
            ));
        };
        specs.push(new_proxy(m)?);
    }
    let mut map = coll.lock().await;
    let mut out = Vec::new();
    for spec in specs {
        // Toxiproxy replaces a proxy whose address or upstream differ and keeps an equal one.
        if let Some(old) = map.get(&spec.name).cloned() {
            let info = old.info().await;
            if info.upstream == spec.upstream
                && (info.listen == spec.listen || spec.listen == DEFAULT_LISTEN)
            {
                old.update(None, None, Some(spec.enabled)).await?;
                out.push(model::proxy_json(&old.info().await));
                continue;
            }
            old.stop().await;
            map.shift_remove(&spec.name);
        }
        let proxy = Arc::new(TcpProxy::new(&spec.name, &spec.listen, &spec.upstream));
        if spec.enabled {
            if let Err(e) = proxy.start().await {
                let err = ApiError::from(e);
                let mut body = err.body();
                body["proxies"] = Value::Array(out);
                return Ok((err.status, Some(body)));
            }
        }
        map.insert(spec.name.clone(), Arc::clone(&proxy));
        out.push(model::proxy_json(&proxy.info().await));
    }
    Ok((StatusCode::CREATED, Some(json!({ "proxies": out }))))
}

async fn update(coll: &Collection, name: &str, body: &[u8]) -> Answer {
    let p = get(coll, name).await?;
    let m = model::object(body)?;
    let listen = opt_str(&m, "listen")?.filter(|l| !l.is_empty());
    let upstream = opt_str(&m, "upstream")?.filter(|u| !u.is_empty());
    let enabled = opt_bool(&m, "enabled")?;
    let info = p
        .update(listen.as_deref(), upstream.as_deref(), enabled)
        .await?;
    ok(model::proxy_json(&info))
}

async fn delete(coll: &Collection, name: &str) -> Answer {
    let p = coll
        .lock()
        .await
        .shift_remove(name)
        .ok_or_else(ApiError::proxy_not_found)?;
    p.stop().await;
    Ok((StatusCode::NO_CONTENT, None))
}

async fn reset(coll: &Collection) -> Answer {
    let proxies: Vec<Arc<TcpProxy>> = coll.lock().await.values().cloned().collect();
    for p in proxies {
        p.remove_all_toxics();
        p.start().await?;
    }
    Ok((StatusCode::NO_CONTENT, None))
}

async fn toxic_create(coll: &Collection, name: &str, body: &[u8]) -> Answer {
    let p = get(coll, name).await?;
    let m = model::object(body)?;
    let kind_name = opt_str(&m, "type")?.unwrap_or_default();
    let stream_name = opt_str(&m, "stream")?.unwrap_or_else(|| "downstream".to_string());
    let stream = Stream::parse(&stream_name)
        .ok_or_else(|| ApiError::bad("stream was invalid, can be either upstream or downstream"))?;
    let empty = Map::new();
    let attrs = opt_object(&m, "attributes")?.unwrap_or(&empty);
    let kind = ToxicKind::from_attributes(&kind_name, attrs, None).map_err(ApiError::bad)?;
    let toxic_name = opt_str(&m, "name")?
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("{kind_name}_{stream_name}"));
    let toxicity = opt_f32(&m, "toxicity")?.unwrap_or(1.0);
    let t = p.add_toxic(Toxic::new(toxic_name, kind, stream, toxicity))?;
    ok(t.to_json())
}

async fn toxic_update(coll: &Collection, name: &str, toxic: &str, body: &[u8]) -> Answer {
    let p = get(coll, name).await?;
    let m = model::object(body)?;
    let attrs = opt_object(&m, "attributes")?;
    let toxicity = opt_f32(&m, "toxicity")?;
    let t = p.update_toxic(toxic, attrs, toxicity)?;
    ok(t.to_json())
}
