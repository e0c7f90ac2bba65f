//! Host-side bindings generated from `plugins/wit`: the site world (which also defines the
//! shared `bourse:host` interfaces) and the exchange-hooks world reusing them.

/// `bourse:site/site` and the `bourse:host` interfaces.
pub mod site {
    wasmtime::component::bindgen!({
        path: ["../plugins/wit/host", "../plugins/wit/site"],
        world: "bourse:site/site",
        imports: { default: trappable },
    });
}

/// `bourse:exchange-hooks/hooks`.
pub mod hooks {
    wasmtime::component::bindgen!({
        path: ["../plugins/wit/host", "../plugins/wit/exchange-hooks"],
        world: "bourse:exchange-hooks/hooks",
        imports: { default: trappable },
        with: { "bourse:host": crate::bindings::site::bourse::host },
    });
}
