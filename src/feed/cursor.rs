//! Where a reader of a log starts, and what its acknowledgements may say: the cursor rules of
//! `falco.outputs` and `falco.drops`, with typed errors (the gRPC layer only maps them).
//!
//! An explicit `after_seq` wins over a consumer's stored position; a new consumer starts at the
//! oldest retained record; a request with neither follows live records. `from_oldest` turns a
//! trimmed position into a loss notice instead of an error. Acknowledgements need a consumer and
//! may not pass the log's head.

use super::{Feed, FeedError, Record, Start, TrimPolicy};
use crate::store::Consumers;

/// The consumer legacy `get` calls (an empty request) drain.
pub const DEFAULT_CONSUMER: &str = "default";

/// The cursor fields every log request carries, as sent.
pub struct CursorRequest {
    pub after_seq: Option<u64>,
    pub consumer: String,
    pub ack: u64,
    pub from_oldest: bool,
}

/// A validated cursor.
#[derive(Clone, Debug)]
pub struct Cursor {
    pub after: Option<u64>,
    pub consumer: Option<String>,
    pub ack: u64,
    pub policy: TrimPolicy,
}

fn valid_consumer(name: &str) -> Result<String, FeedError> {
    let ok = name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok {
        Ok(name.to_string())
    } else {
        Err(FeedError::InvalidConsumer(name.to_string()))
    }
}

impl Cursor {
    pub fn parse(req: CursorRequest) -> Result<Cursor, FeedError> {
        let consumer = match req.consumer.as_str() {
            "" => None,
            name => Some(valid_consumer(name)?),
        };
        if req.ack > 0 && consumer.is_none() {
            return Err(FeedError::AckWithoutConsumer);
        }
        Ok(Cursor {
            after: req.after_seq,
            consumer,
            ack: req.ack,
            policy: if req.from_oldest {
                TrimPolicy::Report
            } else {
                TrimPolicy::Fail
            },
        })
    }

    /// For `get`: with neither a position nor a consumer, drain the shared consumer `default`
    /// (upstream drained a shared queue); a legacy (empty) request is told about trimmed records
    /// rather than refused.
    pub fn for_get(mut self, legacy: bool) -> Cursor {
        if self.after.is_none() && self.consumer.is_none() {
            self.consumer = Some(DEFAULT_CONSUMER.to_string());
            if legacy {
                self.policy = TrimPolicy::Report;
            }
        }
        self
    }

    /// Where the reader starts in log `log`.
    pub fn start(&self, consumers: &Consumers, log: &str) -> Result<Start, FeedError> {
        if let Some(after) = self.after {
            return Ok(Start::After(after));
        }
        match &self.consumer {
            Some(name) => Ok(match consumers.get(log, name)? {
                Some(acked) => Start::After(acked),
                None => Start::Oldest,
            }),
            None => Ok(Start::Live),
        }
    }
}

/// Records that `consumer` has everything up to `seq` of `feed`.
pub fn acknowledge<T: Record>(
    feed: &Feed<T>,
    consumers: &Consumers,
    consumer: Option<&str>,
    seq: u64,
) -> Result<(), FeedError> {
    let Some(name) = consumer else {
        return Err(FeedError::AckWithoutConsumer);
    };
    let newest = feed.head();
    if seq > newest {
        return Err(FeedError::AckBeyondHead {
            log: feed.name(),
            seq,
            newest,
        });
    }
    consumers.advance(feed.name(), name, seq)?;
    Ok(())
}
