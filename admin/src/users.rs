//! Admin users: names and Argon2id password hashes in a JSON file the operator owns.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The users file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    /// Every user allowed into the admin.
    pub users: Vec<User>,
}

/// One admin user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Argon2id PHC string (`$argon2id$v=19$...`).
    pub hash: String,
}

/// Why the users file could not be read or written, or a user not created.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not a users file.
    #[error("{path}: not a users file: {source}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        source: serde_json::Error,
    },
    /// The name or password is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;

impl Users {
    /// Reads the users file; a missing file is no users.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| UsersError::Format {
                path: path.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Users::default()),
            Err(source) => Err(UsersError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Adds `name` (or replaces its password) with an Argon2id hash of `password`, and writes
    /// the file (owner-only permissions, through a temporary file and a rename).
    pub fn set_password(path: &Path, name: &str, password: &str) -> Result<(), UsersError> {
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !name_ok {
            return Err(UsersError::Invalid(
                "a user name is 1-64 of a-z, A-Z, 0-9, '-', '_' and '.'".into(),
            ));
        }
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(UsersError::Invalid(format!(
                "use a password of at least {MIN_PASSWORD_LEN} characters"
            )));
        }
        let mut users = Users::load(path)?;
        let hash = hash_password(password);
        match users.users.iter_mut().find(|u| u.name == name) {
            Some(user) => user.hash = hash,
            None => users.users.push(User {
                name: name.to_owned(),
                hash,
            }),
        }
        let io = |source| UsersError::Io {
            path: path.display().to_string(),
            source,
        };
        let temp = path.with_extension("tmp");
        let text = serde_json::to_vec_pretty(&users).expect("users serialize");
        std::fs::write(&temp, text).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        std::fs::rename(&temp, path).map_err(io)
    }

    /// Whether `name` exists and `password` is its password. Unknown names still pay for one
    /// hash verification, so timing does not tell which names exist.
    pub fn verify(&self, name: &str, password: &str) -> bool {
        static DECOY: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| hash_password("decoy password for unknown users"));
        let (hash, known) = match self.users.iter().find(|u| u.name == name) {
            Some(user) => (user.hash.as_str(), true),
            None => (DECOY.as_str(), false),
        };
        let matches = PasswordHash::new(hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        known && matches
    }
}

/// An Argon2id PHC string with a random salt and the crate's default (OWASP) parameters.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any password")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip_through_the_file() {
        let dir = std::env::temp_dir().join(format!("bourse-users-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.json");
        Users::set_password(&path, "ops", "correct horse battery").unwrap();
        let users = Users::load(&path).unwrap();
        assert!(users.users[0].hash.starts_with("$argon2id$"));
        assert!(users.verify("ops", "correct horse battery"));
        assert!(!users.verify("ops", "wrong horse battery"));
        assert!(!users.verify("nobody", "correct horse battery"));
        assert!(Users::set_password(&path, "ops", "short").is_err());
        assert!(Users::set_password(&path, "bad name", "correct horse battery").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
