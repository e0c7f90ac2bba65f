//! Accounts: sign-up, e-mail verification, sign-in, limits, password reset and change, with
//! every link taken from the mail the outbox holds.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use bourse_commerce::accounts::{
    AccountError, Accounts, AccountsConfig, AttemptLimits, LimitScope, PasswordHasher,
};
use bourse_commerce::mail::MailTemplates;
use bourse_commerce::session::{KeyRing, SessionConfig, SessionError, Sessions, SigningKey};
use bourse_commerce::{Store, schema};
use governor::Quota;

use crate::support::{Engine, TestDb};

fn accounts(store: &Store, limits: AttemptLimits) -> Accounts {
    let sessions = Sessions::new(
        store.clone(),
        SessionConfig::new("https://bourse.example", "courses"),
        KeyRing::new(&SigningKey::generate("k1")).unwrap(),
    );
    Accounts::new(
        store.clone(),
        AccountsConfig::new("courses", "Courses", "https://bourse.example/courses/"),
        Arc::new(sessions),
        PasswordHasher::new(2),
        Arc::new(limits),
        Arc::new(MailTemplates::new()),
    )
}

/// The newest mail queued for `to`: (subject, text).
async fn last_mail(store: &Store, to: &str) -> (String, String) {
    sqlx::query_as(
        "SELECT subject, body_text FROM mail_outbox WHERE recipient = $1 \
         ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(to)
    .fetch_one(store.reader())
    .await
    .unwrap()
}

async fn mails_to(store: &Store, to: &str) -> i64 {
    sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM mail_outbox WHERE recipient = $1")
        .bind(to)
        .fetch_one(store.reader())
        .await
        .unwrap()
}

fn token_in(text: &str, path: &str) -> String {
    let start = text
        .find(&format!("https://bourse.example/courses{path}?token="))
        .unwrap_or_else(|| panic!("no {path} link in {text}"));
    let rest = &text[start..];
    let token = rest.split("token=").nth(1).unwrap();
    token.split_whitespace().next().unwrap().to_owned()
}

const IP: &str = "203.0.113.9";

async fn sign_up_verify_sign_in_reset(engine: Engine) {
    let db = TestDb::new(engine).await;
    let store = db.open(&schema::ALL).await;
    let accounts = accounts(&store, AttemptLimits::default());
    let ip: IpAddr = IP.parse().unwrap();

    // Bad input is refused by field.
    assert!(matches!(
        accounts
            .sign_up("not an address", "long enough pw", ip)
            .await,
        Err(AccountError::Invalid { field: "email", .. })
    ));
    assert!(matches!(
        accounts.sign_up("ann@example.com", "short", ip).await,
        Err(AccountError::Invalid {
            field: "password",
            ..
        })
    ));

    let id = accounts
        .sign_up(" Ann@Example.com ", "correct horse battery", ip)
        .await
        .unwrap()
        .expect("a new account");
    let (subject, text) = last_mail(&store, "ann@example.com").await;
    assert_eq!(subject, "Confirm your e-mail address for Courses");
    let verify = token_in(&text, "/account/verify");

    // Not verified yet: no session.
    assert!(matches!(
        accounts
            .sign_in("ann@example.com", "correct horse battery", ip)
            .await,
        Err(AccountError::NotVerified)
    ));
    assert_eq!(accounts.verify_email(&verify).await.unwrap(), id);
    assert!(
        matches!(
            accounts.verify_email(&verify).await,
            Err(AccountError::BadToken)
        ),
        "verification links are single-use"
    );

    let session = accounts
        .sign_in("ANN@example.com", "correct horse battery", ip)
        .await
        .unwrap();
    assert_eq!(
        accounts
            .sessions()
            .verify(&session.access_token)
            .unwrap()
            .sub,
        id
    );
    assert!(matches!(
        accounts
            .sign_in("ann@example.com", "wrong password!!", ip)
            .await,
        Err(AccountError::BadCredentials)
    ));
    assert!(
        matches!(
            accounts
                .sign_in("nobody@example.com", "whatever password", ip)
                .await,
            Err(AccountError::BadCredentials)
        ),
        "an unknown address is told apart from nothing"
    );

    // Signing up again with the same address mails the owner and answers alike.
    assert_eq!(
        accounts
            .sign_up("ann@example.com", "another password", ip)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        last_mail(&store, "ann@example.com").await.0,
        "Sign-up attempt on Courses"
    );

    // Reset: unknown addresses get no mail and the same answer.
    accounts
        .request_password_reset("ghost@example.com", ip)
        .await
        .unwrap();
    assert_eq!(mails_to(&store, "ghost@example.com").await, 0);
    accounts
        .request_password_reset("ann@example.com", ip)
        .await
        .unwrap();
    let reset = token_in(
        &last_mail(&store, "ann@example.com").await.1,
        "/account/reset",
    );
    assert!(matches!(
        accounts.reset_password(&reset, "short").await,
        Err(AccountError::Invalid {
            field: "password",
            ..
        })
    ));
    accounts
        .reset_password(&reset, "a brand new password")
        .await
        .unwrap();
    assert!(
        matches!(
            accounts
                .reset_password(&reset, "yet another password")
                .await,
            Err(AccountError::BadToken)
        ),
        "reset links are single-use"
    );
    assert_eq!(
        last_mail(&store, "ann@example.com").await.0,
        "Your Courses password was changed"
    );
    // The reset signed out the earlier session, and only the new password works.
    assert!(matches!(
        accounts.sessions().refresh(&session.refresh_token).await,
        Err(SessionError::RefreshRevoked)
    ));
    assert!(
        accounts
            .sign_in("ann@example.com", "correct horse battery", ip)
            .await
            .is_err()
    );
    let session = accounts
        .sign_in("ann@example.com", "a brand new password", ip)
        .await
        .unwrap();

    // Change: the current password is checked; all sessions revoked, a fresh one returned.
    assert!(matches!(
        accounts
            .change_password(&id, "not the password", "third password!")
            .await,
        Err(AccountError::BadCredentials)
    ));
    let fresh = accounts
        .change_password(&id, "a brand new password", "third password!")
        .await
        .unwrap();
    assert!(matches!(
        accounts.sessions().refresh(&session.refresh_token).await,
        Err(SessionError::RefreshRevoked)
    ));
    assert!(
        accounts
            .sessions()
            .refresh(&fresh.refresh_token)
            .await
            .is_ok()
    );

    // An expired reset link is refused.
    accounts
        .request_password_reset("ann@example.com", ip)
        .await
        .unwrap();
    let stale = token_in(
        &last_mail(&store, "ann@example.com").await.1,
        "/account/reset",
    );
    sqlx::query("UPDATE account_tokens SET expires_at = 1 WHERE purpose = 'reset_password'")
        .execute(store.writer())
        .await
        .unwrap();
    assert!(matches!(
        accounts.reset_password(&stale, "fourth password!").await,
        Err(AccountError::BadToken)
    ));

    // Sign-out ends the session.
    accounts.sign_out(&fresh.refresh_token).await.unwrap();
    assert!(
        accounts
            .sessions()
            .refresh(&fresh.refresh_token)
            .await
            .is_err()
    );
    store.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sign_up_verify_sign_in_reset() {
    sign_up_verify_sign_in_reset(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sign_up_verify_sign_in_reset() {
    sign_up_verify_sign_in_reset(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_attempts_are_limited_per_account_and_per_address() {
    let db = TestDb::new(Engine::Sqlite).await;
    let store = db.open(&schema::ALL).await;
    let per_minute = |n| Quota::per_minute(NonZeroU32::new(n).unwrap());
    let accounts = accounts(&store, AttemptLimits::new(per_minute(6), per_minute(3)));
    let ip: IpAddr = "2001:db8:5:6::1".parse().unwrap();
    for _ in 0..3 {
        assert!(matches!(
            accounts
                .sign_in("ann@example.com", "guess guess guess", ip)
                .await,
            Err(AccountError::BadCredentials)
        ));
    }
    match accounts
        .sign_in("ann@example.com", "guess guess guess", ip)
        .await
    {
        Err(AccountError::RateLimited { scope, retry_after }) => {
            assert_eq!(scope, LimitScope::Account);
            assert!(retry_after.as_secs() >= 1);
        }
        other => panic!("expected the account limit, got {other:?}"),
    }
    // Another address of the same /64 spends the same address budget: 4 used, 2 left.
    let neighbour: IpAddr = "2001:db8:5:6:aaaa::2".parse().unwrap();
    for _ in 0..2 {
        assert!(matches!(
            accounts
                .sign_in("bob@example.com", "guess guess guess", neighbour)
                .await,
            Err(AccountError::BadCredentials)
        ));
    }
    assert!(matches!(
        accounts
            .sign_in("carol@example.com", "guess guess guess", neighbour)
            .await,
        Err(AccountError::RateLimited {
            scope: LimitScope::Address,
            ..
        })
    ));
    store.close().await;
}
