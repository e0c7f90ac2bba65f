//! Signed, expiring links to lesson attachments: `files/<lesson>/<name>?exp=…&sig=…`, the MAC
//! (HMAC-SHA256 under the site's secret) over the lesson, the file name and the expiry, so a
//! link names one file of one lesson until it expires and cannot be edited into another.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    Forged,
    Expired,
}

#[derive(Clone)]
pub struct LinkSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSigner").finish_non_exhaustive()
    }
}

impl LinkSigner {
    pub fn new(secret: &[u8]) -> LinkSigner {
        LinkSigner {
            key: secret.to_vec(),
        }
    }

    /// The query string (`exp=…&sig=…`) of a link valid until `expires_at`.
    pub fn query(&self, lesson_id: &str, name: &str, expires_at: i64) -> String {
        format!(
            "exp={expires_at}&sig={}",
            self.mac(lesson_id, name, expires_at)
        )
    }

    /// Checks a link's expiry and signature at `now`.
    pub fn check(
        &self,
        lesson_id: &str,
        name: &str,
        expires_at: i64,
        signature: &str,
        now: i64,
    ) -> Result<(), LinkError> {
        let expected = self.mac(lesson_id, name, expires_at);
        if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
            return Err(LinkError::Forged);
        }
        if expires_at <= now {
            return Err(LinkError::Expired);
        }
        Ok(())
    }

    fn mac(&self, lesson_id: &str, name: &str, expires_at: i64) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(b"bourse-courses-file\0");
        mac.update(lesson_id.as_bytes());
        mac.update(b"\0");
        mac.update(name.as_bytes());
        mac.update(b"\0");
        mac.update(&expires_at.to_be_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_opens_its_own_file_until_it_expires() {
        let signer = LinkSigner::new(b"a secret of the site, 32 bytes..");
        let query = signer.query("lsn_1", "notes.txt", 1_000);
        let sig = query.split("sig=").nth(1).unwrap();
        assert_eq!(signer.check("lsn_1", "notes.txt", 1_000, sig, 999), Ok(()));
        assert_eq!(
            signer.check("lsn_1", "notes.txt", 1_000, sig, 1_000),
            Err(LinkError::Expired)
        );
        assert_eq!(
            signer.check("lsn_1", "other.txt", 1_000, sig, 999),
            Err(LinkError::Forged)
        );
        assert_eq!(
            signer.check("lsn_2", "notes.txt", 1_000, sig, 999),
            Err(LinkError::Forged)
        );
        assert_eq!(
            signer.check("lsn_1", "notes.txt", 2_000, sig, 999),
            Err(LinkError::Forged),
            "a later expiry is a forgery"
        );
    }
}
