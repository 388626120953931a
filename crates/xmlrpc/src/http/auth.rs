//! HTTP Basic authentication as supervisord does it: one configured user, whose password is
//! stored either in plain text or as `{SHA}` followed by the hex SHA-1 of the password
//! (`[unix_http_server]` / `[inet_http_server]` `username` and `password`).
//!
//! The check itself is vigil-rpc's `ServerAuth`, the one the tarpc handshake uses, so both
//! protocols accept exactly the same secrets: it keeps only SHA-1 digests and compares them
//! in constant time, so response timing does not reveal how much of a guess was right.
//! Credentials that are not UTF-8 simply fail to match.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::header::HeaderValue;
use vigil_rpc::ServerAuth;

/// The `WWW-Authenticate` value of every 401, as supervisord sends it.
pub(crate) const CHALLENGE: &str = "Basic realm=\"default\"";

/// The configured user and password.
#[derive(Clone)]
pub(crate) struct Credentials {
    auth: Arc<ServerAuth>,
}

impl std::fmt::Debug for Credentials {
    /// Never prints the password or its hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

impl Credentials {
    /// Checks against the daemon's `ServerAuth` (built from the config's `username` and
    /// `password`, plain text or `{SHA}<hex sha1>`).
    pub(crate) fn shared(auth: Arc<ServerAuth>) -> Credentials {
        Credentials { auth }
    }

    /// Whether an `Authorization` header carries these credentials.
    pub(crate) fn authorizes(&self, header: Option<&HeaderValue>) -> bool {
        let Some((username, password)) = header.and_then(basic_credentials) else {
            return false;
        };
        match (String::from_utf8(username), String::from_utf8(password)) {
            (Ok(username), Ok(password)) => self.auth.verify(&username, &password),
            _ => false,
        }
    }
}

/// Decodes `Basic base64(user:password)`; the scheme name is case-insensitive (RFC 7617).
fn basic_credentials(header: &HeaderValue) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = header.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|&byte| byte == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
impl Credentials {
    /// `password` is the config value: plain text, or `{SHA}<hex sha1>`.
    pub(crate) fn new(username: &str, password: &str) -> Credentials {
        Credentials::shared(Arc::new(ServerAuth::new(username, password).expect("valid password")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_and_password: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(user_and_password))).unwrap()
    }

    #[test]
    fn plain_passwords() {
        let credentials = Credentials::new("user", "123");
        assert!(credentials.authorizes(Some(&basic("user:123"))));
        assert!(!credentials.authorizes(Some(&basic("user:1234"))));
        assert!(!credentials.authorizes(Some(&basic("user:"))));
        assert!(!credentials.authorizes(Some(&basic("other:123"))));
        assert!(!credentials.authorizes(Some(&basic("user"))));
        assert!(!credentials.authorizes(None));
        assert!(!credentials.authorizes(Some(&HeaderValue::from_static("Bearer abc"))));
        assert!(!credentials.authorizes(Some(&HeaderValue::from_static("Basic !!!"))));
        let lower =
            HeaderValue::from_str(&format!("basic {}", STANDARD.encode("user:123"))).unwrap();
        assert!(credentials.authorizes(Some(&lower)));
    }

    #[test]
    fn passwords_may_contain_colons() {
        let credentials = Credentials::new("user", "a:b");
        assert!(credentials.authorizes(Some(&basic("user:a:b"))));
    }

    #[test]
    fn sha_passwords() {
        let credentials = Credentials::new("user", "{SHA}82ab876d1387bfafe46cc1c8a2ef074eae50cb1d");
        assert!(credentials.authorizes(Some(&basic("user:thepassword"))));
        assert!(
            !credentials.authorizes(Some(&basic("user:82ab876d1387bfafe46cc1c8a2ef074eae50cb1d")))
        );
        let upper = Credentials::new("user", "{SHA}82AB876D1387BFAFE46CC1C8A2EF074EAE50CB1D");
        assert!(upper.authorizes(Some(&basic("user:thepassword"))));
    }

    #[test]
    fn shared_server_auth() {
        let digest = "{SHA}82ab876d1387bfafe46cc1c8a2ef074eae50cb1d";
        let auth = Arc::new(ServerAuth::new("user", digest).unwrap());
        let credentials = Credentials::shared(auth);
        assert!(credentials.authorizes(Some(&basic("user:thepassword"))));
        assert!(!credentials.authorizes(Some(&basic("user:thepasswor"))));
        assert!(!credentials.authorizes(Some(&basic("other:thepassword"))));
        assert!(!credentials.authorizes(None));
        let text = format!("{credentials:?}");
        assert!(!text.contains("82ab") && !text.contains("thepassword"), "{text}");
    }

    #[test]
    fn debug_hides_the_password() {
        let text = format!("{:?}", Credentials::new("user", "secret"));
        assert!(!text.contains("secret"), "{text}");
    }
}
