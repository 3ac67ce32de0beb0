//! Load streams: where each one sends.

use std::path::Path;

use super::Checker;
use crate::experiment::prompts::Prompt;
use crate::experiment::schema::{ExperimentFile, RequestSpec};
use crate::experiment::{LoadStream, Problem, Target};
use crate::net::{HostPort, Scheme, Tls};

pub(super) fn streams(c: &mut Checker, file: &ExperimentFile) -> Vec<LoadStream> {
    if file.load.is_empty() {
        c.report(file.version.referenced, "`load` needs at least one stream");
    }
    let mut streams = Vec::new();
    for (name, s) in &file.load {
        let mut headers = Vec::new();
        let here = c.looks_up();
        for (header, value) in &s.value.headers {
            // Checked elsewhere, a variable is that environment's: any value stands in for it
            // so that the header's name and the `${NAME}` syntax are still checked.
            match crate::experiment::headers::resolve(header, &value.value, |var| {
                if here {
                    std::env::var(var).ok()
                } else {
                    Some("set-where-it-runs".into())
                }
            }) {
                Ok(h) => headers.push(h),
                Err(why) => c.report(
                    value.referenced,
                    format!("load stream `{name}`, header `{header}`: {why}"),
                ),
            }
        }
        let prompts = prompts(c, name, &s.value.request);
        if let Some(t) = &s.value.tls {
            if !s.value.url.value.starts_with("https://") {
                c.report(
                    t.referenced,
                    format!("load stream `{name}`: `tls` applies to an https:// url"),
                );
            }
        }
        let tls = match &s.value.tls {
            Some(t) => Tls::new(&t.value).map_err(|why| (t.referenced, why)),
            None => Tls::system().map_err(|why| (s.referenced, why)),
        };
        let tls = match tls {
            Ok(tls) => Some(tls),
            Err((at, why)) => {
                c.report(at, format!("load stream `{name}`, tls: {why}"));
                None
            }
        };
        match (parse_target(&s.value.url.value, here), tls) {
            (Ok(target), Some(tls)) => streams.push(LoadStream {
                name: name.clone(),
                target,
                spec: s.value.clone(),
                headers,
                prompts,
                rate_changes: Vec::new(),
                tls,
            }),
            (Ok(_), None) => {}
            (Err(why), _) => c.report(
                s.value.url.referenced,
                format!("load stream `{name}`: {why}"),
            ),
        }
        if s.value.max_in_flight == 0 {
            c.report(
                s.referenced,
                format!("load stream `{name}`: max_in_flight must be at least 1"),
            );
        }
    }
    streams
}

/// Reads `request.prompts`, relative to the experiment file; its problems name the JSONL file
/// and line, since that is where they are to be fixed.
fn prompts(
    c: &mut Checker,
    stream: &str,
    request: &RequestSpec,
) -> Option<std::sync::Arc<[Prompt]>> {
    let written = request.prompts.as_ref()?;
    if let Some(tokens) = &request.prompt_tokens {
        c.report(
            written.referenced,
            format!("load stream `{stream}`: `prompts` and `prompt_tokens: {tokens}` both say what to send; keep one"),
        );
    }
    let path = c
        .path
        .parent()
        .unwrap_or(Path::new(""))
        .join(&written.value);
    match crate::experiment::prompts::read(&path) {
        Ok(p) => Some(p.into()),
        Err(e) if e.line == 0 => {
            c.report(
                written.referenced,
                format!("load stream `{stream}`, prompts: {}", e.message),
            );
            None
        }
        Err(e) => {
            c.problems.push(Problem {
                file: path,
                line: u64::try_from(e.line).unwrap_or(u64::MAX),
                column: 1,
                message: format!("prompts of load stream `{stream}`: {}", e.message),
                excerpt: None,
            });
            None
        }
    }
}

/// HTTP or HTTPS to a literal or resolvable host and an explicit or default port. With
/// `resolve`, the host is resolved here only to fail early with its name; connections resolve
/// it again.
fn parse_target(url: &str, resolve: bool) -> Result<Target, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let (scheme, default_port) = match uri.scheme_str() {
        Some("http") => (Scheme::Http, 80),
        Some("https") => (Scheme::Https, 443),
        Some(other) => {
            return Err(format!(
                "`{url}`: only http:// and https:// are supported, not {other}://"
            ))
        }
        None => {
            return Err(format!(
                "`{url}` needs a scheme, like http://127.0.0.1:8080/v1/chat/completions"
            ))
        }
    };
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .ok_or_else(|| format!("`{url}` has no host"))?;
    let addr = HostPort::new(
        authority.host(),
        authority.port_u16().unwrap_or(default_port),
    );
    if resolve {
        addr.resolve().map_err(|why| format!("`{url}`: {why}"))?;
    }
    // The request target as sent: `http://h:8000?x=1` has the query without its path, which
    // is `/` then.
    let path_and_query = match uri.path_and_query().map(|p| p.as_str()) {
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
        None => "/".into(),
    };
    Ok(Target {
        scheme,
        addr,
        authority: authority.as_str().to_string(),
        path_and_query,
    })
}
