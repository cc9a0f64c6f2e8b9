//! `next` on the async path: the fetch runs as a task of its own, decides each event, and hands
//! the admitted one to whichever `next` call is waiting, or parks it for the next one.

use std::sync::Arc;

use http::header::HeaderMap;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::oneshot;

use super::{deadline, Fetched, Fetching, Invocations, Verdict};
use crate::http::{self as plumbing, Body};
use crate::runtime_api::client::bad_gateway;
use crate::runtime_api::wire::{NEXT, REQUEST_ID, TENANT_ID};

/// The receiving end of a fetch. Dropped (the runtime hung up) with an event in it, or before
/// one comes, the event is parked for the runtime's next call, never lost.
struct Awaiting {
    rx: oneshot::Receiver<Result<Fetched, Response<Body>>>,
    core: Arc<Invocations>,
}

impl Drop for Awaiting {
    fn drop(&mut self) {
        // Closed first: an event sent from now on is parked by the fetch itself.
        self.rx.close();
        if let Ok(Ok(event)) = self.rx.try_recv() {
            self.core.park(event);
        }
    }
}

impl Invocations {
    /// The runtime's `next`: a parked event if there is one, else the next admitted one. The
    /// fetch runs as its own task, so that the runtime hanging up cannot drop an event in
    /// transit: an event whose runtime call is gone is parked, and whichever `next` call is
    /// waiting takes it (its own fetch, still under way, then parks what it gets in turn). In
    /// `off` mode, a plain forward.
    pub(crate) async fn next(self: &Arc<Self>, headers: HeaderMap) -> Response<Body> {
        if self.admission.is_none() {
            return self.lambda.forward(self.next_request(headers)).await;
        }
        if let Some(parked) = self.take_parked() {
            return parked.into_response();
        }
        let (tx, rx) = oneshot::channel();
        let mut awaiting = Awaiting {
            rx,
            core: self.clone(),
        };
        let core = self.clone();
        // Counted until the event is handed over or parked.
        let fetching = Fetching::add(self);
        tokio::spawn(async move {
            let fetched = core.fetch_admitted(&headers).await;
            if let Err(Ok(event)) = tx.send(fetched) {
                core.park(event);
            }
            drop(fetching);
        });
        loop {
            let parked_arrived = self.parked_arrived.notified();
            tokio::pin!(parked_arrived);
            parked_arrived.as_mut().enable();
            if let Some(parked) = self.take_parked() {
                return parked.into_response();
            }
            tokio::select! {
                fetched = &mut awaiting.rx => {
                    return match fetched {
                        Ok(Ok(fetched)) => fetched.into_response(),
                        Ok(Err(response)) => response,
                        Err(_) => bad_gateway(&"the event fetch ended without an answer"),
                    };
                }
                () = &mut parked_arrived => {}
            }
        }
    }

    fn next_request(&self, headers: HeaderMap) -> Request<Body> {
        let mut req = Request::new(plumbing::empty());
        *req.headers_mut() = headers;
        *req.uri_mut() = self.lambda.uri(PathAndQuery::from_static(NEXT));
        req
    }

    /// Fetches events until one is admitted, answering the shed ones upstream. `Err`: what the
    /// runtime gets instead of an event (Lambda's own non-200 answer, or a 502).
    async fn fetch_admitted(&self, headers: &HeaderMap) -> Result<Fetched, Response<Body>> {
        loop {
            let response = match self.lambda.send(self.next_request(headers.clone())).await {
                Ok(r) => r,
                Err(e) => return Err(bad_gateway(&e)),
            };
            if response.status() != StatusCode::OK {
                return Err(response.map(BodyExt::boxed));
            }
            let (parts, body) = response.into_parts();
            let event = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return Err(bad_gateway(&e)),
            };
            let fetched = Fetched { parts, event };
            let headers = &fetched.parts.headers;
            let Some(id) = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()) else {
                tracing::warn!("event without a request id; passing it through");
                return Ok(fetched);
            };
            let tenant = headers.get(TENANT_ID).and_then(|v| v.to_str().ok());
            let verdict = self
                .admit(id, deadline(headers), &fetched.event, tenant)
                .await;
            if verdict == Verdict::HandOver {
                return Ok(fetched);
            }
        }
    }
}
