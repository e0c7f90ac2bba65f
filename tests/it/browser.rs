//! A headless Chromium driven over WebDriver, for tests that must see what a person's browser
//! does with the pages and creatives bourse serves: iframes, sandboxes, clicks, navigation.
//!
//! [`start`] launches the system's `chromedriver` on a free loopback port, in its own process
//! group, and opens a session with a headless `chromium` on a fresh, throw-away profile. Nothing
//! is downloaded: both binaries come from the machine (on Debian,
//! `apt-get install -y chromium chromium-driver`), found through `BOURSE_CHROMEDRIVER` /
//! `BOURSE_CHROMIUM` or `PATH`, and the WebDriver client (`fantoccini`, default features off)
//! talks plain HTTP to loopback.
//!
//! Every call is bounded in time. [`Browser::close`] ends the session and then the driver; if a
//! test panics first, dropping the [`Browser`] kills chromedriver's whole process group (and
//! with it chromium) and removes the profile, so no browser outlives its test.
//!
//! ```ignore
//! let browser = browser::start().await?;
//! browser.goto("http://127.0.0.1:8080/").await?;
//! browser.enter_frame("iframe#ad").await?;
//! browser.click("a#clickthrough").await?;
//! browser.leave_frame().await?;
//! browser.close().await?;
//! ```

#![allow(dead_code, reason = "a toolkit: no one test uses every helper")]

use anyhow::{Context, Result, anyhow, bail};
use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WindowHandle};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep, timeout};

/// How long [`Browser::click`] and [`Browser::enter_frame`] wait for their element to appear.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// The bound on any single WebDriver command (a page load included).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// How long chromedriver gets to answer `/status` as ready.
const DRIVER_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long chromium gets to start and open the session (a cold start on 2 busy cores is slow).
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`Browser::close`] waits for the session to end before killing the processes.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the `wait_*` helpers poll.
const POLL: Duration = Duration::from_millis(50);

/// Browser window size, also passed to chromium as `--window-size`.
pub const WINDOW: (u32, u32) = (1280, 900);

/// What to tell someone whose machine lacks the browser or its driver.
const INSTALL_HINT: &str = "install both with `apt-get install -y chromium chromium-driver` \
     (Debian; their versions must match), or point BOURSE_CHROMIUM and BOURSE_CHROMEDRIVER \
     at a matching chromium and chromedriver";

/// A headless chromium session and the chromedriver process behind it.
///
/// The fantoccini [`Client`] is public for anything the helpers do not cover; the helpers
/// add time bounds and error messages that say what was being waited for.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Driver,
    /// Held for the browser's life: one chromium at a time per test process.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// Chromium sessions run one at a time: two cold starts at once on a busy 2-core machine can
/// each miss their start-up deadline.
static SLOT: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(tokio::sync::Semaphore::new(1)));

/// The chromedriver child process and the temporary directory holding the chromium profile
/// and the driver's log. Dropping it kills the driver's process group and removes the
/// directory.
struct Driver {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

/// Starts chromedriver and a headless chromium on a fresh profile, on a blank page.
///
/// Fails, saying what to install, when either binary is missing; fails with the tail of
/// chromedriver's log when the driver or browser does not come up in time.
pub async fn start() -> Result<Browser> {
    let chromedriver = find_binary("BOURSE_CHROMEDRIVER", &["chromedriver"])?;
    let chromium = find_binary(
        "BOURSE_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    )?;
    let slot = SLOT
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| anyhow!("the browser slot was closed"))?;
    // The free port is found by binding and releasing it, so another process can take it in
    // between: chromedriver then exits at once and another port is tried. A session that does
    // not open in time (a cold chromium on a loaded machine) gets one more try too.
    let mut last_error = None;
    for _ in 0..3 {
        let driver = Driver::spawn(&chromedriver)?;
        match driver.wait_ready().await {
            Ok(()) => match connect(driver, &chromium).await {
                Ok((client, driver)) => {
                    return Ok(Browser {
                        client,
                        driver,
                        _slot: slot,
                    });
                }
                Err(e) => last_error = Some(e),
            },
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("chromedriver did not start")))
}

/// Opens the WebDriver session on a driver that answers `/status` as ready.
async fn connect(driver: Driver, chromium: &Path) -> Result<(Client, Driver)> {
    let profile = driver.dir.join("profile");
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        format!("--user-data-dir={}", profile.display()),
        "--no-first-run".to_owned(),
        "--no-default-browser-check".to_owned(),
        "--disable-extensions".to_owned(),
        format!("--window-size={},{}", WINDOW.0, WINDOW.1),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        "pageLoadStrategy": "normal",
        "timeouts": {
            "implicit": 0,
            "pageLoad": COMMAND_TIMEOUT.as_millis() as u64,
            "script": COMMAND_TIMEOUT.as_millis() as u64,
        },
        "goog:chromeOptions": {
            "binary": chromium,
            "args": args,
        },
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!("a JSON object literal")
    };
    let capabilities: Capabilities = capabilities;
    let url = format!("http://127.0.0.1:{}", driver.port);
    let mut builder = ClientBuilder::new(HttpConnector::new());
    builder.capabilities(capabilities);
    let session = builder.connect(&url);
    let client = match timeout(SESSION_TIMEOUT, session).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => bail!(
            "chromedriver could not start {} ({INSTALL_HINT}): {e}\n{}",
            chromium.display(),
            driver.log_tail()
        ),
        Err(_) => bail!(
            "chromium ({}) did not open a session within {SESSION_TIMEOUT:?}\n{}",
            chromium.display(),
            driver.log_tail()
        ),
    };
    Ok((client, driver))
}

impl Browser {
    /// Loads `url` in the current window and waits for its load event.
    pub async fn goto(&self, url: &str) -> Result<()> {
        bounded(&format!("loading {url}"), self.client.goto(url)).await
    }

    /// The URL of the current window's top-level page (also while inside a frame).
    pub async fn current_url(&self) -> Result<url::Url> {
        bounded("reading the current URL", self.client.current_url()).await
    }

    /// Polls until an element matching the CSS selector `css` exists in the current frame, for
    /// at most `within`.
    pub async fn wait_for(&self, css: &str, within: Duration) -> Result<Element> {
        let deadline = Instant::now() + within;
        loop {
            match bounded(
                &format!("looking for `{css}`"),
                self.client.find(Locator::Css(css)),
            )
            .await
            {
                Ok(element) => return Ok(element),
                Err(e) if !is_no_such_element(&e) => return Err(e),
                Err(_) if Instant::now() >= deadline => {
                    let url = self
                        .current_url()
                        .await
                        .map(String::from)
                        .unwrap_or_default();
                    bail!("no element matches `{css}` after {within:?} (page {url})");
                }
                Err(_) => sleep(POLL).await,
            }
        }
    }

    /// Polls until the top-level URL satisfies `ready`, for at most `within`; returns it.
    pub async fn wait_for_url(
        &self,
        within: Duration,
        ready: impl Fn(&url::Url) -> bool,
    ) -> Result<url::Url> {
        let deadline = Instant::now() + within;
        loop {
            let url = self.current_url().await?;
            if ready(&url) {
                return Ok(url);
            }
            if Instant::now() >= deadline {
                bail!("the page is still at {url} after {within:?}");
            }
            sleep(POLL).await;
        }
    }

    /// Runs `js` as the body of a function in the current frame and returns what it returns
    /// (so write `return ...`). A script that throws gives an `Err` carrying the message.
    pub async fn eval(&self, js: &str) -> Result<Value> {
        self.eval_with(js, Vec::new()).await
    }

    /// [`Browser::eval`] with arguments, which the script reads as `arguments[0]`, ...
    /// (an [`Element`] passed through `serde_json::to_value` arrives as the DOM node).
    pub async fn eval_with(&self, js: &str, args: Vec<Value>) -> Result<Value> {
        bounded("running a script", self.client.execute(js, args)).await
    }

    /// The `<iframe>` and `<frame>` elements of the current frame.
    pub async fn frames(&self) -> Result<Vec<Element>> {
        bounded(
            "listing frames",
            self.client.find_all(Locator::Css("iframe, frame")),
        )
        .await
    }

    /// Waits (up to [`DEFAULT_WAIT`]) for the iframe matching `css` in the current frame and
    /// switches into it: later calls act on its document until [`Browser::leave_frame`].
    pub async fn enter_frame(&self, css: &str) -> Result<()> {
        let frame = self.wait_for(css, DEFAULT_WAIT).await?;
        bounded(&format!("entering frame `{css}`"), frame.enter_frame()).await
    }

    /// Switches from the current frame back to its parent.
    pub async fn leave_frame(&self) -> Result<()> {
        bounded("leaving a frame", self.client.enter_parent_frame()).await
    }

    /// Switches from any depth of frames back to the current window's top-level document.
    pub async fn leave_all_frames(&self) -> Result<()> {
        let window = self.window().await?;
        self.switch_to(&window).await
    }

    /// Waits (up to [`DEFAULT_WAIT`]) for the element matching `css` in the current frame and
    /// clicks it as a user would (a trusted click, with user activation).
    pub async fn click(&self, css: &str) -> Result<()> {
        let element = self.wait_for(css, DEFAULT_WAIT).await?;
        bounded(&format!("clicking `{css}`"), element.click()).await
    }

    /// The handle of the current window.
    pub async fn window(&self) -> Result<WindowHandle> {
        bounded("reading the window handle", self.client.window()).await
    }

    /// The handles of all open windows and tabs.
    pub async fn windows(&self) -> Result<Vec<WindowHandle>> {
        bounded("listing windows", self.client.windows()).await
    }

    /// Switches to `window` (top-level frame).
    pub async fn switch_to(&self, window: &WindowHandle) -> Result<()> {
        bounded(
            "switching windows",
            self.client.switch_to_window(window.clone()),
        )
        .await
    }

    /// Polls until a window not in `known` opens (a popup or `target=_blank` click-through),
    /// for at most `within`, and switches to it.
    pub async fn switch_to_new_window(
        &self,
        known: &[WindowHandle],
        within: Duration,
    ) -> Result<WindowHandle> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(new) = self
                .windows()
                .await?
                .into_iter()
                .find(|w| !known.contains(w))
            {
                self.switch_to(&new).await?;
                return Ok(new);
            }
            if Instant::now() >= deadline {
                bail!("no new window opened within {within:?}");
            }
            sleep(POLL).await;
        }
    }

    /// A PNG of the current window's viewport (write it to a file to look at it).
    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        bounded("taking a screenshot", self.client.screenshot()).await
    }

    /// The process id of chromedriver, which is also the id of the process group that holds
    /// chromium.
    pub fn driver_pid(&self) -> Option<u32> {
        self.driver.child.as_ref().map(Child::id)
    }

    /// The last lines of chromedriver's log, for failure messages.
    pub fn driver_log(&self) -> String {
        self.driver.log_tail()
    }

    /// Ends the session (chromium exits), then kills chromedriver and removes the profile.
    /// Cleans up even when ending the session fails, and then returns that error.
    pub async fn close(mut self) -> Result<()> {
        let ended = match timeout(CLOSE_TIMEOUT, self.client.clone().close()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow!(e).context("ending the WebDriver session")),
            Err(_) => Err(anyhow!("the session did not end within {CLOSE_TIMEOUT:?}")),
        };
        self.driver.stop();
        ended
    }
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("driver_pid", &self.driver_pid())
            .field("port", &self.driver.port)
            .field("dir", &self.driver.dir)
            .finish()
    }
}

impl Driver {
    /// Spawns chromedriver on a free loopback port in a new process group, logging to a fresh
    /// temporary directory that also holds the chromium profile.
    fn spawn(chromedriver: &Path) -> Result<Driver> {
        let dir = fresh_temp_dir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free loopback port")?
            .port();
        // Built before spawning so that a failure below still removes the directory.
        let mut driver = Driver {
            child: None,
            dir,
            port,
        };
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                driver.dir.join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("running {} ({INSTALL_HINT})", chromedriver.display()))?;
        driver.child = Some(child);
        Ok(driver)
    }

    /// Polls `GET /status` until chromedriver reports itself ready.
    async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + DRIVER_READY_TIMEOUT;
        loop {
            if self.child.as_ref().is_some_and(|c| process_exited(c.id())) {
                bail!(
                    "chromedriver exited before becoming ready (its port taken, or the binary \
                     does not run here)\n{}",
                    self.log_tail()
                );
            }
            if let Ok(true) = timeout(Duration::from_secs(1), status_ready(self.port)).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let port = self.port;
                bail!(
                    "chromedriver did not report ready on port {port} within \
                     {DRIVER_READY_TIMEOUT:?}\n{}",
                    self.log_tail()
                );
            }
            sleep(POLL).await;
        }
    }

    /// The last 40 lines of chromedriver's log.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- chromedriver log (last lines) ---\n{tail}")
    }

    /// Kills chromedriver's process group (chromium and its helpers with it), reaps
    /// chromedriver and removes the temporary directory. Safe to call twice.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The group id is chromedriver's pid (process_group(0)); `kill` with a negative
            // id signals the whole group. Plain `Child::kill` is the fallback for the driver.
            let group = format!("-{}", child.id());
            let killed = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !killed {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if self.dir.exists() {
            // Chromium's helpers may still be writing for a moment after the kill.
            for _ in 0..10 {
                if std::fs::remove_dir_all(&self.dir).is_ok() || !self.dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs one WebDriver call under [`COMMAND_TIMEOUT`], naming `what` in any error.
async fn bounded<T, E>(what: &str, call: impl Future<Output = Result<T, E>>) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match timeout(COMMAND_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!("{what} failed"))),
        Err(_) => bail!("{what} took longer than {COMMAND_TIMEOUT:?}"),
    }
}

/// Whether `e` is WebDriver's "no such element" (as opposed to a lost session, say).
fn is_no_such_element(e: &anyhow::Error) -> bool {
    e.downcast_ref::<fantoccini::error::CmdError>()
        .is_some_and(fantoccini::error::CmdError::is_no_such_element)
}

/// One HTTP/1.1 `GET /status` to chromedriver; true when it answers `"ready": true`.
/// Reads until the body parses as JSON: chromedriver may keep the connection open.
async fn status_ready(port: u16) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request =
        format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
        }
        let text = String::from_utf8_lossy(&response);
        let Some((_, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        if let Ok(status) = serde_json::from_str::<Value>(body) {
            return status.pointer("/value/ready").and_then(Value::as_bool) == Some(true);
        }
    }
}

/// Whether process `pid` is gone or a zombie (exited, not yet reaped). Reads /proc because
/// `Child::try_wait` needs `&mut` and would reap.
fn process_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// Resolves a binary from the environment variable `var` (a path, or a name looked up in
/// `PATH`) or else the first of `names` found in `PATH`.
fn find_binary(var: &str, names: &[&str]) -> Result<PathBuf> {
    if let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        let wanted = PathBuf::from(&value);
        let found = if wanted.components().count() > 1 {
            is_executable(&wanted).then_some(wanted.clone())
        } else {
            search_path(&wanted)
        };
        return found.ok_or_else(|| {
            anyhow!(
                "{var}={} is not an executable file; unset it or {INSTALL_HINT}",
                wanted.display()
            )
        });
    }
    names
        .iter()
        .find_map(|name| search_path(Path::new(name)))
        .ok_or_else(|| {
            anyhow!(
                "no {} in PATH, and {var} is not set: {INSTALL_HINT}",
                names.join(" or ")
            )
        })
}

/// The first executable file called `name` in a directory of `PATH`.
fn search_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Creates a directory under the system temp dir that no other `Browser`, in this or another
/// process, uses.
fn fresh_temp_dir() -> Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    loop {
        let dir = std::env::temp_dir().join(format!(
            "bourse-browser-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("creating {}", dir.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    /// The publisher page: an ad slot as a sandboxed iframe whose creative links, in a new
    /// tab, to the advertiser's landing page.
    ///
    /// The sandbox is the one ad servers give creatives: scripts run, but in an opaque origin
    /// (no `allow-same-origin`), so the creative cannot touch the publisher's page; it cannot
    /// navigate the publisher's page either (no `allow-top-navigation*`), so a click-through
    /// opens a new tab (`target=_blank`, allowed by `allow-popups`), and
    /// `allow-popups-to-escape-sandbox` lets the landing page load as an ordinary,
    /// unsandboxed page. The publisher's tab stays where it was.
    ///
    /// The other common setup, `allow-top-navigation-by-user-activation` with `target=_top`,
    /// works with this driver too: a WebDriver click is a trusted click with user activation,
    /// so it navigates the top page, while the same navigation from script alone is refused.
    fn publisher_page(port: u16) -> String {
        let creative = format!(
            "<!doctype html><body style='margin:0'>\
             <a id='l' href='http://127.0.0.1:{port}/landing' target='_blank' \
             style='display:block;width:300px;height:250px;background:#fc0'>go</a></body>"
        );
        format!(
            "<!doctype html><html><head><title>publisher</title></head><body>\
             <h1>publisher</h1>\
             <iframe id=ad width=300 height=250 frameborder=0 scrolling=no \
             sandbox=\"allow-scripts allow-popups allow-popups-to-escape-sandbox\" \
             srcdoc=\"{}\"></iframe></body></html>",
            creative.replace('&', "&amp;").replace('"', "&quot;")
        )
    }

    /// The advertiser's landing page.
    const LANDING_PAGE: &str = "<!doctype html><title>landing</title><h1 id=landed>landed</h1>";

    /// Serves `/` (the publisher page) and `/landing` on 127.0.0.1; counts landing hits.
    async fn serve_pages() -> (u16, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let landings = Arc::new(AtomicUsize::new(0));
        let counter = landings.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: http::Request<Incoming>| {
                            let (status, body) = match req.uri().path() {
                                "/" => (200, publisher_page(port)),
                                "/landing" => {
                                    counter.fetch_add(1, Ordering::SeqCst);
                                    (200, LANDING_PAGE.to_owned())
                                }
                                _ => (404, String::new()),
                            };
                            let response = http::Response::builder()
                                .status(status)
                                .header("content-type", "text/html; charset=utf-8")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap();
                            async move { Ok::<_, Infallible>(response) }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (port, landings, server)
    }

    /// Live (not zombie) processes whose process group is `group`.
    fn live_processes_in_group(group: u32) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    return false;
                };
                let Some((_, rest)) = stat.rsplit_once(')') else {
                    return false;
                };
                let fields: Vec<&str> = rest.split_whitespace().collect();
                // state ppid pgrp ...
                fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string()
            })
            .collect()
    }

    #[tokio::test]
    async fn browser_renders_a_local_page_and_follows_a_link() {
        let started = Instant::now();
        let (port, landings, server) = serve_pages().await;
        let browser = start().await.unwrap();
        let group = browser.driver_pid().unwrap();
        let home = format!("http://127.0.0.1:{port}/");
        let landing = format!("http://127.0.0.1:{port}/landing");

        browser.goto(&home).await.unwrap();
        assert_eq!(browser.frames().await.unwrap().len(), 1);
        let publisher = browser.window().await.unwrap();

        browser.enter_frame("iframe#ad").await.unwrap();
        let link = browser.wait_for("a#l", DEFAULT_WAIT).await.unwrap();
        assert_eq!(link.attr("href").await.unwrap().as_deref(), Some(&*landing));
        assert_eq!(
            link.attr("target").await.unwrap().as_deref(),
            Some("_blank")
        );

        // The creative's script runs, in an opaque origin, and the publisher's DOM is out of
        // its reach: reading it throws, which eval surfaces as an error.
        assert_eq!(
            browser.eval("return window.origin").await.unwrap(),
            json!("null")
        );
        let caught = browser
            .eval(
                "try { return String(parent.document.title); } \
                 catch (e) { return 'blocked: ' + e.name; }",
            )
            .await
            .unwrap();
        assert_eq!(caught, json!("blocked: SecurityError"));
        let thrown = browser.eval("return parent.document.title").await;
        assert!(thrown.is_err(), "read the parent's DOM: {thrown:?}");

        let known = browser.windows().await.unwrap();
        browser.click("a#l").await.unwrap();
        browser.leave_frame().await.unwrap();
        assert_eq!(
            browser.eval("return document.title").await.unwrap(),
            json!("publisher")
        );
        browser
            .switch_to_new_window(&known, DEFAULT_WAIT)
            .await
            .unwrap();
        let landed = browser
            .wait_for_url(DEFAULT_WAIT, |u| u.path() == "/landing")
            .await
            .unwrap();
        assert_eq!(landed.as_str(), landing);
        let heading = browser.wait_for("h1#landed", DEFAULT_WAIT).await.unwrap();
        assert_eq!(heading.text().await.unwrap(), "landed");
        // Escaped the sandbox: the landing page has its real origin.
        assert_eq!(
            browser.eval("return window.origin").await.unwrap(),
            json!(format!("http://127.0.0.1:{port}"))
        );
        assert_eq!(landings.load(Ordering::SeqCst), 1);

        // The publisher's tab did not move.
        browser.switch_to(&publisher).await.unwrap();
        assert_eq!(browser.current_url().await.unwrap().as_str(), home);

        browser.close().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !live_processes_in_group(group).is_empty() && Instant::now() < deadline {
            sleep(POLL).await;
        }
        assert_eq!(live_processes_in_group(group), Vec::<u32>::new());
        server.abort();
        // Typically 2-5 s; every step is bounded, but wall time is not asserted: a cold
        // chromium on a loaded 2-core machine has taken over 20 s.
        eprintln!("browser self-test took {:?}", started.elapsed());
    }
}
