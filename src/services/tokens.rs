//! Console tokens and the sessions they open. A token is issued once (`falco-api token create`),
//! shown once, and stored only as its SHA-256; whoever presents it acts as `token:NAME` with the
//! token's role. The console's login exchanges it for a session cookie signed with a key kept in
//! the store (so sessions survive restarts), checked again against the token on every request
//! (so revoking or expiring the token ends its sessions). A request that changes anything must
//! also carry the session's CSRF value, which a page of another site cannot read.

use std::sync::{Arc, Mutex, PoisonError};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::net::identity::Role;
use crate::store::{Store, StoreError};

const SAVED_TOKENS: &str = "console.tokens";
const SAVED_KEY: &str = "console.key";
const SAVED_ENDED: &str = "console.ended";
/// Sessions ended by logout remembered at most (until they would have expired anyway); past
/// that, a logout rotates the key, which ends every session.
const MAX_ENDED: usize = 10_000;
/// What every token starts with, so one is easy to recognise in a file or a leak scanner.
pub const PREFIX: &str = "fapi_";
/// Tokens at most (revoked ones included until removed).
const MAX_TOKENS: usize = 1_000;
/// How long a console session lasts (at most the token's own life).
pub const SESSION_SECS: i64 = 12 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token name '{0}' must be 1-64 characters of A-Z a-z 0-9 . _ -")]
    BadName(String),
    #[error("a console token has the role reader or admin, not '{0}'")]
    BadRole(String),
    #[error("a token named '{0}' exists already (revoke it first)")]
    Exists(String),
    #[error("no token named '{0}'")]
    NotFound(String),
    #[error("{MAX_TOKENS} tokens exist already; revoke some first")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stored token: never the token itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Token {
    pub name: String,
    pub role: String,
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub created_ns: i64,
    /// 0: never.
    pub expires_ns: i64,
    pub revoked: bool,
    /// Who issued it.
    pub author: String,
}

impl Token {
    fn live(&self, now_ns: i64) -> bool {
        !self.revoked && (self.expires_ns == 0 || now_ns < self.expires_ns)
    }
}

/// Who a console request acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// `token:NAME`.
    pub identity: String,
    pub role: Role,
    /// The value state-changing requests must carry in `X-CSRF-Token`.
    pub csrf: String,
}

pub struct Tokens {
    store: Arc<Store>,
    tokens: Mutex<Vec<Token>>,
    keys: Mutex<Keys>,
}

/// The session-signing key and the sessions ended before their time.
struct Keys {
    key: [u8; 32],
    /// A session's nonce → when it would have expired (ns).
    ended: Vec<(String, i64)>,
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn random_hex() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn new_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    key.copy_from_slice(&hex::decode(&random_hex()[..64]).unwrap_or(vec![0; 32]));
    key
}

/// A cookie's signed parts: `NAME.HASH16.EXPIRES.NONCE` (the name may hold dots).
struct CookieParts<'a> {
    payload: &'a str,
    name: &'a str,
    hash: &'a str,
    expires: i64,
    nonce: &'a str,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn parse_role(role: &str) -> Option<Role> {
    match role {
        "reader" => Some(Role::Reader),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

/// Compares in time independent of where the first difference is.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl Tokens {
    /// Loads the tokens and the session key (creating the key on first use).
    pub fn open(store: Arc<Store>) -> Result<Tokens, StoreError> {
        let tokens: Vec<Token> = store
            .saved(SAVED_TOKENS)?
            .and_then(|b| postcard::from_bytes(&b).ok())
            .unwrap_or_default();
        let key = match store.saved(SAVED_KEY)? {
            Some(k) if k.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&k);
                key
            }
            _ => {
                let key = new_key();
                // A full disk must not stop the server: sessions then last until a restart.
                if let Err(e) = store.save(SAVED_KEY, &key) {
                    tracing::warn!(error = %e, "cannot store the console session key; console sessions end at restart");
                }
                key
            }
        };
        let ended: Vec<(String, i64)> = store
            .saved(SAVED_ENDED)?
            .and_then(|b| postcard::from_bytes(&b).ok())
            .unwrap_or_default();
        Ok(Tokens {
            store,
            tokens: Mutex::new(tokens),
            keys: Mutex::new(Keys { key, ended }),
        })
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the session-signing key: every console session ends at once (tokens stay valid
    /// and sign in again). For a key that may have been read by someone else.
    pub fn rotate_key(&self) -> Result<(), TokenError> {
        let key = new_key();
        let mut keys = self.keys();
        self.store.save(SAVED_KEY, &key)?;
        self.save_ended(&[])?;
        keys.key = key;
        keys.ended.clear();
        Ok(())
    }

    fn save_ended(&self, ended: &[(String, i64)]) -> Result<(), TokenError> {
        let bytes = postcard::to_stdvec(ended).map_err(|e| StoreError::Corrupt {
            tree: "saved".into(),
            message: e.to_string(),
        })?;
        self.store.save(SAVED_ENDED, &bytes)?;
        Ok(())
    }

    /// Ends the session `cookie` opened, on the server: the cookie is refused from now on, even
    /// if a copy of it is presented again.
    pub fn end_session(&self, cookie: &str) -> Result<(), TokenError> {
        let Some(parts) = self.genuine(cookie) else {
            return Ok(());
        };
        let now = now_ns();
        let mut keys = self.keys();
        let mut ended: Vec<(String, i64)> = keys
            .ended
            .iter()
            .filter(|(_, expires)| *expires > now)
            .cloned()
            .collect();
        if ended.len() >= MAX_ENDED {
            drop(keys);
            tracing::warn!(
                "{MAX_ENDED} ended console sessions are remembered already; rotating the session key (every session ends)"
            );
            return self.rotate_key();
        }
        ended.push((parts.nonce.to_string(), parts.expires));
        self.save_ended(&ended)?;
        keys.ended = ended;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Token>> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn persist(&self, tokens: &[Token]) -> Result<(), TokenError> {
        let bytes = postcard::to_stdvec(tokens).map_err(|e| StoreError::Corrupt {
            tree: "saved".into(),
            message: e.to_string(),
        })?;
        self.store.save(SAVED_TOKENS, &bytes)?;
        Ok(())
    }

    /// Issues a token; returns it (shown once: only its hash is kept).
    pub fn create(
        &self,
        name: &str,
        role: &str,
        ttl_secs: u64,
        author: &str,
    ) -> Result<(String, Token), TokenError> {
        if !valid_name(name) {
            return Err(TokenError::BadName(name.to_string()));
        }
        parse_role(role).ok_or_else(|| TokenError::BadRole(role.to_string()))?;
        let secret = format!("{PREFIX}{}", random_hex());
        let now = now_ns();
        let token = Token {
            name: name.to_string(),
            role: role.to_string(),
            hash: sha256_hex(secret.as_bytes()),
            created_ns: now,
            expires_ns: if ttl_secs == 0 {
                0
            } else {
                now.saturating_add((ttl_secs as i64).saturating_mul(1_000_000_000))
            },
            revoked: false,
            author: author.to_string(),
        };
        let mut tokens = self.lock();
        if tokens.iter().any(|t| t.name == name && t.live(now)) {
            return Err(TokenError::Exists(name.to_string()));
        }
        let mut next: Vec<Token> = tokens.iter().filter(|t| t.name != name).cloned().collect();
        if next.len() >= MAX_TOKENS {
            return Err(TokenError::TooMany);
        }
        next.push(token.clone());
        self.persist(&next)?;
        *tokens = next;
        Ok((secret, token))
    }

    pub fn list(&self) -> Vec<Token> {
        let mut all = self.lock().clone();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Revokes a token: it and every session it opened stop working at once.
    pub fn revoke(&self, name: &str) -> Result<(), TokenError> {
        let mut tokens = self.lock();
        let mut next = tokens.clone();
        let t = next
            .iter_mut()
            .find(|t| t.name == name && !t.revoked)
            .ok_or_else(|| TokenError::NotFound(name.to_string()))?;
        t.revoked = true;
        self.persist(&next)?;
        *tokens = next;
        Ok(())
    }

    /// The live token `secret` is, if any.
    pub fn verify(&self, secret: &str) -> Option<Token> {
        let hash = sha256_hex(secret.trim().as_bytes());
        let now = now_ns();
        self.lock()
            .iter()
            .find(|t| same(t.hash.as_bytes(), hash.as_bytes()) && t.live(now))
            .cloned()
    }

    fn sign(&self, what: &str) -> String {
        let key = self.keys().key;
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes any key length");
        mac.update(what.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A session cookie's value for `token` (valid [`SESSION_SECS`], or until the token ends).
    pub fn open_session(&self, token: &Token) -> String {
        let mut expires = now_ns().saturating_add(SESSION_SECS * 1_000_000_000);
        if token.expires_ns != 0 {
            expires = expires.min(token.expires_ns);
        }
        // The hash prefix ties the session to this token: a token re-created under the same
        // name does not revive old sessions.
        let payload = format!(
            "{}.{}.{}.{}",
            token.name,
            &token.hash[..16],
            expires,
            &random_hex()[..16]
        );
        format!("{payload}.{}", self.sign(&payload))
    }

    /// A cookie's parts, if this server signed it and it has not expired or been ended.
    fn genuine<'a>(&self, cookie: &'a str) -> Option<CookieParts<'a>> {
        let (payload, sig) = cookie.rsplit_once('.')?;
        if !same(self.sign(payload).as_bytes(), sig.as_bytes()) {
            return None;
        }
        let mut parts = payload.rsplitn(4, '.');
        let (nonce, expires, hash, name) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let expires = expires.parse::<i64>().ok()?;
        if now_ns() >= expires || self.keys().ended.iter().any(|(n, _)| n == nonce) {
            return None;
        }
        Some(CookieParts {
            payload,
            name,
            hash,
            expires,
            nonce,
        })
    }

    /// The session a cookie value opens, if it is genuine, unexpired, not ended, and its token
    /// still live.
    pub fn session(&self, cookie: &str) -> Option<Session> {
        let parts = self.genuine(cookie)?;
        let now = now_ns();
        let token = self
            .lock()
            .iter()
            .find(|t| t.name == parts.name && t.hash.starts_with(parts.hash) && t.live(now))
            .cloned()?;
        Some(Session {
            identity: format!("token:{}", token.name),
            role: parse_role(&token.role)?,
            csrf: self.csrf(parts.payload),
        })
    }

    /// The CSRF value of a session (or of any other caller's stable name).
    pub fn csrf(&self, of: &str) -> String {
        self.sign(&format!("csrf:{of}"))[..32].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn tokens_open_sessions_until_revoked_and_are_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), &StoreOptions::default()).unwrap());
        let tokens = Tokens::open(store.clone()).unwrap();
        let (secret, t) = tokens.create("alice", "admin", 0, "uid:0").unwrap();
        assert!(secret.starts_with(PREFIX));
        assert_ne!(t.hash, secret);
        assert!(matches!(
            tokens.create("alice", "reader", 0, "uid:0"),
            Err(TokenError::Exists(_))
        ));
        assert!(matches!(
            tokens.create("bad name", "reader", 0, "uid:0"),
            Err(TokenError::BadName(_))
        ));
        assert!(matches!(
            tokens.create("bob", "ingest", 0, "uid:0"),
            Err(TokenError::BadRole(_))
        ));
        assert!(tokens.verify("fapi_wrong").is_none());
        let token = tokens.verify(&secret).expect("verifies");
        let cookie = tokens.open_session(&token);
        let session = tokens.session(&cookie).expect("a session");
        assert_eq!(session.identity, "token:alice");
        assert_eq!(session.role, Role::Admin);
        let mut forged = cookie.clone();
        forged.replace_range(0..5, "bobby");
        assert!(
            tokens.session(&forged).is_none(),
            "the signature covers the name"
        );

        // Sessions and tokens survive a reopen (the key is stored); revoking ends both.
        drop(tokens);
        let tokens = Tokens::open(store).unwrap();
        assert!(tokens.session(&cookie).is_some());
        tokens.revoke("alice").unwrap();
        assert!(tokens.session(&cookie).is_none());
        assert!(tokens.verify(&secret).is_none());
        assert!(matches!(
            tokens.revoke("alice"),
            Err(TokenError::NotFound(_))
        ));
        // Re-created under the same name: old sessions stay dead.
        tokens.create("alice", "reader", 60, "uid:0").unwrap();
        assert!(tokens.session(&cookie).is_none());
    }

    #[test]
    fn dotted_names_sign_in_and_logout_and_rotation_end_sessions_on_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), &StoreOptions::default()).unwrap());
        let tokens = Tokens::open(store.clone()).unwrap();
        let (secret, _) = tokens.create("ops.team.lead", "admin", 0, "uid:0").unwrap();
        let token = tokens.verify(&secret).unwrap();
        let first = tokens.open_session(&token);
        let second = tokens.open_session(&token);
        let session = tokens
            .session(&first)
            .expect("a name with dots opens a session");
        assert_eq!(session.identity, "token:ops.team.lead");

        tokens.end_session(&first).unwrap();
        assert!(
            tokens.session(&first).is_none(),
            "a copied cookie is dead after logout"
        );
        assert!(tokens.session(&second).is_some(), "other sessions go on");
        drop(tokens);
        let tokens = Tokens::open(store.clone()).unwrap();
        assert!(
            tokens.session(&first).is_none(),
            "logout survives a restart"
        );
        assert!(tokens.session(&second).is_some());

        tokens.rotate_key().unwrap();
        assert!(
            tokens.session(&second).is_none(),
            "rotation ends every session"
        );
        let fresh = tokens.open_session(&tokens.verify(&secret).unwrap());
        assert!(tokens.session(&fresh).is_some(), "tokens still sign in");
        drop(tokens);
        let tokens = Tokens::open(store).unwrap();
        assert!(tokens.session(&second).is_none(), "the new key is stored");
        assert!(tokens.session(&fresh).is_some());
    }
}
