//! The plugin's token cache: every ADD, DEL, CHECK and GC is a new process, and a Keystone
//! password login per call costs a key derivation on the server and a round trip. A token is
//! kept per set of credentials in a root-only directory (`/run/neutrino-cni`, or the
//! configuration's `tokenCacheDir`) as `{token, endpoint, expires_at}`, named by a SHA-256 of
//! the credentials (the password included, so a changed password is a new entry; no secret is
//! stored in clear besides the token itself). A token within a minute of expiry is not used;
//! one the server refuses is dropped and the call logs in again.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use neutrino_keystone::Credentials;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Default directory of the cache (tmpfs on most hosts: gone at reboot).
pub const DEFAULT_DIR: &str = "/run/neutrino-cni";

/// Seconds before expiry from which a cached token is no longer used.
const MARGIN_SECS: i64 = 60;

/// A cached login: the token and the network endpoint of its catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached {
    pub token: String,
    pub endpoint: String,
}

/// The cache file of `creds` in `dir`.
pub fn path(dir: &Path, creds: &Credentials) -> PathBuf {
    let mut h = Sha256::new();
    let (app_id, app_secret) = creds
        .application_credential
        .as_ref()
        .map_or(("", ""), |a| (a.id.as_str(), a.secret.as_str()));
    for part in [
        creds.auth_url.as_str(),
        &creds.username,
        &creds.password,
        &creds.user_domain_name,
        &creds.project_name,
        &creds.project_domain_name,
        creds.region.as_deref().unwrap_or(""),
        app_id,
        app_secret,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    dir.join(format!("token-{digest}.json"))
}

/// The cached login of `creds`, unless absent, unreadable or expiring within a minute of `now`
/// (seconds since the epoch).
pub fn load(dir: &Path, creds: &Credentials, now: i64) -> Option<Cached> {
    let text = std::fs::read_to_string(path(dir, creds)).ok()?;
    let doc: Value = serde_json::from_str(&text).ok()?;
    let expires = doc["expires_at"].as_i64()?;
    if expires - MARGIN_SECS <= now {
        return None;
    }
    Some(Cached {
        token: doc["token"].as_str()?.to_string(),
        endpoint: doc["endpoint"].as_str()?.to_string(),
    })
}

/// Stores a login whose token body says when it expires (`token.expires_at`, RFC 3339).
/// Best effort: a cache that cannot be written only costs the next call a login.
pub fn store(dir: &Path, creds: &Credentials, cached: &Cached, token_body: &Value) {
    let Some(expires) = token_body["token"]["expires_at"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    else {
        return;
    };
    let doc = json!({"token": cached.token, "endpoint": cached.endpoint,
                     "expires_at": expires.timestamp()});
    let _ = write_private(dir, &path(dir, creds), doc.to_string().as_bytes());
}

/// Forgets the cached login of `creds` (the server refused its token).
pub fn forget(dir: &Path, creds: &Credentials) {
    let _ = std::fs::remove_file(path(dir, creds));
}

/// Writes `data` to `file` atomically (a temporary file renamed), readable by root only.
fn write_private(dir: &Path, file: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(password: &str) -> Credentials {
        let env = |name: &str| match name {
            "OS_AUTH_URL" => Some("http://127.0.0.1:9696/v3".to_string()),
            "OS_USERNAME" | "OS_PROJECT_NAME" => Some("admin".to_string()),
            "OS_PASSWORD" => Some(password.to_string()),
            _ => None,
        };
        Credentials::from_env(&env).unwrap()
    }

    #[test]
    fn a_stored_token_is_used_until_a_minute_before_it_expires() {
        let dir = std::env::temp_dir().join(format!("ntcni-cache-{}", std::process::id()));
        let c = creds("secret");
        let cached = Cached {
            token: "tok".into(),
            endpoint: "http://127.0.0.1:9696".into(),
        };
        let body = json!({"token": {"expires_at": "2026-12-07T18:00:00.000000Z"}});
        store(&dir, &c, &cached, &body);
        let expires = 1_796_666_400; // 2026-12-07T18:00:00Z
        assert_eq!(load(&dir, &c, expires - 3600), Some(cached.clone()));
        assert_eq!(load(&dir, &c, expires - 30), None, "within the margin");
        // Another password is another entry; the file holds no password.
        assert_eq!(load(&dir, &creds("other"), expires - 3600), None);
        let text = std::fs::read_to_string(path(&dir, &c)).unwrap();
        assert!(!text.contains("secret"));
        let mode = std::fs::metadata(path(&dir, &c)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        forget(&dir, &c);
        assert_eq!(load(&dir, &c, expires - 3600), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
