//! Publishers and placements: paginated lists, the tag snippet ready to copy, and forms that
//! create, edit and disable them, applied live; a refusal shows beside the field it names.

use super::{ListView, entry, list, number, render};
use crate::exchange::Exchange;
use askama::Template;
use bourse_kernel::admin::{AdminReply, AdminRequest, FieldErrors, Form, Pager, SortKey};
use http::StatusCode;

const PUBLISHER_FIELDS: &[&str] = &["id", "name", "domain"];
const PLACEMENT_FIELDS: &[&str] = &["id", "publisher", "sizes", "floor"];

const PUBLISHER_COLUMNS: &[(&str, &str)] = &[
    ("id", "Publisher"),
    ("name", "Name"),
    ("domain", "Domain"),
    ("placements", "Placements"),
    ("state", "State"),
];
const PLACEMENT_COLUMNS: &[(&str, &str)] = &[
    ("id", "Placement"),
    ("publisher", "Publisher"),
    ("sizes", "Sizes"),
    ("floor", "Floor"),
    ("state", "State"),
];
/// Publishers and placements filter by whether they are enabled.
const STATE_FILTER: (&str, &[&str]) = ("State", &["enabled", "disabled"]);

/// `enabled` or `disabled`, as the lists show and filter it.
fn state_word(enabled: bool) -> &'static str {
    if enabled { "enabled" } else { "disabled" }
}

#[derive(Template)]
#[template(path = "publishers.html")]
struct PublishersPage<'a> {
    base: &'a str,
    csrf: &'a str,
    publishers: Vec<PublisherRow>,
    list: ListView,
    pager: Pager,
    form: PublisherForm,
    errors: FieldErrors,
    editing: bool,
}

#[derive(Template)]
#[template(path = "publisher_edit.html")]
struct PublisherEditPage<'a> {
    base: &'a str,
    csrf: &'a str,
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
    base: &'a str,
    csrf: &'a str,
    placements: Vec<PlacementRow>,
    list: ListView,
    pager: Pager,
    publishers: Vec<String>,
    form: PlacementForm,
    errors: FieldErrors,
    editing: bool,
}

#[derive(Template)]
#[template(path = "placement_edit.html")]
struct PlacementEditPage<'a> {
    base: &'a str,
    csrf: &'a str,
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
    floor_cpm: f64,
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

/// A placement form read into config values.
struct PlacementValues {
    sizes: Vec<[i64; 2]>,
    floor: f64,
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

    /// The form's values (defaults where a field cannot be read) and which fields cannot be read.
    fn values(&self) -> (PlacementValues, FieldErrors) {
        let mut errors = FieldErrors::default();
        let sizes = parse_sizes(&self.sizes);
        if sizes.is_none() {
            errors.set("sizes", "Write sizes as 300x250,728x90.");
        }
        let floor = parse_amount(&self.floor);
        if floor.is_none() {
            errors.set("floor", "The floor is a number, e.g. 0.50.");
        }
        let values = PlacementValues {
            sizes: sizes.unwrap_or_else(|| vec![[300, 250]]),
            floor: floor.unwrap_or(0.0),
        };
        (values, errors)
    }

    fn write(&self, values: &PlacementValues, table: &mut toml_edit::Table) {
        table["id"] = toml_edit::value(self.id.as_str());
        table["publisher"] = toml_edit::value(self.publisher.as_str());
        let mut size_list = toml_edit::Array::new();
        for [w, h] in &values.sizes {
            let mut pair = toml_edit::Array::new();
            pair.push(*w);
            pair.push(*h);
            size_list.push(pair);
        }
        table["sizes"] = toml_edit::value(size_list);
        table["floor"] = toml_edit::value(values.floor);
        table["enabled"] = toml_edit::value(self.enabled);
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
pub(super) fn parse_amount(text: &str) -> Option<f64> {
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

fn tag_snippet(public_url: &str, id: &str, sizes: &str) -> String {
    format!(
        "<div class=\"bourse-ad\" data-placement=\"{id}\" data-sizes=\"{sizes}\"></div>\n\
         <script async src=\"{}/tag.js\"></script>",
        public_url.trim_end_matches('/')
    )
}

impl Exchange {
    fn publishers_page(
        &self,
        req: &AdminRequest,
        form: PublisherForm,
        errors: FieldErrors,
    ) -> AdminReply {
        let config = &self.config;
        let rows: Vec<PublisherRow> = config
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
        let mut list = ListView::read(
            req,
            "publishers",
            "publishers",
            PUBLISHER_COLUMNS,
            STATE_FILTER,
        );
        let (publishers, pager) = list.apply(
            rows,
            |p: &PublisherRow| vec![&p.id, &p.name, &p.domain],
            |p| state_word(p.enabled),
            |p, column| match column {
                "name" => SortKey::Text(p.name.clone()),
                "domain" => SortKey::Text(p.domain.clone()),
                "placements" => SortKey::Number(p.placements as f64),
                "state" => SortKey::Text(state_word(p.enabled).into()),
                _ => SortKey::Text(p.id.clone()),
            },
        );
        render(
            "Publishers",
            "publishers",
            &PublishersPage {
                base: &req.base,
                csrf: &req.csrf,
                publishers,
                list,
                pager,
                form,
                errors,
                editing: false,
            },
        )
    }

    pub(super) fn publishers_get(&self, req: &AdminRequest) -> AdminReply {
        self.publishers_page(req, PublisherForm::default(), FieldErrors::default())
    }

    pub(super) async fn create_publisher(&self, req: &AdminRequest) -> AdminReply {
        // New publishers start enabled; the edit form turns them off.
        let form = PublisherForm {
            enabled: true,
            ..PublisherForm::from(&req.form)
        };
        let mut table = toml_edit::Table::new();
        form.write(&mut table);
        let result = self
            .change(req, |exchange| {
                list(exchange, "publishers")?.push(table);
                Ok(())
            })
            .await;
        match result {
            Ok(()) => AdminReply::saved(format!("{}/publishers", req.base), "publisher", &form.id),
            Err(refusal) => {
                let errors = FieldErrors::from_refusal(
                    &refusal,
                    &self.scope("publishers"),
                    PUBLISHER_FIELDS,
                );
                self.publishers_page(req, form, errors)
                    .with_status(StatusCode::UNPROCESSABLE_ENTITY)
            }
        }
    }

    fn publisher_edit_page(
        &self,
        req: &AdminRequest,
        form: PublisherForm,
        errors: FieldErrors,
    ) -> AdminReply {
        render(
            format!("Publisher {}", form.id),
            "publishers",
            &PublisherEditPage {
                base: &req.base,
                csrf: &req.csrf,
                form,
                errors,
                editing: true,
            },
        )
    }

    pub(super) fn publisher_edit_get(&self, req: &AdminRequest) -> AdminReply {
        let id = req.query.text("id");
        let Some(publisher) = self.config.publishers.iter().find(|p| p.id == id) else {
            return self
                .publishers_page(
                    req,
                    PublisherForm::default(),
                    FieldErrors::general(format!("No publisher `{id}` in the running config.")),
                )
                .with_status(StatusCode::NOT_FOUND);
        };
        let form = PublisherForm {
            id: publisher.id.clone(),
            name: publisher.name.clone(),
            domain: publisher.domain.clone().unwrap_or_default(),
            enabled: publisher.enabled,
        };
        self.publisher_edit_page(req, form, FieldErrors::default())
    }

    pub(super) async fn edit_publisher(&self, req: &AdminRequest) -> AdminReply {
        let form = PublisherForm::from(&req.form);
        let result = self
            .change(req, |exchange| {
                form.write(entry(exchange, "publishers", "id", &form.id)?);
                Ok(())
            })
            .await;
        match result {
            Ok(()) => AdminReply::saved(format!("{}/publishers", req.base), "publisher", &form.id),
            Err(refusal) => {
                let errors = FieldErrors::from_refusal(
                    &refusal,
                    &self.scope("publishers"),
                    PUBLISHER_FIELDS,
                );
                self.publisher_edit_page(req, form, errors)
                    .with_status(StatusCode::UNPROCESSABLE_ENTITY)
            }
        }
    }

    fn placements_page(
        &self,
        req: &AdminRequest,
        form: PlacementForm,
        errors: FieldErrors,
    ) -> AdminReply {
        let config = &self.config;
        let rows: Vec<PlacementRow> = config
            .placements
            .iter()
            .map(|p| {
                let sizes = sizes_text(&p.sizes);
                PlacementRow {
                    snippet: tag_snippet(&config.public_url, &p.id, &sizes),
                    id: p.id.clone(),
                    publisher: p.publisher.clone(),
                    floor: number(p.floor, 4),
                    floor_cpm: p.floor,
                    enabled: p.enabled,
                    sizes,
                }
            })
            .collect();
        let mut list = ListView::read(
            req,
            "placements",
            "placements",
            PLACEMENT_COLUMNS,
            STATE_FILTER,
        );
        let (placements, pager) = list.apply(
            rows,
            |p: &PlacementRow| vec![&p.id, &p.publisher, &p.sizes],
            |p| state_word(p.enabled),
            |p, column| match column {
                "publisher" => SortKey::Text(p.publisher.clone()),
                "sizes" => SortKey::Text(p.sizes.clone()),
                "floor" => SortKey::Number(p.floor_cpm),
                "state" => SortKey::Text(state_word(p.enabled).into()),
                _ => SortKey::Text(p.id.clone()),
            },
        );
        render(
            "Placements",
            "placements",
            &PlacementsPage {
                base: &req.base,
                csrf: &req.csrf,
                placements,
                list,
                pager,
                publishers: config.publishers.iter().map(|p| p.id.clone()).collect(),
                form,
                errors,
                editing: false,
            },
        )
    }

    pub(super) fn placements_get(&self, req: &AdminRequest) -> AdminReply {
        self.placements_page(req, PlacementForm::default(), FieldErrors::default())
    }

    pub(super) async fn create_placement(&self, req: &AdminRequest) -> AdminReply {
        // New placements start enabled; the edit form turns them off.
        let form = PlacementForm {
            enabled: true,
            ..PlacementForm::from(&req.form)
        };
        let (values, parsed) = form.values();
        let mut table = toml_edit::Table::new();
        form.write(&values, &mut table);
        let result = self
            .change_or_check(req, parsed, "placements", PLACEMENT_FIELDS, |exchange| {
                list(exchange, "placements")?.push(table);
                Ok(())
            })
            .await;
        match result {
            Ok(()) => AdminReply::saved(format!("{}/placements", req.base), "placement", &form.id),
            Err(errors) => self
                .placements_page(req, form, errors)
                .with_status(StatusCode::UNPROCESSABLE_ENTITY),
        }
    }

    fn placement_edit_page(
        &self,
        req: &AdminRequest,
        form: PlacementForm,
        errors: FieldErrors,
    ) -> AdminReply {
        let config = &self.config;
        let snippet = config
            .placements
            .iter()
            .find(|p| p.id == form.id)
            .map(|p| tag_snippet(&config.public_url, &p.id, &sizes_text(&p.sizes)))
            .unwrap_or_default();
        render(
            format!("Placement {}", form.id),
            "placements",
            &PlacementEditPage {
                base: &req.base,
                csrf: &req.csrf,
                publishers: config.publishers.iter().map(|p| p.id.clone()).collect(),
                form,
                errors,
                editing: true,
                snippet,
            },
        )
    }

    pub(super) fn placement_edit_get(&self, req: &AdminRequest) -> AdminReply {
        let id = req.query.text("id");
        let Some(placement) = self.config.placements.iter().find(|p| p.id == id) else {
            return self
                .placements_page(
                    req,
                    PlacementForm::default(),
                    FieldErrors::general(format!("No placement `{id}` in the running config.")),
                )
                .with_status(StatusCode::NOT_FOUND);
        };
        let form = PlacementForm {
            id: placement.id.clone(),
            publisher: placement.publisher.clone(),
            sizes: sizes_text(&placement.sizes),
            floor: number(placement.floor, 4),
            enabled: placement.enabled,
        };
        self.placement_edit_page(req, form, FieldErrors::default())
    }

    pub(super) async fn edit_placement(&self, req: &AdminRequest) -> AdminReply {
        let form = PlacementForm::from(&req.form);
        let (values, parsed) = form.values();
        let result = self
            .change_or_check(req, parsed, "placements", PLACEMENT_FIELDS, |exchange| {
                form.write(&values, entry(exchange, "placements", "id", &form.id)?);
                Ok(())
            })
            .await;
        match result {
            Ok(()) => AdminReply::saved(format!("{}/placements", req.base), "placement", &form.id),
            Err(errors) => self
                .placement_edit_page(req, form, errors)
                .with_status(StatusCode::UNPROCESSABLE_ENTITY),
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
