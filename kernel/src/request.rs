//! The request type plugins receive. Its body is either a live connection's stream or bytes in
//! memory, so a test, the WebAssembly host or another plugin can build a request without a
//! socket, and every handler reads both the same way (`read_body`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::BoxError;

/// A request as the kernel hands it to a plugin.
pub type Request = http::Request<RequestBody>;

/// The body of a [`Request`].
#[derive(Debug)]
pub struct RequestBody(Inner);

#[derive(Debug)]
enum Inner {
    /// Streamed from a client connection, which must send the rest of it within `timeout` once
    /// it keeps us waiting.
    Incoming {
        body: hyper::body::Incoming,
        timeout: Duration,
        /// Made the first time the client keeps us waiting.
        timer: Option<Pin<Box<Sleep>>>,
    },
    /// Bytes already in memory; `None` once they were read.
    Full(Option<Bytes>),
}

/// The client did not send the whole body in time (`[server.connections] body_timeout_ms`).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

impl RequestBody {
    /// A body with no bytes.
    pub fn empty() -> Self {
        RequestBody(Inner::Full(None))
    }

    /// A connection's body, which must arrive within `timeout` of the first time its reader
    /// has to wait for it (a body that came with the head never starts a timer, nor reads the
    /// clock).
    pub(crate) fn streamed(body: hyper::body::Incoming, timeout: Duration) -> Self {
        RequestBody(Inner::Incoming {
            body,
            timeout,
            timer: None,
        })
    }
}

impl From<Bytes> for RequestBody {
    fn from(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            RequestBody(Inner::Full(None))
        } else {
            RequestBody(Inner::Full(Some(bytes)))
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

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Inner::Incoming {
                body,
                timeout,
                timer,
            } => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(frame) => Poll::Ready(frame.map(|r| r.map_err(Into::into))),
                Poll::Pending => {
                    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(*timeout)));
                    match timer.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(*timeout))))),
                        Poll::Pending => Poll::Pending,
                    }
                }
            },
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Incoming { body, .. } => body.is_end_stream(),
            Inner::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Incoming { body, .. } => body.size_hint(),
            Inner::Full(bytes) => {
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
