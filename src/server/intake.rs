//! Reading request bodies without letting clients hold the server.
//!
//! A client that sends its headers and part of a body and then goes quiet
//! used to keep its connection and its buffer forever; 20 unfinished 15 MiB
//! bodies held 315 MiB. So a body is read under two clocks and one budget:
//! - a whole-body deadline ([`BodyLimits::whole`], default 30 s) and an idle
//!   gap ([`BodyLimits::idle`], default 10 s): past either, the request is
//!   answered 408 and its connection closed;
//! - every buffered body byte is charged to one budget shared by all
//!   connections ([`Intake`], default 256 MiB) before it is buffered: a body
//!   declared with `Content-Length` reserves its whole length up front, a
//!   chunked one reserves as its buffer grows. A request that cannot get its
//!   share within [`BUDGET_WAIT`] is answered 503 and buffers nothing more;
//!   the budget is given back when the request is finished with its body.
//!
//! The body is read only by handlers, after the auth middleware has let the
//! request through: an unauthenticated request holds no budget at all.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::web::Bytes;
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::error::{ApiError, Timeout};

/// How long a request waits for budget held by others before it is refused.
pub const BUDGET_WAIT: Duration = Duration::from_secs(1);

/// The budget is counted in units of this many bytes (a semaphore takes at
/// most `u32::MAX` permits at once).
const UNIT: usize = 1024;

/// How long a body may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// From the first body read to the last byte.
    pub whole: Duration,
    /// Longest wait for the next piece of the body.
    pub idle: Duration,
}

/// The budget of bytes all in-flight request bodies may hold together.
#[derive(Debug)]
pub struct Intake {
    budget: Arc<Semaphore>,
    total: usize,
    /// The clocks of every body.
    pub limits: BodyLimits,
}

/// Budget held by one request's body; given back on drop.
#[derive(Debug)]
pub struct Held(Option<OwnedSemaphorePermit>);

impl Held {
    /// Bytes of budget held.
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.num_permits() * UNIT)
    }
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT)
}

impl Intake {
    /// A budget of `total` bytes (at least `largest`, the body limit, so a
    /// body the limit allows can always be read once the others are done).
    pub fn new(total: usize, largest: usize, limits: BodyLimits) -> Intake {
        let total = units(total.max(largest).max(1)).min(Semaphore::MAX_PERMITS);
        Intake {
            budget: Arc::new(Semaphore::new(total)),
            total: total * UNIT,
            limits,
        }
    }

    /// Bytes of budget not held by any body now.
    pub fn available(&self) -> usize {
        self.budget.available_permits() * UNIT
    }

    /// Takes `bytes` more of the budget into `held`, waiting up to
    /// [`BUDGET_WAIT`] for other bodies to give some back.
    async fn reserve(&self, held: &mut Held, bytes: usize) -> Result<(), ApiError> {
        let want = units(bytes);
        if want == 0 {
            return Ok(());
        }
        let busy = || {
            super::errlog::warn(&format!(
                "refusing request bodies: the in-flight body budget of {} bytes is in use \
                 (--max-inflight-body-bytes)",
                self.total
            ));
            ApiError::Busy(format!(
                "server busy: request bodies in flight hold the budget of {} bytes; retry shortly",
                self.total
            ))
        };
        let n = u32::try_from(want).map_err(|_| busy())?;
        let permit =
            tokio::time::timeout(BUDGET_WAIT, Arc::clone(&self.budget).acquire_many_owned(n))
                .await
                .map_err(|_| busy())?
                .map_err(|_| busy())?;
        match &mut held.0 {
            Some(p) => p.merge(permit),
            slot @ None => *slot = Some(permit),
        }
        Ok(())
    }

    /// Reads a whole body of at most `limit` bytes (`declared`: its
    /// `Content-Length`) under the clocks and the budget.
    pub async fn read(
        &self,
        mut payload: Payload,
        limit: usize,
        declared: Option<usize>,
    ) -> Result<(Bytes, Held), ApiError> {
        let mut held = Held(None);
        let mut buf: Vec<u8> = Vec::new();
        if let Some(n) = declared.filter(|&n| n > 0) {
            self.reserve(&mut held, n).await?;
            buf.reserve_exact(n);
        }
        let started = Instant::now();
        let deadline = started + self.limits.whole;
        loop {
            let gap_ends = Instant::now() + self.limits.idle;
            let next = tokio::time::timeout_at(deadline.min(gap_ends), payload.next()).await;
            let chunk = match next {
                Ok(None) => break,
                Ok(Some(chunk)) => chunk.map_err(|e| match e {
                    actix_web::error::PayloadError::Overflow => ApiError::BodyTooLarge { limit },
                    other => ApiError::InvalidJson(format!("could not read the body: {other}")),
                })?,
                Err(_) if Instant::now() >= deadline => {
                    return Err(ApiError::BodyTimeout(Timeout::Whole(self.limits.whole)));
                }
                Err(_) => return Err(ApiError::BodyTimeout(Timeout::Idle(self.limits.idle))),
            };
            let needed = buf.len() + chunk.len();
            if needed > limit {
                return Err(ApiError::BodyTooLarge { limit });
            }
            if needed > buf.capacity() {
                // Grow by doubling (bounded by the limit), charging the
                // budget for the whole new buffer before allocating it.
                let cap = needed.max(buf.capacity() * 2).min(limit);
                let more = units(cap).saturating_sub(units(held.bytes()));
                self.reserve(&mut held, more * UNIT).await?;
                buf.reserve_exact(cap - buf.len());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok((Bytes::from(buf), held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intake(total: usize) -> Intake {
        Intake::new(
            total,
            0,
            BodyLimits {
                whole: Duration::from_secs(30),
                idle: Duration::from_secs(10),
            },
        )
    }

    #[actix_web::test]
    async fn the_budget_is_given_back_when_a_body_is_dropped() {
        let i = intake(8 * UNIT);
        let mut a = Held(None);
        i.reserve(&mut a, 6 * UNIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(i.available(), 2 * UNIT);
        let mut b = Held(None);
        assert!(matches!(
            i.reserve(&mut b, 4 * UNIT).await,
            Err(ApiError::Busy(_))
        ));
        drop(a);
        assert_eq!(i.available(), 8 * UNIT);
        i.reserve(&mut b, 4 * UNIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.bytes(), 4 * UNIT);
    }

    #[test]
    fn the_budget_is_never_below_the_body_limit() {
        let i = Intake::new(
            10,
            5 * UNIT,
            BodyLimits {
                whole: Duration::from_secs(1),
                idle: Duration::from_secs(1),
            },
        );
        assert_eq!(i.available(), 5 * UNIT);
    }
}
