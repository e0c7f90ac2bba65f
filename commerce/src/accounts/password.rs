//! Argon2id password hashing on a bounded pool of blocking threads: a hash costs tens of
//! milliseconds of CPU and memory, so it never runs on an async worker thread, and at most
//! `parallelism` run at once, so a burst of sign-ins queues instead of exhausting memory.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing pool is gone")]
    Pool,
}

/// Hashes and verifies passwords with Argon2id (RFC 9106 parameters by default).
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    params: Params,
    /// A hash of a random password, verified against when the account does not exist, so an
    /// unknown e-mail costs the same time as a wrong password.
    decoy: Arc<String>,
}

impl PasswordHasher {
    /// At most `parallelism` hashes at once.
    pub fn new(parallelism: usize) -> PasswordHasher {
        Self::with_params(parallelism, Params::default())
    }

    pub fn with_params(parallelism: usize, params: Params) -> PasswordHasher {
        let decoy = hash_now(&params, &crate::secret::new_token())
            .expect("hashing a random password with valid params");
        PasswordHasher {
            permits: Arc::new(Semaphore::new(parallelism.max(1))),
            params,
            decoy: Arc::new(decoy),
        }
    }

    /// The PHC string (`$argon2id$v=19$…`) of `password`.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let params = self.params.clone();
        let password = password.to_owned();
        self.blocking(move || hash_now(&params, &password)).await?
    }

    /// Whether `password` matches `phc`; `None` verifies against the decoy (always false).
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> Result<bool, HashError> {
        let known = phc.is_some();
        let phc = phc.map_or_else(|| (*self.decoy).clone(), str::to_owned);
        let password = password.to_owned();
        let matches = self
            .blocking(move || {
                let parsed = PasswordHash::new(&phc).map_err(|e| HashError::Hash(e.to_string()))?;
                Ok::<_, HashError>(
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok(),
                )
            })
            .await??;
        Ok(known && matches)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashError::Pool)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| HashError::Pool)
    }
}

fn hash_now(params: &Params, password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hash(e.to_string()))
}
