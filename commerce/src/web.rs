//! Helpers every site's handlers share: session cookies (`HttpOnly`, `SameSite=Lax`, and
//! `Secure` with the `__Host-` prefix over TLS) and CSRF tokens for forms.
//!
//! CSRF uses signed double submit: the token is `nonce.mac`, where the MAC (HMAC-SHA256 under
//! the site's secret) binds the nonce to the session; the same token is set as a cookie and
//! embedded in the form, and a POST is accepted only when both are present, equal, and the MAC
//! matches the session it arrives with. Another site can neither read the cookie nor mint a
//! token for the victim's session.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The cookie name a site uses for `base`: `__Host-base` over TLS (the browser then insists on
/// `Secure`, `Path=/` and no `Domain`), `base` otherwise.
pub fn cookie_name(base: &str, tls: bool) -> String {
    if tls {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

/// A `Set-Cookie` value for a session-like cookie lasting `max_age_secs`.
pub fn set_cookie(base: &str, value: &str, max_age_secs: i64, tls: bool) -> String {
    Cookie::build((cookie_name(base, tls), value.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(tls)
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build()
        .to_string()
}

/// A `Set-Cookie` value that deletes the cookie.
pub fn clear_cookie(base: &str, tls: bool) -> String {
    set_cookie(base, "", 0, tls)
}

/// The value of cookie `base` in a request's `Cookie` headers.
pub fn read_cookie(headers: &http::HeaderMap, base: &str, tls: bool) -> Option<String> {
    let name = cookie_name(base, tls);
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Why a form was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    #[error("the form's security token is missing; reload the page and try again")]
    Missing,
    #[error("the form's security token does not match; reload the page and try again")]
    Mismatch,
}

/// Issues and checks CSRF tokens under one site secret.
#[derive(Clone)]
pub struct Csrf {
    key: Vec<u8>,
}

impl std::fmt::Debug for Csrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Csrf").finish_non_exhaustive()
    }
}

impl Csrf {
    /// `secret` should be at least 32 random bytes, kept in the site's config.
    pub fn new(secret: &[u8]) -> Csrf {
        Csrf {
            key: secret.to_vec(),
        }
    }

    /// A token for forms of the session named `binding` (its session id, or for a visitor not
    /// signed in, the id in their pre-session cookie).
    pub fn token(&self, binding: &str) -> String {
        let mut nonce = [0u8; 18];
        rand::rng().fill_bytes(&mut nonce);
        let nonce = URL_SAFE_NO_PAD.encode(nonce);
        let mac = self.mac(binding, &nonce);
        format!("{nonce}.{mac}")
    }

    /// Accepts a POST when the cookie and form tokens are equal and were issued for `binding`.
    pub fn check(
        &self,
        binding: &str,
        cookie_token: Option<&str>,
        form_token: Option<&str>,
    ) -> Result<(), CsrfError> {
        let (Some(cookie_token), Some(form_token)) = (cookie_token, form_token) else {
            return Err(CsrfError::Missing);
        };
        if !bool::from(cookie_token.as_bytes().ct_eq(form_token.as_bytes())) {
            return Err(CsrfError::Mismatch);
        }
        let (nonce, mac) = form_token.split_once('.').ok_or(CsrfError::Mismatch)?;
        let expected = self.mac(binding, nonce);
        if bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            Ok(())
        } else {
            Err(CsrfError::Mismatch)
        }
    }

    fn mac(&self, binding: &str, nonce: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(b"bourse-csrf\0");
        mac.update(binding.as_bytes());
        mac.update(b"\0");
        mac.update(nonce.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_lax_and_host_prefixed_over_tls() {
        let tls = set_cookie("session", "abc", 900, true);
        for part in [
            "__Host-session=abc",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
            "Max-Age=900",
        ] {
            assert!(tls.contains(part), "{tls} lacks {part}");
        }
        assert!(!tls.contains("Domain"));
        let plain = set_cookie("session", "abc", 900, false);
        assert!(plain.starts_with("session=abc") && !plain.contains("Secure"));
        assert!(clear_cookie("session", true).contains("Max-Age=0"));

        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            "a=1; __Host-session=xyz; session=plain".parse().unwrap(),
        );
        assert_eq!(
            read_cookie(&headers, "session", true).as_deref(),
            Some("xyz")
        );
        assert_eq!(
            read_cookie(&headers, "session", false).as_deref(),
            Some("plain")
        );
        assert_eq!(read_cookie(&headers, "other", false), None);
    }

    #[test]
    fn csrf_token_is_bound_to_its_session_and_double_submitted() {
        let csrf = Csrf::new(b"0123456789abcdef0123456789abcdef");
        let token = csrf.token("ses_1");
        assert_eq!(csrf.check("ses_1", Some(&token), Some(&token)), Ok(()));
        assert_eq!(
            csrf.check("ses_2", Some(&token), Some(&token)),
            Err(CsrfError::Mismatch),
            "another session's token"
        );
        let other = csrf.token("ses_1");
        assert_eq!(
            csrf.check("ses_1", Some(&token), Some(&other)),
            Err(CsrfError::Mismatch),
            "cookie and form differ"
        );
        assert_eq!(
            csrf.check("ses_1", None, Some(&token)),
            Err(CsrfError::Missing)
        );
        assert_eq!(
            csrf.check("ses_1", Some(&token), None),
            Err(CsrfError::Missing)
        );
        let forged = format!("{}.AAAA", token.split('.').next().unwrap());
        assert_eq!(
            csrf.check("ses_1", Some(&forged), Some(&forged)),
            Err(CsrfError::Mismatch)
        );
        let other_secret = Csrf::new(b"another secret, another site....");
        assert_eq!(
            other_secret.check("ses_1", Some(&token), Some(&token)),
            Err(CsrfError::Mismatch)
        );
    }
}
