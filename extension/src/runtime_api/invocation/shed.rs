//! The decision on a fetched event and, for a shed one, its 429 posted to Lambda: at most once,
//! tried a second time only when the first post's fate is unknown.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request};

use super::{Invocations, HTTP_INTEGRATION_RESPONSE};
use crate::decision::admission::Decision;
use crate::decision::front_door::ShedAnswer;
use crate::http::full_body;
use crate::lease::Deadline;
use crate::runtime_api::wire::{INVOCATION, RESPONSE_MODE};

/// How a post Lambda refused as a client error is described: the invocation has its answer, or
/// is over.
const ALREADY_ANSWERED: &str = "Lambda refused it as an answer already given";
/// Bound on posting a shed answer.
const SHED_POST_TIMEOUT: Duration = Duration::from_secs(2);

/// What a transport does with a fetched event once decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Give it to the runtime.
    HandOver,
    /// It was answered upstream (or maybe answered: at most once): fetch the next instead.
    Shed,
}

/// What became of a shed answer's post.
enum Posted {
    Accepted,
    /// Accepted, or found already answered, on the second try: its time says nothing about sheds.
    AcceptedOnRetry,
    /// No connection to Lambda could be made: the answer certainly never arrived.
    NeverSent(String),
    /// It may or may not have been recorded.
    Unknown(String),
}

impl Invocations {
    /// Decides for a fetched event and, if it is shed, posts its 429. In `off` mode every event
    /// is handed over.
    pub(crate) async fn admit(
        &self,
        id: &str,
        deadline: Deadline,
        event: &[u8],
        tenant: Option<&str>,
    ) -> Verdict {
        let Some(admission) = &self.admission else {
            return Verdict::HandOver;
        };
        let arrived = std::time::Instant::now();
        let Decision::Shed {
            front_door,
            retry_after,
        } = admission.decide(id, deadline, event, tenant).await
        else {
            return Verdict::HandOver;
        };
        let answer = front_door.shed_answer(retry_after, self.streams());
        match self.post_shed(id, answer).await {
            Posted::Accepted => admission.shed_took(arrived.elapsed()),
            Posted::AcceptedOnRetry => {}
            Posted::NeverSent(why) => {
                tracing::warn!(request_id = id, error = %why, "could not reach Lambda to post the shed answer; admitting");
                admission.shed_failed(id, deadline).await;
                return Verdict::HandOver;
            }
            Posted::Unknown(why) => {
                tracing::warn!(request_id = id, error = %why, "the shed answer may have reached Lambda; not handing the event to the runtime as well (at most once)");
                admission.shed_unconfirmed();
            }
        }
        Verdict::Shed
    }

    /// Posts the 429; a post whose fate is unknown is tried once more: Lambda takes one answer
    /// per invocation, so a second post either lands (the first did not) or is refused as a
    /// second answer (the first did), and never makes two.
    async fn post_shed(&self, id: &str, answer: ShedAnswer) -> Posted {
        match self.post_shed_once(id, &answer).await {
            Posted::Unknown(first) => match self.post_shed_once(id, &answer).await {
                Posted::Accepted | Posted::AcceptedOnRetry => Posted::AcceptedOnRetry,
                Posted::Unknown(again) if again.starts_with(ALREADY_ANSWERED) => {
                    Posted::AcceptedOnRetry
                }
                Posted::NeverSent(again) | Posted::Unknown(again) => {
                    Posted::Unknown(format!("{first}; then {again}"))
                }
            },
            posted => posted,
        }
    }

    async fn post_shed_once(&self, id: &str, answer: &ShedAnswer) -> Posted {
        let path = format!("{INVOCATION}{id}/response");
        let Ok(path) = PathAndQuery::try_from(path) else {
            return Posted::NeverSent(format!("request id {id:?} cannot be put in a path"));
        };
        let mut req = Request::new(full_body(answer.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.lambda.uri(path);
        let h = req.headers_mut();
        if answer.streaming {
            h.insert(RESPONSE_MODE, HeaderValue::from_static("streaming"));
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(HTTP_INTEGRATION_RESPONSE),
            );
            h.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        } else {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let sent = tokio::time::timeout(SHED_POST_TIMEOUT, self.lambda.send(req)).await;
        match sent {
            Err(_) => Posted::Unknown(format!("no answer within {SHED_POST_TIMEOUT:?}")),
            Ok(Err(e)) if e.is_connect() => Posted::NeverSent(e.to_string()),
            Ok(Err(e)) => Posted::Unknown(e.to_string()),
            Ok(Ok(r)) if r.status().is_success() => Posted::Accepted,
            // Lambda's answer to a second answer, or to an invocation already over.
            Ok(Ok(r)) if r.status().is_client_error() => {
                Posted::Unknown(format!("{ALREADY_ANSWERED} ({})", r.status()))
            }
            Ok(Ok(r)) => Posted::Unknown(format!("Runtime API answered {}", r.status())),
        }
    }
}
