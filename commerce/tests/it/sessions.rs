//! JWT sessions: every forged, stale, misdirected or revoked token is refused.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bourse_commerce::session::{KeyRing, SessionConfig, SessionError, Sessions, SigningKey};
use bourse_commerce::{Store, clock, schema};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::support::{Engine, TestDb};

const ISSUER: &str = "https://bourse.example";

async fn account(store: &Store) -> String {
    let id = bourse_commerce::secret::new_id("acct");
    sqlx::query(
        "INSERT INTO accounts (id, email, password_hash, created_at, password_changed_at, \
         verified_at) VALUES ($1, $2, 'x', 0, 0, 0)",
    )
    .bind(&id)
    .bind(format!("{id}@example.com"))
    .execute(store.writer())
    .await
    .unwrap();
    id
}

fn sessions(store: &Store, audience: &str, key: &SigningKey) -> Sessions {
    Sessions::new(
        store.clone(),
        SessionConfig::new(ISSUER, audience),
        KeyRing::new(key).unwrap(),
    )
}

fn claims(account: &str, aud: &str, iss: &str, at: i64) -> serde_json::Value {
    json!({"sub": account, "aud": aud, "iss": iss, "exp": at + 900, "nbf": at, "iat": at,
           "sid": "ses_x", "jti": "jwt_x"})
}

#[tokio::test]
async fn forged_stale_and_misdirected_access_tokens_are_refused() {
    let db = TestDb::new(Engine::Sqlite).await;
    let store = db.open(&schema::ALL).await;
    let key = SigningKey::generate("k1");
    let courses = sessions(&store, "courses", &key);
    let acct = account(&store).await;
    let now = clock::now();

    let (good, _) = courses.access_token(&acct, "ses_1", now).unwrap();
    let verified = courses.verify(&good).unwrap();
    assert_eq!(
        (verified.sub.as_str(), verified.sid.as_str()),
        (acct.as_str(), "ses_1")
    );
    assert_eq!(
        verified.exp - verified.iat,
        15 * 60,
        "15-minute access tokens"
    );

    // alg=none: an unsigned token with valid claims.
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims(&acct, "courses", ISSUER, now).to_string());
    for unsigned in [format!("{header}.{body}."), format!("{header}.{body}")] {
        assert!(courses.verify(&unsigned).is_err(), "alg=none accepted");
    }

    // Algorithm swap: HS256 keyed with our (public) Ed25519 key.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    let swapped = jsonwebtoken::encode(
        &hs,
        &claims(&acct, "courses", ISSUER, now),
        &EncodingKey::from_secret(&key.public_key()),
    )
    .unwrap();
    assert!(matches!(
        courses.verify(&swapped),
        Err(SessionError::BadAlgorithm)
    ));

    // Expired, and not yet valid.
    let (old, _) = courses.access_token(&acct, "ses_1", now - 3600).unwrap();
    assert!(matches!(courses.verify(&old), Err(SessionError::Expired)));
    let (future, _) = courses.access_token(&acct, "ses_1", now + 3600).unwrap();
    assert!(matches!(
        courses.verify(&future),
        Err(SessionError::NotYetValid)
    ));

    // Another site's token (same keys), and another issuer's.
    let shop = sessions(&store, "shop", &key);
    let (for_shop, _) = shop.access_token(&acct, "ses_1", now).unwrap();
    assert!(matches!(
        courses.verify(&for_shop),
        Err(SessionError::WrongAudience)
    ));
    let elsewhere = Sessions::new(
        store.clone(),
        SessionConfig::new("https://evil.example", "courses"),
        KeyRing::new(&key).unwrap(),
    );
    let (foreign, _) = elsewhere.access_token(&acct, "ses_1", now).unwrap();
    assert!(matches!(
        courses.verify(&foreign),
        Err(SessionError::WrongIssuer)
    ));

    // A key we do not know, and a known kid with another key's signature.
    let stranger = sessions(&store, "courses", &SigningKey::generate("k9"));
    let (unknown, _) = stranger.access_token(&acct, "ses_1", now).unwrap();
    assert!(matches!(
        courses.verify(&unknown),
        Err(SessionError::UnknownKey)
    ));
    let impostor = sessions(&store, "courses", &SigningKey::generate("k1"));
    let (forged, _) = impostor.access_token(&acct, "ses_1", now).unwrap();
    assert!(matches!(
        courses.verify(&forged),
        Err(SessionError::Invalid)
    ));

    // A tampered payload.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(claims("acct_other", "courses", ISSUER, now).to_string());
    assert!(matches!(
        courses.verify(&parts.join(".")),
        Err(SessionError::Invalid)
    ));

    // A token without kid.
    let mut no_kid = Header::new(Algorithm::EdDSA);
    no_kid.kid = None;
    assert!(
        courses
            .verify(&format!(
                "{}.{}.x",
                URL_SAFE_NO_PAD.encode(serde_json::to_string(&no_kid).unwrap()),
                body
            ))
            .is_err()
    );
    store.close().await;
}

#[tokio::test]
async fn rotated_keys_verify_until_removed() {
    let db = TestDb::new(Engine::Sqlite).await;
    let store = db.open(&schema::ALL).await;
    let k1 = SigningKey::generate("k1");
    let courses = sessions(&store, "courses", &k1);
    let now = clock::now();
    let (by_k1, _) = courses.access_token("acct_a", "ses_1", now).unwrap();

    let k2 = SigningKey::generate("k2");
    courses.set_keys(courses.keys().rotated(&k2).unwrap());
    let (by_k2, _) = courses.access_token("acct_a", "ses_1", now).unwrap();
    let header = jsonwebtoken::decode_header(&by_k2).unwrap();
    assert_eq!(header.kid.as_deref(), Some("k2"), "the new key signs");
    assert!(courses.verify(&by_k1).is_ok(), "the old key still verifies");
    assert!(courses.verify(&by_k2).is_ok());

    assert!(
        courses.keys().without("k2").is_err(),
        "the signing key cannot be removed"
    );
    courses.set_keys(courses.keys().without("k1").unwrap());
    assert!(matches!(
        courses.verify(&by_k1),
        Err(SessionError::UnknownKey)
    ));
    assert!(courses.verify(&by_k2).is_ok());

    // A key configured from its seed signs tokens the original verifies.
    let again = SigningKey::from_config(&k2.to_config()).unwrap();
    let twin = sessions(&store, "courses", &again);
    let (by_twin, _) = twin.access_token("acct_a", "ses_1", now).unwrap();
    assert!(courses.verify(&by_twin).is_ok());
    let bad = bourse_commerce::session::SigningKeyConfig {
        kid: "k3".into(),
        seed: "c2hvcnQ=".into(),
    };
    assert!(
        SigningKey::from_config(&bad)
            .unwrap_err()
            .to_string()
            .contains("32 bytes")
    );
    store.close().await;
}

async fn refresh_tokens_rotate_and_revoke(engine: Engine) {
    let db = TestDb::new(engine).await;
    let store = db.open(&schema::ALL).await;
    let courses = Arc::new(sessions(&store, "courses", &SigningKey::generate("k1")));
    let acct = account(&store).await;

    let mut tx = store.begin().await.unwrap();
    let first = courses.start(&mut tx, &acct).await.unwrap();
    tx.commit().await.unwrap();
    let claims = courses.verify(&first.access_token).unwrap();
    assert_eq!(claims.sid, first.family_id);

    // Rotation: the new pair works, the old refresh token is spent.
    let second = courses.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(second.family_id, first.family_id);
    // Reuse of the spent token revokes the family: the thief's and the owner's tokens alike.
    assert!(matches!(
        courses.refresh(&first.refresh_token).await,
        Err(SessionError::RefreshReused)
    ));
    assert!(matches!(
        courses.refresh(&second.refresh_token).await,
        Err(SessionError::RefreshRevoked)
    ));
    assert!(!courses.is_live(&claims).await.unwrap());

    // Sign-out revokes.
    let mut tx = store.begin().await.unwrap();
    let third = courses.start(&mut tx, &acct).await.unwrap();
    tx.commit().await.unwrap();
    courses.end(&third.refresh_token).await.unwrap();
    assert!(matches!(
        courses.refresh(&third.refresh_token).await,
        Err(SessionError::RefreshRevoked)
    ));

    // Unknown, another site's, and expired refresh tokens.
    assert!(matches!(
        courses.refresh("not-a-token").await,
        Err(SessionError::RefreshUnknown)
    ));
    let shop = sessions(&store, "shop", &SigningKey::generate("s1"));
    let mut tx = store.begin().await.unwrap();
    let shop_session = shop.start(&mut tx, &acct).await.unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(
        courses.refresh(&shop_session.refresh_token).await,
        Err(SessionError::RefreshUnknown)
    ));
    sqlx::query("UPDATE refresh_tokens SET expires_at = 1 WHERE family_id = $1")
        .bind(&shop_session.family_id)
        .execute(store.writer())
        .await
        .unwrap();
    assert!(matches!(
        shop.refresh(&shop_session.refresh_token).await,
        Err(SessionError::RefreshExpired)
    ));

    // Two concurrent uses of one token: at most one renews, and the family is revoked.
    let mut tx = store.begin().await.unwrap();
    let raced = courses.start(&mut tx, &acct).await.unwrap();
    tx.commit().await.unwrap();
    let (a, b) = tokio::join!(
        courses.refresh(&raced.refresh_token),
        courses.refresh(&raced.refresh_token)
    );
    assert!(
        a.is_ok() != b.is_ok() || (a.is_err() && b.is_err()),
        "{a:?} {b:?}"
    );
    let winner = a.ok().or(b.ok()).unwrap();
    assert!(matches!(
        courses.refresh(&winner.refresh_token).await,
        Err(SessionError::RefreshRevoked)
    ));
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_refresh_tokens_rotate_and_revoke() {
    refresh_tokens_rotate_and_revoke(Engine::Sqlite).await;
}

#[tokio::test]
async fn postgres_refresh_tokens_rotate_and_revoke() {
    refresh_tokens_rotate_and_revoke(Engine::Postgres).await;
}
