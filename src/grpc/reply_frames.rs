//! Replies cut into HTTP/2 DATA frames that h2 copies, so that a reply,
//! its trailers and other calls' replies leave in one write.
//!
//! h2 (0.4) sends a DATA payload at or above a threshold without copying
//! it, as a second buffer, and must write it out before it can encode any
//! other frame: such a reply costs a system call of its own and its
//! trailers another (`perf stat` counted 1.9 `writev` per `GetBestChannel`,
//! whose replies are about 1 KiB). A smaller payload is copied into the
//! connection's write buffer beside the trailers and the other streams'
//! frames, which all go out together when the connection's task has
//! nothing more to encode. The threshold is 256 bytes on a socket that
//! says it has vectored writes and 1,024 on one that does not: served
//! connections say they do not ([`CopiedWrites`]), and payloads from 1 KiB
//! to [`SPLIT_UP_TO`] are handed to h2 in slices below 1 KiB. Larger ones
//! are left whole: copying and framing them costs more than the write.
//!
//! With TLS, h2 sees the TLS stream (which has vectored writes), so the
//! replies are left whole: slices would each be written apart.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tower::{Layer, Service};

/// The largest DATA payload h2 copies on a socket without vectored writes
/// (it chains payloads from 1,024 bytes on).
pub const COPIED_FRAME: usize = 1023;

/// Payloads above this are left in one frame.
pub const SPLIT_UP_TO: usize = 8 * 1024;

/// Wraps each response body in [`ReplyFrames`]; `None` leaves them whole.
#[derive(Clone, Copy, Debug)]
pub struct ReplyFramesLayer {
    slice: Option<usize>,
}

impl ReplyFramesLayer {
    /// Slices of [`COPIED_FRAME`] bytes, for connections that are
    /// [`CopiedWrites`] as h2 sees them (plain TCP).
    pub fn copied() -> Self {
        ReplyFramesLayer {
            slice: Some(COPIED_FRAME),
        }
    }

    /// Replies left as they are (TLS).
    pub fn whole() -> Self {
        ReplyFramesLayer { slice: None }
    }
}

impl<S> Layer<S> for ReplyFramesLayer {
    type Service = ReplyFramesService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReplyFramesService {
            inner,
            slice: self.slice,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ReplyFramesService<S> {
    inner: S,
    slice: Option<usize>,
}

impl<S, Request, B> Service<Request> for ReplyFramesService<S>
where
    S: Service<Request, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ReplyFrames<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let (reply, slice) = (self.inner.call(request), self.slice);
        Box::pin(async move { Ok(reply.await?.map(|body| ReplyFrames::new(body, slice))) })
    }
}

/// A body whose DATA frames of up to [`SPLIT_UP_TO`] bytes are handed on
/// in slices of at most `slice` bytes (of the same buffer: no copy here).
#[derive(Debug)]
pub struct ReplyFrames<B> {
    inner: B,
    slice: Option<usize>,
    rest: Option<Bytes>,
}

impl<B> ReplyFrames<B> {
    pub fn new(inner: B, slice: Option<usize>) -> Self {
        ReplyFrames {
            inner,
            slice: slice.map(|slice| slice.max(1)),
            rest: None,
        }
    }

    fn next_slice(&mut self, mut data: Bytes) -> Bytes {
        match self.slice {
            Some(slice) if data.len() > slice && data.len() <= SPLIT_UP_TO => {
                let head = data.split_to(slice);
                self.rest = Some(data);
                head
            }
            _ => data,
        }
    }
}

impl<B> Body for ReplyFrames<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(mut rest) = self.rest.take() {
            // The rest of a payload already being sliced is at most
            // SPLIT_UP_TO bytes: keep slicing it.
            let slice = self.slice.unwrap_or(rest.len()).min(rest.len());
            let head = rest.split_to(slice);
            self.rest = (!rest.is_empty()).then_some(rest);
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        let frame = match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other),
        };
        Poll::Ready(Some(Ok(match frame.into_data() {
            Ok(data) => Frame::data(self.next_slice(data)),
            Err(frame) => frame,
        })))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.as_ref().map_or(0, |rest| rest.len() as u64);
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

/// An accepted TCP connection that tells h2 it has no vectored writes, so
/// that h2 copies DATA payloads below 1 KiB (see the module's comment).
/// Vectored writes asked for anyway (by TLS) still go to the socket as one.
#[derive(Debug)]
pub struct CopiedWrites(pub TcpStream);

impl Connected for CopiedWrites {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.0.connect_info()
    }
}

impl AsyncRead for CopiedWrites {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for CopiedWrites {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    /// Every frame of `body`, in order.
    async fn frames<B>(body: B) -> Vec<Frame<Bytes>>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Debug,
    {
        let mut body = body;
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            frames.push(frame.expect("frame"));
        }
        frames
    }

    fn payload(len: usize) -> Bytes {
        (0..len)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into()
    }

    fn data_lens(frames: &[Frame<Bytes>]) -> Vec<usize> {
        frames
            .iter()
            .filter_map(|f| f.data_ref().map(Bytes::len))
            .collect()
    }

    #[tokio::test]
    async fn a_reply_of_a_few_kib_is_sliced_below_the_copy_threshold_in_order() {
        let data = payload(2_500);
        let body = ReplyFrames::new(Full::new(data.clone()), Some(COPIED_FRAME));
        let frames = frames(body).await;
        assert_eq!(data_lens(&frames), vec![1023, 1023, 454]);
        let joined: Vec<u8> = frames
            .iter()
            .flat_map(|f| f.data_ref().unwrap().to_vec())
            .collect();
        assert_eq!(joined, data.to_vec());
    }

    #[tokio::test]
    async fn small_and_large_replies_and_tls_replies_are_left_whole() {
        for (len, slice) in [
            (1023, Some(COPIED_FRAME)),
            (SPLIT_UP_TO + 1, Some(COPIED_FRAME)),
            (2_500, None),
        ] {
            let body = ReplyFrames::new(Full::new(payload(len)), slice);
            assert_eq!(data_lens(&frames(body).await), vec![len], "{len} {slice:?}");
        }
        let body = ReplyFrames::new(Full::new(payload(SPLIT_UP_TO)), Some(COPIED_FRAME));
        assert_eq!(
            data_lens(&frames(body).await).len(),
            SPLIT_UP_TO.div_ceil(1023)
        );
    }

    #[tokio::test]
    async fn trailers_follow_every_slice_and_the_end_is_reported_after_the_last() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let source: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(payload(1_500))),
            Ok(Frame::data(payload(10))),
            Ok(Frame::trailers(trailers.clone())),
        ];
        let mut body = ReplyFrames::new(
            StreamBody::new(futures_util::stream::iter(source)),
            Some(COPIED_FRAME),
        );
        assert_eq!(body.size_hint().lower(), 0);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.data_ref().map(Bytes::len), Some(1023));
        assert!(!body.is_end_stream(), "the rest of the payload is pending");
        assert_eq!(body.size_hint().lower(), 477);
        let rest = frames(&mut body).await;
        assert_eq!(data_lens(&rest), vec![477, 10]);
        assert_eq!(rest.last().unwrap().trailers_ref(), Some(&trailers));
    }
}
