//! The site's pages in the admin shell, under `/admin/<instance>/`: the overview (revenue, orders,
//! seats, enrolments), courses and lessons (create both), cohorts and their seats, and orders
//! with refunds. Askama fragments in `templates/admin/`; the shell adds the layout, the sign-in
//! and the CSRF check of every POST.

use askama::Template;
use bourse_commerce::orders::{self, OrderState};
use bourse_commerce::payments::money;
use bourse_commerce::stock;
use bourse_kernel::admin::{AdminReply, AdminRequest, AdminSection, NavLink};
use futures_util::future::BoxFuture;
use http::{Method, StatusCode};

use crate::catalog::{self, Cohort, NewCourse, NewLesson};
use crate::site::Site;

#[derive(Template)]
#[template(path = "admin/overview.html")]
struct Overview {
    title: String,
    revenue: Vec<String>,
    orders: Vec<(&'static str, i64)>,
    held: i64,
    sold: i64,
    enrolled: i64,
    revoked: i64,
    test_mode: bool,
}

struct CourseBlock {
    id: String,
    slug: String,
    title: String,
    price: String,
    lessons: Vec<catalog::Lesson>,
}

#[derive(Template)]
#[template(path = "admin/courses.html")]
struct CoursesList {
    base: String,
    csrf: String,
    currency: String,
    error: Option<String>,
    courses: Vec<CourseBlock>,
}

#[derive(Template)]
#[template(path = "admin/cohorts.html")]
struct CohortsList {
    rows: Vec<(String, Cohort)>,
}

struct OrderRow {
    id: String,
    buyer: String,
    state: &'static str,
    total: String,
    created: String,
    refundable: bool,
}

#[derive(Template)]
#[template(path = "admin/orders.html")]
struct OrdersList {
    base: String,
    csrf: String,
    notice: Option<String>,
    rows: Vec<OrderRow>,
}

fn page(title: &str, current: &str, rendered: askama::Result<String>) -> AdminReply {
    match rendered {
        Ok(body) => AdminReply::page(title, current, body),
        Err(error) => AdminReply::text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
}

fn failed(error: impl std::fmt::Display) -> AdminReply {
    tracing::error!(%error, "courses admin page failed");
    AdminReply::text(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the store: {error}"),
    )
}

impl AdminSection for Site {
    fn title(&self) -> String {
        self.prepared.config.title.clone()
    }

    fn nav(&self) -> Vec<NavLink> {
        vec![
            NavLink::new("Overview", ""),
            NavLink::new("Courses and lessons", "courses"),
            NavLink::new("Cohorts and seats", "cohorts"),
            NavLink::new("Orders and refunds", "orders"),
        ]
    }

    fn serve<'a>(&'a self, req: AdminRequest) -> BoxFuture<'a, AdminReply> {
        Box::pin(async move {
            match (req.method.clone(), req.path.as_str()) {
                (Method::GET, "/") => self.overview().await,
                (Method::GET, "/courses") => self.courses_page(&req, None).await,
                (Method::POST, "/courses") => self.create_course(&req).await,
                (Method::POST, "/lessons") => self.create_lesson(&req).await,
                (Method::POST, "/cohorts") => self.create_cohort(&req).await,
                (Method::GET, "/cohorts") => self.cohorts_page().await,
                (Method::GET, "/orders") => self.orders_page(&req, None).await,
                (Method::POST, "/orders/refund") => self.refund(&req).await,
                _ => AdminReply::text(StatusCode::NOT_FOUND, "no such page"),
            }
        })
    }
}

impl Site {
    async fn overview(&self) -> AdminReply {
        let loaded = async {
            let revenue = orders::revenue(&self.store, &self.name)
                .await
                .map_err(|e| e.to_string())?;
            let mut counts = Vec::new();
            for state in [
                OrderState::Pending,
                OrderState::Paid,
                OrderState::Refunded,
                OrderState::Expired,
            ] {
                let count: i64 = sqlx::query_scalar(
                    "SELECT CAST(COUNT(*) AS BIGINT) FROM orders WHERE site = $1 AND state = $2",
                )
                .bind(&self.name)
                .bind(state.as_str())
                .fetch_one(self.store.reader())
                .await
                .map_err(|e| e.to_string())?;
                counts.push((state.as_str(), count));
            }
            let (held, sold) = stock::totals(&self.store, &self.name)
                .await
                .map_err(|e| e.to_string())?;
            let (enrolled, revoked) = catalog::enrolment_counts(&self.store)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(Overview {
                title: self.prepared.config.title.clone(),
                revenue: revenue
                    .iter()
                    .map(|(currency, total)| money(*total, currency))
                    .collect(),
                orders: counts,
                held,
                sold,
                enrolled,
                revoked,
                test_mode: self.test_checkout.is_some(),
            })
        };
        match loaded.await {
            Ok(overview) => page("Overview", "", overview.render()),
            Err(error) => failed(error),
        }
    }

    async fn courses_page(&self, req: &AdminRequest, error: Option<String>) -> AdminReply {
        let courses = match catalog::courses(&self.store).await {
            Ok(courses) => courses,
            Err(error) => return failed(error),
        };
        let mut blocks = Vec::new();
        for course in courses {
            let lessons = match catalog::lessons(&self.store, &course.id).await {
                Ok(lessons) => lessons,
                Err(error) => return failed(error),
            };
            blocks.push(CourseBlock {
                price: money(course.price_minor, &course.currency),
                id: course.id,
                slug: course.slug,
                title: course.title,
                lessons,
            });
        }
        let refused = error.is_some();
        let list = CoursesList {
            base: req.base.clone(),
            csrf: req.csrf.clone(),
            currency: self.prepared.config.currency.clone(),
            error,
            courses: blocks,
        };
        let reply = page("Courses and lessons", "courses", list.render());
        if refused {
            reply.with_status(StatusCode::UNPROCESSABLE_ENTITY)
        } else {
            reply
        }
    }

    async fn create_course(&self, req: &AdminRequest) -> AdminReply {
        let Ok(price_minor) = req.form.text("price").parse::<i64>() else {
            return self
                .courses_page(req, Some("price: a whole number of minor units".into()))
                .await;
        };
        let new = NewCourse {
            slug: req.form.text("slug"),
            title: req.form.text("title"),
            summary: req.form.text("summary"),
            price_minor,
            currency: self.prepared.config.currency.clone(),
        };
        match catalog::create_course(&self.store, &new).await {
            Ok(_) => AdminReply::Redirect(format!("{}/courses", req.base)),
            Err(error) => self.courses_page(req, Some(error.to_string())).await,
        }
    }

    async fn create_lesson(&self, req: &AdminRequest) -> AdminReply {
        let attachment = req.form.text("attachment");
        let new = NewLesson {
            title: req.form.text("title"),
            body: req.form.text("body"),
            preview: req.form.checked("preview"),
            attachment: (!attachment.is_empty()).then_some(attachment),
        };
        match catalog::add_lesson(&self.store, &req.form.text("course"), &new).await {
            Ok(_) => AdminReply::Redirect(format!("{}/courses", req.base)),
            Err(error) => self.courses_page(req, Some(error.to_string())).await,
        }
    }

    async fn create_cohort(&self, req: &AdminRequest) -> AdminReply {
        let Ok(seats) = req.form.text("seats").parse::<i64>() else {
            return self
                .courses_page(req, Some("seats: a whole number".into()))
                .await;
        };
        match catalog::add_cohort(
            &self.store,
            &self.name,
            &req.form.text("course"),
            &req.form.text("name"),
            seats,
        )
        .await
        {
            Ok(_) => AdminReply::Redirect(format!("{}/cohorts", req.base)),
            Err(error) => self.courses_page(req, Some(error.to_string())).await,
        }
    }

    async fn cohorts_page(&self) -> AdminReply {
        let loaded = async {
            let courses = catalog::courses(&self.store).await?;
            let cohorts = catalog::cohorts(&self.store, &self.name, None).await?;
            Ok::<_, sqlx::Error>(
                cohorts
                    .into_iter()
                    .map(|cohort| {
                        let course = courses
                            .iter()
                            .find(|c| c.id == cohort.course_id)
                            .map_or_else(String::new, |c| c.title.clone());
                        (course, cohort)
                    })
                    .collect(),
            )
        };
        match loaded.await {
            Ok(rows) => page(
                "Cohorts and seats",
                "cohorts",
                CohortsList { rows }.render(),
            ),
            Err(error) => failed(error),
        }
    }

    async fn orders_page(&self, req: &AdminRequest, notice: Option<String>) -> AdminReply {
        let list = match orders::list(&self.store, &self.name, 100, 0).await {
            Ok(list) => list,
            Err(error) => return failed(error),
        };
        let rows = list
            .into_iter()
            .map(|order| OrderRow {
                buyer: order
                    .email
                    .clone()
                    .or_else(|| order.account_id.clone())
                    .unwrap_or_default(),
                state: order.state.as_str(),
                total: money(order.total_minor, &order.currency),
                created: bourse_kernel::utc_datetime(order.created_at.max(0) as u64),
                refundable: order.state == OrderState::Paid,
                id: order.id,
            })
            .collect();
        let list = OrdersList {
            base: req.base.clone(),
            csrf: req.csrf.clone(),
            notice,
            rows,
        };
        page("Orders and refunds", "orders", list.render())
    }

    /// Asks the payment provider for a full refund; the `charge.refunded` event it sends back
    /// takes the enrolment away, once, like every other payment event.
    async fn refund(&self, req: &AdminRequest) -> AdminReply {
        let order = match orders::get(&self.store, &req.form.text("order")).await {
            Ok(order) => order,
            Err(error) => return self.orders_page(req, Some(error.to_string())).await,
        };
        if order.state != OrderState::Paid {
            let notice = format!("Order {} is {}, not paid.", order.id, order.state.as_str());
            return self.orders_page(req, Some(notice)).await;
        }
        let outcome = match (&self.test_checkout, &order.checkout_id, &order.payment_ref) {
            (Some(checkout), Some(session), _) => checkout
                .refund(session)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            (None, _, Some(intent)) => self
                .stripe
                .create_refund(intent, &format!("{}-refund", order.id))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            _ => Err("the order has no payment to refund".to_owned()),
        };
        let notice = match outcome {
            Ok(()) => format!(
                "Refund of order {} requested by {}; access goes when the provider confirms it.",
                order.id, req.user
            ),
            Err(error) => format!("Refund of order {} failed: {error}", order.id),
        };
        self.orders_page(req, Some(notice)).await
    }
}
