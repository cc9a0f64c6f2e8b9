//! `next` on the async path: the fetch runs as a task of its own, decides each event, and hands
//! the admitted one to whichever `next` call is waiting, or parks it for the next one.

use std::sync::Arc;

use http::header::HeaderMap;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::oneshot;

use super::{bad_gateway, deadline, prepare, Fetched, Fetching, Proxy};
use crate::decision::admission::Admission;
use crate::http::{self as plumbing, Body};
use crate::runtime_api::wire::{NEXT, REQUEST_ID, TENANT_ID};

/// The receiving end of a fetch. Dropped (the runtime hung up) with an event in it, or before
/// one comes, the event is parked for the runtime's next call, never lost.
struct Awaiting {
    rx: oneshot::Receiver<Result<Fetched, Response<Body>>>,
    proxy: Arc<Proxy>,
}

impl Drop for Awaiting {
    fn drop(&mut self) {
        // Closed first: an event sent from now on is parked by the fetch itself.
        self.rx.close();
        if let Ok(Ok(event)) = self.rx.try_recv() {
            tracing::warn!(
                "the runtime hung up while its event was on the way; keeping it for its next call"
            );
            self.proxy.park(event);
        }
    }
}

impl Proxy {
    /// The runtime's `next`: a parked event if there is one, else the next admitted one. The
    /// fetch runs as its own task, so that the runtime hanging up cannot drop an event in
    /// transit: an event whose runtime call is gone is parked, and whichever `next` call is
    /// waiting takes it (its own fetch, still under way, then parks what it gets in turn).
    pub(crate) async fn next(
        self: &Arc<Self>,
        admission: Arc<Admission>,
        headers: HeaderMap,
    ) -> Response<Body> {
        if let Some(parked) = self.parked.lock().pop_front() {
            return parked.into_response();
        }
        let (tx, rx) = oneshot::channel();
        let mut awaiting = Awaiting {
            rx,
            proxy: self.clone(),
        };
        let this = self.clone();
        // Counted until the event is handed over or parked.
        let fetching = Fetching::add(self);
        tokio::spawn(async move {
            let fetched = this.fetch_admitted(&admission, &headers).await;
            if let Err(Ok(event)) = tx.send(fetched) {
                tracing::warn!("the runtime hung up while its event was on the way; keeping it for its next call");
                this.park(event);
            }
            drop(fetching);
        });
        loop {
            let parked_arrived = self.parked_arrived.notified();
            tokio::pin!(parked_arrived);
            parked_arrived.as_mut().enable();
            if let Some(parked) = self.parked.lock().pop_front() {
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

    /// Fetches events until one is admitted, answering the shed ones upstream. `Err`: what the
    /// runtime gets instead of an event (Lambda's own non-200 answer, or a 502).
    async fn fetch_admitted(
        &self,
        admission: &Admission,
        headers: &HeaderMap,
    ) -> Result<Fetched, Response<Body>> {
        loop {
            let mut req = Request::new(plumbing::empty());
            *req.headers_mut() = headers.clone();
            *req.uri_mut() = self.upstream_uri(PathAndQuery::from_static(NEXT));
            let response = match self.client.request(prepare(req, &self.host)).await {
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
            let Some(id) = fetched
                .parts
                .headers
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
            else {
                tracing::warn!("event without a request id; passing it through");
                return Ok(fetched);
            };
            let deadline = deadline(&fetched.parts.headers);
            let tenant = fetched
                .parts
                .headers
                .get(TENANT_ID)
                .and_then(|v| v.to_str().ok());
            if self
                .admit(admission, id, deadline, &fetched.event, tenant)
                .await
            {
                return Ok(fetched);
            }
        }
    }

    /// Off mode's `next` on the async path: a plain forward.
    pub(crate) async fn forward_next(&self, headers: HeaderMap) -> Response<Body> {
        let mut req = Request::new(plumbing::empty());
        *req.headers_mut() = headers;
        *req.uri_mut() = self.upstream_uri(PathAndQuery::from_static(NEXT));
        self.forward(req).await
    }
}
