//! Signed, expiring tokens: `base64url(payload).base64url(hmac_sha256(key, payload))`.
//! Stateless, so every server sharing the database (and so the key) accepts every token.
//! A host agent's token (claims with a host) is signed with a key derived from the
//! deployment's, so a server of an earlier version, which would not know that such a token
//! is no user's, refuses it (401) during a rolling upgrade.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a token asserts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// User id.
    pub u: String,
    /// Project id the token is scoped to.
    pub p: String,
    /// Role names.
    pub r: Vec<String>,
    /// Expiry, Unix seconds.
    pub e: i64,
    /// Issued at, Unix seconds.
    pub i: i64,
    /// Audit id.
    pub a: String,
    /// Issued at, Unix milliseconds (revocations compare it; 0 in tokens of earlier
    /// versions, which count as issued at the start of their second).
    #[serde(default)]
    pub m: i64,
    /// The host of a host-agent credential's token (`None`: a user's token). Such a token
    /// only serves the agent calls of that host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h: Option<String>,
}

impl Claims {
    /// When the token was issued, Unix milliseconds.
    pub fn issued_ms(&self) -> i64 {
        if self.m > 0 {
            self.m
        } else {
            self.i * 1000
        }
    }
}

fn mac(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(payload);
    m.finalize().into_bytes().to_vec()
}

/// The key that signs tokens with these claims: the deployment's for a user's token, one
/// derived from it for a host agent's.
fn key_for(key: &[u8], claims: &Claims) -> Vec<u8> {
    match claims.h {
        None => key.to_vec(),
        Some(_) => mac(key, b"neutrino host agent token"),
    }
}

/// Signs claims into a token string.
pub fn sign(key: &[u8], claims: &Claims) -> String {
    let payload = serde_json::to_vec(claims).expect("claims serialize");
    let sig = mac(&key_for(key, claims), &payload);
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

/// Verifies a token's signature and expiry.
pub fn verify(key: &[u8], token: &str, now: i64) -> Option<Claims> {
    let (payload, sig) = token.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
    // The claims say which key must have signed them (nothing is trusted before the check).
    let claims: Claims = serde_json::from_slice(&payload).ok()?;
    let mut m = Hmac::<Sha256>::new_from_slice(&key_for(key, &claims)).ok()?;
    m.update(&payload);
    m.verify_slice(&sig).ok()?;
    (claims.e > now).then_some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(e: i64) -> Claims {
        Claims {
            u: "u".into(),
            p: "p".into(),
            r: vec!["member".into()],
            e,
            i: 0,
            a: "x".into(),
            m: 0,
            h: None,
        }
    }

    #[test]
    fn round_trip_and_tamper() {
        let t = sign(b"k", &claims(100));
        assert_eq!(verify(b"k", &t, 50), Some(claims(100)));
        assert_eq!(verify(b"k", &t, 100), None, "expired");
        assert_eq!(verify(b"other", &t, 50), None, "wrong key");
        let forged = sign(
            b"k",
            &Claims {
                p: "admin".into(),
                ..claims(100)
            },
        );
        let (payload, _) = forged.split_once('.').unwrap();
        let (_, sig) = t.split_once('.').unwrap();
        assert_eq!(
            verify(b"k", &format!("{payload}.{sig}"), 50),
            None,
            "payload swapped"
        );
        assert_eq!(verify(b"k", "garbage", 50), None);
    }

    /// A host agent's token verifies only as one: not with the plain key (what a server of
    /// an earlier version checks), and its claims cannot be passed off as a user's.
    #[test]
    fn agent_tokens_have_their_own_key() {
        let agent = Claims {
            h: Some("h1".into()),
            ..claims(100)
        };
        let t = sign(b"k", &agent);
        assert_eq!(verify(b"k", &t, 50), Some(agent.clone()));
        let (payload, sig) = t.split_once('.').unwrap();
        let plain = mac(b"k", &URL_SAFE_NO_PAD.decode(payload).unwrap());
        assert_ne!(
            URL_SAFE_NO_PAD.decode(sig).unwrap(),
            plain,
            "an older server refuses it"
        );
        // Agent claims under the plain key's signature are no token.
        let plain = URL_SAFE_NO_PAD.encode(plain);
        assert_eq!(verify(b"k", &format!("{payload}.{plain}"), 50), None);
        // User claims under the agent key's signature neither.
        let user = serde_json::to_vec(&claims(100)).unwrap();
        let agent_sig = URL_SAFE_NO_PAD.encode(mac(&key_for(b"k", &agent), &user));
        let user = URL_SAFE_NO_PAD.encode(user);
        assert_eq!(verify(b"k", &format!("{user}.{agent_sig}"), 50), None);
        assert!(verify(b"k", &sign(b"k", &claims(100)), 50).is_some());
    }
}
