//! placeholder
pub enum DirEvent {}
pub struct PluginDirWatcher;
