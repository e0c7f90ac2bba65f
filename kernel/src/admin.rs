//! How a plugin adds pages to the admin. The admin plugin is a shell (sign-in, sessions, CSRF,
//! layout, navigation, config history, the plugin list); every other plugin contributes a
//! section of pages under `/admin/<instance>/` through [`AdminSection`], returned by its
//! handler. The shell checks the session and the CSRF token before a section sees a request, and
//! wraps the HTML a section returns in the common layout. The small kit here (forms, field
//! errors placed from a config refusal, pagination, sortable and searchable lists, safe
//! responses) is what every section needs; the shell also serves the kit's stylesheet and the
//! charting library ([`CHART_SCRIPT`]) every section's charts use.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use http::{HeaderValue, Method, StatusCode, header};

use crate::center::Refusal;
use crate::{Response, full};

/// Rows shown per page of every admin table.
pub const PAGE_SIZE: usize = 20;

/// The charting library (uPlot, embedded in the binary; its stylesheet is in every page's head)
/// that a page drawing charts loads with `<script src>`: nothing comes from another origin.
pub const CHART_SCRIPT: &str = "/admin/static/uplot.js";

/// A plugin's pages in the admin.
pub trait AdminSection: Send + Sync {
    /// Its heading in the navigation, e.g. "Exchange".
    fn title(&self) -> String;

    /// Its pages in the navigation, in order.
    fn nav(&self) -> Vec<NavLink>;

    /// What the overview page shows of this plugin (trusted HTML, rendered by the plugin's own
    /// templates), if anything. `base` is the section's path, e.g. `/admin/exchange`.
    fn summary(&self, _base: &str) -> Option<String> {
        None
    }

    /// What is failing in this plugin right now, named at the top of every admin page (the
    /// health strip). `base` is the section's path. Called on every page, so it reads state the
    /// plugin already keeps rather than computing anything.
    fn alerts(&self, _base: &str) -> Vec<Alert> {
        Vec::new()
    }

    /// Serves a request under the section: a GET from a signed-in operator, or a POST whose
    /// session and CSRF token the shell has already checked.
    fn serve<'a>(&'a self, req: AdminRequest) -> BoxFuture<'a, AdminReply>;
}

/// Something failing that every admin page names (see [`AdminSection::alerts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub level: AlertLevel,
    /// One line in our own words: what, how badly, since when.
    pub text: String,
    /// The page that shows more, e.g. `/admin/exchange/bidders`.
    pub href: String,
}

/// How bad an [`Alert`] is; the strip shows `Down` in red, `Degraded` in amber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertLevel {
    Down,
    Degraded,
}

impl AlertLevel {
    /// The word the strip shows and styles by.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertLevel::Down => "down",
            AlertLevel::Degraded => "degraded",
        }
    }
}

/// One page of a section in the navigation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NavLink {
    pub label: String,
    /// Relative to the section, e.g. `bidders`; empty for the section's first page.
    pub path: String,
}

impl NavLink {
    pub fn new(label: impl Into<String>, path: impl Into<String>) -> Self {
        NavLink {
            label: label.into(),
            path: path.into(),
        }
    }
}

/// A request to a section, as the shell hands it over.
#[derive(Debug)]
pub struct AdminRequest {
    pub method: Method,
    /// The path below the section, starting with `/` (`/` for the section's root).
    pub path: String,
    /// The query string's fields.
    pub query: Form,
    /// The submitted form of a POST (its CSRF token already checked); empty for a GET.
    pub form: Form,
    /// The signed-in operator.
    pub user: String,
    /// The session's CSRF token, to put in every form the page renders.
    pub csrf: String,
    /// The section's path, e.g. `/admin/exchange`.
    pub base: String,
    /// `If-None-Match`, for sections that serve their own static assets.
    pub if_none_match: Option<HeaderValue>,
}

impl AdminRequest {
    /// Who a config change made from this request is recorded as.
    pub fn who(&self) -> String {
        format!("admin:{}", self.user)
    }
}

/// What a section answers.
pub enum AdminReply {
    /// HTML for the layout's main area (trusted: rendered by the plugin's templates).
    Page {
        title: String,
        /// The navigation link to mark as current (a [`NavLink::path`]).
        current: String,
        body: String,
        status: StatusCode,
    },
    /// 303 to another page (after a successful POST).
    Redirect(String),
    /// A complete response (JSON, an asset), sent as is.
    Raw(Response),
}

/// The `saved` query value of a page reached after a successful save, and what the page says.
const SAVED_KINDS: &[(&str, &str)] = &[
    ("publisher", "publisher"),
    ("placement", "placement"),
    ("bidder", "bidder"),
    ("floor", "floor of placement"),
    ("floor-rules", "floor rules"),
];

/// What the page says after a save, from its `saved` and `name` query values: only known kinds,
/// and names of the characters config ids use, so a crafted link cannot make the admin say
/// anything else.
pub fn saved_notice(query: &Form) -> Option<String> {
    let kind = query.get("saved")?;
    let (_, said) = SAVED_KINDS.iter().find(|(k, _)| *k == kind)?;
    let name = query.get("name").unwrap_or_default();
    let plain = name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if !plain {
        return None;
    }
    Some(if name.is_empty() {
        format!("Saved the {said}. It applies from the next request.")
    } else {
        format!("Saved {said} {name}. It applies from the next request.")
    })
}

impl AdminReply {
    /// The 303 after a successful save of the `kind` entry `name` (a kind of
    /// [`saved_notice`]): the page at `to` says it was saved.
    pub fn saved(to: String, kind: &str, name: &str) -> Self {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("saved", kind)
            .append_pair("name", name)
            .finish();
        AdminReply::Redirect(format!("{to}?{query}"))
    }

    /// A 200 page.
    pub fn page(title: impl Into<String>, current: impl Into<String>, body: String) -> Self {
        AdminReply::Page {
            title: title.into(),
            current: current.into(),
            body,
            status: StatusCode::OK,
        }
    }

    /// The same page with another status (422 for a refused form, 404 for an unknown entry).
    pub fn with_status(self, new: StatusCode) -> Self {
        match self {
            AdminReply::Page {
                title,
                current,
                body,
                ..
            } => AdminReply::Page {
                title,
                current,
                body,
                status: new,
            },
            other => other,
        }
    }

    /// A plain-text answer with this status.
    pub fn text(status: StatusCode, text: impl Into<String>) -> Self {
        let mut response = Response::new(full(text.into()));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        AdminReply::Raw(response)
    }

    /// A JSON answer, with the admin's safe headers.
    pub fn json(body: String) -> Self {
        AdminReply::Raw(safe_response(
            StatusCode::OK,
            "application/json",
            body.into_bytes(),
        ))
    }
}

/// A response with the admin's headers: no caching, no framing, a same-origin content policy.
pub fn safe_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<bytes::Bytes>,
) -> Response {
    let mut response = Response::new(full(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    response
}

/// Submitted fields, from a form body or a query string.
#[derive(Debug, Default, Clone)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn parse(bytes: &[u8]) -> Form {
        Form(url::form_urlencoded::parse(bytes).into_owned().collect())
    }

    /// The field's value, trimmed; `None` when it was not sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    }

    /// The field's value, trimmed; empty when it was not sent.
    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_owned()
    }

    /// A checkbox: sent (with any value but "false") means on.
    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v != "false")
    }

    /// `?page=N`, 1-based; anything else is page 1.
    pub fn page(&self) -> usize {
        self.get("page")
            .and_then(|p| p.parse().ok())
            .filter(|&p| p >= 1)
            .unwrap_or(1)
    }
}

/// Why a submitted form was refused, field by field, plus what belongs to no one field.
#[derive(Debug, Default, Clone)]
pub struct FieldErrors {
    pub general: Option<String>,
    fields: BTreeMap<String, String>,
}

impl FieldErrors {
    pub fn set(&mut self, field: &str, message: impl Into<String>) {
        self.fields.insert(field.to_owned(), message.into());
    }

    /// Adds `others`' errors for the fields that have none yet (and its general error when
    /// there is none), so a form shows its own parse errors and the config's other errors
    /// together.
    pub fn add_missing(&mut self, others: FieldErrors) {
        for (field, message) in others.fields {
            self.fields.entry(field).or_insert(message);
        }
        if self.general.is_none() {
            self.general = others.general;
        }
    }

    pub fn general(message: impl Into<String>) -> FieldErrors {
        FieldErrors {
            general: Some(message.into()),
            fields: BTreeMap::new(),
        }
    }

    /// Whether nothing was refused.
    pub fn is_empty(&self) -> bool {
        self.general.is_none() && self.fields.is_empty()
    }

    /// The message for `field`, shown beside its input.
    pub fn field(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// Places each problem of a config-center refusal beside the field it names when its path
    /// is `scope`, optionally an index, then one of `fields` (e.g. scope
    /// `plugins.exchange.bidders` places `plugins.exchange.bidders[2].endpoint` beside
    /// `endpoint`); the rest goes above the form, with its place in the file.
    pub fn from_refusal(refusal: &Refusal, scope: &str, fields: &[&str]) -> FieldErrors {
        let mut errors = FieldErrors::default();
        let mut general = Vec::new();
        for problem in refusal.problems() {
            let field = problem
                .path
                .strip_prefix(scope)
                .map(strip_index)
                .and_then(|rest| rest.strip_prefix('.'))
                .map(|rest| rest.split(['.', '[']).next().unwrap_or_default())
                .filter(|field| fields.contains(field));
            match field {
                Some(field) if !errors.fields.contains_key(field) => {
                    errors
                        .fields
                        .insert(field.to_owned(), problem.message.clone());
                }
                _ => general.push(problem.to_string()),
            }
        }
        if refusal.problems().is_empty() {
            general.push(refusal.to_string());
        }
        if !general.is_empty() {
            errors.general = Some(general.join("\n"));
        }
        errors
    }
}

/// `[12].rest` → `.rest`; anything else unchanged.
fn strip_index(path: &str) -> &str {
    match path.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        Some((index, rest)) if index.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => path,
    }
}

/// Where a table's rows are in the list of all of them.
#[derive(Debug, Clone)]
pub struct Pager {
    pub page: usize,
    pub pages: usize,
    pub total: usize,
    /// The page's path, to which `?page=N` is appended.
    pub path: String,
    /// The list's other query fields (sort, order, search, filter), already encoded, kept by
    /// every page link.
    pub keep: String,
}

impl Pager {
    /// The rows of page `page` (clamped to the last page) and where they sit.
    pub fn slice<T>(rows: Vec<T>, page: usize, path: impl Into<String>) -> (Vec<T>, Pager) {
        let total = rows.len();
        let pages = total.div_ceil(PAGE_SIZE).max(1);
        let page = page.clamp(1, pages);
        let rows = rows
            .into_iter()
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .collect();
        (
            rows,
            Pager {
                page,
                pages,
                total,
                path: path.into(),
                keep: String::new(),
            },
        )
    }

    /// The same pager, its links keeping a list's sort, search and filter.
    pub fn keeping(mut self, list: &ListQuery) -> Self {
        self.keep = list.encoded(None);
        self
    }

    /// The link to page `page` (a number; templates hand it over by reference).
    pub fn href(&self, page: impl std::fmt::Display) -> String {
        if self.keep.is_empty() {
            format!("{}?page={page}", self.path)
        } else {
            format!("{}?{}&page={page}", self.path, self.keep)
        }
    }

    pub fn previous(&self) -> Option<usize> {
        (self.page > 1).then(|| self.page - 1)
    }

    pub fn next(&self) -> Option<usize> {
        (self.page < self.pages).then(|| self.page + 1)
    }
}

/// The longest search text a list keeps (longer ones are cut, at a character boundary).
const MAX_SEARCH_CHARS: usize = 100;

/// How a list page is sorted, searched, filtered and paged, read from its query string
/// (`?sort=name&dir=desc&q=…&state=down&page=2`), and the links that change one of these while
/// keeping the others. Sorting and filtering happen on the server, so a list works without
/// script; anything unknown in the query falls back to the list's defaults.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// The page's path, e.g. `/admin/exchange/bidders`.
    pub path: String,
    /// A column key the list sorts by (one of those it offers).
    pub sort: String,
    pub descending: bool,
    /// `q`: rows whose text holds it, any case; empty for all.
    pub search: String,
    /// `state`: one of the list's filter values, or empty for all.
    pub filter: String,
    /// `page`, 1-based.
    pub page: usize,
}

/// What a row is sorted by in one column.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    /// Compared without regard to case.
    Text(String),
    Number(f64),
}

impl ListQuery {
    /// Reads the query of a list sortable by `columns` (the first is the default) and filtered
    /// by one of `filters` (none when empty).
    pub fn read(query: &Form, path: impl Into<String>, columns: &[&str], filters: &[&str]) -> Self {
        let sort = query
            .get("sort")
            .filter(|sort| columns.contains(sort))
            .or(columns.first().copied())
            .unwrap_or_default()
            .to_owned();
        let search: String = query
            .get("q")
            .unwrap_or_default()
            .chars()
            .take(MAX_SEARCH_CHARS)
            .collect();
        let filter = query
            .get("state")
            .filter(|state| filters.contains(state))
            .unwrap_or_default()
            .to_owned();
        ListQuery {
            path: path.into(),
            sort,
            descending: query.get("dir") == Some("desc"),
            search,
            filter,
            page: query.page(),
        }
    }

    /// Whether a row whose text is `fields` matches the search (every row when there is none).
    pub fn matches(&self, fields: &[&str]) -> bool {
        if self.search.is_empty() {
            return true;
        }
        let wanted = self.search.to_lowercase();
        fields.iter().any(|f| f.to_lowercase().contains(&wanted))
    }

    /// Sorts `rows` by the chosen column (`key` gives a row's key in a column), stably, so rows
    /// that tie keep their configured order.
    pub fn sort<T>(&self, rows: &mut [T], key: impl Fn(&T, &str) -> SortKey) {
        rows.sort_by(|a, b| {
            let order = match (key(a, &self.sort), key(b, &self.sort)) {
                (SortKey::Number(a), SortKey::Number(b)) => a.total_cmp(&b),
                (SortKey::Text(a), SortKey::Text(b)) => a.to_lowercase().cmp(&b.to_lowercase()),
                (SortKey::Number(_), SortKey::Text(_)) => std::cmp::Ordering::Less,
                (SortKey::Text(_), SortKey::Number(_)) => std::cmp::Ordering::Greater,
            };
            if self.descending {
                order.reverse()
            } else {
                order
            }
        });
    }

    /// The query string of this list (without `page`), with `sort` changed when given.
    fn encoded(&self, sort: Option<(&str, bool)>) -> String {
        let (column, descending) = sort.unwrap_or((&self.sort, self.descending));
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("sort", column);
        if descending {
            query.append_pair("dir", "desc");
        }
        if !self.search.is_empty() {
            query.append_pair("q", &self.search);
        }
        if !self.filter.is_empty() {
            query.append_pair("state", &self.filter);
        }
        query.finish()
    }

    /// The link a column's header points to: sorted by it, ascending, or the other way round
    /// when it is already the sort; back to the first page, search and filter kept.
    pub fn sort_href(&self, column: &str) -> String {
        let descending = column == self.sort && !self.descending;
        format!("{}?{}", self.path, self.encoded(Some((column, descending))))
    }

    /// `aria-sort` of a column's header.
    pub fn aria_sort(&self, column: &str) -> &'static str {
        match (column == self.sort, self.descending) {
            (false, _) => "none",
            (true, false) => "ascending",
            (true, true) => "descending",
        }
    }

    /// The arrow beside the sorted column's name.
    pub fn arrow(&self, column: &str) -> &'static str {
        match (column == self.sort, self.descending) {
            (false, _) => "",
            (true, false) => " ▲",
            (true, true) => " ▼",
        }
    }

    /// Whether the list shows fewer rows than it has because of a search or filter.
    pub fn narrowed(&self) -> bool {
        !self.search.is_empty() || !self.filter.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConfigError, ConfigErrors};

    #[test]
    fn parse_errors_keep_their_fields_and_gain_the_configs_others() {
        let mut parsed = FieldErrors::default();
        parsed.set("qps", "a whole number");
        let mut checked = FieldErrors::general("see below");
        checked.set("qps", "at most 100000");
        checked.set("adjustment", "above 0");
        parsed.add_missing(checked);
        assert_eq!(parsed.field("qps"), Some("a whole number"));
        assert_eq!(parsed.field("adjustment"), Some("above 0"));
        assert_eq!(parsed.general.as_deref(), Some("see below"));
    }

    #[test]
    fn a_save_is_announced_only_in_our_words() {
        let notice = |query: &str| saved_notice(&Form::parse(query.as_bytes()));
        let AdminReply::Redirect(to) =
            AdminReply::saved("/admin/x/bidders".into(), "bidder", "adv-2")
        else {
            panic!("a save redirects");
        };
        assert_eq!(to, "/admin/x/bidders?saved=bidder&name=adv-2");
        assert_eq!(
            notice("saved=bidder&name=adv-2").as_deref(),
            Some("Saved bidder adv-2. It applies from the next request.")
        );
        assert_eq!(
            notice("saved=floor-rules&name=").as_deref(),
            Some("Saved the floor rules. It applies from the next request.")
        );
        // Unknown kinds and names that are not config ids say nothing.
        assert_eq!(notice("saved=hacked&name=x"), None);
        assert_eq!(notice("saved=bidder&name=call+us+now"), None);
        assert_eq!(notice("saved=bidder&name=%3Cb%3E"), None);
        assert_eq!(notice("page=2"), None);
    }

    fn refusal(paths: &[(&str, &str)]) -> Refusal {
        Refusal::Invalid(ConfigErrors(
            paths
                .iter()
                .enumerate()
                .map(|(i, (path, message))| ConfigError {
                    file: "bourse.toml".into(),
                    line: i + 3,
                    column: 1,
                    path: (*path).into(),
                    message: (*message).into(),
                })
                .collect(),
        ))
    }

    #[test]
    fn a_refusal_lands_beside_the_field_it_names() {
        let refused = refusal(&[
            ("plugins.exchange.bidders[2].endpoint", "`x` is not a URL"),
            ("plugins.exchange.fee", "must be a fraction in [0, 1)"),
        ]);
        let errors =
            FieldErrors::from_refusal(&refused, "plugins.exchange.bidders", &["name", "endpoint"]);
        assert_eq!(errors.field("endpoint"), Some("`x` is not a URL"));
        assert_eq!(errors.field("name"), None);
        assert!(
            errors
                .general
                .as_deref()
                .unwrap()
                .contains("bourse.toml:4:1: plugins.exchange.fee")
        );
        // A field the form does not have stays above the form.
        let errors = FieldErrors::from_refusal(&refused, "plugins.exchange.bidders", &["name"]);
        assert!(errors.general.unwrap().contains("endpoint"));
    }

    #[test]
    fn a_field_of_a_plain_table_is_placed_too() {
        let refused = refusal(&[("plugins.exchange.floors.exploration_share", "too big")]);
        let errors =
            FieldErrors::from_refusal(&refused, "plugins.exchange.floors", &["exploration_share"]);
        assert_eq!(errors.field("exploration_share"), Some("too big"));
        assert!(errors.general.is_none());
    }

    #[test]
    fn a_refusal_without_problems_is_shown_whole() {
        let errors = FieldErrors::from_refusal(
            &Refusal::Conflict("etcd changed".into()),
            "plugins.exchange",
            &["fee"],
        );
        assert!(errors.general.unwrap().contains("etcd changed"));
    }

    #[test]
    fn a_list_reads_its_query_and_links_keep_what_they_do_not_change() {
        let columns = ["name", "errors"];
        let read = |query: &str| {
            ListQuery::read(
                &Form::parse(query.as_bytes()),
                "/admin/x/bidders",
                &columns,
                &["down"],
            )
        };
        let list = read("sort=errors&dir=desc&q=Adv+2&state=down&page=3");
        assert_eq!(
            (
                list.sort.as_str(),
                list.descending,
                list.search.as_str(),
                list.filter.as_str()
            ),
            ("errors", true, "Adv 2", "down")
        );
        assert_eq!(list.page, 3);
        // Its header flips the order of the sorted column and starts others ascending.
        assert_eq!(
            list.sort_href("errors"),
            "/admin/x/bidders?sort=errors&q=Adv+2&state=down"
        );
        assert_eq!(
            list.sort_href("name"),
            "/admin/x/bidders?sort=name&q=Adv+2&state=down"
        );
        assert_eq!(
            (list.aria_sort("errors"), list.aria_sort("name")),
            ("descending", "none")
        );
        let (_, pager) = Pager::slice((0..45).collect::<Vec<_>>(), 2, "/admin/x/bidders");
        assert_eq!(
            pager.keeping(&list).href(3),
            "/admin/x/bidders?sort=errors&dir=desc&q=Adv+2&state=down&page=3"
        );
        // Anything unknown falls back to the defaults, never to an error.
        let list = read("sort=%3Cscript%3E&dir=sideways&state=nonsense&page=-1&page=x");
        assert_eq!(
            (
                list.sort.as_str(),
                list.descending,
                list.filter.as_str(),
                list.page
            ),
            ("name", false, "", 1)
        );
        let long = format!("q={}", "é".repeat(500));
        assert_eq!(read(&long).search.chars().count(), MAX_SEARCH_CHARS);
    }

    #[test]
    fn rows_sort_by_text_without_case_and_by_number() {
        let rows = vec![("beta", 3.0), ("Alpha", 10.0), ("gamma", 1.0)];
        let sorted = |query: &str| {
            let list = ListQuery::read(&Form::parse(query.as_bytes()), "/x", &["name", "n"], &[]);
            let mut rows = rows.clone();
            list.sort(&mut rows, |row, column| match column {
                "n" => SortKey::Number(row.1),
                _ => SortKey::Text(row.0.to_owned()),
            });
            rows.iter().map(|r| r.0).collect::<Vec<_>>()
        };
        assert_eq!(sorted(""), ["Alpha", "beta", "gamma"]);
        assert_eq!(sorted("sort=n"), ["gamma", "beta", "Alpha"]);
        assert_eq!(sorted("sort=n&dir=desc"), ["Alpha", "beta", "gamma"]);
        let list = ListQuery::read(&Form::parse(b"q=ALP"), "/x", &["name"], &[]);
        assert!(list.matches(&["x", "alpha"]) && !list.matches(&["beta"]));
    }

    #[test]
    fn pages_hold_twenty_rows_and_clamp() {
        let (rows, pager) = Pager::slice((0..45).collect::<Vec<_>>(), 3, "/admin/x");
        assert_eq!(rows, (40..45).collect::<Vec<_>>());
        assert_eq!(
            (pager.pages, pager.previous(), pager.next()),
            (3, Some(2), None)
        );
        let (rows, pager) = Pager::slice((0..45).collect::<Vec<_>>(), 99, "/admin/x");
        assert_eq!((rows.len(), pager.page), (5, 3));
        let (rows, pager) = Pager::slice(Vec::<u8>::new(), 1, "/admin/x");
        assert_eq!((rows.len(), pager.pages, pager.next()), (0, 1, None));
    }
}
