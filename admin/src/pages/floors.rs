//! Floors: the static rules (the exchange minimum, each placement's floor, whether floors are
//! learned) and, once the learner has published one, the learned floor per placement and the
//! floor in force; static floors and the rules are edited live.

use super::{Chrome, maybe, number};
use crate::live::Families;
use crate::pages::inventory::parse_amount;
use crate::web::{FieldErrors, Form, Pager, page, redirect};
use crate::{Admin, Session};
use askama::Template;
use bourse_kernel::{Request, Response};
use http::StatusCode;

#[derive(Template)]
#[template(path = "floors.html")]
struct FloorsPage<'a> {
    chrome: Chrome<'a>,
    currency: String,
    min_floor: String,
    learned_enabled: bool,
    exploration_share: String,
    floors: Vec<FloorRow>,
    pager: Pager,
    errors: FieldErrors,
}

struct FloorRow {
    placement: String,
    publisher: String,
    enabled: bool,
    floor: String,
    learned: String,
    in_force: String,
    /// Why this placement's floor edit was refused.
    error: Option<String>,
}

impl Admin {
    /// `refused`: the placement whose floor edit was refused, and why; `errors`: the rules
    /// form's.
    fn floors_page(
        &self,
        status: StatusCode,
        session: &Session,
        page_number: usize,
        refused: Option<(String, String)>,
        errors: FieldErrors,
    ) -> Response {
        let config = self.exchange_config();
        let learned = Families::gather(&self.registry).by("bourse_floors_learned_cpm", "placement");
        let rows: Vec<FloorRow> = config
            .placements
            .iter()
            .map(|p| {
                let learned = learned
                    .get(&p.id)
                    .copied()
                    .filter(|_| config.floors.enabled);
                let in_force = p.floor.max(learned.unwrap_or(0.0));
                FloorRow {
                    error: refused
                        .as_ref()
                        .filter(|(id, _)| *id == p.id)
                        .map(|(_, why)| why.clone()),
                    placement: p.id.clone(),
                    publisher: p.publisher.clone(),
                    enabled: p.enabled,
                    floor: number(p.floor, 4),
                    learned: if config.floors.enabled {
                        maybe(learned, 4, "").replace('–', "learning")
                    } else {
                        "off".into()
                    },
                    in_force: number(in_force, 4),
                }
            })
            .collect();
        // Show the page holding the refused row, so its message is seen.
        let page_number = refused
            .as_ref()
            .and_then(|(id, _)| rows.iter().position(|r| r.placement == *id))
            .map_or(page_number, |at| at / crate::web::PAGE_SIZE + 1);
        let (floors, pager) = Pager::slice(rows, page_number, "/admin/floors");
        page(
            status,
            &FloorsPage {
                chrome: Chrome::new(session, "floors"),
                currency: config.currency,
                min_floor: number(config.min_floor, 4),
                learned_enabled: config.floors.enabled,
                exploration_share: number(config.floors.exploration_share, 4),
                floors,
                pager,
                errors,
            },
        )
    }

    pub(crate) fn floors_get(&self, req: &Request, session: &Session) -> Response {
        let page = Form::query(req).page();
        self.floors_page(StatusCode::OK, session, page, None, FieldErrors::default())
    }

    /// Changes one placement's static floor, live.
    pub(crate) async fn set_floor(&self, session: Session, form: Form) -> Response {
        let id = form.text("id");
        let result = async {
            let floor = parse_amount(&form.text("floor"))
                .ok_or_else(|| "The floor is a number, e.g. 0.50.".to_owned())?;
            let mut edit = self.edit()?;
            edit.entry("placements", "id", &id)?["floor"] = toml_edit::value(floor);
            self.apply(&session, edit).await.map_err(|refusal| {
                let errors = FieldErrors::from_refusal(&refusal, "placements", &["floor"]);
                errors.field("floor").map(str::to_owned).unwrap_or(refusal)
            })
        }
        .await;
        match result {
            Ok(()) => redirect("/admin/floors"),
            Err(why) => self.floors_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &session,
                1,
                Some((id, why)),
                FieldErrors::default(),
            ),
        }
    }

    /// Changes the exchange minimum floor and whether floors are learned, live.
    pub(crate) async fn set_floor_rules(&self, session: Session, form: Form) -> Response {
        let result = async {
            let mut errors = FieldErrors::default();
            let min_floor = parse_amount(&form.text("min_floor"));
            if min_floor.is_none() {
                errors.set("min_floor", "The minimum floor is a number, e.g. 0.05.");
            }
            let share = form.text("exploration_share");
            let share = if share.is_empty() {
                Some(0.05)
            } else {
                share.parse::<f64>().ok().filter(|s| s.is_finite())
            };
            if share.is_none() {
                errors.set("exploration_share", "The share is a fraction, e.g. 0.05.");
            }
            let (Some(min_floor), Some(share)) = (min_floor, share) else {
                return Err(errors);
            };
            let mut edit = self.edit().map_err(FieldErrors::general)?;
            let exchange = edit.exchange().map_err(FieldErrors::general)?;
            exchange["min_floor"] = toml_edit::value(min_floor);
            let floors = exchange
                .entry("floors")
                .or_insert(toml_edit::table())
                .as_table_mut()
                .ok_or_else(|| FieldErrors::general("plugins.exchange.floors is not a table"))?;
            floors["enabled"] = toml_edit::value(form.checked("learned"));
            floors["exploration_share"] = toml_edit::value(share);
            self.apply(&session, edit)
                .await
                .map_err(|refusal| floor_rule_errors(&refusal))
        }
        .await;
        match result {
            Ok(()) => redirect("/admin/floors"),
            Err(errors) => {
                self.floors_page(StatusCode::UNPROCESSABLE_ENTITY, &session, 1, None, errors)
            }
        }
    }
}

/// A refusal of the rules form, beside `min_floor` or `exploration_share` when it names them.
fn floor_rule_errors(refusal: &str) -> FieldErrors {
    let mut errors = FieldErrors::default();
    let mut general = Vec::new();
    for line in refusal.lines().filter(|l| !l.trim().is_empty()) {
        let why = |path: &str| {
            line.find(path).map(|at| {
                line[at + path.len()..]
                    .trim_start_matches(':')
                    .trim()
                    .to_owned()
            })
        };
        if let Some(why) = why("plugins.exchange.min_floor") {
            errors.set("min_floor", why);
        } else if let Some(why) = why("plugins.exchange.floors.exploration_share") {
            errors.set("exploration_share", why);
        } else {
            general.push(line.to_owned());
        }
    }
    if !general.is_empty() {
        errors.general = Some(general.join("\n"));
    }
    errors
}
