//! Outgoing HTTP to demand partners: one keep-alive pool per bidder, deadlines, gzip.
//!
//! An HTTP/1.1 partner (the default) is served by an [`Http1Pool`]: a call checks out one of
//! the partner's idle connections and drives it from the auction's own task until the answer's
//! body is read, then puts it back. hyper's pooled client keeps a task per connection and hands
//! each request and answer to it across channels, so every call woke two tasks and hashed the
//! pool's key; here the partner's socket wakes the auction directly. An HTTP/2 partner
//! (`http2 = true`: one connection carries many auctions at once) keeps hyper's pooled client
//! and its connection tasks.

use crate::bidder::{BidderRequest, BidderResponse, BidderSpec};
use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io::{Read, Write};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower_service::Service;

/// Largest bidder response body we read (decompressed).
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Why a call to a partner produced no usable HTTP response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The deadline passed before the whole response arrived.
    #[error("timed out")]
    Timeout,
    /// Connecting or sending failed.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The response body could not be read or decoded.
    #[error("bad body: {0}")]
    Body(String),
}

impl CallError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Timeout => "timeout",
            CallError::Connect(_) => "connect",
            CallError::Body(_) => "body",
        }
    }
}

/// How long an idle connection is kept for reuse.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A keep-alive connection pool to one partner.
#[derive(Clone, Debug)]
pub struct BidderClient {
    transport: Transport,
    gzip: bool,
    /// The spec's endpoint as a call needs it, read once (`None` when it does not read: a
    /// call to it then says why).
    endpoint: Option<(String, Target)>,
}

/// A partner URL read for a call: parsed, its origin, its `Host` and its origin-form target.
#[derive(Clone, Debug)]
struct Target {
    uri: Uri,
    origin: Origin,
    host: HeaderValue,
    path: Uri,
}

impl Target {
    /// Reads an absolute http or https URL.
    fn of(url: &str) -> Result<Target, CallError> {
        let uri = parse_uri(url)?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(CallError::Connect(format!("{url}: not an absolute URL")));
        };
        let origin = Origin {
            scheme: scheme.clone(),
            authority: authority.clone(),
        };
        let host = host_header(&uri)?;
        let path = Uri::from(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        Ok(Target {
            uri,
            origin,
            host,
            path,
        })
    }
}

fn parse_uri(url: &str) -> Result<Uri, CallError> {
    url.parse()
        .map_err(|e| CallError::Connect(format!("{url}: {e}")))
}

/// How a partner's requests travel.
#[derive(Clone, Debug)]
enum Transport {
    /// HTTP/1.1 connections driven by the auctions that use them.
    Http1(Arc<Http1Pool>),
    /// hyper's pooled client, for HTTP/2 (boxed: it is larger than the other by far).
    Pooled(Box<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>),
}

/// A partner connector: Nagle off, a connect timeout, http or https trusting `roots`, offering
/// HTTP/2 in TLS only to a partner that is to be spoken to in HTTP/2.
fn connector(http2: bool, roots: &Roots) -> HttpsConnector<HttpConnector> {
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(Duration::from_secs(2)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(roots.client_config())
        .https_or_http();
    if http2 {
        builder.enable_all_versions().wrap_connector(tcp)
    } else {
        builder.enable_http1().wrap_connector(tcp)
    }
}

/// The certificate authorities a partner's TLS certificate may chain to: the bundled web PKI
/// roots, plus any the partner's `ca_file` adds (a partner behind a private CA). Bid requests
/// and notices to the partner trust the same; two are equal when they add the same PEM text.
#[derive(Clone, Debug)]
pub struct Roots {
    /// The PEM text added to the web PKI roots, if any.
    pem: Option<Arc<[u8]>>,
    store: Arc<rustls::RootCertStore>,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            pem: None,
            store: Arc::new(web_pki_roots()),
        }
    }
}

impl PartialEq for Roots {
    fn eq(&self, other: &Self) -> bool {
        self.pem == other.pem
    }
}

impl Eq for Roots {}

fn web_pki_roots() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

impl Roots {
    /// The web PKI roots and every certificate in `pem` (a PEM file's text); an error names
    /// what is wrong with the file in our words.
    pub fn with_pem(pem: &[u8]) -> Result<Roots, String> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = web_pki_roots();
        let mut added = 0;
        for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
            let certificate =
                certificate.map_err(|e| format!("not a PEM file of certificates: {e}"))?;
            roots
                .add(certificate)
                .map_err(|e| format!("a certificate cannot serve as a root: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned());
        }
        Ok(Roots {
            pem: Some(Arc::from(pem)),
            store: Arc::new(roots),
        })
    }

    /// A TLS client configuration trusting these roots (ring, rustls' safe default versions).
    pub(crate) fn client_config(&self) -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports rustls' safe default protocol versions")
            .with_root_certificates(self.store.clone())
            .with_no_client_auth()
    }
}

impl BidderClient {
    /// A pool sized and shaped by the partner's spec, trusting the web PKI roots.
    pub fn new(spec: &BidderSpec) -> Self {
        Self::trusting(spec, &Roots::default())
    }

    /// A pool sized and shaped by the partner's spec, trusting `roots` over https.
    pub fn trusting(spec: &BidderSpec, roots: &Roots) -> Self {
        let transport = if spec.http2 {
            let mut builder = Client::builder(TokioExecutor::new());
            builder
                .pool_idle_timeout(IDLE_TIMEOUT)
                .pool_max_idle_per_host(spec.max_idle_connections)
                .http2_only(true);
            Transport::Pooled(Box::new(builder.build(connector(true, roots))))
        } else {
            Transport::Http1(Arc::new(Http1Pool::new(spec.max_idle_connections, roots)))
        };
        BidderClient {
            transport,
            gzip: spec.gzip,
            endpoint: Target::of(&spec.endpoint)
                .ok()
                .map(|target| (spec.endpoint.clone(), target)),
        }
    }

    /// Compresses a request body when the partner takes gzip; done once per request.
    pub fn encode_body(&self, body: &Bytes) -> Bytes {
        if !self.gzip {
            return body.clone();
        }
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 3),
            flate2::Compression::fast(),
        );
        // Writing into a Vec cannot fail.
        enc.write_all(body).expect("gzip into memory");
        Bytes::from(enc.finish().expect("gzip into memory"))
    }

    /// Sends one request and reads the whole response before `deadline`.
    pub async fn call(
        &self,
        req: &BidderRequest,
        body: Bytes,
        deadline: Instant,
    ) -> Result<BidderResponse, CallError> {
        // Almost every call goes to the spec's endpoint: read once, not once per call.
        let endpoint = (self.endpoint.as_ref())
            .filter(|(url, _)| *url == req.uri)
            .map(|(_, target)| target);
        let exchange = async {
            let (parts, bytes) = match &self.transport {
                Transport::Http1(pool) => {
                    let read;
                    let target = match endpoint {
                        Some(target) => target,
                        None => {
                            read = Target::of(&req.uri)?;
                            &read
                        }
                    };
                    pool.send(self.gzip, req, target, body).await?
                }
                Transport::Pooled(client) => {
                    let uri = match endpoint {
                        Some(target) => target.uri.clone(),
                        None => parse_uri(&req.uri)?,
                    };
                    let request = build_request(self.gzip, req, uri, None, body);
                    let response = client
                        .request(request)
                        .await
                        .map_err(|e| CallError::Connect(error_chain(&e)))?;
                    read_answer(response).await?
                }
            };
            let gzipped = parts
                .headers
                .get(CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
            let body = if gzipped { gunzip(&bytes)? } else { bytes };
            Ok(BidderResponse {
                status: parts.status,
                body,
            })
        };
        tokio::time::timeout_at(deadline, exchange)
            .await
            .unwrap_or(Err(CallError::Timeout))
    }
}

/// The HTTP request for `req`, to `uri`: origin-form with `host` on a connection of our own,
/// absolute for hyper's client, which adds `Host` itself.
fn build_request(
    gzip: bool,
    req: &BidderRequest,
    uri: Uri,
    host: Option<&HeaderValue>,
    body: Bytes,
) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::new(Full::new(body));
    *request.method_mut() = req.method.clone();
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.reserve(4 + req.headers.len());
    if let Some(host) = host {
        headers.insert(HOST, host.clone());
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    }
    for (name, value) in &req.headers {
        headers.insert(name.clone(), value.clone());
    }
    request
}

/// A partner's answer: its head, and its whole body as it came (maybe gzipped).
type Answer = (http::response::Parts, Bytes);

/// Reads an answer's whole body, up to [`MAX_RESPONSE_BYTES`].
async fn read_answer(response: http::Response<hyper::body::Incoming>) -> Result<Answer, CallError> {
    let (parts, body) = response.into_parts();
    let bytes = Limited::new(body, MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| CallError::Body(e.to_string()))?
        .to_bytes();
    Ok((parts, bytes))
}

/// A partner's socket, plain or TLS.
type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Where a connection goes: requests to another scheme or authority need another connection.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    scheme: Scheme,
    authority: Authority,
}

/// Idle HTTP/1.1 connections to one partner, the most recently used last.
struct Http1Pool {
    connector: HttpsConnector<HttpConnector>,
    idle: Mutex<VecDeque<Idle>>,
    max_idle: usize,
}

impl std::fmt::Debug for Http1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Http1Pool({} idle)", self.idle.lock().len())
    }
}

/// A connection waiting for its next request.
struct Idle {
    origin: Origin,
    connection: Box<Connection>,
    since: std::time::Instant,
}

/// One HTTP/1.1 connection: the handle requests are sent through and the state machine that
/// moves them over the socket, polled by whichever call holds the connection. Kilobytes (its
/// buffers and a TLS session's state), so it is kept boxed and moved as a pointer.
struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: http1::Connection<Stream, Full<Bytes>>,
    /// The driver has finished: the partner closed the connection, or it failed.
    ended: bool,
}

/// Why an exchange on one connection failed.
enum Failure {
    /// Before any answer arrived: on a reused connection, the partner may have closed it while
    /// it sat idle, and the request is sent again on a fresh one.
    Send(hyper::Error),
    /// Connecting, or reading the answer.
    Call(CallError),
}

impl Http1Pool {
    fn new(max_idle: usize, roots: &Roots) -> Self {
        Http1Pool {
            connector: connector(false, roots),
            idle: Mutex::new(VecDeque::new()),
            max_idle,
        }
    }

    /// Sends `req` to `target` on an idle connection, or a new one, and reads the whole answer.
    async fn send(
        &self,
        gzip: bool,
        req: &BidderRequest,
        target: &Target,
        body: Bytes,
    ) -> Result<Answer, CallError> {
        let request = || {
            let path = target.path.clone();
            build_request(gzip, req, path, Some(&target.host), body.clone())
        };
        if let Some(mut connection) = self.checkout(&target.origin) {
            match connection.exchange(request()).await {
                // Closed while idle: once more on a fresh connection.
                Err(Failure::Send(_)) => {}
                answered => return self.settle(target.origin.clone(), connection, answered),
            }
        }
        // Boxed: opening a connection (TLS included) is 2.5 KB of future that every call would
        // otherwise carry, and copy into the auction's box, for the rare call that needs it.
        let mut connection = Box::pin(self.connect(target.uri.clone())).await?;
        let answered = connection.exchange(request()).await;
        self.settle(target.origin.clone(), connection, answered)
    }

    /// Keeps the connection after a complete exchange and says how the call went.
    fn settle(
        &self,
        origin: Origin,
        connection: Box<Connection>,
        answered: Result<Answer, Failure>,
    ) -> Result<Answer, CallError> {
        match answered {
            Ok(answer) => {
                self.checkin(origin, connection);
                Ok(answer)
            }
            Err(Failure::Send(err)) => Err(CallError::Connect(error_chain(&err))),
            Err(Failure::Call(err)) => Err(err),
        }
    }

    /// Opens a connection to the partner at `uri`.
    async fn connect(&self, uri: Uri) -> Result<Box<Connection>, CallError> {
        let mut connector = self.connector.clone();
        let stream = async {
            poll_fn(|cx| connector.poll_ready(cx)).await?;
            connector.call(uri).await
        }
        .await
        .map_err(|e| CallError::Connect(error_chain(&*e)))?;
        let (sender, driver) = http1::handshake(stream)
            .await
            .map_err(|e| CallError::Connect(error_chain(&e)))?;
        Ok(Box::new(Connection {
            sender,
            driver,
            ended: false,
        }))
    }

    /// The most recently used idle connection to `origin` that is still open.
    fn checkout(&self, origin: &Origin) -> Option<Box<Connection>> {
        loop {
            let idle = {
                let mut idle = self.idle.lock();
                let position = idle.iter().rposition(|idle| &idle.origin == origin)?;
                idle.remove(position)?
            };
            let mut connection = idle.connection;
            if idle.since.elapsed() < IDLE_TIMEOUT && connection.still_open() {
                return Some(connection);
            }
        }
    }

    /// Keeps a connection whose exchange completed for the next request, room permitting.
    fn checkin(&self, origin: Origin, mut connection: Box<Connection>) {
        if self.max_idle == 0 || !connection.still_open() {
            return;
        }
        let now = std::time::Instant::now();
        let mut idle = self.idle.lock();
        // The least recently used sit first: drop those that waited too long.
        while idle
            .front()
            .is_some_and(|oldest| now.duration_since(oldest.since) >= IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        if idle.len() >= self.max_idle {
            idle.pop_front();
        }
        idle.push_back(Idle {
            origin,
            connection,
            since: now,
        });
    }
}

impl Connection {
    /// Sends one request and reads its whole answer, driving the connection meanwhile.
    async fn exchange(&mut self, request: http::Request<Full<Bytes>>) -> Result<Answer, Failure> {
        let Connection {
            sender,
            driver,
            ended,
        } = self;
        let answer = async {
            let response = sender.send_request(request).await.map_err(Failure::Send)?;
            read_answer(response).await.map_err(Failure::Call)
        };
        let mut answer = pin!(answer);
        poll_fn(|cx| {
            // The driver writes the request and reads the answer into the channels the
            // answer's future waits on; once it has finished, the answer fails or completes.
            if !*ended && Pin::new(&mut *driver).poll(cx).is_ready() {
                *ended = true;
            }
            answer.as_mut().poll(cx)
        })
        .await
    }

    /// Whether the connection can take another request: the driver is polled once, without
    /// waiting, so that it notices a partner that closed it and readies itself for the next.
    fn still_open(&mut self) -> bool {
        if !self.ended {
            let mut cx = Context::from_waker(Waker::noop());
            if Pin::new(&mut self.driver).poll(&mut cx).is_ready() {
                self.ended = true;
            }
        }
        !self.ended && self.sender.is_ready()
    }
}

/// The `Host` header hyper's client would send: the URL's host and port, without a user or
/// the scheme's default port.
fn host_header(uri: &Uri) -> Result<HeaderValue, CallError> {
    let authority = uri.authority().map_or("", Authority::as_str);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let host = match uri.port_u16() {
        Some(port) if port == default_port => host.rsplit_once(':').map_or(host, |(host, _)| host),
        _ => host,
    };
    HeaderValue::from_str(host).map_err(|e| CallError::Connect(format!("{uri}: {e}")))
}

fn gunzip(bytes: &[u8]) -> Result<Bytes, CallError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_RESPONSE_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| CallError::Body(format!("gzip: {e}")))?;
    if out.len() > MAX_RESPONSE_BYTES {
        return Err(CallError::Body("decompressed body too large".into()));
    }
    Ok(Bytes::from(out))
}

/// The error and its sources in one line, so logs say why a connection failed.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// How the test partner ends each exchange.
    #[derive(Clone, Copy)]
    enum After {
        /// Waits for the next request on the same connection.
        KeepAlive,
        /// Answers without `Connection: close`, then closes: a keep-alive timeout that fires
        /// just after an answer.
        Close,
        /// Closes without answering when a second request comes on the connection: a
        /// keep-alive timeout that crosses the next request on the wire.
        CloseOnNext,
    }

    /// A partner on a raw socket that answers every request with `{"n":<connection>}`.
    struct Partner {
        url: String,
        accepted: Arc<AtomicUsize>,
        /// The head of every request it read, in turn.
        heads: Arc<Mutex<Vec<String>>>,
    }

    impl Partner {
        async fn start(after: After) -> Partner {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/bid?x=1", listener.local_addr().unwrap());
            let accepted = Arc::new(AtomicUsize::new(0));
            let heads = Arc::new(Mutex::new(Vec::new()));
            let (counter, seen_heads) = (accepted.clone(), heads.clone());
            tokio::spawn(async move {
                loop {
                    let (socket, _) = listener.accept().await.unwrap();
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::spawn(Partner::serve(socket, n, after, seen_heads.clone()));
                }
            });
            Partner {
                url,
                accepted,
                heads,
            }
        }

        /// Answers the requests on connection number `n` until `after` says to stop.
        async fn serve(
            mut socket: tokio::net::TcpStream,
            n: usize,
            after: After,
            heads: Arc<Mutex<Vec<String>>>,
        ) {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            let mut answered = 0;
            loop {
                let read = match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => read,
                };
                seen.extend_from_slice(&buf[..read]);
                let text = String::from_utf8_lossy(&seen).to_string();
                let Some(head_end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let length: usize = text[..head_end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if seen.len() < head_end + 4 + length {
                    continue;
                }
                heads.lock().push(text[..head_end].to_owned());
                seen.drain(..head_end + 4 + length);
                if matches!(after, After::CloseOnNext) && answered == 1 {
                    return;
                }
                answered += 1;
                let body = format!("{{\"n\":{n}}}");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(answer.as_bytes()).await.unwrap();
                if let After::Close = after {
                    return;
                }
            }
        }

        fn connections(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }

        /// Every request came in origin-form with the partner's host, as hyper's client sent it.
        fn check_heads(&self) {
            let heads = self.heads.lock();
            assert!(!heads.is_empty());
            for head in heads.iter() {
                assert!(head.starts_with("POST /bid?x=1 HTTP/1.1\r\n"), "{head}");
                assert!(head.contains("\r\nhost: 127.0.0.1:"), "{head}");
            }
        }
    }

    fn request(url: &str) -> BidderRequest {
        BidderRequest {
            method: http::Method::POST,
            uri: url.to_owned(),
            headers: Vec::new(),
            body: Bytes::from_static(b"{}"),
            imp_ids: Vec::new(),
        }
    }

    async fn call(client: &BidderClient, url: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let answer = client
            .call(&request(url), Bytes::from_static(b"{}"), deadline)
            .await
            .expect("the partner answers");
        assert_eq!(answer.status, http::StatusCode::OK);
        String::from_utf8(answer.body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_call_elsewhere_than_the_endpoint_goes_where_its_url_says() {
        let endpoint = Partner::start(After::KeepAlive).await;
        let elsewhere = Partner::start(After::KeepAlive).await;
        let client = BidderClient::new(&BidderSpec::new("p", &endpoint.url));
        assert_eq!(call(&client, &elsewhere.url).await, r#"{"n":1}"#);
        assert_eq!(call(&client, &endpoint.url).await, r#"{"n":1}"#);
        assert_eq!(call(&client, &elsewhere.url).await, r#"{"n":1}"#);
        assert_eq!((endpoint.connections(), elsewhere.connections()), (1, 1));
        assert_eq!(
            (endpoint.heads.lock().len(), elsewhere.heads.lock().len()),
            (1, 2)
        );
        endpoint.check_heads();
        elsewhere.check_heads();
        // A URL that does not read is refused naming it, the endpoint's own or another.
        let deadline = Instant::now() + Duration::from_secs(5);
        for bad in ["not a url", "/relative/only"] {
            let client = BidderClient::new(&BidderSpec::new("p", bad));
            for url in [bad, "also not a url"] {
                let err = client.call(&request(url), Bytes::new(), deadline).await;
                assert!(
                    matches!(&err, Err(CallError::Connect(m)) if m.starts_with(&format!("{url}: "))),
                    "{err:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_connection_serves_one_call_after_another() {
        let partner = Partner::start(After::KeepAlive).await;
        let client = BidderClient::new(&BidderSpec::new("p", &partner.url));
        for _ in 0..5 {
            assert_eq!(call(&client, &partner.url).await, r#"{"n":1}"#);
        }
        assert_eq!(partner.connections(), 1);
        partner.check_heads();
    }

    #[tokio::test]
    async fn concurrent_calls_each_hold_a_connection_and_all_are_kept() {
        let partner = Partner::start(After::KeepAlive).await;
        let client = BidderClient::new(&BidderSpec::new("p", &partner.url));
        let calls = (0..3).map(|_| call(&client, &partner.url));
        futures_util::future::join_all(calls).await;
        assert_eq!(partner.connections(), 3);
        for _ in 0..6 {
            call(&client, &partner.url).await;
        }
        assert_eq!(partner.connections(), 3, "the three were reused");
        partner.check_heads();
    }

    #[tokio::test]
    async fn a_connection_the_partner_closed_is_replaced() {
        let partner = Partner::start(After::Close).await;
        let client = BidderClient::new(&BidderSpec::new("p", &partner.url));
        for expected in 1..=3 {
            let answer = call(&client, &partner.url).await;
            assert_eq!(answer, format!(r#"{{"n":{expected}}}"#));
        }
        assert_eq!(partner.connections(), 3);
        partner.check_heads();
    }

    #[tokio::test]
    async fn a_request_the_partner_closed_on_is_sent_again_on_a_fresh_connection() {
        let partner = Partner::start(After::CloseOnNext).await;
        let client = BidderClient::new(&BidderSpec::new("p", &partner.url));
        assert_eq!(call(&client, &partner.url).await, r#"{"n":1}"#);
        // The second request reaches connection 1, which closes without answering.
        assert_eq!(call(&client, &partner.url).await, r#"{"n":2}"#);
        assert_eq!(partner.connections(), 2);
        assert_eq!(
            partner.heads.lock().len(),
            3,
            "connection 1 read the second request"
        );
        partner.check_heads();
    }

    #[tokio::test]
    async fn no_idle_connections_are_kept_when_the_pool_holds_none() {
        let partner = Partner::start(After::KeepAlive).await;
        let mut spec = BidderSpec::new("p", &partner.url);
        spec.max_idle_connections = 0;
        let client = BidderClient::new(&spec);
        call(&client, &partner.url).await;
        call(&client, &partner.url).await;
        assert_eq!(partner.connections(), 2);
        partner.check_heads();
    }

    #[test]
    fn the_host_header_is_the_urls_host_and_port_less_a_default_port_or_a_user() {
        let host = |url: &str| host_header(&url.parse().unwrap()).unwrap();
        assert_eq!(host("http://dsp.example/bid"), "dsp.example");
        assert_eq!(host("http://dsp.example:80/bid"), "dsp.example");
        assert_eq!(host("http://dsp.example:8080/bid"), "dsp.example:8080");
        assert_eq!(host("https://dsp.example:443/bid"), "dsp.example");
        assert_eq!(host("https://dsp.example:80/bid"), "dsp.example:80");
        assert_eq!(host("http://user:pw@[::1]:9101/bid"), "[::1]:9101");
        assert_eq!(host("http://[::1]:80/bid"), "[::1]");
    }

    #[tokio::test]
    async fn a_partner_that_is_not_listening_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/bid", listener.local_addr().unwrap());
        drop(listener);
        let client = BidderClient::new(&BidderSpec::new("p", &url));
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = client
            .call(&request(&url), Bytes::new(), deadline)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "connect", "{err}");
    }
}
