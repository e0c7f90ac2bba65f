//! A partner behind a private certificate authority, over real TLS on loopback (tokio-rustls,
//! a CA and a 127.0.0.1 certificate made by rcgen): its bid requests and its notices trust the
//! authorities of its `ca_file` (`client::Roots`), and nothing else does.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bourse_engine::bidder::{BidderRequest, BidderSpec};
use bourse_engine::client::{BidderClient, CallError, Roots};
use bourse_engine::delivery::{Delivery, DeliveryMetrics, PartnerPolicy};
use bourse_engine::notice::NoticeKind;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use prometheus::{IntCounterVec, Opts};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// A private certificate authority's certificate (PEM), and a server config holding a
/// certificate for 127.0.0.1 it signed.
fn private_ca() -> (String, rustls::ServerConfig) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "bourse test partner CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (ca.pem(), tls)
}

/// An https partner: answers every request with `{"n":<connection>}`, counting the TCP
/// connections it accepted and keeping each request's target and host header.
struct Partner {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<(String, String)>>>,
}

impl Partner {
    async fn start(tls: rustls::ServerConfig) -> Partner {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (counter, seen) = (accepted.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate ends the handshake.
                    let Ok(stream) = acceptor.accept(socket).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: http::Request<_>| {
                        let host = req
                            .headers()
                            .get(http::header::HOST)
                            .map_or_else(String::new, |h| {
                                h.to_str().unwrap_or_default().to_owned()
                            });
                        seen.lock().push((req.uri().to_string(), host));
                        let body = Full::new(Bytes::from(format!("{{\"n\":{n}}}")));
                        async move { Ok::<_, Infallible>(http::Response::new(body)) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Partner {
            addr,
            accepted,
            requests,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.requests.lock().clone()
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

#[tokio::test]
async fn an_https_partner_behind_a_private_ca_is_trusted_through_its_ca_file() {
    let (ca_pem, tls) = private_ca();
    let partner = Partner::start(tls).await;
    let url = partner.url("/bid?x=1");
    let spec = BidderSpec::new("p", &url);
    let deadline = || Instant::now() + Duration::from_secs(5);
    // The bundled web PKI roots alone do not trust it, and the error says why.
    let refused = BidderClient::new(&spec)
        .call(&request(&url), Bytes::from_static(b"{}"), deadline())
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, CallError::Connect(why) if why.contains("UnknownIssuer")),
        "{refused:?}"
    );
    // Trusting its CA: every call answered over one TLS connection, the second accepted.
    let client = BidderClient::trusting(&spec, &Roots::with_pem(ca_pem.as_bytes()).unwrap());
    for _ in 0..3 {
        let answer = client
            .call(&request(&url), Bytes::from_static(b"{}"), deadline())
            .await
            .expect("the partner answers");
        assert_eq!(answer.status, http::StatusCode::OK);
        assert_eq!(answer.body, r#"{"n":2}"#);
    }
    assert_eq!(partner.connections(), 2);
    // Each request in origin-form, with the partner's host.
    let host = partner.addr.to_string();
    assert_eq!(
        partner.requests(),
        vec![("/bid?x=1".to_owned(), host); 3],
        "{:?}",
        partner.requests()
    );
}

#[tokio::test]
async fn notices_to_a_partner_behind_a_private_ca_trust_the_same_ca_file() {
    let (ca_pem, tls) = private_ca();
    let partner = Partner::start(tls).await;
    let notices = IntCounterVec::new(Opts::new("n", "n"), &["kind", "outcome"]).unwrap();
    let metrics = DeliveryMetrics {
        notices: notices.clone(),
        refused: IntCounterVec::new(Opts::new("r", "r"), &["bidder", "reason"]).unwrap(),
    };
    let policy = |roots: Roots| PartnerPolicy {
        attempts: 1,
        backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(2),
        queue: 10,
        concurrency: 1,
        allowed_hosts: vec!["127.0.0.1".into()],
        roots,
    };
    let delivery = Delivery::new(None, metrics);
    delivery.configure(&[
        ("web-pki".into(), policy(Roots::default())),
        (
            "private".into(),
            policy(Roots::with_pem(ca_pem.as_bytes()).unwrap()),
        ),
    ]);
    let win = |outcome: &str| notices.with_label_values(&["win", outcome]).get();
    delivery
        .queue("web-pki")
        .unwrap()
        .fire(NoticeKind::Win, partner.url("/win?by=web-pki"));
    let started = Instant::now();
    while win("failed") < 1 {
        assert!(started.elapsed() < Duration::from_secs(10), "never refused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(partner.requests().is_empty(), "{:?}", partner.requests());
    delivery
        .queue("private")
        .unwrap()
        .fire(NoticeKind::Win, partner.url("/win?by=private"));
    while win("sent") < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never delivered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        partner.requests(),
        vec![("/win?by=private".to_owned(), partner.addr.to_string())]
    );
    assert_eq!(win("failed"), 1, "only the untrusting queue failed");
    delivery
        .shutdown(Instant::now() + Duration::from_millis(500))
        .await;
}

#[test]
fn a_ca_file_that_holds_no_usable_certificate_is_refused_in_our_words() {
    assert_eq!(
        Roots::with_pem(b"a note, not a certificate").unwrap_err(),
        "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    );
    let (ca_pem, _) = private_ca();
    assert!(Roots::with_pem(ca_pem.as_bytes()).is_ok());
    let unreadable = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
    let why = Roots::with_pem(unreadable.as_bytes()).unwrap_err();
    assert!(why.starts_with("not a PEM file of certificates"), "{why}");
    let not_a_certificate = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let why = Roots::with_pem(not_a_certificate.as_bytes()).unwrap_err();
    assert!(
        why.starts_with("a certificate cannot serve as a root"),
        "{why}"
    );
}
