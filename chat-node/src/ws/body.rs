//! The socket's response body: the frames of its [`Outbox`], written as WebSocket frames
//! as fast as the client reads them. actix-ws's own body queues 32 frames of any size
//! before a send waits, which neither bounds memory nor lets the socket task go on while
//! a client does not read; with this body the outbox is the one place frames wait.
//!
//! Payloads go out in pieces of at most [`WRITE_CHUNK`] bytes: actix-http copies each
//! piece into the connection's write buffer and keeps that buffer's capacity for the
//! connection's life (up to 128 KiB), so one 40 KiB `updateUsers` written whole would
//! leave every idle socket holding 40 KiB. With pieces of 4 KiB, and the server flushing
//! once 4 KiB are buffered (`h1_write_buffer_size`, set in `startup`), the buffer stays at
//! the 8 KiB actix-http starts it with.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use actix_web::body::{BodyStream, BoxBody};
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use futures_util::Stream;

use crate::bus::{Frame, Outbox};

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
/// RFC 6455: control frames carry at most 125 bytes; a close frame's reason 123.
const MAX_CONTROL_PAYLOAD: usize = 125;
/// The most bytes of a payload handed to actix-http at once.
pub const WRITE_CHUNK: usize = 4096;

/// Swaps actix-ws's body in a handshake response for one fed by `outbox`.
pub fn respond(handshake: HttpResponse, outbox: Outbox) -> HttpResponse {
    let (head, incoming) = handshake.into_parts();
    head.set_body(BodyStream::new(OutboxBody {
        outbox,
        payload: None,
        _incoming: incoming,
    }))
    .map_into_boxed_body()
}

struct OutboxBody {
    outbox: Outbox,
    /// What is left of the payload of the frame whose header went out last.
    payload: Option<Bytes>,
    /// actix-ws's body, never polled: dropping it would end the stream of client frames.
    _incoming: BoxBody,
}

impl Stream for OutboxBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(mut payload) = this.payload.take() {
            if payload.len() > WRITE_CHUNK {
                let piece = payload.split_to(WRITE_CHUNK);
                this.payload = Some(payload);
                return Poll::Ready(Some(Ok(piece)));
            }
            return Poll::Ready(Some(Ok(payload)));
        }
        let Some(frame) = ready!(this.outbox.poll_take(cx)) else {
            return Poll::Ready(None);
        };
        let (opcode, payload) = match frame {
            Frame::Text(text) => (OP_TEXT, text.into_bytes()),
            Frame::Ping => (OP_PING, Bytes::new()),
            Frame::Pong(mut payload) => {
                payload.truncate(MAX_CONTROL_PAYLOAD);
                (OP_PONG, Bytes::from(payload))
            }
            Frame::Close(None) => (OP_CLOSE, Bytes::new()),
            Frame::Close(Some(closing)) => {
                let mut payload = closing.code.to_be_bytes().to_vec();
                let mut end = closing.reason.len().min(MAX_CONTROL_PAYLOAD - 2);
                while !closing.reason.is_char_boundary(end) {
                    end -= 1;
                }
                payload.extend_from_slice(&closing.reason.as_bytes()[..end]);
                (OP_CLOSE, Bytes::from(payload))
            }
        };
        // The header goes out now and the payload, uncopied, next.
        let header = header(opcode, payload.len());
        this.payload = (!payload.is_empty()).then_some(payload);
        Poll::Ready(Some(Ok(header)))
    }
}

/// A final, unmasked frame header (server frames are never masked).
fn header(opcode: u8, len: usize) -> Bytes {
    let mut header = Vec::with_capacity(10);
    header.push(0x80 | opcode);
    match len {
        0..=125 => header.push(len as u8),
        126..=0xFFFF => {
            header.push(126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.push(127);
            header.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    Bytes::from(header)
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use bytestring::ByteString;
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::{Frame as WsFrame, FrameHeader};

    use super::*;
    use crate::bus::Closing;

    /// Reads every frame the body writes for these, with tungstenite's parser.
    async fn written(frames: Vec<Frame>) -> Vec<WsFrame> {
        let outbox = Outbox::new(1 << 20);
        let mut frames = frames.into_iter();
        if let Some(first) = frames.next() {
            outbox.open(first);
        }
        for frame in frames {
            match frame {
                Frame::Close(closing) => outbox.close(closing),
                frame => assert!(outbox.push(frame)),
            }
        }
        let mut body = OutboxBody {
            outbox,
            payload: None,
            _incoming: BoxBody::new(()),
        };
        let mut bytes = Vec::new();
        while let Some(Ok(chunk)) = poll_fn(|cx| body.poll_next_unpin(cx)).await {
            assert!(
                chunk.len() <= WRITE_CHUNK,
                "a piece of {} bytes",
                chunk.len()
            );
            bytes.extend_from_slice(&chunk);
        }
        let mut cursor = std::io::Cursor::new(bytes);
        let mut parsed = Vec::new();
        while let Some((header, len)) = FrameHeader::parse(&mut cursor).unwrap() {
            let start = cursor.position() as usize;
            let payload = cursor.get_ref()[start..start + len as usize].to_vec();
            cursor.set_position((start + len as usize) as u64);
            parsed.push(WsFrame::from_payload(header, payload.into()));
        }
        parsed
    }

    #[tokio::test]
    async fn frames_of_every_length_are_written_as_tungstenite_reads_them() {
        let texts = [0, 125, 126, 0xFFFF, 0x10000].map(|n| "é".repeat(n / 2) + &"x".repeat(n % 2));
        let mut frames: Vec<Frame> = texts
            .iter()
            .map(|t| Frame::Text(ByteString::from(t.clone())))
            .collect();
        frames.push(Frame::Ping);
        frames.push(Frame::Pong(vec![7; 200]));
        frames.push(Frame::Close(Some(Closing::new(1008, "too slow"))));
        let parsed = written(frames).await;
        assert_eq!(parsed.len(), texts.len() + 3);
        for (frame, text) in parsed.iter().zip(&texts) {
            assert_eq!(frame.header().opcode, OpCode::Data(Data::Text));
            assert!(frame.header().is_final && frame.header().mask.is_none());
            assert_eq!(frame.payload(), text.as_bytes());
        }
        let [ping, pong, close] = &parsed[texts.len()..] else {
            panic!("three control frames");
        };
        assert!(ping.payload().is_empty());
        assert_eq!(
            pong.payload().len(),
            MAX_CONTROL_PAYLOAD,
            "cut to 125 bytes"
        );
        let (code, reason) = close.payload().split_at(2);
        assert_eq!(
            CloseCode::from(u16::from_be_bytes([code[0], code[1]])),
            CloseCode::Policy
        );
        assert_eq!(reason, b"too slow");
    }
}
