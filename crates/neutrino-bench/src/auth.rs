//! How the load tool finds its endpoint and token: `--url`/`--token` as given, or a
//! Keystone login with the `OS_*` variables (see `neutrino-keystone`).

use neutrino_keystone::{network_endpoint, password_login, token_body, Credentials};
use reqwest::Client;

use crate::api::normalize_network_url;
use crate::BenchError;

/// Determines the network endpoint base URL and the token to use.
///
/// * `--url` and `--token`: used as given, nothing else is contacted.
/// * `--token` only: the token is validated at `OS_AUTH_URL` to read its
///   catalog.
/// * otherwise: password login with the `OS_*` variables; `--url`, when
///   given, overrides the catalog endpoint.
pub(crate) async fn resolve(
    http: &Client,
    url: Option<&str>,
    token: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, String), BenchError> {
    match (url, token) {
        (Some(url), Some(token)) => Ok((normalize_network_url(url)?, token.to_string())),
        (None, Some(token)) => {
            let auth_url = env("OS_AUTH_URL").ok_or(BenchError::MissingEnv("OS_AUTH_URL"))?;
            let body = token_body(http, &auth_url, token).await?;
            let region = env("OS_REGION_NAME");
            let endpoint = network_endpoint(&body, region.as_deref())?;
            Ok((normalize_network_url(&endpoint)?, token.to_string()))
        }
        (url, None) => {
            let creds = Credentials::from_env(env)?;
            let (token, body) = password_login(http, &creds).await?;
            let endpoint = match url {
                Some(url) => url.to_string(),
                None => network_endpoint(&body, creds.region.as_deref())?,
            };
            Ok((normalize_network_url(&endpoint)?, token))
        }
    }
}
