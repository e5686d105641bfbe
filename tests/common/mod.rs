//! A scripted service for driving the layers deterministically under a paused clock.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mssql_resilience::error::{Error, ErrorKind, Outcome, TimeoutScope};
use mssql_resilience::{RequestContext, WithContext};
use tokio::time::Instant;

/// What the scripted service does on one call.
#[derive(Clone, Debug)]
pub enum Step {
    /// Answer `Ok(n)`.
    Ok(u32),
    /// Fail with this error.
    Err(Error),
    /// Wait, then do the inner step.
    After(Duration, Box<Step>),
    /// Never answer.
    Hang,
}

/// A `tower::Service` that plays `Step`s in order (the last one repeats) and logs call times.
#[derive(Clone)]
pub struct Script {
    steps: Arc<Mutex<VecDeque<Step>>>,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Script {
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Script {
            steps: Arc::new(Mutex::new(steps.into_iter().collect())),
            calls: Arc::default(),
        }
    }

    /// How many times the service was called.
    pub fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// When each call started.
    pub fn call_times(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }

    fn next_step(&self) -> Step {
        let mut steps = self.steps.lock().unwrap();
        if steps.len() > 1 {
            steps.pop_front().unwrap()
        } else {
            steps
                .front()
                .cloned()
                .expect("script has at least one step")
        }
    }
}

fn play(step: Step) -> Pin<Box<dyn Future<Output = Result<u32, Error>> + Send>> {
    Box::pin(async move {
        match step {
            Step::Ok(n) => Ok(n),
            Step::Err(e) => Err(e),
            Step::After(d, inner) => {
                tokio::time::sleep(d).await;
                play(*inner).await
            }
            Step::Hang => std::future::pending().await,
        }
    })
}

impl tower::Service<WithContext<u32>> for Script {
    type Response = u32;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<u32, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: WithContext<u32>) -> Self::Future {
        self.calls.lock().unwrap().push(Instant::now());
        play(self.next_step())
    }
}

/// A server error as the server would send it.
pub fn server(number: u32, class: u8) -> Error {
    Error::new(
        ErrorKind::Server {
            number,
            class,
            state: 1,
            message: format!("server error {number}"),
        },
        Outcome::Rejected,
    )
}

/// The connection broke after the request was sent.
pub fn reset_after_send() -> Error {
    Error::new(
        ErrorKind::Io(std::io::ErrorKind::ConnectionReset),
        Outcome::Ambiguous,
    )
}

/// A pool checkout timed out: nothing was sent.
pub fn pool_timeout() -> Error {
    Error::timeout(TimeoutScope::PoolCheckout, Duration::from_millis(100))
}

pub fn read() -> WithContext<u32> {
    WithContext::new(RequestContext::read("test_read"), 1)
}

pub fn write() -> WithContext<u32> {
    WithContext::new(RequestContext::write("test_write"), 1)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
