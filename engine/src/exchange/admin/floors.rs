//! Floors: the static rules (the exchange minimum, each placement's floor, whether floors are
//! learned) and, once the learner has published one, the learned floor per placement and the
//! floor in force; static floors and the rules are edited live.

use super::inventory::parse_amount;
use super::live::Families;
use super::{entry, learned_floor_text, number, render};
use crate::exchange::Exchange;
use askama::Template;
use bourse_kernel::admin::{AdminReply, AdminRequest, FieldErrors, PAGE_SIZE, Pager};
use bourse_kernel::{ConfigErrors, Refusal};
use http::StatusCode;

#[derive(Template)]
#[template(path = "floors.html")]
struct FloorsPage<'a> {
    base: &'a str,
    csrf: &'a str,
    currency: &'a str,
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

impl Exchange {
    /// `refused`: the placement whose floor edit was refused, and why; `errors`: the rules
    /// form's.
    fn floors_page(
        &self,
        req: &AdminRequest,
        page_number: usize,
        refused: Option<(String, String)>,
        errors: FieldErrors,
    ) -> AdminReply {
        let config = &self.config;
        let learned = Families::gather(&self.shared.admin.registry)
            .by("bourse_floors_learned_cpm", "placement");
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
                    learned: learned_floor_text(config.floors.enabled, learned),
                    in_force: number(in_force, 4),
                }
            })
            .collect();
        // Show the page holding the refused row, so its message is seen.
        let page_number = refused
            .as_ref()
            .and_then(|(id, _)| rows.iter().position(|r| r.placement == *id))
            .map_or(page_number, |at| at / PAGE_SIZE + 1);
        let (floors, pager) = Pager::slice(rows, page_number, format!("{}/floors", req.base));
        render(
            "Floors",
            "floors",
            &FloorsPage {
                base: &req.base,
                csrf: &req.csrf,
                currency: &config.currency,
                min_floor: number(config.min_floor, 4),
                learned_enabled: config.floors.enabled,
                exploration_share: number(config.floors.exploration_share, 4),
                floors,
                pager,
                errors,
            },
        )
    }

    pub(super) fn floors_get(&self, req: &AdminRequest) -> AdminReply {
        self.floors_page(req, req.query.page(), None, FieldErrors::default())
    }

    /// Changes one placement's static floor, live.
    pub(super) async fn set_floor(&self, req: &AdminRequest) -> AdminReply {
        let id = req.form.text("id");
        let result = match parse_amount(&req.form.text("floor")) {
            None => Err("The floor is a number, e.g. 0.50.".to_owned()),
            Some(floor) => self
                .change(req, |exchange| {
                    entry(exchange, "placements", "id", &id)?["floor"] = toml_edit::value(floor);
                    Ok(())
                })
                .await
                .map_err(|refusal| {
                    let errors =
                        FieldErrors::from_refusal(&refusal, &self.scope("placements"), &["floor"]);
                    match errors.field("floor") {
                        Some(why) => why.to_owned(),
                        None => refusal.to_string(),
                    }
                }),
        };
        match result {
            Ok(()) => AdminReply::saved(format!("{}/floors", req.base), "floor", &id),
            Err(why) => self
                .floors_page(req, 1, Some((id, why)), FieldErrors::default())
                .with_status(StatusCode::UNPROCESSABLE_ENTITY),
        }
    }

    /// Changes the exchange minimum floor and whether floors are learned, live.
    pub(super) async fn set_floor_rules(&self, req: &AdminRequest) -> AdminReply {
        let form = &req.form;
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
        let result = match (min_floor, share) {
            (Some(min_floor), Some(share)) => self
                .change(req, |exchange| {
                    exchange["min_floor"] = toml_edit::value(min_floor);
                    let floors = exchange
                        .entry("floors")
                        .or_insert(toml_edit::table())
                        .as_table_mut()
                        .ok_or_else(|| {
                            Refusal::Unavailable(format!(
                                "plugins.{}.floors is not a table",
                                self.admin.name
                            ))
                        })?;
                    floors["enabled"] = toml_edit::value(form.checked("learned"));
                    floors["exploration_share"] = toml_edit::value(share);
                    Ok(())
                })
                .await
                .map_err(|refusal| self.floor_rule_errors(&refusal)),
            _ => Err(errors),
        };
        match result {
            Ok(()) => AdminReply::saved(format!("{}/floors", req.base), "floor-rules", ""),
            Err(errors) => self
                .floors_page(req, 1, None, errors)
                .with_status(StatusCode::UNPROCESSABLE_ENTITY),
        }
    }

    /// A refusal of the rules form: each problem beside `min_floor` (in the exchange's table)
    /// or `exploration_share` (in its `floors` table) when it names one, the rest above.
    fn floor_rule_errors(&self, refusal: &Refusal) -> FieldErrors {
        if refusal.problems().is_empty() {
            return FieldErrors::general(refusal.to_string());
        }
        let places = [
            (self.table_path(), "min_floor"),
            (self.scope("floors"), "exploration_share"),
        ];
        let mut errors = FieldErrors::default();
        let mut general = Vec::new();
        for problem in refusal.problems() {
            let alone = Refusal::Invalid(ConfigErrors(vec![problem.clone()]));
            let placed = places.iter().find_map(|(scope, field)| {
                let found = FieldErrors::from_refusal(&alone, scope, &[field]);
                found.field(field).map(|why| (*field, why.to_owned()))
            });
            match placed {
                Some((field, why)) if errors.field(field).is_none() => errors.set(field, why),
                _ => general.push(problem.to_string()),
            }
        }
        if !general.is_empty() {
            errors.general = Some(general.join("\n"));
        }
        errors
    }
}
