//! One generation of the site, start to finish: a request is routed by its path below the
//! mount; the webhook and the TEST MODE checkout are answered first (they carry no cookies);
//! every other page starts a [`Visit`] (who is signed in, renewed from the refresh cookie when
//! the access token lapsed, and the form token), checks the form token of every POST, and
//! renders its page.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use askama::Template;
use bourse_commerce::accounts::{AccountError, Accounts, AccountsConfig};
use bourse_commerce::payments::{
    CheckoutItem, PaymentError, Payments, PaymentsConfig, StartCheckout, money,
};
use bourse_commerce::session::{Claims, IssuedSession, KeyRing, SessionConfig, Sessions};
use bourse_commerce::stripe::StripeClient;
use bourse_commerce::stripe::testmode::TestCheckout;
use bourse_commerce::web::{self, Csrf};
use bourse_commerce::{Store, clock, secret};
use bourse_kernel::admin::{AdminSection, Form};
use bourse_kernel::{ClientAddr, Handler, MountedAt, PluginCtx, PluginError, Request, Response};
use futures_util::future::BoxFuture;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;

use crate::CoursesState;
use crate::catalog::{self, CourseEffects};
use crate::config::Prepared;
use crate::links::{LinkError, LinkSigner};
use crate::pages::*;

/// The most a form or a webhook may send.
const BODY_LIMIT: usize = 256 * 1024;

/// A generation: its config and the services built on it.
pub struct Site {
    pub(crate) name: String,
    pub(crate) prepared: Prepared,
    pub(crate) state: Arc<CoursesState>,
    pub(crate) store: Store,
    accounts: Accounts,
    sessions: Arc<Sessions>,
    pub(crate) payments: Arc<Payments>,
    pub(crate) stripe: StripeClient,
    pub(crate) test_checkout: Option<TestCheckout>,
    csrf: Csrf,
    links: LinkSigner,
    files_dir: PathBuf,
}

/// Who is asking, and what the answer must set.
struct Visit {
    chrome: Chrome,
    /// The signed-in account's claims.
    claims: Option<Claims>,
    /// What form tokens are bound to: the session family, or the visitor cookie.
    binding: String,
    client: IpAddr,
    set_cookies: Vec<String>,
    /// The submitted form (POST), already checked for its token.
    form: Form,
    query: Form,
    method: Method,
    /// The refresh token the browser holds (renewed by this visit when it was used).
    refresh_token: Option<String>,
}

impl Site {
    pub fn new(
        ctx: &PluginCtx,
        state: Arc<CoursesState>,
        prepared: Prepared,
        test_checkout: Option<TestCheckout>,
    ) -> Result<Site, PluginError> {
        let config = &prepared.config;
        let store = state.store.clone();
        let keys = KeyRing::new(&state.signing_key)
            .map_err(|e| PluginError(format!("session keys: {e}")))?;
        let sessions = Arc::new(Sessions::new(
            store.clone(),
            SessionConfig::new(prepared.issuer.clone(), prepared.audience.clone()),
            keys,
        ));
        let templates = Arc::new(bourse_commerce::mail::MailTemplates::new());
        let mut accounts_config =
            AccountsConfig::new(&ctx.name, &config.title, &prepared.public_url);
        accounts_config.verify_path = "/account/verify".to_owned();
        accounts_config.reset_path = "/account/reset".to_owned();
        let accounts = Accounts::new(
            store.clone(),
            accounts_config,
            sessions.clone(),
            state.hasher.clone(),
            state.limits.clone(),
            templates.clone(),
        );
        let api_base = match &test_checkout {
            Some(_) => format!("{}/test-checkout", prepared.public_url),
            None => config.stripe.base_url.clone(),
        };
        let stripe = StripeClient::new(&config.stripe.client(&api_base))
            .map_err(|e| PluginError(format!("stripe: {e}")))?;
        let payments = Payments::new(
            store.clone(),
            PaymentsConfig {
                site: ctx.name.to_string(),
                site_title: config.title.clone(),
                webhook_secret: config.stripe.webhook_secret.clone(),
                checkout_ttl_secs: config.checkout_ttl_secs,
            },
            stripe.clone(),
            templates,
            state.metrics.clone(),
        )
        .map_err(|e| PluginError(e.to_string()))?;
        let secret = config
            .secret
            .clone()
            .unwrap_or_else(|| state.random_secret.clone());
        Ok(Site {
            name: ctx.name.to_string(),
            files_dir: ctx.config_dir.join(&config.files_dir),
            csrf: Csrf::new(secret.as_bytes()),
            links: LinkSigner::new(secret.as_bytes()),
            prepared,
            state,
            store,
            accounts,
            sessions,
            payments: Arc::new(payments),
            stripe,
            test_checkout,
        })
    }

    fn tls(&self) -> bool {
        self.prepared.config.secure_cookies
    }

    fn cookie(&self, what: &str) -> String {
        format!("{}_{what}", self.name)
    }

    async fn route(&self, req: Request) -> Response {
        let base = req
            .extensions()
            .get::<MountedAt>()
            .map(|m| m.0.trim_end_matches('/').to_owned())
            .unwrap_or_default();
        let path = req.uri().path().to_owned();
        let rest = path.strip_prefix(base.as_str()).unwrap_or(&path).to_owned();
        let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
        match (req.method().clone(), segments.as_slice()) {
            (Method::POST, ["webhooks", "stripe"]) => return self.webhook(req).await,
            (_, ["test-checkout", ..]) => return self.test_checkout(req, &base).await,
            (Method::GET, ["static", "site.css"]) => {
                return asset(
                    "text/css; charset=utf-8",
                    include_bytes!("../assets/site.css"),
                );
            }
            _ => {}
        }
        let mut visit = match self.visit(req, &base).await {
            Ok(visit) => visit,
            Err(response) => return response,
        };
        let response = self.page(&mut visit, &segments).await;
        with_cookies(response, &visit.set_cookies)
    }

    async fn page(&self, visit: &mut Visit, segments: &[&str]) -> Response {
        match (visit.method.clone(), segments) {
            (Method::GET, [""]) => self.catalog_page(visit).await,
            (Method::GET, ["c", slug]) => self.course_page(visit, slug).await,
            (Method::GET, ["c", slug, "lessons", position]) => {
                self.lesson_page(visit, slug, position).await
            }
            (Method::POST, ["c", slug, "lessons", position, "done"]) => {
                self.mark_done(visit, slug, position).await
            }
            (Method::GET, ["files", lesson_id, name]) => self.file(visit, lesson_id, name).await,
            (Method::POST, ["checkout"]) => self.checkout(visit).await,
            (Method::GET, ["checkout", "done"]) => self.message(
                visit,
                StatusCode::OK,
                "Thank you",
                "Your payment is being confirmed. Your seat becomes an enrolment as soon as the \
                 payment provider tells us it is paid, and a receipt is on its way by mail.",
                Some((format!("{}/my", visit.chrome.base), "My courses")),
            ),
            (Method::GET, ["account", "signup"]) => self.signup_form(visit, None, ""),
            (Method::POST, ["account", "signup"]) => self.signup(visit).await,
            (Method::GET, ["account", "verify"]) => self.verify(visit).await,
            (Method::GET, ["account", "signin"]) => self.signin_form(visit, None, ""),
            (Method::POST, ["account", "signin"]) => self.signin(visit).await,
            (Method::POST, ["account", "signout"]) => self.signout(visit).await,
            (Method::GET, ["account", "reset"]) => self.reset_form(visit, None),
            (Method::POST, ["account", "reset"]) => self.reset(visit).await,
            (Method::GET, ["my"]) => self.my_page(visit).await,
            _ => self.message(
                visit,
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no page here.",
                Some((format!("{}/", visit.chrome.base), "See the catalog")),
            ),
        }
    }

    /// Reads who is asking (renewing a lapsed access token from the refresh cookie), the form
    /// token, and for a POST its form, refusing it when the token does not match.
    async fn visit(&self, req: Request, base: &str) -> Result<Visit, Response> {
        let (parts, body) = req.into_parts();
        let client = parts
            .extensions
            .get::<ClientAddr>()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0);
        let tls = self.tls();
        let mut set_cookies = Vec::new();
        let mut claims = web::read_cookie(&parts.headers, &self.cookie("session"), tls)
            .and_then(|token| self.sessions.verify(&token).ok());
        if let Some(live) = &claims
            && !self.sessions.is_live(live).await.unwrap_or(false)
        {
            claims = None;
        }
        let mut refresh_token = web::read_cookie(&parts.headers, &self.cookie("refresh"), tls);
        if claims.is_none()
            && let Some(refresh) = refresh_token.clone()
        {
            match self.sessions.refresh(&refresh).await {
                Ok(issued) => {
                    claims = self.sessions.verify(&issued.access_token).ok();
                    set_cookies.extend(self.session_cookies(&issued));
                    refresh_token = Some(issued.refresh_token);
                }
                Err(_) => {
                    refresh_token = None;
                    set_cookies.push(web::clear_cookie(&self.cookie("refresh"), tls));
                    set_cookies.push(web::clear_cookie(&self.cookie("session"), tls));
                }
            }
        }
        let binding = match &claims {
            Some(claims) => claims.sid.clone(),
            None => match web::read_cookie(&parts.headers, &self.cookie("visitor"), tls) {
                Some(visitor) if visitor.len() <= 64 => visitor,
                _ => {
                    let visitor = secret::new_token();
                    set_cookies.push(web::set_cookie(
                        &self.cookie("visitor"),
                        &visitor,
                        30 * 86_400,
                        tls,
                    ));
                    visitor
                }
            },
        };
        let csrf_cookie = web::read_cookie(&parts.headers, &self.cookie("csrf"), tls);
        let query = Form::parse(parts.uri.query().unwrap_or("").as_bytes());
        let mut form = Form::default();
        let is_post = parts.method == Method::POST;
        if is_post {
            let bytes = match bourse_kernel::read_body(&parts.headers, body, BODY_LIMIT).await {
                Ok(bytes) => bytes,
                Err(error) => return Err(error.to_response()),
            };
            form = Form::parse(&bytes);
        }
        let csrf = match &csrf_cookie {
            Some(token) if self.csrf.check(&binding, Some(token), Some(token)).is_ok() => {
                token.clone()
            }
            _ => {
                let token = self.csrf.token(&binding);
                set_cookies.push(web::set_cookie(&self.cookie("csrf"), &token, 86_400, tls));
                token
            }
        };
        let chrome = Chrome {
            base: base.to_owned(),
            site_title: self.prepared.config.title.clone(),
            signed_in: claims.is_some(),
            csrf,
            test_mode: self.test_checkout.is_some(),
        };
        let visit = Visit {
            chrome,
            claims,
            binding,
            client,
            set_cookies,
            form,
            query,
            method: parts.method.clone(),
            refresh_token,
        };
        if is_post
            && let Err(error) = self.csrf.check(
                &visit.binding,
                csrf_cookie.as_deref(),
                visit.form.get("csrf"),
            )
        {
            let response = self.message(
                &visit,
                StatusCode::FORBIDDEN,
                "Form expired",
                &error.to_string(),
                Some((format!("{base}/"), "Back to the catalog")),
            );
            return Err(with_cookies(response, &visit.set_cookies));
        }
        Ok(visit)
    }

    fn session_cookies(&self, issued: &IssuedSession) -> [String; 2] {
        let now = clock::now();
        [
            web::set_cookie(
                &self.cookie("session"),
                &issued.access_token,
                (issued.access_expires_at - now).max(1),
                self.tls(),
            ),
            web::set_cookie(
                &self.cookie("refresh"),
                &issued.refresh_token,
                (issued.refresh_expires_at - now).max(1),
                self.tls(),
            ),
        ]
    }

    // ---- catalog, course, lesson, attachment, progress ----

    async fn catalog_page(&self, visit: &Visit) -> Response {
        let courses = match catalog::courses(&self.store).await {
            Ok(courses) => courses,
            Err(error) => return self.failed(visit, &error),
        };
        let page = CatalogPage {
            chrome: &visit.chrome,
            courses: courses
                .into_iter()
                .map(|c| CourseCard {
                    price: money(c.price_minor, &c.currency),
                    slug: c.slug,
                    title: c.title,
                    summary: c.summary,
                })
                .collect(),
        };
        html(StatusCode::OK, page.render())
    }

    async fn course_page(&self, visit: &Visit, slug: &str) -> Response {
        let loaded = async {
            let Some(course) = catalog::course_by_slug(&self.store, slug).await? else {
                return Ok(None);
            };
            let lessons = catalog::lessons(&self.store, &course.id).await?;
            let cohorts = catalog::cohorts(&self.store, &self.name, Some(&course.id)).await?;
            let (enrolled, done) = match &visit.claims {
                Some(claims) => (
                    catalog::is_enrolled(&self.store, &claims.sub, &course.id).await?,
                    catalog::done_lessons(&self.store, &claims.sub, &course.id).await?,
                ),
                None => (false, Vec::new()),
            };
            Ok::<_, sqlx::Error>(Some((course, lessons, cohorts, enrolled, done)))
        };
        let (course, lessons, cohorts, enrolled, done) = match loaded.await {
            Ok(Some(found)) => found,
            Ok(None) => return self.not_found(visit, "There is no such course."),
            Err(error) => return self.failed(visit, &error),
        };
        let page = CoursePage {
            chrome: &visit.chrome,
            price: money(course.price_minor, &course.currency),
            slug: course.slug,
            title: course.title,
            summary: course.summary,
            enrolled,
            lessons: lessons
                .into_iter()
                .map(|l| LessonLine {
                    done: done.contains(&l.id),
                    position: l.position,
                    title: l.title,
                    preview: l.preview,
                })
                .collect(),
            cohorts: cohorts
                .into_iter()
                .map(|c| CohortLine {
                    available: c.available(),
                    id: c.id,
                    name: c.name,
                    seats: c.seats,
                })
                .collect(),
        };
        html(StatusCode::OK, page.render())
    }

    async fn lesson_page(&self, visit: &Visit, slug: &str, position: &str) -> Response {
        let Ok(position) = position.parse::<i64>() else {
            return self.not_found(visit, "There is no such lesson.");
        };
        let loaded = async {
            let Some(course) = catalog::course_by_slug(&self.store, slug).await? else {
                return Ok(None);
            };
            let lessons = catalog::lessons(&self.store, &course.id).await?;
            let enrolled = match &visit.claims {
                Some(claims) => catalog::is_enrolled(&self.store, &claims.sub, &course.id).await?,
                None => false,
            };
            let done = match &visit.claims {
                Some(claims) => catalog::done_lessons(&self.store, &claims.sub, &course.id).await?,
                None => Vec::new(),
            };
            Ok::<_, sqlx::Error>(Some((course, lessons, enrolled, done)))
        };
        let (course, lessons, enrolled, done) = match loaded.await {
            Ok(Some(found)) => found,
            Ok(None) => return self.not_found(visit, "There is no such course."),
            Err(error) => return self.failed(visit, &error),
        };
        let Some(index) = lessons.iter().position(|l| l.position == position) else {
            return self.not_found(visit, "There is no such lesson.");
        };
        let lesson = &lessons[index];
        if !lesson.preview && !enrolled {
            let base = &visit.chrome.base;
            let (text, link) = if visit.claims.is_some() {
                (
                    "This lesson is for the students of the course. Join a cohort to open it.",
                    (format!("{base}/c/{}#buy", course.slug), "Buy the course"),
                )
            } else {
                (
                    "This lesson is for the students of the course: sign in if you are one, or \
                     join a cohort.",
                    (format!("{base}/c/{}#buy", course.slug), "Buy the course"),
                )
            };
            return self.message(
                visit,
                StatusCode::FORBIDDEN,
                "For students",
                text,
                Some(link),
            );
        }
        let attachment = lesson.attachment.as_ref().map(|name| {
            let expires = clock::now() + self.prepared.config.link_ttl_secs;
            format!(
                "{}/files/{}/{}?{}",
                visit.chrome.base,
                lesson.id,
                name,
                self.links.query(&lesson.id, name, expires)
            )
        });
        let page = LessonPage {
            chrome: &visit.chrome,
            slug: course.slug.clone(),
            course_title: course.title.clone(),
            position: lesson.position,
            lesson_title: lesson.title.clone(),
            body: lesson.body.clone(),
            attachment,
            attachment_name: lesson.attachment.clone().unwrap_or_default(),
            can_mark: enrolled,
            done: done.contains(&lesson.id),
            previous: index.checked_sub(1).map(|i| lessons[i].position),
            next: lessons.get(index + 1).map(|l| l.position),
        };
        html(StatusCode::OK, page.render())
    }

    async fn mark_done(&self, visit: &Visit, slug: &str, position: &str) -> Response {
        let Some(claims) = &visit.claims else {
            return self.to_sign_in(visit);
        };
        let Ok(position) = position.parse::<i64>() else {
            return self.not_found(visit, "There is no such lesson.");
        };
        let marked = async {
            let Some(course) = catalog::course_by_slug(&self.store, slug).await? else {
                return Ok(None);
            };
            if !catalog::is_enrolled(&self.store, &claims.sub, &course.id).await? {
                return Ok(Some(false));
            }
            let Some(lesson) = catalog::lesson(&self.store, &course.id, position).await? else {
                return Ok(None);
            };
            catalog::mark_done(&self.store, &claims.sub, &lesson.id)
                .await
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            Ok::<_, sqlx::Error>(Some(true))
        };
        match marked.await {
            Ok(Some(true)) => redirect(&format!(
                "{}/c/{slug}/lessons/{position}",
                visit.chrome.base
            )),
            Ok(Some(false)) => self.message(
                visit,
                StatusCode::FORBIDDEN,
                "For students",
                "Only the students of the course keep progress.",
                None,
            ),
            Ok(None) => self.not_found(visit, "There is no such lesson."),
            Err(error) => self.failed(visit, &error),
        }
    }

    /// An attachment through its signed link; the name is checked before it touches a path.
    async fn file(&self, visit: &Visit, lesson_id: &str, name: &str) -> Response {
        if !catalog::file_name_ok(name) {
            return self.not_found(visit, "There is no such file.");
        }
        let expires: i64 = visit
            .query
            .get("exp")
            .and_then(|e| e.parse().ok())
            .unwrap_or(0);
        let signature = visit.query.get("sig").unwrap_or_default();
        match self
            .links
            .check(lesson_id, name, expires, signature, clock::now())
        {
            Ok(()) => {}
            Err(LinkError::Forged) => {
                return self.message(
                    visit,
                    StatusCode::FORBIDDEN,
                    "Link refused",
                    "This download link is not one we made.",
                    None,
                );
            }
            Err(LinkError::Expired) => {
                return self.message(
                    visit,
                    StatusCode::GONE,
                    "Link expired",
                    "This download link has expired: open the lesson again for a fresh one.",
                    None,
                );
            }
        }
        match catalog::lesson_by_id(&self.store, lesson_id).await {
            Ok(Some(lesson)) if lesson.attachment.as_deref() == Some(name) => {}
            Ok(_) => return self.not_found(visit, "There is no such file."),
            Err(error) => return self.failed(visit, &error),
        }
        match tokio::fs::read(self.files_dir.join(name)).await {
            Ok(bytes) => {
                let mut response = asset("application/octet-stream", &bytes);
                if let Ok(value) =
                    HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
                {
                    response
                        .headers_mut()
                        .insert(header::CONTENT_DISPOSITION, value);
                }
                response.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("private, no-store"),
                );
                response
            }
            Err(_) => self.not_found(visit, "This file is missing on the server."),
        }
    }

    // ---- checkout, webhook, TEST MODE ----

    /// Reserves a seat and sends the buyer to the checkout; a full cohort is a 409.
    async fn checkout(&self, visit: &Visit) -> Response {
        let cohort_id = visit.form.text("cohort");
        let cohort = match catalog::cohort(&self.store, &self.name, &cohort_id).await {
            Ok(Some(cohort)) => cohort,
            Ok(None) => return self.not_found(visit, "There is no such cohort."),
            Err(error) => return self.failed(visit, &error),
        };
        let course = match catalog::courses(&self.store).await {
            Ok(courses) => courses.into_iter().find(|c| c.id == cohort.course_id),
            Err(error) => return self.failed(visit, &error),
        };
        let Some(course) = course else {
            return self.not_found(visit, "There is no such course.");
        };
        let (account_id, email) = match &visit.claims {
            Some(claims) => (Some(claims.sub.clone()), None),
            None => match bourse_commerce::accounts::normalize_email(&visit.form.text("email")) {
                Ok(email) => (None, Some(email)),
                Err(_) => {
                    return self.message(
                        visit,
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "An e-mail address is needed",
                        "email: give the address the receipt goes to, or sign in first.",
                        Some((
                            format!("{}/c/{}#buy", visit.chrome.base, course.slug),
                            "Back to the course",
                        )),
                    );
                }
            },
        };
        let public = &self.prepared.public_url;
        let item = catalog::seat_item(&cohort.id);
        let started = self
            .payments
            .start_checkout(&StartCheckout {
                account_id,
                email,
                currency: course.currency.clone(),
                items: vec![CheckoutItem {
                    sku: item.clone(),
                    description: format!("{}: {}", course.title, cohort.name),
                    quantity: 1,
                    unit_minor: course.price_minor,
                    stock_item: Some(item),
                }],
                success_url: format!("{public}/checkout/done?session={{CHECKOUT_SESSION_ID}}"),
                cancel_url: format!("{public}/c/{}", course.slug),
            })
            .await;
        match started {
            Ok(started) => redirect(&started.url),
            Err(PaymentError::SoldOut(_)) => self.message(
                visit,
                StatusCode::CONFLICT,
                "This cohort is full",
                &format!(
                    "Every seat of {} ({}) is taken or held by a checkout in progress. Seats \
                     held by checkouts that are not completed come back when they expire.",
                    cohort.name, course.title
                ),
                Some((
                    format!("{}/c/{}", visit.chrome.base, course.slug),
                    "Back to the course",
                )),
            ),
            Err(error) => {
                tracing::error!(%error, "checkout not started");
                self.message(
                    visit,
                    StatusCode::BAD_GATEWAY,
                    "Checkout unavailable",
                    "The payment provider could not be reached; nothing was charged and no \
                     seat is held. Try again in a moment.",
                    None,
                )
            }
        }
    }

    async fn webhook(&self, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let payload = match bourse_kernel::read_body(&parts.headers, body, BODY_LIMIT).await {
            Ok(bytes) => bytes,
            Err(error) => return error.to_response(),
        };
        let signature = parts
            .headers
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok());
        let reply = self
            .payments
            .handle_webhook(&payload, signature, &CourseEffects)
            .await;
        let status =
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        bourse_kernel::json_response(
            status,
            &serde_json::json!({"outcome": reply.outcome.label(), "message": reply.message}),
        )
    }

    async fn test_checkout(&self, req: Request, base: &str) -> Response {
        let Some(checkout) = &self.test_checkout else {
            return plain(StatusCode::NOT_FOUND, "no TEST MODE checkout on this site");
        };
        let (mut parts, body) = req.into_parts();
        let prefix = format!("{base}/test-checkout");
        let inner = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().strip_prefix(&prefix).unwrap_or("/").to_owned())
            .unwrap_or_else(|| "/".to_owned());
        parts.uri = match inner.parse() {
            Ok(uri) => uri,
            Err(_) => return plain(StatusCode::BAD_REQUEST, "bad path"),
        };
        let response = checkout
            .handle(http::Request::from_parts(parts, body))
            .await;
        response.map(|body| body.map_err(|never| match never {}).boxed())
    }

    // ---- accounts ----

    fn signup_form(&self, visit: &Visit, error: Option<String>, email: &str) -> Response {
        let status = if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        };
        let base = &visit.chrome.base;
        let page = FormPage {
            chrome: &visit.chrome,
            heading: "Sign up",
            action: format!("{base}/account/signup"),
            error,
            hidden: Vec::new(),
            fields: vec![
                Field::email(email),
                Field::password("Password (at least 10 characters)", "new-password"),
            ],
            submit: "Sign up",
            links: vec![(format!("{base}/account/signin"), "I have an account")],
        };
        html(status, page.render())
    }

    async fn signup(&self, visit: &Visit) -> Response {
        let email = visit.form.text("email");
        let password = visit.form.get("password").unwrap_or_default().to_owned();
        match self.accounts.sign_up(&email, &password, visit.client).await {
            Ok(_) => self.message(
                visit,
                StatusCode::OK,
                "Check your mail",
                &format!(
                    "We sent a link to {email}. Follow it to confirm the address, then sign in."
                ),
                None,
            ),
            Err(error) => match user_error(&error) {
                Some(text) => self.signup_form(visit, Some(text), &email),
                None => self.account_failed(visit, &error),
            },
        }
    }

    async fn verify(&self, visit: &Visit) -> Response {
        let token = visit.query.text("token");
        match self.accounts.verify_email(&token).await {
            Ok(_) => self.message(
                visit,
                StatusCode::OK,
                "Address confirmed",
                "Your e-mail address is confirmed. You can sign in now.",
                Some((format!("{}/account/signin", visit.chrome.base), "Sign in")),
            ),
            Err(AccountError::BadToken) => self.message(
                visit,
                StatusCode::BAD_REQUEST,
                "Link not valid",
                &AccountError::BadToken.to_string(),
                Some((format!("{}/account/signup", visit.chrome.base), "Sign up")),
            ),
            Err(error) => self.account_failed(visit, &error),
        }
    }

    fn signin_form(&self, visit: &Visit, error: Option<String>, email: &str) -> Response {
        let status = if error.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        let base = &visit.chrome.base;
        let next = self.next_page(visit);
        let page = FormPage {
            chrome: &visit.chrome,
            heading: "Sign in",
            action: format!("{base}/account/signin"),
            error,
            hidden: vec![("next", next)],
            fields: vec![
                Field::email(email),
                Field::password("Password", "current-password"),
            ],
            submit: "Sign in",
            links: vec![
                (format!("{base}/account/signup"), "Create an account"),
                (format!("{base}/account/reset"), "Forgot your password?"),
            ],
        };
        html(status, page.render())
    }

    /// Where to go after signing in: a page of this site only, never another origin.
    fn next_page(&self, visit: &Visit) -> String {
        let base = &visit.chrome.base;
        let wanted = visit
            .form
            .get("next")
            .or_else(|| visit.query.get("next"))
            .unwrap_or_default();
        let safe = wanted.starts_with(&format!("{base}/"))
            && !wanted.starts_with("//")
            && !wanted.contains("\\")
            && !wanted.contains("://");
        if safe {
            wanted.to_owned()
        } else {
            format!("{base}/my")
        }
    }

    async fn signin(&self, visit: &mut Visit) -> Response {
        let email = visit.form.text("email");
        let password = visit.form.get("password").unwrap_or_default().to_owned();
        match self.accounts.sign_in(&email, &password, visit.client).await {
            Ok(issued) => {
                visit.set_cookies.extend(self.session_cookies(&issued));
                // The form token follows the session it is now bound to.
                let token = self.csrf.token(&issued.family_id);
                visit.set_cookies.push(web::set_cookie(
                    &self.cookie("csrf"),
                    &token,
                    86_400,
                    self.tls(),
                ));
                redirect(&self.next_page(visit))
            }
            Err(error) => match user_error(&error) {
                Some(text) => self.signin_form(visit, Some(text), &email),
                None => self.account_failed(visit, &error),
            },
        }
    }

    async fn signout(&self, visit: &mut Visit) -> Response {
        if let Some(refresh) = &visit.refresh_token {
            // Revokes the whole family: the refresh token and every access token of it.
            if let Err(error) = self.accounts.sign_out(refresh).await {
                tracing::warn!(%error, "sign-out not recorded");
            }
        }
        let tls = self.tls();
        for name in ["session", "refresh", "csrf"] {
            visit
                .set_cookies
                .push(web::clear_cookie(&self.cookie(name), tls));
        }
        redirect(&format!("{}/", visit.chrome.base))
    }

    fn reset_form(&self, visit: &Visit, error: Option<String>) -> Response {
        let base = &visit.chrome.base;
        let token = visit
            .query
            .get("token")
            .or_else(|| visit.form.get("token"))
            .map(str::to_owned);
        let status = if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        };
        let page = match token {
            Some(token) => FormPage {
                chrome: &visit.chrome,
                heading: "Choose a new password",
                action: format!("{base}/account/reset"),
                error,
                hidden: vec![("token", token)],
                fields: vec![Field::password(
                    "New password (at least 10 characters)",
                    "new-password",
                )],
                submit: "Set the password",
                links: Vec::new(),
            },
            None => FormPage {
                chrome: &visit.chrome,
                heading: "Reset your password",
                action: format!("{base}/account/reset"),
                error,
                hidden: Vec::new(),
                fields: vec![Field::email("")],
                submit: "Mail me a link",
                links: vec![(format!("{base}/account/signin"), "Sign in")],
            },
        };
        html(status, page.render())
    }

    async fn reset(&self, visit: &Visit) -> Response {
        let base = visit.chrome.base.clone();
        if let Some(token) = visit.form.get("token") {
            let password = visit.form.get("password").unwrap_or_default();
            return match self.accounts.reset_password(token, password).await {
                Ok(_) => self.message(
                    visit,
                    StatusCode::OK,
                    "Password changed",
                    "Your password is changed and every session of the account is signed out.",
                    Some((format!("{base}/account/signin"), "Sign in")),
                ),
                Err(error) => match user_error(&error) {
                    Some(text) => self.reset_form(visit, Some(text)),
                    None => self.account_failed(visit, &error),
                },
            };
        }
        let email = visit.form.text("email");
        match self
            .accounts
            .request_password_reset(&email, visit.client)
            .await
        {
            Ok(()) => self.message(
                visit,
                StatusCode::OK,
                "Check your mail",
                "If an account has this address, a link to choose a new password is on its way.",
                None,
            ),
            Err(error) => match user_error(&error) {
                Some(text) => self.reset_form(visit, Some(text)),
                None => self.account_failed(visit, &error),
            },
        }
    }

    async fn my_page(&self, visit: &Visit) -> Response {
        let Some(claims) = &visit.claims else {
            return self.to_sign_in(visit);
        };
        match catalog::my_courses(&self.store, &claims.sub).await {
            Ok(courses) => html(
                StatusCode::OK,
                MyPage {
                    chrome: &visit.chrome,
                    courses,
                }
                .render(),
            ),
            Err(error) => self.failed(visit, &error),
        }
    }

    fn to_sign_in(&self, visit: &Visit) -> Response {
        let base = &visit.chrome.base;
        redirect(&format!("{base}/account/signin?next={base}/my"))
    }

    // ---- answers ----

    fn message(
        &self,
        visit: &Visit,
        status: StatusCode,
        heading: &str,
        text: &str,
        link: Option<(String, &str)>,
    ) -> Response {
        let page = MessagePage {
            chrome: &visit.chrome,
            heading: heading.to_owned(),
            text: text.to_owned(),
            link: link.map(|(href, label)| (href, label.to_owned())),
        };
        html(status, page.render())
    }

    fn not_found(&self, visit: &Visit, text: &str) -> Response {
        self.message(
            visit,
            StatusCode::NOT_FOUND,
            "Not found",
            text,
            Some((format!("{}/", visit.chrome.base), "See the catalog")),
        )
    }

    fn failed(&self, visit: &Visit, error: &dyn std::fmt::Display) -> Response {
        tracing::error!(%error, "courses page failed");
        self.message(
            visit,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The page could not be shown; try again in a moment.",
            None,
        )
    }

    fn account_failed(&self, visit: &Visit, error: &AccountError) -> Response {
        match error {
            AccountError::RateLimited { .. } => self.message(
                visit,
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                &error.to_string(),
                None,
            ),
            other => self.failed(visit, other),
        }
    }
}

/// What an account error says to the person at the form, when it is theirs to fix.
fn user_error(error: &AccountError) -> Option<String> {
    match error {
        AccountError::Invalid { .. }
        | AccountError::BadCredentials
        | AccountError::NotVerified
        | AccountError::BadToken
        | AccountError::Disabled => Some(error.to_string()),
        _ => None,
    }
}

impl Handler for Site {
    fn handle<'a>(&'a self, req: Request) -> BoxFuture<'a, Response> {
        Box::pin(self.route(req))
    }

    fn activate(&self) {
        self.state.payments.store(Some(self.payments.clone()));
    }

    fn admin(&self) -> Option<&dyn AdminSection> {
        Some(self)
    }
}

// ---- responses ----

/// A page with the site's headers: a same-origin content policy (no inline script), no
/// framing, no caching of pages that show who is signed in.
fn html(status: StatusCode, rendered: askama::Result<String>) -> Response {
    let (status, body) = match rendered {
        Ok(body) => (status, body),
        Err(error) => {
            tracing::error!(%error, "courses template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><title>Error</title><p>The page could not be shown.</p>".to_owned(),
            )
        }
    };
    let mut response =
        bourse_kernel::admin::safe_response(status, "text/html; charset=utf-8", body);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = http::Response::new(bourse_kernel::full(text));
    *response.status_mut() = status;
    response
}

fn asset(content_type: &'static str, bytes: &[u8]) -> Response {
    let mut response = http::Response::new(bourse_kernel::full(bytes.to_vec()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// 303 See Other to `location`.
pub(crate) fn redirect(location: &str) -> Response {
    let mut response = http::Response::new(bourse_kernel::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn with_cookies(mut response: Response, cookies: &[String]) -> Response {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}
