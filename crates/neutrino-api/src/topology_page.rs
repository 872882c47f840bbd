//! `/topology/...`: the topology page, a static web application embedded in the binary (its
//! HTML, script and style, and the vendored Cytoscape.js with the fCoSE layout). It logs in
//! through `/v3/auth/tokens` and draws what `GET /v2.0/neutrino/topology` returns for that
//! user; these files themselves carry nothing secret and are served without a token.

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use neutrino_types::ApiError;

use crate::reply::neutron_error;
use crate::Request;

/// One embedded file: its path below `/topology/`, media type and bytes.
struct Asset {
    path: &'static str,
    media_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $media_type:expr) => {
        Asset {
            path: $path,
            media_type: $media_type,
            bytes: include_bytes!(concat!("../assets/topology/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", JS),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("vendor/cytoscape.min.js", JS),
    asset!("vendor/layout-base.js", JS),
    asset!("vendor/cose-base.js", JS),
    asset!("vendor/cytoscape-fcose.js", JS),
];

/// The page allows only its own scripts, styles and API calls (no inline script, no
/// framing): a token in its session storage can't be read by injected content.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Serves `GET /topology`, `/topology/` and the files below it.
pub(crate) fn serve(req: &Request) -> Response {
    if req.method != Method::GET && req.method != Method::HEAD {
        return neutron_error(&ApiError::new(
            405,
            "HTTPMethodNotAllowed",
            "The method is not allowed for the requested resource.",
        ));
    }
    let path = match &req.segments[1..] {
        [] => "index.html".to_string(),
        rest => rest.join("/"),
    };
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return neutron_error(&ApiError::no_such_url());
    };
    let mut response = Response::new(if req.method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(asset.bytes)
    });
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.media_type));
    // The page is small and changes with the binary: always revalidate.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_and_style_the_page_names_is_served() {
        let index = ASSETS.iter().find(|a| a.path == "index.html").unwrap();
        let html = std::str::from_utf8(index.bytes).unwrap();
        let named: Vec<&str> = html
            .split(['"', '\''])
            .filter_map(|s| s.strip_prefix("/topology/"))
            .collect();
        assert!(named.len() >= 6, "{named:?}");
        for path in named {
            assert!(
                ASSETS.iter().any(|a| a.path == path),
                "{path} is not embedded"
            );
        }
        // No inline script: the content security policy would block it.
        assert!(!html.contains("<script>"));
    }
}
