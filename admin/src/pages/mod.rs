//! The shell's own pages, each an askama template in `admin/templates/`: the overview (every
//! section's summary and the plugin list), the plugin list, and the config history.

pub(crate) mod history;
pub(crate) mod overview;
