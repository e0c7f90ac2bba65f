use std::io::Write;

use bytes::Bytes;
use http_body_util::{Full, StreamBody};

use super::*;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, http::HeaderValue::from_static(value));
    }
    map
}

async fn read(
    pairs: &[(&'static str, &'static str)],
    body: Vec<u8>,
    limit: usize,
) -> Result<Bytes, BodyError> {
    read_body(&headers(pairs), Full::new(Bytes::from(body)), limit).await
}

#[tokio::test]
async fn identity_body_at_the_limit_is_accepted() {
    let body = read(&[], vec![b'a'; 16], 16).await.unwrap();
    assert_eq!(body.len(), 16);
}

#[tokio::test]
async fn identity_body_one_past_the_limit_is_refused() {
    let error = read(&[], vec![b'a'; 17], 16).await.unwrap_err();
    assert!(
        matches!(error, BodyError::TooLarge { limit: 16 }),
        "{error:?}"
    );
    assert_eq!(error.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn streamed_body_is_cut_off_past_the_limit() {
    // A stream with no size hint: the limit must be enforced while reading.
    let chunks = (0..10).map(|_| {
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![0u8; 10])))
    });
    let body = StreamBody::new(futures_util::stream::iter(chunks));
    let error = read_body(&http::HeaderMap::new(), body, 35)
        .await
        .unwrap_err();
    assert!(matches!(error, BodyError::TooLarge { limit: 35 }));
}

#[tokio::test]
async fn gzip_is_decoded_case_insensitively() {
    let body = read(&[("content-encoding", "GZip")], gzip(b"hello gzip"), 1024)
        .await
        .unwrap();
    assert_eq!(&body[..], b"hello gzip");
}

#[tokio::test]
async fn gzip_bomb_is_refused_by_decoded_size() {
    let bomb = gzip(&vec![0u8; 1 << 20]);
    assert!(
        bomb.len() < 4096,
        "compressed bomb should fit under the limit"
    );
    let error = read(&[("content-encoding", "gzip")], bomb, 4096)
        .await
        .unwrap_err();
    assert!(
        matches!(error, BodyError::TooLarge { limit: 4096 }),
        "{error:?}"
    );
}

#[tokio::test]
async fn bad_gzip_is_a_400() {
    let error = read(&[("content-encoding", "gzip")], b"not gzip".to_vec(), 1024)
        .await
        .unwrap_err();
    assert!(matches!(error, BodyError::BadGzip(_)), "{error:?}");
    assert_eq!(error.status(), http::StatusCode::BAD_REQUEST);
    assert_eq!(error.code(), "bad_gzip");
}

#[tokio::test]
async fn other_encodings_are_415() {
    for encoding in ["br", "deflate", "gzip, gzip"] {
        let error = read(&[("content-encoding", encoding)], b"x".to_vec(), 1024)
            .await
            .unwrap_err();
        assert!(
            matches!(error, BodyError::UnsupportedEncoding(_)),
            "{encoding}: {error:?}"
        );
        assert_eq!(error.status(), http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}

#[tokio::test]
async fn identity_encoding_is_a_no_op() {
    let body = read(&[("content-encoding", "identity")], b"plain".to_vec(), 1024)
        .await
        .unwrap();
    assert_eq!(&body[..], b"plain");
}
