//! HTTP Basic authentication as supervisord does it: one configured user, whose password is
//! stored either in plain text or as `{SHA}` followed by the hex SHA-1 of the password
//! (`[unix_http_server]` / `[inet_http_server]` `username` and `password`).
//!
//! Comparisons run in constant time over the candidate bytes, so response timing does not
//! reveal how much of a guess was right. Credentials are compared as bytes: a header that is
//! not UTF-8 simply fails to match.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::header::HeaderValue;
use sha1::{Digest as _, Sha1};
use subtle::ConstantTimeEq as _;

/// The `WWW-Authenticate` value of every 401, as supervisord sends it.
pub(crate) const CHALLENGE: &str = "Basic realm=\"default\"";

/// The configured user and password.
#[derive(Clone)]
pub(crate) struct Credentials {
    username: Vec<u8>,
    password: StoredPassword,
}

#[derive(Clone)]
enum StoredPassword {
    Plain(Vec<u8>),
    /// Lowercase hex SHA-1. supervisord compares against `hexdigest()`, which is lowercase;
    /// a hash pasted in uppercase is accepted too.
    Sha1Hex(Vec<u8>),
}

impl std::fmt::Debug for Credentials {
    /// Never prints the password or its hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &String::from_utf8_lossy(&self.username))
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// `password` is the config value: plain text, or `{SHA}<hex sha1>`.
    pub(crate) fn new(username: &str, password: &str) -> Credentials {
        let password = match password.strip_prefix("{SHA}") {
            Some(hex) => StoredPassword::Sha1Hex(hex.to_ascii_lowercase().into_bytes()),
            None => StoredPassword::Plain(password.as_bytes().to_vec()),
        };
        Credentials { username: username.as_bytes().to_vec(), password }
    }

    /// Whether an `Authorization` header carries these credentials.
    pub(crate) fn authorizes(&self, header: Option<&HeaderValue>) -> bool {
        let Some((username, password)) = header.and_then(basic_credentials) else {
            return false;
        };
        let password_ok = match &self.password {
            StoredPassword::Plain(stored) => stored.ct_eq(&password),
            StoredPassword::Sha1Hex(stored) => stored.ct_eq(&sha1_hex(&password)),
        };
        // Both comparisons always run: `&` on `Choice` does not short-circuit.
        bool::from(self.username.ct_eq(&username) & password_ok)
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

fn sha1_hex(bytes: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    Sha1::digest(bytes)
        .iter()
        .flat_map(|byte| [HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_and_password: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(user_and_password))).unwrap()
    }

    #[test]
    fn sha1_of_a_known_string() {
        assert_eq!(sha1_hex(b"thepassword"), b"82ab876d1387bfafe46cc1c8a2ef074eae50cb1d");
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
    fn debug_hides_the_password() {
        let text = format!("{:?}", Credentials::new("user", "secret"));
        assert!(text.contains("user") && !text.contains("secret"), "{text}");
    }
}
