//! The site's pages: askama templates (in `templates/`, escaped as HTML) and the values each
//! one shows. Every page carries the [`Chrome`]: the mount, who is signed in, and the form
//! token its forms post back.

use askama::Template;

use crate::catalog::Enrolled;

/// What the layout of every page needs.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub base: String,
    pub site_title: String,
    pub signed_in: bool,
    pub csrf: String,
    pub test_mode: bool,
}

#[derive(Debug)]
pub struct CourseCard {
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub price: String,
}

#[derive(Template)]
#[template(path = "catalog.html")]
pub struct CatalogPage<'a> {
    pub chrome: &'a Chrome,
    pub courses: Vec<CourseCard>,
}

#[derive(Debug)]
pub struct LessonLine {
    pub position: i64,
    pub title: String,
    pub preview: bool,
    pub done: bool,
}

#[derive(Debug)]
pub struct CohortLine {
    pub id: String,
    pub name: String,
    pub seats: i64,
    pub available: i64,
}

#[derive(Template)]
#[template(path = "course.html")]
pub struct CoursePage<'a> {
    pub chrome: &'a Chrome,
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub price: String,
    pub enrolled: bool,
    pub lessons: Vec<LessonLine>,
    pub cohorts: Vec<CohortLine>,
}

#[derive(Template)]
#[template(path = "lesson.html")]
pub struct LessonPage<'a> {
    pub chrome: &'a Chrome,
    pub slug: String,
    pub course_title: String,
    pub position: i64,
    pub lesson_title: String,
    pub body: String,
    pub attachment: Option<String>,
    pub attachment_name: String,
    pub can_mark: bool,
    pub done: bool,
    pub previous: Option<i64>,
    pub next: Option<i64>,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub chrome: &'a Chrome,
    pub heading: String,
    pub text: String,
    pub link: Option<(String, String)>,
}

#[derive(Debug)]
pub struct Field {
    pub label: &'static str,
    pub name: &'static str,
    pub kind: &'static str,
    pub value: String,
    pub autocomplete: &'static str,
}

impl Field {
    pub fn email(value: &str) -> Field {
        Field {
            label: "E-mail",
            name: "email",
            kind: "email",
            value: value.to_owned(),
            autocomplete: "email",
        }
    }

    pub fn password(label: &'static str, autocomplete: &'static str) -> Field {
        Field {
            label,
            name: "password",
            kind: "password",
            value: String::new(),
            autocomplete,
        }
    }
}

#[derive(Template)]
#[template(path = "form.html")]
pub struct FormPage<'a> {
    pub chrome: &'a Chrome,
    pub heading: &'static str,
    pub action: String,
    pub error: Option<String>,
    pub hidden: Vec<(&'static str, String)>,
    pub fields: Vec<Field>,
    pub submit: &'static str,
    pub links: Vec<(String, &'static str)>,
}

#[derive(Template)]
#[template(path = "my.html")]
pub struct MyPage<'a> {
    pub chrome: &'a Chrome,
    pub courses: Vec<Enrolled>,
}
