//! The invocation core: what happens to an event from its fetch to its lease's release, whichever
//! transport carries the runtime's connection.
//!
//! - **next**: the runtime asks for an event. A parked one goes first ([`Invocations::take_parked`]);
//!   otherwise a transport claims the fetch ([`Invocations::claim_fetch`]) and fetches on its own
//!   connection, or the core fetches on the async path ([`Invocations::next`], `next.rs`), which
//!   also watches for events parked meanwhile.
//! - **decide**: each fetched event is admitted or shed ([`Invocations::admit`], `shed.rs`). A
//!   shed event's 429 is posted to Lambda by the core, at most once: tried again only when the
//!   first post's fate is unknown, and the event goes to the runtime only if the answer certainly
//!   never reached Lambda. The runtime never sees a shed event.
//! - **hand over or park**: an admitted event goes to the runtime; if the runtime hung up
//!   meanwhile it is parked ([`Invocations::park`]) for its next call, never dropped.
//! - **release**: the runtime's answer forwarded, the lease is returned ([`Invocations::release`],
//!   or a [`Release`] that returns it if dropped) before the
//!   runtime learns the post went through, and even if it hangs up mid-answer.
//!
//! The core reads and writes no runtime connection. The transports drive it: the blocking threads
//! (`forwarder`) and hyper (`proxy`). Neither calls the other: a connection the blocking path
//! gives up goes to hyper as a [`HandOff`] through the channel the core defines.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::Response;
use parking_lot::Mutex;

use crate::config::{Config, ResponseMode};
use crate::decision::admission::Admission;
use crate::http::{full_body, Body};
use crate::lease::Deadline;
use crate::runtime_api::client::Lambda;
use crate::runtime_api::wire::{DEADLINE_MS, RESPONSE_MODE};

mod next;
mod shed;

pub(crate) use shed::Verdict;

/// The content type of a streamed HTTP integration response.
const HTTP_INTEGRATION_RESPONSE: &str = "application/vnd.awslambda.http-integration-response";

/// A runtime connection the blocking transport gives up, with the bytes it already read from
/// it: the hyper transport serves it from there for the rest of its life.
pub struct HandOff {
    pub(crate) stream: std::net::TcpStream,
    pub(crate) unread: Bytes,
}

/// Where the blocking transport sends the connections it gives up.
pub(crate) type HandOffs = tokio::sync::mpsc::UnboundedSender<HandOff>;
/// Where the hyper transport receives them.
pub(crate) type HandedOff = tokio::sync::mpsc::UnboundedReceiver<HandOff>;

/// The channel between the two transports.
pub(crate) fn hand_offs() -> (HandOffs, HandedOff) {
    tokio::sync::mpsc::unbounded_channel()
}

/// The invocations of one environment, from fetch to release.
pub struct Invocations {
    lambda: Lambda,
    /// `None` in `off` mode: every request is a plain forward.
    admission: Option<Arc<Admission>>,
    response_mode: ResponseMode,
    /// The runtime has posted a streamed HTTP answer: its front door streams.
    runtime_streams: AtomicBool,
    /// Events fetched for a runtime that hung up before they arrived, oldest first.
    parked: Mutex<VecDeque<Fetched>>,
    /// An event was parked: a `next` call waiting on its own fetch takes it instead.
    parked_arrived: tokio::sync::Notify,
    /// `next` fetches under way upstream. A transport fetches on its own connection only when
    /// none is: a second `next` (a runtime that hung up and asks again) must also watch for
    /// parked events, which only [`Invocations::next`] does.
    fetching: AtomicUsize,
}

/// An event as Lambda handed it out: its head and its body.
pub(crate) struct Fetched {
    pub(crate) parts: http::response::Parts,
    pub(crate) event: Bytes,
}

impl Fetched {
    pub(crate) fn into_response(self) -> Response<Body> {
        Response::from_parts(self.parts, full_body(self.event))
    }
}

/// Counts a `next` fetch under way while it lives.
pub(crate) struct Fetching(Arc<Invocations>);

impl Fetching {
    fn add(core: &Arc<Invocations>) -> Fetching {
        core.fetching.fetch_add(1, Ordering::AcqRel);
        Fetching(core.clone())
    }
}

impl Drop for Fetching {
    fn drop(&mut self) {
        self.0.fetching.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Returns `id`'s lease when dropped, if nobody did before: a runtime that hangs up mid-answer
/// must not leave its lease behind.
pub(crate) struct Release {
    admission: Arc<Admission>,
    id: Option<String>,
    /// The runtime answered with an error: its duration says nothing of the downstream.
    errored: bool,
}

impl Release {
    /// Returns the lease now.
    pub(crate) async fn now(mut self) {
        if let Some(id) = self.id.take() {
            self.admission.release(&id, self.errored).await;
        }
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if let (Some(id), Ok(runtime)) = (self.id.take(), tokio::runtime::Handle::try_current()) {
            let admission = self.admission.clone();
            // The runtime hung up mid-answer: no sample.
            runtime.spawn(async move { admission.release(&id, true).await });
        }
    }
}

impl Invocations {
    pub(crate) fn new(
        config: &Config,
        admission: Option<Arc<Admission>>,
    ) -> Result<Invocations, http::uri::InvalidUri> {
        Ok(Invocations {
            lambda: Lambda::new(&config.upstream)?,
            admission,
            response_mode: config.response_mode,
            runtime_streams: AtomicBool::new(false),
            parked: Mutex::new(VecDeque::new()),
            parked_arrived: tokio::sync::Notify::new(),
            fetching: AtomicUsize::new(0),
        })
    }

    /// The async way to Lambda, which the hyper transport forwards through.
    pub(crate) fn lambda(&self) -> &Lambda {
        &self.lambda
    }

    pub(crate) fn admission(&self) -> Option<&Arc<Admission>> {
        self.admission.as_ref()
    }

    /// The runtime asked for an event: it is initialised and idle.
    pub(crate) fn runtime_ready(&self) {
        if let Some(admission) = &self.admission {
            admission.runtime_ready();
        }
    }

    /// The only fetch under way, or none if another is (then the caller takes
    /// [`Invocations::next`], which waits for either). Claimed before looking for a parked
    /// event: one parked after the look comes from a fetch that was under way.
    pub(crate) fn claim_fetch(self: &Arc<Self>) -> Option<Fetching> {
        self.fetching
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Fetching(self.clone()))
    }

    pub(crate) fn take_parked(&self) -> Option<Fetched> {
        self.parked.lock().pop_front()
    }

    /// Keeps an event whose runtime hung up for the next `next` call, waking one that waits.
    pub(crate) fn park(&self, fetched: Fetched) {
        tracing::warn!(
            "the runtime hung up while its event was on the way; keeping it for its next call"
        );
        self.parked.lock().push_back(fetched);
        self.parked_arrived.notify_waiters();
    }

    /// The runtime answers invocation `id` (`errored`: with an error) on a connection that may
    /// hang up mid-answer: the lease to return once the answer is forwarded, returned anyway if
    /// it is dropped; `None` in `off` mode. The answer's headers teach the core whether the
    /// runtime streams.
    pub(crate) fn answering(
        &self,
        id: &str,
        errored: bool,
        headers: &HeaderMap,
    ) -> Option<Release> {
        let admission = self.admission.as_ref()?;
        self.learn_response_mode(headers);
        Some(Release {
            admission: admission.clone(),
            id: Some(id.to_string()),
            errored,
        })
    }

    /// Returns `id`'s lease (`errored`: its time is no sample), for a transport that forwarded
    /// the runtime's answer itself. Nothing in `off` mode.
    pub(crate) async fn release(&self, id: &str, errored: bool) {
        if let Some(admission) = &self.admission {
            admission.release(id, errored).await;
        }
    }

    /// A streamed HTTP answer teaches the core to post its 429s streamed too
    /// (`ADMISSION_RESPONSE_MODE=auto`).
    fn learn_response_mode(&self, headers: &HeaderMap) {
        let streamed_http = headers
            .get(RESPONSE_MODE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"streaming"))
            && headers.get(header::CONTENT_TYPE).is_some_and(|v| {
                v.as_bytes()
                    .starts_with(HTTP_INTEGRATION_RESPONSE.as_bytes())
            });
        if streamed_http && !self.runtime_streams.swap(true, Ordering::Relaxed) {
            tracing::info!("the runtime streams its HTTP answers: 429s are streamed from now on");
        }
    }

    fn streams(&self) -> bool {
        match self.response_mode {
            ResponseMode::Buffered => false,
            ResponseMode::Streaming => true,
            ResponseMode::Auto => self.runtime_streams.load(Ordering::Relaxed),
        }
    }
}

/// An event's deadline, from Lambda's header.
pub(crate) fn deadline(headers: &HeaderMap) -> Deadline {
    Deadline::from_unix_ms(
        headers
            .get(DEADLINE_MS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok()),
    )
}
