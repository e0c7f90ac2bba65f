//! Publishers and placements: paginated lists, the tag snippet ready to copy, and forms that
//! create, edit and disable them, applied live; a refusal shows beside the field it names.

use super::{Chrome, number};
use crate::web::{FieldErrors, Form, Pager, page, redirect};
use crate::{Admin, Session};
use askama::Template;
use bourse_kernel::{Request, Response};
use http::StatusCode;

const PUBLISHER_FIELDS: &[&str] = &["id", "name", "domain"];
const PLACEMENT_FIELDS: &[&str] = &["id", "publisher", "sizes", "floor"];

#[derive(Template)]
#[template(path = "publishers.html")]
struct PublishersPage<'a> {
    chrome: Chrome<'a>,
    publishers: Vec<PublisherRow>,
    pager: Pager,
    form: PublisherForm,
    errors: FieldErrors,
    editing: bool,
}

#[derive(Template)]
#[template(path = "publisher_edit.html")]
struct PublisherEditPage<'a> {
    chrome: Chrome<'a>,
    form: PublisherForm,
    errors: FieldErrors,
    editing: bool,
}

struct PublisherRow {
    id: String,
    name: String,
    domain: String,
    placements: usize,
    enabled: bool,
}

struct PublisherForm {
    id: String,
    name: String,
    domain: String,
    enabled: bool,
}

impl Default for PublisherForm {
    fn default() -> Self {
        PublisherForm {
            id: String::new(),
            name: String::new(),
            domain: String::new(),
            enabled: true,
        }
    }
}

impl PublisherForm {
    fn from(form: &Form) -> PublisherForm {
        PublisherForm {
            id: form.text("id"),
            name: form.text("name"),
            domain: form.text("domain"),
            enabled: form.checked("enabled"),
        }
    }

    fn write(&self, table: &mut toml_edit::Table) {
        table["id"] = toml_edit::value(self.id.as_str());
        table["name"] = toml_edit::value(self.name.as_str());
        if self.domain.is_empty() {
            table.remove("domain");
        } else {
            table["domain"] = toml_edit::value(self.domain.as_str());
        }
        table["enabled"] = toml_edit::value(self.enabled);
    }
}

#[derive(Template)]
#[template(path = "placements.html")]
struct PlacementsPage<'a> {
    chrome: Chrome<'a>,
    placements: Vec<PlacementRow>,
    pager: Pager,
    publishers: Vec<String>,
    form: PlacementForm,
    errors: FieldErrors,
    editing: bool,
}

#[derive(Template)]
#[template(path = "placement_edit.html")]
struct PlacementEditPage<'a> {
    chrome: Chrome<'a>,
    publishers: Vec<String>,
    form: PlacementForm,
    errors: FieldErrors,
    editing: bool,
    snippet: String,
}

struct PlacementRow {
    id: String,
    publisher: String,
    sizes: String,
    floor: String,
    enabled: bool,
    snippet: String,
}

struct PlacementForm {
    id: String,
    publisher: String,
    sizes: String,
    floor: String,
    enabled: bool,
}

impl Default for PlacementForm {
    fn default() -> Self {
        PlacementForm {
            id: String::new(),
            publisher: String::new(),
            sizes: String::new(),
            floor: String::new(),
            enabled: true,
        }
    }
}

impl PlacementForm {
    fn from(form: &Form) -> PlacementForm {
        PlacementForm {
            id: form.text("id"),
            publisher: form.text("publisher"),
            sizes: form.text("sizes"),
            floor: form.text("floor"),
            enabled: form.checked("enabled"),
        }
    }

    /// Writes the form into `table`, or says which fields cannot be read.
    fn write(&self, table: &mut toml_edit::Table) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::default();
        let sizes = parse_sizes(&self.sizes);
        if sizes.is_none() {
            errors.set("sizes", "Write sizes as 300x250,728x90.");
        }
        let floor = parse_amount(&self.floor);
        if floor.is_none() {
            errors.set("floor", "The floor is a number, e.g. 0.50.");
        }
        let (Some(sizes), Some(floor)) = (sizes, floor) else {
            return Err(errors);
        };
        table["id"] = toml_edit::value(self.id.as_str());
        table["publisher"] = toml_edit::value(self.publisher.as_str());
        let mut size_list = toml_edit::Array::new();
        for [w, h] in sizes {
            let mut pair = toml_edit::Array::new();
            pair.push(w);
            pair.push(h);
            size_list.push(pair);
        }
        table["sizes"] = toml_edit::value(size_list);
        table["floor"] = toml_edit::value(floor);
        table["enabled"] = toml_edit::value(self.enabled);
        Ok(())
    }
}

/// `"300x250, 728x90"` as `[[300, 250], [728, 90]]`.
fn parse_sizes(text: &str) -> Option<Vec<[i64; 2]>> {
    let sizes: Option<Vec<[i64; 2]>> = text
        .split(',')
        .map(|part| {
            let (w, h) = part.trim().split_once('x')?;
            let (w, h) = (w.trim().parse::<u16>().ok()?, h.trim().parse::<u16>().ok()?);
            (w > 0 && h > 0).then_some([i64::from(w), i64::from(h)])
        })
        .collect();
    sizes.filter(|s| !s.is_empty())
}

/// A CPM amount typed by an operator; empty means 0. Range checks are the config's.
pub(crate) fn parse_amount(text: &str) -> Option<f64> {
    if text.is_empty() {
        return Some(0.0);
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn sizes_text(sizes: &[[u16; 2]]) -> String {
    sizes
        .iter()
        .map(|[w, h]| format!("{w}x{h}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Admin {
    fn tag_snippet(public_url: &str, id: &str, sizes: &str) -> String {
        format!(
            "<div class=\"bourse-ad\" data-placement=\"{id}\" data-sizes=\"{sizes}\"></div>\n\
             <script async src=\"{}/tag.js\"></script>",
            public_url.trim_end_matches('/')
        )
    }

    fn publishers_page(
        &self,
        status: StatusCode,
        session: &Session,
        page_number: usize,
        form: PublisherForm,
        errors: FieldErrors,
    ) -> Response {
        let config = self.exchange_config();
        let rows = config
            .publishers
            .iter()
            .map(|p| PublisherRow {
                placements: config
                    .placements
                    .iter()
                    .filter(|pl| pl.publisher == p.id)
                    .count(),
                id: p.id.clone(),
                name: p.name.clone(),
                domain: p.domain.clone().unwrap_or_default(),
                enabled: p.enabled,
            })
            .collect();
        let (publishers, pager) = Pager::slice(rows, page_number, "/admin/publishers");
        page(
            status,
            &PublishersPage {
                chrome: Chrome::new(session, "publishers"),
                publishers,
                pager,
                form,
                errors,
                editing: false,
            },
        )
    }

    pub(crate) fn publishers_get(&self, req: &Request, session: &Session) -> Response {
        let page = Form::query(req).page();
        self.publishers_page(
            StatusCode::OK,
            session,
            page,
            PublisherForm::default(),
            FieldErrors::default(),
        )
    }

    pub(crate) async fn create_publisher(&self, session: Session, form: Form) -> Response {
        // New publishers start enabled; the edit form turns them off.
        let form = PublisherForm {
            enabled: true,
            ..PublisherForm::from(&form)
        };
        let mut table = toml_edit::Table::new();
        form.write(&mut table);
        match self.append_and_apply(&session, "publishers", table).await {
            Ok(()) => redirect("/admin/publishers"),
            Err(refusal) => self.publishers_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &session,
                1,
                form,
                FieldErrors::from_refusal(&refusal, "publishers", PUBLISHER_FIELDS),
            ),
        }
    }

    fn publisher_edit_page(
        &self,
        status: StatusCode,
        session: &Session,
        form: PublisherForm,
        errors: FieldErrors,
    ) -> Response {
        page(
            status,
            &PublisherEditPage {
                chrome: Chrome::new(session, "publishers"),
                form,
                errors,
                editing: true,
            },
        )
    }

    pub(crate) fn publisher_edit_get(&self, req: &Request, session: &Session) -> Response {
        let id = Form::query(req).text("id");
        let config = self.exchange_config();
        let Some(publisher) = config.publishers.iter().find(|p| p.id == id) else {
            return self.publishers_page(
                StatusCode::NOT_FOUND,
                session,
                1,
                PublisherForm::default(),
                FieldErrors::general(format!("No publisher `{id}` in the running config.")),
            );
        };
        let form = PublisherForm {
            id: publisher.id.clone(),
            name: publisher.name.clone(),
            domain: publisher.domain.clone().unwrap_or_default(),
            enabled: publisher.enabled,
        };
        self.publisher_edit_page(StatusCode::OK, session, form, FieldErrors::default())
    }

    pub(crate) async fn edit_publisher(&self, session: Session, form: Form) -> Response {
        let form = PublisherForm::from(&form);
        let result = async {
            let mut edit = self.edit()?;
            form.write(edit.entry("publishers", "id", &form.id)?);
            self.apply(&session, edit).await
        }
        .await;
        match result {
            Ok(()) => redirect("/admin/publishers"),
            Err(refusal) => self.publisher_edit_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &session,
                form,
                FieldErrors::from_refusal(&refusal, "publishers", PUBLISHER_FIELDS),
            ),
        }
    }
}

impl Admin {
    fn placements_page(
        &self,
        status: StatusCode,
        session: &Session,
        page_number: usize,
        form: PlacementForm,
        errors: FieldErrors,
    ) -> Response {
        let config = self.exchange_config();
        let rows = config
            .placements
            .iter()
            .map(|p| {
                let sizes = sizes_text(&p.sizes);
                PlacementRow {
                    snippet: Self::tag_snippet(&config.public_url, &p.id, &sizes),
                    id: p.id.clone(),
                    publisher: p.publisher.clone(),
                    floor: number(p.floor, 4),
                    enabled: p.enabled,
                    sizes,
                }
            })
            .collect();
        let (placements, pager) = Pager::slice(rows, page_number, "/admin/placements");
        page(
            status,
            &PlacementsPage {
                chrome: Chrome::new(session, "placements"),
                placements,
                pager,
                publishers: config.publishers.into_iter().map(|p| p.id).collect(),
                form,
                errors,
                editing: false,
            },
        )
    }

    pub(crate) fn placements_get(&self, req: &Request, session: &Session) -> Response {
        let page = Form::query(req).page();
        self.placements_page(
            StatusCode::OK,
            session,
            page,
            PlacementForm::default(),
            FieldErrors::default(),
        )
    }

    pub(crate) async fn create_placement(&self, session: Session, form: Form) -> Response {
        // New placements start enabled; the edit form turns them off.
        let form = PlacementForm {
            enabled: true,
            ..PlacementForm::from(&form)
        };
        let mut table = toml_edit::Table::new();
        let result = match form.write(&mut table) {
            Ok(()) => self
                .append_and_apply(&session, "placements", table)
                .await
                .map_err(|refusal| {
                    FieldErrors::from_refusal(&refusal, "placements", PLACEMENT_FIELDS)
                }),
            Err(errors) => Err(errors),
        };
        match result {
            Ok(()) => redirect("/admin/placements"),
            Err(errors) => {
                self.placements_page(StatusCode::UNPROCESSABLE_ENTITY, &session, 1, form, errors)
            }
        }
    }

    fn placement_edit_page(
        &self,
        status: StatusCode,
        session: &Session,
        form: PlacementForm,
        errors: FieldErrors,
    ) -> Response {
        let config = self.exchange_config();
        let snippet = config
            .placements
            .iter()
            .find(|p| p.id == form.id)
            .map(|p| Self::tag_snippet(&config.public_url, &p.id, &sizes_text(&p.sizes)))
            .unwrap_or_default();
        page(
            status,
            &PlacementEditPage {
                chrome: Chrome::new(session, "placements"),
                publishers: config.publishers.into_iter().map(|p| p.id).collect(),
                form,
                errors,
                editing: true,
                snippet,
            },
        )
    }

    pub(crate) fn placement_edit_get(&self, req: &Request, session: &Session) -> Response {
        let id = Form::query(req).text("id");
        let config = self.exchange_config();
        let Some(placement) = config.placements.iter().find(|p| p.id == id) else {
            return self.placements_page(
                StatusCode::NOT_FOUND,
                session,
                1,
                PlacementForm::default(),
                FieldErrors::general(format!("No placement `{id}` in the running config.")),
            );
        };
        let form = PlacementForm {
            id: placement.id.clone(),
            publisher: placement.publisher.clone(),
            sizes: sizes_text(&placement.sizes),
            floor: number(placement.floor, 4),
            enabled: placement.enabled,
        };
        self.placement_edit_page(StatusCode::OK, session, form, FieldErrors::default())
    }

    pub(crate) async fn edit_placement(&self, session: Session, form: Form) -> Response {
        let form = PlacementForm::from(&form);
        let result = async {
            let mut edit = self.edit().map_err(FieldErrors::general)?;
            let table = edit
                .entry("placements", "id", &form.id)
                .map_err(FieldErrors::general)?;
            form.write(table)?;
            self.apply(&session, edit).await.map_err(|refusal| {
                FieldErrors::from_refusal(&refusal, "placements", PLACEMENT_FIELDS)
            })
        }
        .await;
        match result {
            Ok(()) => redirect("/admin/placements"),
            Err(errors) => {
                self.placement_edit_page(StatusCode::UNPROCESSABLE_ENTITY, &session, form, errors)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_amounts_are_read_as_operators_type_them() {
        assert_eq!(
            parse_sizes("300x250, 728 x 90"),
            Some(vec![[300, 250], [728, 90]])
        );
        for bad in ["", "banner", "300x", "0x250", "300x250,", "70000x1"] {
            assert_eq!(parse_sizes(bad), None, "{bad}");
        }
        assert_eq!(parse_amount(""), Some(0.0));
        assert_eq!(parse_amount("0.5"), Some(0.5));
        assert_eq!(parse_amount("cheap"), None);
        assert_eq!(parse_amount("inf"), None);
    }
}
