//! `bourse demo`: the exchange on embedded defaults with simulated bidders on loopback, the
//! courses site with its two sample courses, the TEST MODE checkout and mails printed on the
//! console, and a `wasm` instance watching a fresh plugin folder with a signing key of its own.

use anyhow::Context;
use bourse_sim::bidder::{SimBidder, SimBidderHandle};
use std::fmt::Write as _;
use std::net::SocketAddr;

/// A running demo: the simulated bidders and the config text the exchange was started with.
pub struct Demo {
    /// The simulated demand partners, kept alive for the demo's lifetime.
    pub bidders: Vec<SimBidderHandle>,
    /// The generated configuration (TOML).
    pub config: String,
    /// The demo's admin password for user `admin`, generated for this run and printed once.
    pub admin_password: String,
    /// The watched folder of the demo's `wasm` instance and the signing key it trusts.
    pub plugins: DemoPlugins,
}

/// Where the demo takes WebAssembly plugins from, and the key that may sign them.
pub struct DemoPlugins {
    pub dir: std::path::PathBuf,
    pub signing_key: std::path::PathBuf,
}

/// A fresh plugin folder and signing key for this run, and the `wasm` table trusting that key.
fn demo_plugins() -> anyhow::Result<(DemoPlugins, String)> {
    let root = std::env::temp_dir().join(format!(
        "bourse-demo-plugins-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let signing_key = root.join("demo-signing-key.pem");
    let public = crate::plugin_cli::keygen(&signing_key)?;
    let table = format!(
        "
[plugins.wasm]
dir = {:?}
[plugins.wasm.trusted_keys]
demo = {public:?}
",
        dir.display().to_string()
    );
    Ok((DemoPlugins { dir, signing_key }, table))
}

/// Starts the demo bidders and writes a configuration that points the exchange at them.
pub async fn start_bidders(listen: SocketAddr) -> anyhow::Result<Demo> {
    let mut bidders = Vec::new();
    let mut config = format!(
        "[server]\nlisten = \"{listen}\"\n\n[log]\nformat = \"text\"\nlevel = \"info\"\n\n\
         [plugins.exchange]\ncurrency = \"USD\"\nfee = 0.1\npublic_url = \"http://{listen}\"\n\
         schain_asi = \"bourse.example\"\n\n[plugins.exchange.rates]\nEUR = 1.08\nGBP = 1.27\n\n\
         [plugins.exchange.floors]\nenabled = true\nmin_observations = 200\n\n\
         [[plugins.exchange.publishers]]\nid = \"demo-news\"\nname = \"Demo News\"\n\n\
         [[plugins.exchange.placements]]\nid = \"demo-top\"\npublisher = \"demo-news\"\n\
         sizes = [[728, 90], [970, 250]]\nfloor = 0.2\n\n\
         [[plugins.exchange.placements]]\nid = \"demo-side\"\npublisher = \"demo-news\"\n\
         sizes = [[300, 250]]\nfloor = 0.1\n"
    );
    for sim in bourse_sim::demo::demo_bidders() {
        let name = sim.name.clone();
        let media: Vec<String> = sim
            .media
            .iter()
            .map(|m| format!("\"{}\"", m.as_str()))
            .collect();
        let handle = SimBidder::spawn(sim, "127.0.0.1:0".parse()?)
            .await
            .with_context(|| format!("starting simulated bidder {name}"))?;
        write!(
            config,
            "\n[[plugins.exchange.bidders]]\nname = \"{name}\"\nendpoint = \"{}\"\ntimeout_ms = 150\nmedia = [{}]\n\
             # A simulated partner on loopback: its notice URLs may name it.\n\
             notice_allowed_hosts = [\"{}\"]\n",
            handle.endpoint(),
            media.join(", "),
            handle.endpoint_host()
        )?;
        bidders.push(handle);
    }
    // A fresh admin user for this run, in a users file of its own.
    let admin_password: String = {
        let bytes: [u8; 12] = rand::random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    let users_file =
        std::env::temp_dir().join(format!("bourse-demo-admin-{}.json", std::process::id()));
    bourse_admin::Users::set_password(&users_file, "admin", &admin_password)
        .context("creating the demo's admin user")?;
    write!(
        config,
        "\n[plugins.admin]\nusers_file = {:?}\n",
        users_file.display().to_string()
    )?;
    let (plugins, table) = demo_plugins()?;
    config.push_str(&table);
    config.push_str(&courses_tables(listen));
    Ok(Demo {
        bidders,
        config,
        admin_password,
        plugins,
    })
}

/// The courses site of the demo: the sample courses in a store of this run, the TEST MODE
/// checkout, and no `[sites.mail]`, so every mail (with its verification or reset link) is
/// printed on the console.
fn courses_tables(listen: SocketAddr) -> String {
    let run_secret: String = {
        let bytes: [u8; 16] = rand::random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    let run = std::env::temp_dir().join(format!("bourse-demo-sites-{}", &run_secret[..12]));
    format!(
        "\n[sites.store]\npath = {:?}\n\n\
         [plugins.courses]\ntitle = \"Demo courses\"\npublic_url = \"http://{listen}/courses\"\n\
         sample_courses = true\nfiles_dir = {:?}\n\n\
         [plugins.courses.stripe]\nsecret_key = \"sk_test_demo\"\n\
         webhook_secret = \"whsec_demo_{run_secret}\"\ntest_mode = true\n",
        run.join("sites.db").display().to_string(),
        run.join("course-files").display().to_string(),
    )
}

/// A publisher's article page carrying the two demo placements and the ad tag of the exchange
/// at `exchange`.
pub fn publisher_page(exchange: SocketAddr) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Demo News</title>\
         <style>body{{font:16px/1.5 sans-serif;max-width:980px;margin:2em auto;padding:0 1em}}\
         .bourse-ad{{margin:1em 0}}</style></head><body>\
         <div class=\"bourse-ad\" data-placement=\"demo-top\" data-sizes=\"728x90,970x250\"></div>\
         <h1>Demo News</h1><p>A publisher page with two ad slots. Each ad is bought in a real \
         auction among the demo's simulated partners, rendered in a sandboxed iframe and billed \
         once when it renders.</p>\
         <div class=\"bourse-ad\" data-placement=\"demo-side\" data-sizes=\"300x250\"></div>\
         <script async src=\"http://{exchange}/tag.js\"></script></body></html>"
    )
}

/// Serves [`publisher_page`] on a loopback port until the process ends; returns the address.
pub async fn serve_publisher_page(exchange: SocketAddr) -> anyhow::Result<SocketAddr> {
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the demo publisher page")?;
    let addr = listener.local_addr()?;
    let page = bytes::Bytes::from(publisher_page(exchange));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let page = page.clone();
            let service = hyper::service::service_fn(move |_req| {
                let mut response = http::Response::new(http_body_util::Full::new(page.clone()));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/html; charset=utf-8"),
                );
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Ok(addr)
}

/// What to try once the demo runs.
pub fn instructions(addr: SocketAddr, page: SocketAddr, demo: &Demo) -> String {
    let admin_password = &demo.admin_password;
    let (plugin_dir, signing_key) = (
        demo.plugins.dir.display(),
        demo.plugins.signing_key.display(),
    );
    format!(
        "bourse demo is listening on http://{addr}\n\n\
         The admin: http://{addr}/admin  (user admin, password {admin_password}, for this run only)\n\
         A courses site: http://{addr}/courses/  (TEST MODE checkout: no real payment; its mails,\n  \
         with their verification links, are printed below)\n\
         A publisher page with the ad tag (open it in a browser): http://{page}/\n\
         Its revenue ledger: curl -s http://{addr}/ledger   reach: curl -s http://{addr}/reach\n\n\
         An auction (a 300x250 banner with a 0.50 USD floor):\n  \
         curl -s -X POST http://{addr}/openrtb2/auction -H 'content-type: application/json' \\\n    \
         -d '{{\"id\":\"demo-1\",\"tmax\":250,\"imp\":[{{\"id\":\"1\",\"banner\":{{\"format\":[{{\"w\":300,\"h\":250}}]}},\"bidfloor\":0.5}}],\"site\":{{\"page\":\"https://news.example/article\",\"publisher\":{{\"id\":\"pub-1\"}}}}}}'\n\n\
         A request nobody bids on (a floor of 1000 USD) answers 204:\n  \
         curl -si -X POST http://{addr}/openrtb2/auction -d '{{\"id\":\"demo-2\",\"imp\":[{{\"id\":\"1\",\"banner\":{{\"w\":300,\"h\":250}},\"bidfloor\":1000}}]}}'\n\n\
         Metrics: curl -s http://{addr}/metrics | grep bourse_\n\n\
         WebAssembly plugins (plugins/README.md): build one (plugins/build.sh builds the examples),\n\
         sign it with this run's key and drop it in; the admin's Plugins page shows it:\n  \
         bourse plugin sign {signing_key} plugins/dist/floor-rule.wasm plugins/dist/floor-rule.toml floor-rule.plugin\n  \
         bourse plugin install floor-rule.plugin --dir {plugin_dir}\n\n\
         Press Ctrl-C to stop.\n"
    )
}
