//! The request type plugins receive. Its body is either a live connection's stream or bytes in
//! memory, so a test, the WebAssembly host or another plugin can build a request without a
//! socket, and every handler reads both the same way (`read_body`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::BoxError;

/// A request as the kernel hands it to a plugin.
pub type Request = http::Request<RequestBody>;

/// The body of a [`Request`].
#[derive(Debug)]
pub enum RequestBody {
    /// Streamed from a client connection.
    Incoming(hyper::body::Incoming),
    /// Bytes already in memory; `None` once they were read.
    Full(Option<Bytes>),
}

impl RequestBody {
    /// A body with no bytes.
    pub fn empty() -> Self {
        RequestBody::Full(None)
    }
}

impl From<Bytes> for RequestBody {
    fn from(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            RequestBody::Full(None)
        } else {
            RequestBody::Full(Some(bytes))
        }
    }
}

impl From<Vec<u8>> for RequestBody {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::from(bytes).into()
    }
}

impl From<&'static str> for RequestBody {
    fn from(text: &'static str) -> Self {
        Bytes::from_static(text.as_bytes()).into()
    }
}

impl From<String> for RequestBody {
    fn from(text: String) -> Self {
        Bytes::from(text).into()
    }
}

impl From<hyper::body::Incoming> for RequestBody {
    fn from(body: hyper::body::Incoming) -> Self {
        RequestBody::Incoming(body)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Incoming(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(Into::into))),
            RequestBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Incoming(body) => body.is_end_stream(),
            RequestBody::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Incoming(body) => body.size_hint(),
            RequestBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_request_built_from_bytes_reads_back_whole() {
        let request = http::Request::builder()
            .method("POST")
            .uri("/openrtb2/auction")
            .body(RequestBody::from("{\"id\":\"1\"}"))
            .unwrap();
        assert_eq!(request.body().size_hint().exact(), Some(10));
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"{\"id\":\"1\"}");
    }

    #[test]
    fn an_empty_body_is_at_its_end() {
        assert!(RequestBody::empty().is_end_stream());
        assert!(RequestBody::from(Bytes::new()).is_end_stream());
    }
}
