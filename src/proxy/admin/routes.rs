//! One function per Toxiproxy route. Every request is validated whole before anything
//! changes, so a 400 leaves the proxies as they were.

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::entry::{Entry, Mode};
use super::model::{self, opt_bool, opt_str, required_str, ApiError};
use super::Collection;

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
        (["proxies", name], "GET") => ok(get(coll, name).await?.json().await),
        (["proxies", name], "POST" | "PATCH") => update(coll, name, body).await,
        (["proxies", name], "DELETE") => delete(coll, name).await,
        (["proxies", name, "toxics"], "GET") => {
            ok(Value::Array(get(coll, name).await?.toxics().await))
        }
        (["proxies", name, "toxics"], "POST") => {
            let p = get(coll, name).await?;
            ok(p.add_toxic(&model::object(body)?).await?)
        }
        (["proxies", name, "toxics", toxic], "GET") => {
            ok(get(coll, name).await?.toxic(toxic).await?)
        }
        (["proxies", name, "toxics", toxic], "POST" | "PATCH") => {
            let p = get(coll, name).await?;
            ok(p.update_toxic(toxic, &model::object(body)?).await?)
        }
        (["proxies", name, "toxics", toxic], "DELETE") => {
            get(coll, name).await?.remove_toxic(toxic).await?;
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

async fn get(coll: &Collection, name: &str) -> Result<Entry, ApiError> {
    coll.lock()
        .await
        .get(name)
        .cloned()
        .ok_or_else(ApiError::proxy_not_found)
}

async fn index(coll: &Collection) -> Answer {
    let proxies: Vec<(String, Entry)> = coll
        .lock()
        .await
        .iter()
        .map(|(n, p)| (n.clone(), p.clone()))
        .collect();
    let mut out = Map::new();
    for (name, p) in proxies {
        out.insert(name, p.json().await);
    }
    ok(Value::Object(out))
}

/// A proxy as a create or populate request gives it, checked.
struct NewProxy {
    name: String,
    listen: String,
    upstream: String,
    enabled: bool,
    mode: Mode,
}

fn new_proxy(m: &Map<String, Value>) -> Result<NewProxy, ApiError> {
    Ok(NewProxy {
        name: required_str(m, "name")?,
        upstream: required_str(m, "upstream")?,
        listen: opt_str(m, "listen")?
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string()),
        enabled: opt_bool(m, "enabled")?.unwrap_or(true),
        mode: Mode::parse(opt_str(m, "mode")?.as_deref())?,
    })
}

async fn create(coll: &Collection, body: &[u8]) -> Answer {
    let spec = new_proxy(&model::object(body)?)?;
    let mut map = coll.lock().await;
    if map.contains_key(&spec.name) {
        return Err(ApiError::new(StatusCode::CONFLICT, "proxy already exists"));
    }
    let proxy = Entry::new(
        spec.mode,
        &spec.name,
        &spec.listen,
        &spec.upstream,
        coll.seed(),
    );
    if spec.enabled {
        proxy.start().await?;
    }
    map.insert(spec.name.clone(), proxy.clone());
    drop(map);
    Ok((StatusCode::CREATED, Some(proxy.json().await)))
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
        // Toxiproxy replaces a proxy whose address or upstream differ and keeps an equal one;
        // a changed mode is a different proxy too.
        if let Some(old) = map.get(&spec.name).cloned() {
            let info = old.json().await;
            if old.mode() == spec.mode
                && info["upstream"] == spec.upstream.as_str()
                && (info["listen"] == spec.listen.as_str() || spec.listen == DEFAULT_LISTEN)
            {
                out.push(old.update(None, None, Some(spec.enabled)).await?);
                continue;
            }
            old.stop().await;
            map.shift_remove(&spec.name);
        }
        let proxy = Entry::new(
            spec.mode,
            &spec.name,
            &spec.listen,
            &spec.upstream,
            coll.seed(),
        );
        if spec.enabled {
            if let Err(err) = proxy.start().await {
                let mut body = err.body();
                body["proxies"] = Value::Array(out);
                return Ok((err.status, Some(body)));
            }
        }
        map.insert(spec.name.clone(), proxy.clone());
        out.push(proxy.json().await);
    }
    Ok((StatusCode::CREATED, Some(json!({ "proxies": out }))))
}

async fn update(coll: &Collection, name: &str, body: &[u8]) -> Answer {
    let p = get(coll, name).await?;
    let m = model::object(body)?;
    let listen = opt_str(&m, "listen")?.filter(|l| !l.is_empty());
    let upstream = opt_str(&m, "upstream")?.filter(|u| !u.is_empty());
    let enabled = opt_bool(&m, "enabled")?;
    ok(p.update(listen.as_deref(), upstream.as_deref(), enabled)
        .await?)
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
    let proxies: Vec<Entry> = coll.lock().await.values().cloned().collect();
    for p in proxies {
        p.remove_all_toxics().await;
        p.start().await?;
    }
    Ok((StatusCode::NO_CONTENT, None))
}
