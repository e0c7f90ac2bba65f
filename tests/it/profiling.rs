//! Profiling the running binary: a CPU flame graph (SVG) that names bourse's own functions,
//! taken while auctions run, and memory figures; both refused to anonymous callers and to
//! wrong credentials.

use crate::support::*;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn get(
    node: &Node,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, String) {
    let mut req = http::Request::get(node.url(path));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    node.client_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
}

#[tokio::test]
async fn a_flame_graph_of_the_running_exchange_names_its_functions() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 2.0)]))).await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[log]\nformat = \"text\"\nlevel = \"warn\"\n\n\
         [plugins.exchange]\nnotice_secret = \"profile-secret\"\n\n\
         [[plugins.exchange.bidders]]\nname = \"adv\"\nendpoint = \"{}\"\n{}",
        partner.endpoint(),
        admin_section()
    );
    let node = Arc::new(Node::start(&text));

    // Anonymous callers and wrong credentials learn nothing, and are told how to authenticate.
    let wrong = basic("ops", "wrong password");
    for headers in [vec![], vec![("authorization", wrong.as_str())]] {
        let (status, response_headers, body) =
            get(&node, "/debug/pprof/profile?seconds=1", &headers).await;
        assert_eq!(status, 401, "{body}");
        assert!(
            response_headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
        assert!(!body.contains("<svg"));
    }
    let (status, _, _) = get(&node, "/debug/pprof/heap", &[]).await;
    assert_eq!(status, 401);
    let auth = basic("ops", ADMIN_PASSWORD);
    let (status, _, body) = get(
        &node,
        "/debug/pprof/profile?seconds=0",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // Two seconds of profile while auctions run.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (node, stop) = (node.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = banner_request(&format!("p{n}"), &[("1", 0.1)]).to_string();
                let req = http::Request::post(node.url("/openrtb2/auction"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                node.send(req).await;
            }
            n
        })
    };
    let (status, headers, svg) = get(
        &node,
        "/debug/pprof/profile?seconds=2",
        &[("authorization", &auth)],
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let auctions = load.await.unwrap();
    assert_eq!(status, 200, "{svg}");
    assert_eq!(headers["content-type"], "image/svg+xml");
    assert!(
        svg.starts_with("<?xml") && svg.contains("<svg"),
        "{}",
        &svg[..svg.len().min(300)]
    );
    assert!(auctions > 10, "the load ran: {auctions}");
    assert!(
        svg.contains("bourse_engine::exchange") && svg.contains("bourse_kernel"),
        "the graph names our own functions"
    );

    // A signed-in operator's session works too, under /admin where its cookie is sent.
    let session = sign_in(&node).await;
    let (status, _, memory) = get(&node, "/admin/debug/pprof/heap", &[("cookie", &session)]).await;
    assert_eq!(status, 200, "{memory}");
    assert!(
        memory.contains("VmRSS") && memory.contains("VmHWM"),
        "{memory}"
    );
}
