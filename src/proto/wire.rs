//! The pass-through codec of `falco.outputs`: alerts are stored as the protobuf a subscriber
//! receives (see `convert.rs`), so a stream sends the stored bytes as they are and adds the one
//! field the log knows, the seq. The service here is generated from the same proto as
//! `proto::outputs` (see `build.rs`), with [`OutputFrame`] as its response type; clients keep
//! decoding into the ordinary `proto::outputs::Response`.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

#[allow(clippy::all, missing_docs, non_camel_case_types)]
pub mod outputs {
    tonic::include_proto!("wire/falco.outputs");
}

/// `falco.outputs.response.seq`.
const SEQ: u32 = 20;

/// A `falco.outputs.response` as it leaves the server: `body` holds its fields already encoded
/// (a stored alert never carries a seq), `seq` is added after them. Protobuf allows fields in
/// any order, so clients decode it like any other response.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutputFrame {
    pub body: Bytes,
    pub seq: u64,
}

impl prost::Message for OutputFrame {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.body);
        if self.seq != 0 {
            encoding::uint64::encode(SEQ, &self.seq, buf);
        }
    }

    /// Decoding (which the server never does) keeps every field but the seq as its encoded
    /// bytes, so a frame decoded and encoded again is the same response.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if tag == SEQ {
            return encoding::uint64::merge(wire_type, &mut self.seq, buf, ctx);
        }
        let mut field = Vec::from(&self.body[..]);
        match wire_type {
            WireType::Varint => {
                let mut value = 0u64;
                encoding::uint64::merge(wire_type, &mut value, buf, ctx)?;
                encoding::uint64::encode(tag, &value, &mut field);
            }
            WireType::SixtyFourBit => {
                let mut value = 0u64;
                encoding::fixed64::merge(wire_type, &mut value, buf, ctx)?;
                encoding::fixed64::encode(tag, &value, &mut field);
            }
            WireType::ThirtyTwoBit => {
                let mut value = 0u32;
                encoding::fixed32::merge(wire_type, &mut value, buf, ctx)?;
                encoding::fixed32::encode(tag, &value, &mut field);
            }
            WireType::LengthDelimited => {
                let mut value = Vec::new();
                encoding::bytes::merge(wire_type, &mut value, buf, ctx)?;
                encoding::bytes::encode(tag, &value, &mut field);
            }
            WireType::StartGroup | WireType::EndGroup => {
                // proto3 has no groups: skip one as any decoder would an unknown field.
                return encoding::skip_field(wire_type, tag, buf, ctx);
            }
        }
        self.body = field.into();
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.body.len()
            + if self.seq != 0 {
                encoding::uint64::encoded_len(SEQ, &self.seq)
            } else {
                0
            }
    }

    fn clear(&mut self) {
        self.body = Bytes::new();
        self.seq = 0;
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::base::event::{OutputEvent, Priority};
    use crate::proto::convert::event_response;
    use crate::proto::outputs::Response;

    fn event() -> OutputEvent {
        OutputEvent::new(
            1_733_000_000_123_456_789,
            Priority::Warning,
            "Terminal shell in container",
            "12:00:00.000000000: Warning A shell was spawned",
            "syscall",
        )
        .with_fields([("proc.name", "bash"), ("container.id", "abc123")])
        .with_tags(["shell", "mitre_execution"])
        .with_hostname("node-1")
    }

    #[test]
    fn a_frame_is_the_response_with_its_seq() {
        let ev = event();
        let stored = event_response(0, ev.clone()).encode_to_vec();
        let frame = OutputFrame {
            body: stored.into(),
            seq: 4242,
        };
        let wire = frame.encode_to_vec();
        assert_eq!(wire.len(), frame.encoded_len());
        let decoded = Response::decode(&wire[..]).unwrap();
        assert_eq!(decoded, event_response(4242, ev));
    }

    #[test]
    fn a_decoded_frame_encodes_to_the_same_response() {
        let ev = event();
        let full = event_response(7, ev.clone()).encode_to_vec();
        let frame = OutputFrame::decode(&full[..]).unwrap();
        assert_eq!(frame.seq, 7);
        let again = Response::decode(&frame.encode_to_vec()[..]).unwrap();
        assert_eq!(again, event_response(7, ev));
        let truncated = OutputFrame::decode(&full[..full.len() - 3]);
        assert!(truncated.is_err());
    }
}
