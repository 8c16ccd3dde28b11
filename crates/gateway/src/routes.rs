//! HTTP routes: matching a path against a route pattern (parameters decoded as the
//! upstream will read them) and the call a request stands for.

use std::collections::BTreeMap;

use mandate_core::{Call, Value};
use sha2::{Digest as _, Sha256};

/// Matches `path` (below the mount) against a route pattern; the parameters on success.
pub(crate) fn matches(pattern: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let (p, a): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    if p.len() != a.len() {
        return None;
    }
    let mut params = BTreeMap::new();
    for (want, got) in p.iter().zip(&a) {
        match want.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
            Some(name) => {
                params.insert(name.to_owned(), param_value(got)?);
            }
            None if want == got => {}
            None => return None,
        }
    }
    Some(params)
}

/// A path parameter as the upstream will read it: percent-decoded, and refused (no route
/// matches) when empty, a dot segment, not UTF-8, or holding anything an upstream might
/// read as structure (`/`, `\`, `;`, `%` after decoding, `{`, `}`, `*`, control
/// characters). So `%31%33` is the parameter `13`, and `42%2Fpay` matches nothing.
fn param_value(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let v = String::from_utf8(out).ok()?;
    let unsafe_value = v.is_empty()
        || v == "."
        || v == ".."
        || v.chars()
            .any(|c| c.is_control() || matches!(c, '/' | '\\' | ';' | '%' | '{' | '}' | '*'));
    (!unsafe_value).then_some(v)
}

/// The call an HTTP request stands for (docs/GATEWAY.md), which the agent's proof must
/// name exactly: the route's `action`, its `resource` with the path parameters filled in,
/// and as arguments the path parameters (text) and `http.method`, `http.path` (the path as
/// sent to the gateway), `http.query` (the raw query, or empty) and `http.body_sha256`
/// (lowercase hex of the body's SHA-256). Agents build the same call to sign their proof.
pub fn http_call(
    action: &str,
    resource_template: &str,
    params: &BTreeMap<String, String>,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Call {
    let mut resource = resource_template.to_owned();
    for (k, v) in params {
        resource = resource.replace(&format!("{{{k}}}"), v);
    }
    let mut call = Call::new(action, resource);
    for (k, v) in params {
        call.args.insert(k.clone(), Value::Text(v.clone()));
    }
    let digest: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for (k, v) in [
        ("http.method", method.to_owned()),
        ("http.path", path.to_owned()),
        ("http.query", query.to_owned()),
        ("http.body_sha256", digest),
    ] {
        call.args.insert(k.to_owned(), Value::Text(v));
    }
    call
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_patterns_bind_whole_segments() {
        let p = matches("/invoices/{id}", "/invoices/42").unwrap();
        assert_eq!(p["id"], "42");
        assert!(matches("/invoices/{id}", "/invoices/").is_none());
        assert!(matches("/invoices/{id}", "/invoices/42/pay").is_none());
        assert!(matches("/invoices/{id}", "/orders/42").is_none());
        assert!(matches("/health", "/health").unwrap().is_empty());
    }

    #[test]
    fn path_parameters_are_checked_as_the_upstream_reads_them() {
        let id = |path: &str| matches("/invoices/{id}", path).map(|p| p["id"].clone());
        assert_eq!(id("/invoices/%31%33").as_deref(), Some("13"));
        assert_eq!(id("/invoices/a%20b").as_deref(), Some("a b"));
        for refused in [
            "/invoices/42%2Fpay",
            "/invoices/42%2fpay",
            "/invoices/..",
            "/invoices/.",
            "/invoices/%2E%2E",
            "/invoices/a%5Cb",
            "/invoices/a;jsessionid=1",
            "/invoices/%2531",
            "/invoices/%zz",
            "/invoices/%3",
            "/invoices/%FF",
            "/invoices/{b}",
            "/invoices/a%00",
            "/invoices/*",
        ] {
            assert_eq!(id(refused), None, "{refused}");
        }
    }
}
