//! Request headers a load stream sends, with `${NAME}` taken from the environment: how a bearer
//! key reaches a gateway without being written in the file. A value that came from the
//! environment is a secret: it is held as a sensitive header value, its `Debug` shows the text
//! as written, and nothing else in the crate can print it.

use std::fmt;

use hyper::header::{HeaderName, HeaderValue};

/// One header, resolved when the experiment was read.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub name: HeaderName,
    /// The value as written in the file, `${NAME}` and all: what reports and logs may show.
    pub written: String,
    /// The value sent; marked sensitive when any of it came from the environment.
    value: HeaderValue,
}

impl RequestHeader {
    /// The value to send. Never print it: it may hold a secret.
    pub fn value(&self) -> &HeaderValue {
        &self.value
    }

    pub fn is_secret(&self) -> bool {
        self.value.is_sensitive()
    }
}

impl fmt::Debug for RequestHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The written form only: a `{:?}` of an experiment must not leak a key.
        f.debug_struct("RequestHeader")
            .field("name", &self.name)
            .field("written", &self.written)
            .finish()
    }
}

/// Resolves one header: `name` must be a valid header name, `written` may contain `${NAME}`
/// (an environment variable that must be set) and `$$` for a literal `$`. `env` looks a
/// variable up (the process environment outside tests).
pub fn resolve(
    name: &str,
    written: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<RequestHeader, String> {
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not a valid HTTP header name"))?;
    let (text, secret) = expand(written, env)?;
    let mut value = HeaderValue::from_str(&text).map_err(|_| {
        if secret {
            // Say which variable without saying what it holds.
            format!("header `{name}`: the value (with the environment's text) is not a valid HTTP header value")
        } else {
            format!("header `{name}`: `{written}` is not a valid HTTP header value")
        }
    })?;
    value.set_sensitive(secret);
    Ok(RequestHeader {
        name: header,
        written: written.to_string(),
        value,
    })
}

/// `written` with every `${NAME}` replaced; true when anything came from the environment.
fn expand(written: &str, env: impl Fn(&str) -> Option<String>) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(written.len());
    let mut secret = false;
    let mut rest = written;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("`{written}`: `${{` without its closing `}}`"))?;
            let var = &tail[..end];
            let valid = !var.is_empty()
                && !var.starts_with(|c: char| c.is_ascii_digit())
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`${{{var}}}` is not an environment variable name (letters, digits, _)"
                ));
            }
            let value = env(var).ok_or_else(|| {
                format!("the environment variable {var} is not set (export it before the run)")
            })?;
            out.push_str(&value);
            secret = true;
            rest = &tail[end + 1..];
        } else {
            // A lone `$` is itself: `$5`, `a$b`.
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok((out, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        (var == "GATEWAY_KEY").then(|| "sk-test-123".to_string())
    }

    #[test]
    fn variables_are_expanded_and_make_the_value_secret() {
        let h = resolve("authorization", "Bearer ${GATEWAY_KEY}", env).unwrap();
        assert_eq!(h.value(), "Bearer sk-test-123");
        assert!(h.is_secret());
        assert_eq!(h.written, "Bearer ${GATEWAY_KEY}");
        let shown = format!("{h:?}");
        assert!(!shown.contains("sk-test-123"), "{shown}");
        assert!(shown.contains("${GATEWAY_KEY}"), "{shown}");
    }

    #[test]
    fn plain_values_are_not_secret_and_dollars_escape() {
        let h = resolve("x-team", "drills", env).unwrap();
        assert!(!h.is_secret());
        let h = resolve("x-price", "$$5 and $6", env).unwrap();
        assert_eq!(h.value(), "$5 and $6");
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(
            resolve("authorization", "Bearer ${MISSING}", env).unwrap_err(),
            "the environment variable MISSING is not set (export it before the run)"
        );
        assert!(resolve("authorization", "Bearer ${OOPS", env)
            .unwrap_err()
            .contains("without its closing"));
        assert!(resolve("authorization", "${1X}", env)
            .unwrap_err()
            .contains("not an environment variable name"));
        assert!(resolve("bad header", "x", env)
            .unwrap_err()
            .contains("not a valid HTTP header name"));
        // A secret that makes an invalid value is refused without being quoted.
        let e = resolve("authorization", "${GATEWAY_KEY}\n", |_| Some("x\ny".into())).unwrap_err();
        assert!(!e.contains("x\ny"), "{e}");
    }
}
