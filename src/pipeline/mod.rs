//! The event pipeline: a bounded ingest queue in front of worker threads that run the (pure,
//! synchronous) rules engine off the async runtime. A batch is evaluated as a unit by one worker;
//! the caller appends the resulting output events to the outputs log in submission order, so
//! order is kept per input stream.
//!
//! Capacity is counted in events (a semaphore): under the `block` policy a full queue makes the
//! submitter wait (and, through it, the client, by HTTP/2 flow control); under `drop` the batch is
//! refused at once and the caller records the drop.

mod worker;

use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

pub use worker::BatchResult;

use crate::base::event::Priority;
use crate::base::throttle::DropAlertSettings;
use crate::engine::{EvalOptions, Matching, RuleSet};

/// What to do when the ingest queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueuePolicy {
    /// Wait for room: backpressure to the client.
    Block,
    /// Refuse the batch and record the drop.
    Drop,
}

/// How alerts are formatted.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputSettings {
    pub json_output: bool,
    pub json_include_output_property: bool,
    pub json_include_tags_property: bool,
    pub json_include_message_property: bool,
    pub json_include_output_fields_property: bool,
    pub time_format_iso_8601: bool,
    /// Rules less severe than this are not run.
    pub min_priority: Priority,
    pub matching: Matching,
    /// The hostname alerts carry (empty: the server's).
    pub hostname: String,
}

impl Default for OutputSettings {
    fn default() -> Self {
        OutputSettings {
            json_output: false,
            json_include_output_property: true,
            json_include_tags_property: true,
            json_include_message_property: false,
            json_include_output_fields_property: true,
            time_format_iso_8601: false,
            min_priority: Priority::Debug,
            matching: Matching::First,
            hostname: String::new(),
        }
    }
}

/// Pipeline settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Events the ingest queue holds.
    pub queue_size: usize,
    pub policy: QueuePolicy,
    /// Largest accepted event payload, in bytes.
    pub max_payload_bytes: usize,
    /// Per-client ingest rate (events/s) and burst; `None`: unlimited.
    pub client_rate: Option<(f64, f64)>,
    /// Evaluation threads.
    pub workers: usize,
    pub output: OutputSettings,
    pub drop_alerts: DropAlertSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            queue_size: 16_384,
            policy: QueuePolicy::Block,
            max_payload_bytes: 1 << 20,
            client_rate: None,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            output: OutputSettings::default(),
            drop_alerts: DropAlertSettings::default(),
        }
    }
}

/// One event as received.
#[derive(Clone, Debug)]
pub struct InEvent {
    pub source: String,
    pub payload: Vec<u8>,
    /// From the request; `None` means the payload's own time, or now.
    pub time_ns: Option<i64>,
    /// Overrides the server's hostname when not empty.
    pub hostname: String,
    pub seq: u64,
}

/// What an evaluation thread is given.
enum Work {
    Job(Job),
    /// End the thread (one per thread, at close).
    Stop,
}

struct Job {
    events: Vec<InEvent>,
    rules: Arc<RuleSet>,
    output: OutputSettings,
    max_payload: usize,
    reply: oneshot::Sender<BatchResult>,
    _permit: Option<OwnedSemaphorePermit>,
}

/// Why a batch was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// `drop` policy and no room.
    QueueFull,
    /// The pipeline has stopped.
    Closed,
}

/// A cheap, cloneable handle on the pipeline.
#[derive(Clone)]
pub struct Pipeline {
    jobs: mpsc::Sender<Work>,
    workers: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
    capacity: Arc<Semaphore>,
    rules: Arc<RwLock<Arc<RuleSet>>>,
    settings: Arc<RwLock<Settings>>,
}

impl Pipeline {
    /// Starts the evaluation threads; each batch's evaluation time goes into `took`.
    pub fn start(settings: Settings, hostname: String, took: prometheus::Histogram) -> Pipeline {
        let (jobs, rx) = mpsc::channel::<Work>();
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::new();
        for i in 0..settings.workers.max(1) {
            let rx = rx.clone();
            let hostname = hostname.clone();
            let took = took.clone();
            let handle = std::thread::Builder::new()
                .name(format!("eval-{i}"))
                .stack_size(crate::engine::isolate::STACK_BYTES)
                .spawn(move || worker::run(rx, hostname, took))
                .expect("cannot spawn an evaluation thread");
            workers.push(handle);
        }
        Pipeline {
            jobs,
            workers: Arc::new(Mutex::new(workers)),
            capacity: Arc::new(Semaphore::new(settings.queue_size.max(1))),
            rules: Arc::new(RwLock::new(Arc::new(RuleSet::empty()))),
            settings: Arc::new(RwLock::new(settings)),
        }
    }

    /// Swaps in a new rule set: every batch is evaluated wholly by one set.
    pub fn set_rules(&self, rules: RuleSet) {
        *self
            .rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(rules);
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Applies new settings to batches submitted from now on; a changed queue size grows or
    /// shrinks the queue (shrinking waits for room to free up).
    pub fn update(&self, new: Settings) {
        let old_size = {
            let mut guard = self
                .settings
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let old = guard.queue_size;
            *guard = new.clone();
            old
        };
        let (old_size, new_size) = (old_size.max(1), new.queue_size.max(1));
        if new_size > old_size {
            self.capacity.add_permits(new_size - old_size);
        } else if new_size < old_size {
            let debt = old_size - new_size;
            let forgotten = self.capacity.forget_permits(debt);
            if forgotten < debt {
                let capacity = self.capacity.clone();
                let rest = (debt - forgotten) as u32;
                tokio::spawn(async move {
                    if let Ok(permits) = capacity.acquire_many(rest).await {
                        permits.forget();
                    }
                });
            }
        }
    }

    /// Events queued or being evaluated, and the queue's size.
    pub fn queue_depth(&self) -> (usize, usize) {
        let size = self.settings().queue_size.max(1);
        (size.saturating_sub(self.capacity.available_permits()), size)
    }

    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Queues a batch for evaluation; the result arrives on the returned receiver.
    pub async fn submit(
        &self,
        events: Vec<InEvent>,
    ) -> Result<oneshot::Receiver<BatchResult>, Refused> {
        let settings = self.settings();
        // A batch larger than the whole queue takes all of it.
        let n = (events.len().max(1)).min(settings.queue_size.max(1)) as u32;
        let permit = match settings.policy {
            QueuePolicy::Block => self
                .capacity
                .clone()
                .acquire_many_owned(n)
                .await
                .map_err(|_| Refused::Closed)?,
            QueuePolicy::Drop => self
                .capacity
                .clone()
                .try_acquire_many_owned(n)
                .map_err(|_| Refused::QueueFull)?,
        };
        let (reply, rx) = oneshot::channel();
        let job = Job {
            events,
            rules: self.rules(),
            output: settings.output,
            max_payload: settings.max_payload_bytes,
            reply,
            _permit: Some(permit),
        };
        self.jobs
            .send(Work::Job(job))
            .map_err(|_| Refused::Closed)?;
        Ok(rx)
    }

    /// Stops the evaluation threads once they have finished the batches already queued, and
    /// waits for them. Batches submitted later are refused ([`Refused::Closed`]) or never
    /// answered.
    pub fn close(&self) {
        let workers = std::mem::take(
            &mut *self
                .workers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for _ in &workers {
            let _ = self.jobs.send(Work::Stop);
        }
        for handle in workers {
            let _ = handle.join();
        }
    }

    pub fn eval_options(output: &OutputSettings) -> EvalOptions {
        EvalOptions {
            matching: output.matching,
            min_priority: output.min_priority,
        }
    }
}
