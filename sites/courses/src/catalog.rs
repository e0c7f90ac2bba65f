//! The site's own data: courses, lessons in order, cohorts with their seats (a cohort's seats
//! are the commerce stock item `cohort:<id>`, so they are reserved and sold only through
//! `stock`'s conditional updates), enrolments and progress; the enrolment a paid order grants
//! and a refund takes back ([`CourseEffects`]); and the two sample courses of the demo.

use bourse_commerce::migrate::{Migration, Module};
use bourse_commerce::orders::Order;
use bourse_commerce::payments::OrderEffects;
use bourse_commerce::store::Conn;
use bourse_commerce::{Store, StoreError, clock, secret, stock};
use sqlx::Row;
use sqlx::any::AnyRow;

/// The site's schema module.
pub const MODULE: Module = Module {
    name: "courses",
    migrations: &[Migration {
        version: 1,
        name: "courses_lessons_cohorts",
        sql: include_str!("../migrations/0001_courses.sql"),
    }],
};

/// The stock item (and order line sku) of a cohort's seats.
pub fn seat_item(cohort_id: &str) -> String {
    format!("cohort:{cohort_id}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Course {
    pub id: String,
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub price_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lesson {
    pub id: String,
    pub course_id: String,
    pub position: i64,
    pub title: String,
    pub body: String,
    pub preview: bool,
    pub attachment: Option<String>,
}

/// A cohort with its seats as the stock table has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cohort {
    pub id: String,
    pub course_id: String,
    pub name: String,
    pub seats: i64,
    pub held: i64,
    pub sold: i64,
}

impl Cohort {
    pub fn available(&self) -> i64 {
        (self.seats - self.held - self.sold).max(0)
    }
}

/// What an operator or the seed adds.
#[derive(Debug, Clone)]
pub struct NewCourse {
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub price_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone)]
pub struct NewLesson {
    pub title: String,
    pub body: String,
    pub preview: bool,
    pub attachment: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
    #[error(transparent)]
    Stock(#[from] stock::StockError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
}

fn invalid(field: &'static str, message: &'static str) -> CatalogError {
    CatalogError::Invalid { field, message }
}

const COURSE: &str = "SELECT id, slug, title, summary, price_minor, currency FROM courses";
const LESSON: &str =
    "SELECT id, course_id, position, title, body, preview, attachment FROM lessons";
const COHORT: &str = "SELECT c.id, c.course_id, c.name, c.seats, \
     COALESCE(s.held, 0) AS held, COALESCE(s.sold, 0) AS sold FROM cohorts c \
     LEFT JOIN stock_items s ON s.site = $1 AND s.item = 'cohort:' || c.id";

fn course_of(row: &AnyRow) -> Result<Course, sqlx::Error> {
    Ok(Course {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        title: row.try_get("title")?,
        summary: row.try_get("summary")?,
        price_minor: row.try_get("price_minor")?,
        currency: row.try_get("currency")?,
    })
}

fn lesson_of(row: &AnyRow) -> Result<Lesson, sqlx::Error> {
    Ok(Lesson {
        id: row.try_get("id")?,
        course_id: row.try_get("course_id")?,
        position: row.try_get("position")?,
        title: row.try_get("title")?,
        body: row.try_get("body")?,
        preview: row.try_get::<i64, _>("preview")? != 0,
        attachment: row.try_get("attachment")?,
    })
}

fn cohort_of(row: &AnyRow) -> Result<Cohort, sqlx::Error> {
    Ok(Cohort {
        id: row.try_get("id")?,
        course_id: row.try_get("course_id")?,
        name: row.try_get("name")?,
        seats: row.try_get("seats")?,
        held: row.try_get("held")?,
        sold: row.try_get("sold")?,
    })
}

pub async fn courses(store: &Store) -> Result<Vec<Course>, sqlx::Error> {
    sqlx::query(&format!("{COURSE} ORDER BY created_at, id"))
        .fetch_all(store.reader())
        .await?
        .iter()
        .map(course_of)
        .collect()
}

pub async fn course_by_slug(store: &Store, slug: &str) -> Result<Option<Course>, sqlx::Error> {
    sqlx::query(&format!("{COURSE} WHERE slug = $1"))
        .bind(slug)
        .fetch_optional(store.reader())
        .await?
        .as_ref()
        .map(course_of)
        .transpose()
}

pub async fn lessons(store: &Store, course_id: &str) -> Result<Vec<Lesson>, sqlx::Error> {
    sqlx::query(&format!("{LESSON} WHERE course_id = $1 ORDER BY position"))
        .bind(course_id)
        .fetch_all(store.reader())
        .await?
        .iter()
        .map(lesson_of)
        .collect()
}

pub async fn lesson(
    store: &Store,
    course_id: &str,
    position: i64,
) -> Result<Option<Lesson>, sqlx::Error> {
    sqlx::query(&format!("{LESSON} WHERE course_id = $1 AND position = $2"))
        .bind(course_id)
        .bind(position)
        .fetch_optional(store.reader())
        .await?
        .as_ref()
        .map(lesson_of)
        .transpose()
}

pub async fn lesson_by_id(store: &Store, id: &str) -> Result<Option<Lesson>, sqlx::Error> {
    sqlx::query(&format!("{LESSON} WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.reader())
        .await?
        .as_ref()
        .map(lesson_of)
        .transpose()
}

/// The cohorts of a course (every course's when `course_id` is None), oldest first.
pub async fn cohorts(
    store: &Store,
    site: &str,
    course_id: Option<&str>,
) -> Result<Vec<Cohort>, sqlx::Error> {
    let query = match course_id {
        Some(_) => format!("{COHORT} WHERE c.course_id = $2 ORDER BY c.created_at, c.id"),
        None => format!("{COHORT} ORDER BY c.created_at, c.id"),
    };
    let mut query = sqlx::query(&query).bind(site);
    if let Some(course_id) = course_id {
        query = query.bind(course_id);
    }
    query
        .fetch_all(store.reader())
        .await?
        .iter()
        .map(cohort_of)
        .collect()
}

pub async fn cohort(store: &Store, site: &str, id: &str) -> Result<Option<Cohort>, sqlx::Error> {
    sqlx::query(&format!("{COHORT} WHERE c.id = $2"))
        .bind(site)
        .bind(id)
        .fetch_optional(store.reader())
        .await?
        .as_ref()
        .map(cohort_of)
        .transpose()
}

/// A slug: 1-64 of a-z, 0-9 and `-`.
fn slug_ok(slug: &str) -> bool {
    (1..=64).contains(&slug.len())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// An attachment's file name: no folder, no leading dot, nothing but `A-Za-z0-9._-`, so it can
/// never name a file outside the attachments folder.
pub fn file_name_ok(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

pub async fn create_course(store: &Store, new: &NewCourse) -> Result<Course, CatalogError> {
    if !slug_ok(&new.slug) {
        return Err(invalid("slug", "1-64 characters of a-z, 0-9 and -"));
    }
    if new.title.trim().is_empty() || new.title.len() > 200 {
        return Err(invalid("title", "1-200 characters"));
    }
    if new.price_minor < 0 {
        return Err(invalid("price", "must not be negative"));
    }
    let id = secret::new_id("crs");
    let mut tx = store.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO courses (id, slug, title, summary, price_minor, currency, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (slug) DO NOTHING",
    )
    .bind(&id)
    .bind(&new.slug)
    .bind(new.title.trim())
    .bind(new.summary.trim())
    .bind(new.price_minor)
    .bind(&new.currency)
    .bind(clock::now())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(invalid("slug", "another course has this slug"));
    }
    tx.commit().await?;
    Ok(Course {
        id,
        slug: new.slug.clone(),
        title: new.title.trim().to_owned(),
        summary: new.summary.trim().to_owned(),
        price_minor: new.price_minor,
        currency: new.currency.clone(),
    })
}

/// Appends a lesson to a course.
pub async fn add_lesson(
    store: &Store,
    course_id: &str,
    new: &NewLesson,
) -> Result<Lesson, CatalogError> {
    if new.title.trim().is_empty() || new.title.len() > 200 {
        return Err(invalid("title", "1-200 characters"));
    }
    if let Some(name) = &new.attachment
        && !file_name_ok(name)
    {
        return Err(invalid(
            "attachment",
            "a file name of A-Z, a-z, 0-9, . _ and -, not starting with a dot",
        ));
    }
    let mut tx = store.begin().await?;
    let position: i64 = sqlx::query(
        "SELECT CAST(COALESCE(MAX(position), 0) + 1 AS BIGINT) AS next FROM lessons \
         WHERE course_id = $1",
    )
    .bind(course_id)
    .fetch_one(&mut *tx)
    .await?
    .try_get("next")?;
    let id = secret::new_id("lsn");
    sqlx::query(
        "INSERT INTO lessons (id, course_id, position, title, body, preview, attachment) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(course_id)
    .bind(position)
    .bind(new.title.trim())
    .bind(&new.body)
    .bind(i64::from(new.preview))
    .bind(&new.attachment)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Lesson {
        id,
        course_id: course_id.to_owned(),
        position,
        title: new.title.trim().to_owned(),
        body: new.body.clone(),
        preview: new.preview,
        attachment: new.attachment.clone(),
    })
}

/// Adds a cohort with `seats` seats (its stock item created in the same transaction).
pub async fn add_cohort(
    store: &Store,
    site: &str,
    course_id: &str,
    name: &str,
    seats: i64,
) -> Result<String, CatalogError> {
    if name.trim().is_empty() || name.len() > 100 {
        return Err(invalid("name", "1-100 characters"));
    }
    if !(1..=1_000_000).contains(&seats) {
        return Err(invalid("seats", "between 1 and 1,000,000"));
    }
    let id = secret::new_id("coh");
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT INTO cohorts (id, course_id, name, seats, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(course_id)
    .bind(name.trim())
    .bind(seats)
    .bind(clock::now())
    .execute(&mut *tx)
    .await?;
    stock::set_capacity(&mut tx, site, &seat_item(&id), seats).await?;
    tx.commit().await?;
    Ok(id)
}

/// Whether the account (or, for a guest's purchase, its verified address) holds a live
/// enrolment in the course.
pub async fn is_enrolled(
    store: &Store,
    account_id: &str,
    course_id: &str,
) -> Result<bool, sqlx::Error> {
    let count: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM enrolments e WHERE e.course_id = $2 \
         AND e.revoked_at IS NULL AND (e.account_id = $1 OR e.email = \
           (SELECT email FROM accounts WHERE id = $1 AND verified_at IS NOT NULL))",
    )
    .bind(account_id)
    .bind(course_id)
    .fetch_one(store.reader())
    .await?;
    Ok(count > 0)
}

/// A student's course with their progress.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub course: Course,
    pub done: i64,
    pub lessons: i64,
}

impl Enrolled {
    pub fn percent(&self) -> i64 {
        if self.lessons == 0 {
            0
        } else {
            self.done * 100 / self.lessons
        }
    }
}

/// The courses an account is enrolled in, with how many lessons it marked done.
pub async fn my_courses(store: &Store, account_id: &str) -> Result<Vec<Enrolled>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.id, c.slug, c.title, c.summary, c.price_minor, c.currency, \
           (SELECT CAST(COUNT(*) AS BIGINT) FROM lessons l WHERE l.course_id = c.id) AS lessons, \
           (SELECT CAST(COUNT(*) AS BIGINT) FROM lesson_progress p JOIN lessons l \
              ON l.id = p.lesson_id WHERE l.course_id = c.id AND p.account_id = $1) AS done \
         FROM courses c WHERE c.id IN (SELECT e.course_id FROM enrolments e \
           WHERE e.revoked_at IS NULL AND (e.account_id = $1 OR e.email = \
             (SELECT email FROM accounts WHERE id = $1 AND verified_at IS NOT NULL))) \
         ORDER BY c.title",
    )
    .bind(account_id)
    .fetch_all(store.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Enrolled {
                course: course_of(row)?,
                done: row.try_get("done")?,
                lessons: row.try_get("lessons")?,
            })
        })
        .collect()
}

/// The lessons of a course the account marked done.
pub async fn done_lessons(
    store: &Store,
    account_id: &str,
    course_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT p.lesson_id FROM lesson_progress p JOIN lessons l ON l.id = p.lesson_id \
         WHERE p.account_id = $1 AND l.course_id = $2",
    )
    .bind(account_id)
    .bind(course_id)
    .fetch_all(store.reader())
    .await
}

pub async fn mark_done(store: &Store, account_id: &str, lesson_id: &str) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT INTO lesson_progress (account_id, lesson_id, done_at) VALUES ($1, $2, $3) \
         ON CONFLICT (account_id, lesson_id) DO NOTHING",
    )
    .bind(account_id)
    .bind(lesson_id)
    .bind(clock::now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Live and revoked enrolments, for the admin.
pub async fn enrolment_counts(store: &Store) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) AS total, \
           CAST(COALESCE(SUM(CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) \
             AS revoked FROM enrolments",
    )
    .fetch_one(store.reader())
    .await?;
    let total: i64 = row.try_get("total")?;
    let revoked: i64 = row.try_get("revoked")?;
    Ok((total - revoked, revoked))
}

/// What a paid or refunded order does to enrolments, inside the payment event's transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct CourseEffects;

impl OrderEffects for CourseEffects {
    async fn paid(&self, conn: &mut Conn, order: &Order) -> Result<(), sqlx::Error> {
        let skus = sqlx::query("SELECT sku FROM order_lines WHERE order_id = $1 ORDER BY line_no")
            .bind(&order.id)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>("sku"))
            .collect::<Result<Vec<_>, _>>()?;
        for sku in skus {
            let Some(cohort_id) = sku.strip_prefix("cohort:") else {
                continue;
            };
            let course_id: Option<String> =
                sqlx::query("SELECT course_id FROM cohorts WHERE id = $1")
                    .bind(cohort_id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(|row| row.try_get("course_id"))
                    .transpose()?;
            let Some(course_id) = course_id else {
                tracing::error!(order = %order.id, %sku, "paid for a cohort that is gone");
                continue;
            };
            // The order id is the key: one enrolment per paid order, whatever redelivers it.
            sqlx::query(
                "INSERT INTO enrolments (order_id, account_id, email, course_id, cohort_id, \
                 enrolled_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&order.id)
            .bind(&order.account_id)
            .bind(&order.email)
            .bind(&course_id)
            .bind(cohort_id)
            .bind(clock::now())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    async fn refunded(&self, conn: &mut Conn, order: &Order) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE enrolments SET revoked_at = $2 WHERE order_id = $1")
            .bind(&order.id)
            .bind(clock::now())
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// Adds the demo's two courses, with lessons, previews and a cohort each, to an empty catalog.
pub async fn add_samples(store: &Store, site: &str, currency: &str) -> Result<(), CatalogError> {
    if !courses(store).await?.is_empty() {
        return Ok(());
    }
    // (slug, title, summary, price, lessons as (title, text, free preview), seats)
    type Sample<'a> = (
        &'a str,
        &'a str,
        &'a str,
        i64,
        &'a [(&'a str, &'a str, bool)],
        i64,
    );
    let samples: [Sample; 2] = [
        (
            "rust-in-depth",
            "Rust in depth",
            "Ownership, traits and async, from first program to production service.",
            4_900,
            &[
                ("Welcome", "What we build, and how the course runs.", true),
                (
                    "Ownership",
                    "Moves, borrows and lifetimes, with exercises.",
                    false,
                ),
                ("Traits", "Generic code that stays fast.", false),
                ("Async", "Tasks, futures and cancellation.", false),
            ],
            100,
        ),
        (
            "sql-for-builders",
            "SQL for builders",
            "Schemas, transactions and the queries behind a real shop.",
            2_900,
            &[
                ("Why SQL", "Tables as the shape of a business.", true),
                ("Transactions", "All or nothing, and how to keep it.", false),
                ("Indexes", "Reading plans, and what to index.", false),
            ],
            25,
        ),
    ];
    for (slug, title, summary, price_minor, lessons, seats) in samples {
        let course = create_course(
            store,
            &NewCourse {
                slug: slug.to_owned(),
                title: title.to_owned(),
                summary: summary.to_owned(),
                price_minor,
                currency: currency.to_owned(),
            },
        )
        .await?;
        for (index, (title, body, preview)) in lessons.iter().enumerate() {
            let attachment = (index == 1).then(|| format!("{slug}-notes.txt"));
            add_lesson(
                store,
                &course.id,
                &NewLesson {
                    title: (*title).to_owned(),
                    body: (*body).to_owned(),
                    preview: *preview,
                    attachment,
                },
            )
            .await?;
        }
        add_cohort(store, site, &course.id, "First cohort", seats).await?;
    }
    Ok(())
}
