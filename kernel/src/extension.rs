//! Extensions: components that live once per process beside the kernel's own services, each
//! configured by a top-level table of its own (e.g. `[sites]`, the store, mail and payments
//! every paying site shares). The binary registers them; every plugin reaches them through its
//! context. Like the services, an extension starts before the plugins, takes a changed table
//! live (before the plugins that use it restart on it) and stops after them.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::plugin::PathSegment;
use crate::{ConfigIssue, PluginError};

/// A process-wide component with its own top-level config table.
pub trait Extension: Send + Sync + 'static {
    /// The table's name (`sites` for `[sites]`).
    const NAME: &'static str;
    /// The table, typed. An absent table is `Default`.
    type Config: serde::de::DeserializeOwned + Default + PartialEq + Send + Sync + 'static;
    /// What plugins get.
    type Shared: Send + Sync + 'static;

    /// Checks beyond types; paths relative to the table.
    fn check(_config: &Self::Config) -> Vec<ConfigIssue> {
        Vec::new()
    }

    /// Builds the shared component from the table, once, before any plugin starts.
    fn start(
        config: &Self::Config,
        metrics: &crate::Metrics,
    ) -> impl Future<Output = Result<Self::Shared, PluginError>> + Send;

    /// Takes a changed table live. An error refuses the whole apply and must leave the
    /// component as it was.
    fn reconfigure(
        shared: &Self::Shared,
        config: &Self::Config,
    ) -> impl Future<Output = Result<(), PluginError>> + Send;

    /// Flushes and stops background work by `deadline`, after every plugin stopped.
    fn stop(
        _shared: &Self::Shared,
        _deadline: tokio::time::Instant,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// An extension's typed config, erased.
pub(crate) type AnyExtensionConfig = Arc<dyn Any + Send + Sync>;

/// [`Extension`] with its types erased, as the kernel stores it.
pub(crate) trait ErasedExtension: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn type_id(&self) -> TypeId;
    /// Deserializes and checks a table (`None`: absent, the default).
    fn parse(
        &self,
        table: Option<toml::Value>,
    ) -> Result<AnyExtensionConfig, (Vec<PathSegment>, String)>;
    fn issues(&self, config: &AnyExtensionConfig) -> Vec<ConfigIssue>;
    fn same(&self, a: &AnyExtensionConfig, b: &AnyExtensionConfig) -> bool;
    fn start<'a>(
        &'a self,
        config: &'a AnyExtensionConfig,
        metrics: &'a crate::Metrics,
    ) -> BoxFuture<'a, Result<Arc<dyn Any + Send + Sync>, PluginError>>;
    fn reconfigure<'a>(
        &'a self,
        shared: &'a Arc<dyn Any + Send + Sync>,
        config: &'a AnyExtensionConfig,
    ) -> BoxFuture<'a, Result<(), PluginError>>;
    fn stop<'a>(
        &'a self,
        shared: &'a Arc<dyn Any + Send + Sync>,
        deadline: tokio::time::Instant,
    ) -> BoxFuture<'a, ()>;
}

pub(crate) struct Erased<E>(std::marker::PhantomData<fn() -> E>);

impl<E: Extension> Erased<E> {
    pub(crate) fn new() -> Self {
        Erased(std::marker::PhantomData)
    }
}

impl<E: Extension> ErasedExtension for Erased<E> {
    fn name(&self) -> &'static str {
        E::NAME
    }

    fn type_id(&self) -> TypeId {
        TypeId::of::<E>()
    }

    fn parse(
        &self,
        table: Option<toml::Value>,
    ) -> Result<AnyExtensionConfig, (Vec<PathSegment>, String)> {
        let config: E::Config = match table {
            None => E::Config::default(),
            Some(table) => serde_path_to_error::deserialize(table).map_err(|error| {
                let path = crate::plugin::segments(error.path());
                (path, error.into_inner().message().to_owned())
            })?,
        };
        Ok(Arc::new(config))
    }

    fn issues(&self, config: &AnyExtensionConfig) -> Vec<ConfigIssue> {
        config
            .downcast_ref::<E::Config>()
            .map(E::check)
            .unwrap_or_default()
    }

    fn same(&self, a: &AnyExtensionConfig, b: &AnyExtensionConfig) -> bool {
        match (a.downcast_ref::<E::Config>(), b.downcast_ref::<E::Config>()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    fn start<'a>(
        &'a self,
        config: &'a AnyExtensionConfig,
        metrics: &'a crate::Metrics,
    ) -> BoxFuture<'a, Result<Arc<dyn Any + Send + Sync>, PluginError>> {
        Box::pin(async move {
            let config = config
                .downcast_ref::<E::Config>()
                .ok_or_else(|| PluginError(format!("[{}]: config of the wrong type", E::NAME)))?;
            let shared = E::start(config, metrics).await?;
            Ok(Arc::new(shared) as Arc<dyn Any + Send + Sync>)
        })
    }

    fn reconfigure<'a>(
        &'a self,
        shared: &'a Arc<dyn Any + Send + Sync>,
        config: &'a AnyExtensionConfig,
    ) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            match (
                shared.downcast_ref::<E::Shared>(),
                config.downcast_ref::<E::Config>(),
            ) {
                (Some(shared), Some(config)) => E::reconfigure(shared, config).await,
                _ => Err(PluginError(format!("[{}]: wrong types", E::NAME))),
            }
        })
    }

    fn stop<'a>(
        &'a self,
        shared: &'a Arc<dyn Any + Send + Sync>,
        deadline: tokio::time::Instant,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(shared) = shared.downcast_ref::<E::Shared>() {
                E::stop(shared, deadline).await;
            }
        })
    }
}

/// The running extensions, by type, as plugins reach them (`PluginCtx::extension`).
#[derive(Clone, Default)]
pub struct Extensions {
    running: Arc<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Extensions({})", self.running.len())
    }
}

impl Extensions {
    pub(crate) fn new(running: HashMap<TypeId, Arc<dyn Any + Send + Sync>>) -> Self {
        Extensions {
            running: Arc::new(running),
        }
    }

    pub(crate) fn state(&self, id: TypeId) -> Option<Arc<dyn Any + Send + Sync>> {
        self.running.get(&id).cloned()
    }

    /// The shared component of extension `E`, when the binary registered it.
    pub fn get<E: Extension>(&self) -> Option<&E::Shared> {
        self.running
            .get(&TypeId::of::<E>())
            .and_then(|shared| shared.downcast_ref::<E::Shared>())
    }
}
