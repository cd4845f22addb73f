//! Where a reader of a log starts, and what its acknowledgements may say: the cursor rules of
//! `falco.outputs` and `falco.drops`, with typed errors (the gRPC layer only maps them).
//!
//! An explicit `after_seq` wins over a consumer's stored position; a new consumer starts at the
//! oldest retained record; a request with neither follows live records. `from_oldest` turns a
//! trimmed position into a loss notice instead of an error. Acknowledgements need a consumer and
//! may not pass the log's head. A start time stands in for `after_seq` (resolved to a seq through
//! the log's time index when the stream opens), and an end time bounds the stream.

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
    /// `start_time` / `end_time` as sent: (seconds, nanos) since the Unix epoch.
    pub start_time: Option<(i64, i32)>,
    pub end_time: Option<(i64, i32)>,
}

/// A validated cursor.
#[derive(Clone, Debug)]
pub struct Cursor {
    pub after: Option<u64>,
    pub consumer: Option<String>,
    pub ack: u64,
    pub policy: TrimPolicy,
    /// Start at the first record stored at or after this time (ns).
    pub since: Option<u64>,
    /// End after the last record stored at or before this time (ns).
    pub until: Option<u64>,
}

/// A wire time as nanoseconds since the Unix epoch.
fn time_ns(name: &'static str, time: Option<(i64, i32)>) -> Result<Option<u64>, FeedError> {
    time.map(|(secs, nanos)| {
        let ns = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        u64::try_from(ns).map_err(|_| FeedError::BadTime(name))
    })
    .transpose()
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
        let since = time_ns("start_time", req.start_time)?;
        let until = time_ns("end_time", req.end_time)?;
        if since.is_some() && req.after_seq.is_some() {
            return Err(FeedError::SeqAndTime);
        }
        if let (Some(s), Some(u)) = (since, until) {
            if u < s {
                return Err(FeedError::EndBeforeStart);
            }
        }
        Ok(Cursor {
            since,
            until,
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
        if self.after.is_none() && self.consumer.is_none() && self.since.is_none() {
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
