//! The exchange config as the admin reads and changes it: the typed `[plugins.exchange]` in
//! force for display, and a `toml_edit` document of the running config text, changed in place
//! (comments and layout kept) and applied through the config center under the operator's name.

use crate::{Admin, Session};
use bourse_engine::exchange::ExchangeConfig;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table};

/// The running config, parsed for editing.
pub(crate) struct ConfigEdit {
    doc: DocumentMut,
}

impl ConfigEdit {
    /// `[plugins.exchange]`, created empty when the config has none yet.
    pub(crate) fn exchange(&mut self) -> Result<&mut Table, String> {
        let plugins = self.doc["plugins"].or_insert(toml_edit::table());
        if let Some(plugins) = plugins.as_table_mut() {
            // A `[plugins]` made here only holds sub-tables; keep it from printing as empty.
            plugins.set_implicit(true);
        }
        plugins["exchange"]
            .or_insert(toml_edit::table())
            .as_table_mut()
            .ok_or_else(|| "plugins.exchange is not a table".to_owned())
    }

    /// `plugins.exchange.<list>`, created empty when the config has none yet.
    pub(crate) fn list(&mut self, list: &str) -> Result<&mut ArrayOfTables, String> {
        self.exchange()?
            .entry(list)
            .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
            .as_array_of_tables_mut()
            .ok_or_else(|| format!("plugins.exchange.{list} is not a list of tables"))
    }

    /// The entry of `plugins.exchange.<list>` whose `key` is `id`.
    pub(crate) fn entry(&mut self, list: &str, key: &str, id: &str) -> Result<&mut Table, String> {
        self.list(list)?
            .iter_mut()
            .find(|t| t.get(key).and_then(|v| v.as_str()) == Some(id))
            .ok_or_else(|| format!("No {list} entry `{id}` in the running config."))
    }
}

impl Admin {
    /// The config text in force, as the config center last applied it.
    pub(crate) fn current_text(&self) -> String {
        self.center.current_text().unwrap_or_default()
    }

    /// The exchange's settings in force (defaults when it has none).
    pub(crate) fn exchange_config(&self) -> ExchangeConfig {
        toml::from_str::<toml::Table>(&self.current_text())
            .ok()
            .and_then(|config| config.get("plugins")?.get("exchange").cloned())
            .and_then(|exchange| exchange.try_into().ok())
            .unwrap_or_default()
    }

    pub(crate) fn edit(&self) -> Result<ConfigEdit, String> {
        let doc = self
            .current_text()
            .parse()
            .map_err(|e| format!("the running config: {e}"))?;
        Ok(ConfigEdit { doc })
    }

    /// Applies the edited config as `admin:<user>`; the error is the config center's reason
    /// (file, line, field path and rule) when it refused it.
    pub(crate) async fn apply(&self, session: &Session, edit: ConfigEdit) -> Result<(), String> {
        self.center
            .apply(edit.doc.to_string(), format!("admin:{}", session.user))
            .await
    }

    /// Appends `table` to `plugins.exchange.<list>` and applies the result.
    pub(crate) async fn append_and_apply(
        &self,
        session: &Session,
        list: &str,
        table: Table,
    ) -> Result<(), String> {
        let mut edit = self.edit()?;
        edit.list(list)?.push(table);
        self.apply(session, edit).await
    }
}
