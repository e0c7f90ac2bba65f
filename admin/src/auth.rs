//! Signing in and out: the double-submit CSRF cookie on the sign-in form, the per-IP attempt
//! limiter, sessions with their own expiry and CSRF token, and the check every POST passes.

use crate::web::{client_ip, cookie, page, plain, random_token, redirect, same};
use crate::{Admin, Session, Users};
use askama::Template;
use bourse_kernel::admin::Form;
use bourse_kernel::{Request, Response, read_body};
use http::{HeaderValue, StatusCode, header};
use std::time::{Duration, Instant};

pub(crate) const SESSION_COOKIE: &str = "bourse_admin_session";
const LOGIN_CSRF_COOKIE: &str = "bourse_admin_csrf";
/// Largest form body accepted.
const MAX_FORM: usize = 16 * 1024;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    user: &'a str,
    error: Option<&'a str>,
    no_users: bool,
}

fn refused_csrf() -> Response {
    plain(
        StatusCode::FORBIDDEN,
        "missing or wrong CSRF token; reload the page",
    )
}

impl Admin {
    fn set_cookie(&self, response: &mut Response, name: &str, value: &str, max_age: u64) {
        let secure = if self.config.secure_cookie {
            "; Secure"
        } else {
            ""
        };
        let text = format!(
            "{name}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        );
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }

    /// The signed-in operator's session token and session, if the cookie names a live one.
    pub(crate) fn session(&self, req: &Request) -> Option<(String, Session)> {
        let token = cookie(req, SESSION_COOKIE)?;
        let session = self.state.sessions.get(token)?;
        if session.expires <= Instant::now() {
            self.state.sessions.invalidate(token);
            return None;
        }
        Some((token.to_owned(), session))
    }

    pub(crate) fn login_page(
        &self,
        status: StatusCode,
        user: &str,
        error: Option<&str>,
    ) -> Response {
        let csrf = random_token();
        let no_users = Users::load(&self.users_file).map_or(true, |u| u.users.is_empty());
        let mut response = page(
            status,
            &LoginPage {
                csrf: &csrf,
                user,
                error,
                no_users,
            },
        );
        // Double-submit: the form's token must match this cookie, which another site can
        // neither read nor set.
        self.set_cookie(&mut response, LOGIN_CSRF_COOKIE, &csrf, 3600);
        response
    }

    async fn read_form(req: Request) -> Result<Form, Box<Response>> {
        let (parts, body) = req.into_parts();
        let bytes = read_body(&parts.headers, body, MAX_FORM)
            .await
            .map_err(|_| Box::new(plain(StatusCode::PAYLOAD_TOO_LARGE, "form too large")))?;
        Ok(Form::parse(&bytes))
    }

    /// A signed-in operator's POST: the session (else a redirect to sign in), and the form,
    /// once its CSRF token matched the session's.
    pub(crate) async fn signed_form(
        &self,
        req: Request,
    ) -> Result<(String, Session, Form), Box<Response>> {
        let Some((token, session)) = self.session(&req) else {
            return Err(Box::new(redirect("/admin/login")));
        };
        let form = Self::read_form(req).await?;
        if !same(&session.csrf, &form.text("csrf")) {
            return Err(Box::new(refused_csrf()));
        }
        Ok((token, session, form))
    }

    pub(crate) async fn login(&self, req: Request) -> Response {
        let ip = client_ip(&req);
        if let Err(refusal) = self.guard.admit_client(ip) {
            tracing::warn!(%ip, ?refusal, "admin sign-in attempts over the limit");
            return too_many();
        }
        let expected = cookie(&req, LOGIN_CSRF_COOKIE).map(str::to_owned);
        let form = match Self::read_form(req).await {
            Ok(form) => form,
            Err(refusal) => return *refusal,
        };
        let csrf_ok = expected.is_some_and(|expected| {
            !expected.is_empty() && same(&expected, form.get("csrf").unwrap_or_default())
        });
        if !csrf_ok {
            return refused_csrf();
        }
        let user = form.text("user");
        if let Err(refusal) = self.guard.admit_account(&user) {
            tracing::warn!(user, %ip, ?refusal, "admin sign-in attempts over the limit");
            return too_many();
        }
        // The password is not trimmed: spaces are part of it.
        let password = form
            .0
            .iter()
            .find(|(k, _)| k == "password")
            .map_or(String::new(), |(_, v)| v.clone());
        let verified = self
            .guard
            .verify(self.users_file.clone(), user.clone(), password)
            .await;
        let verified = match verified {
            Ok(verified) => verified,
            Err(error) => {
                tracing::error!(%error, "cannot check an admin password");
                return self.login_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &user,
                    Some("the users file cannot be read; see the server log"),
                );
            }
        };
        if !verified {
            tracing::info!(user, %ip, "admin sign-in refused");
            return self.login_page(
                StatusCode::UNAUTHORIZED,
                &user,
                Some("Wrong user or password."),
            );
        }
        let token = random_token();
        let ttl = self.config.session_ttl_secs;
        self.state.sessions.insert(
            token.clone(),
            Session {
                user: user.clone(),
                csrf: random_token(),
                expires: Instant::now() + Duration::from_secs(ttl),
            },
        );
        tracing::info!(user, %ip, "admin signed in");
        let mut response = redirect("/admin");
        self.set_cookie(&mut response, SESSION_COOKIE, &token, ttl);
        self.set_cookie(&mut response, LOGIN_CSRF_COOKIE, "", 0);
        response
    }

    pub(crate) async fn logout(&self, req: Request) -> Response {
        let (token, _, _) = match self.signed_form(req).await {
            Ok(signed) => signed,
            Err(refusal) => return *refusal,
        };
        self.state.sessions.invalidate(&token);
        let mut response = redirect("/admin/login");
        self.set_cookie(&mut response, SESSION_COOKIE, "", 0);
        response
    }
}

/// 429 for an attempt over a sign-in limit.
fn too_many() -> Response {
    let mut response = plain(
        StatusCode::TOO_MANY_REQUESTS,
        "too many sign-in attempts; wait a minute",
    );
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("60"),
    );
    response
}
