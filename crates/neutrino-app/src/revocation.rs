//! Token revocation, as Keystone's revocation events: tokens are stateless and signed, so
//! taking one back stores an event "tokens of this subject issued until now are void" in
//! the database, which every server sharing it checks on every request. Events name a user
//! (deleted, disabled, new password), a project (deleted or disabled), a user on a project
//! (a role taken away) or one token (`DELETE /v3/auth/tokens`). An event outlives every
//! token it can void by one token lifetime and is pruned after that.

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::ApiResult;
use serde_json::{json, Value};

use crate::token::Claims;
use crate::{db, App};

/// The store kind of revocation events; the id names the subject.
const KIND: &str = "token_revocation";

/// What a revocation event voids.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Revoked<'a> {
    /// Every token of a user.
    User(&'a str),
    /// Every token scoped to a project.
    Project(&'a str),
    /// A user's tokens scoped to one project.
    UserOnProject(&'a str, &'a str),
    /// One token, by its audit id.
    Token(&'a str),
}

impl Revoked<'_> {
    fn key(self) -> String {
        match self {
            Revoked::User(u) => format!("user:{u}"),
            Revoked::Project(p) => format!("project:{p}"),
            Revoked::UserOnProject(u, p) => format!("grant:{u}|{p}"),
            Revoked::Token(a) => format!("audit:{a}"),
        }
    }
}

/// The event ids that could void a token with these claims.
fn keys_of(claims: &Claims) -> Vec<String> {
    let mut keys = vec![
        Revoked::User(&claims.u).key(),
        Revoked::Token(&claims.a).key(),
    ];
    if !claims.p.is_empty() {
        keys.push(Revoked::Project(&claims.p).key());
        keys.push(Revoked::UserOnProject(&claims.u, &claims.p).key());
    }
    keys
}

/// Whether one of `events` voids a token with these claims.
fn voids(events: &[Record], claims: &Claims) -> bool {
    let issued = claims.issued_ms();
    events.iter().any(|e| {
        e.body["before_ms"]
            .as_i64()
            .is_some_and(|before| issued <= before)
    })
}

impl App {
    /// Voids, in `tx`, the tokens of `subject` issued until now.
    pub(crate) async fn revoke_tokens(&self, tx: &mut Tx, subject: Revoked<'_>) -> ApiResult<()> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let keep_until_ms = now_ms + self.config().token_ttl_secs * 1000;
        let body = json!({"before_ms": now_ms, "keep_until_ms": keep_until_ms});
        let id = subject.key();
        if !tx.update(KIND, &id, &body).await.map_err(db)? {
            let rec = Record {
                kind: KIND.to_string(),
                id,
                project_id: String::new(),
                parent_id: None,
                body,
            };
            tx.insert(&rec).await.map_err(db)?;
        }
        // Events no live token can be older than are dropped here, so the table stays as
        // small as the number of recent events.
        for old in tx.list(KIND, &Selector::default()).await.map_err(db)? {
            if old.body["keep_until_ms"]
                .as_i64()
                .is_some_and(|t| t < now_ms)
            {
                tx.delete(KIND, &old.id).await.map_err(db)?;
            }
        }
        Ok(())
    }

    /// Whether a token with these (verified) claims has been revoked.
    pub(crate) async fn is_revoked(&self, claims: &Claims) -> ApiResult<bool> {
        let mut tx = self.read().await?;
        let selector = Selector {
            ids: Some(keys_of(claims)),
            ..Selector::default()
        };
        let events = tx.list(KIND, &selector).await.map_err(db)?;
        Ok(voids(&events, claims))
    }
}

/// Whether a stored identity document is switched off (`enabled: false`).
pub(crate) fn disabled(body: &Value) -> bool {
    body.get("enabled") == Some(&Value::Bool(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(user: &str, project: &str, issued_ms: i64) -> Claims {
        Claims {
            u: user.into(),
            p: project.into(),
            r: vec!["member".into()],
            e: issued_ms / 1000 + 3600,
            i: issued_ms / 1000,
            a: "audit1".into(),
            m: issued_ms,
        }
    }

    fn event(subject: Revoked<'_>, before_ms: i64) -> Record {
        Record {
            kind: KIND.into(),
            id: subject.key(),
            project_id: String::new(),
            parent_id: None,
            body: json!({"before_ms": before_ms, "keep_until_ms": before_ms + 3_600_000}),
        }
    }

    #[test]
    fn an_event_voids_the_tokens_issued_until_it() {
        let c = claims("u1", "p1", 5_000);
        assert!(voids(&[event(Revoked::User("u1"), 5_000)], &c));
        assert!(voids(&[event(Revoked::User("u1"), 9_000)], &c));
        assert!(
            !voids(&[event(Revoked::User("u1"), 4_999)], &c),
            "issued after it"
        );
        assert!(!voids(&[], &c));
    }

    #[test]
    fn a_token_is_looked_up_under_each_subject_that_can_void_it() {
        let keys = keys_of(&claims("u1", "p1", 1));
        for k in ["user:u1", "audit:audit1", "project:p1", "grant:u1|p1"] {
            assert!(keys.contains(&k.to_string()), "{k} in {keys:?}");
        }
        let unscoped = keys_of(&claims("u1", "", 1));
        assert_eq!(unscoped.len(), 2, "{unscoped:?}");
    }

    #[test]
    fn tokens_of_earlier_versions_count_from_the_start_of_their_second() {
        let mut c = claims("u1", "", 0);
        c.i = 7;
        c.m = 0;
        assert_eq!(c.issued_ms(), 7_000);
        assert!(voids(&[event(Revoked::User("u1"), 7_000)], &c));
    }
}
