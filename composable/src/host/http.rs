//! The probes over HTTP, for an orchestrator (feature `health-http`): `GET /health/live` and
//! `GET /health/ready` answer `200` or `503` with a short text body listing the services and
//! their states. `docs/adr/0013-health-endpoint.md` says why it is built this way.
//!
//! Whatever a client sends, it costs the process a bounded amount: at most
//! [`max_connections`](HealthServer::max_connections) connections at once (more are closed as
//! soon as they are accepted), one request each, headers of at most 8 KiB (larger ones are
//! answered `431`), no request body ever read, and each connection closed after
//! [`request_timeout`](HealthServer::request_timeout) however slowly it trickles in.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Probes;
use crate::BoxError;
use crate::clock::{Clock, SystemClock};
use crate::service::{Service, ServiceContext};

/// The largest request head read (hyper's smallest buffer).
const MAX_HEAD: usize = 8 * 1024;

/// The probe endpoint could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HealthServerError {
    /// The address could not be bound.
    #[error("cannot serve the health probes on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// Serves a [`RunningApp`](super::RunningApp)'s [`Probes`] over HTTP/1.1 — `/health/live` and
/// `/health/ready` — as a [`Service`]: start it with [`service::spawn`](crate::service::spawn)
/// beside the application, and stop it after the application has shut down, so that the
/// orchestrator sees the process not ready (`503`) while it stops. See the
/// [module docs](self) for the bounds it keeps.
///
/// ```
/// # use composable::{aggregate, apply, command, event};
/// # use serde::{Deserialize, Serialize};
/// # #[event(name = "order.placed", version = 1)]
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Placed;
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Place;
/// # #[derive(Debug, Default)] pub struct Order;
/// # #[aggregate(stream = "order")]
/// # impl Order {
/// #     #[command] fn place(&self, _c: Place) -> Placed { Placed }
/// #     #[apply] fn placed(&mut self, _e: &Placed) {}
/// # }
/// use std::sync::Arc;
/// use composable::bus::InMemoryBus;
/// use composable::host::{App, HealthServer, Shutdown};
/// use composable::{AggregateRunner, InMemoryEventStore, service};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = InMemoryEventStore::new();
/// let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), ()));
/// let running = App::on_bus("shop", store.clone(), InMemoryBus::new())
///     .aggregate(&orders)
///     .build()?
///     .start();
/// let server = HealthServer::bind("127.0.0.1:0".parse()?, running.probes()).await?;
/// let address = server.local_addr(); // GET http://{address}/health/ready
/// let probes = service::spawn(server);
/// // In a binary: `running.run_until_shutdown(&Shutdown::new()).await?`.
/// let report = running.until(std::future::ready(()), &Shutdown::new()).await;
/// probes.stop().await?;
/// report.into_result()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct HealthServer {
    listener: TcpListener,
    address: SocketAddr,
    probes: Probes,
    timeout: Duration,
    max_connections: usize,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for HealthServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthServer")
            .field("address", &self.address)
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl HealthServer {
    /// Binds `address` (port `0` picks a free one: see [`local_addr`](Self::local_addr)) to
    /// serve `probes`; each connection has 2 s, and 32 may be open at once.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind(address: SocketAddr, probes: Probes) -> Result<Self, HealthServerError> {
        let bind = |source| HealthServerError::Bind { address, source };
        let listener = TcpListener::bind(address).await.map_err(bind)?;
        let address = listener.local_addr().map_err(bind)?;
        Ok(Self {
            listener,
            address,
            probes,
            timeout: Duration::from_secs(2),
            max_connections: 32,
            clock: Arc::new(SystemClock),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// How long one connection may take from accept to answer (2 s by default): one that has
    /// not sent its request by then is closed.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many connections may be open at once (32 by default, at least 1); one more is closed
    /// as soon as it is accepted.
    #[must_use]
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Measures the request timeout on `clock` (the system clock by default).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

impl Service for HealthServer {
    fn name(&self) -> String {
        format!("health-http {}", self.address)
    }

    async fn run(self, mut context: ServiceContext) -> Result<(), BoxError> {
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let mut connections = JoinSet::new();
        context.caught_up(None);
        loop {
            while connections.try_join_next().is_some() {}
            let accepted = tokio::select! {
                biased;
                () = context.stopped() => break,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    // Over the limit: closed at once (dropped).
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        tracing::debug!(address = %self.address, "too many probe connections; one closed");
                        continue;
                    };
                    let (probes, clock) = (self.probes.clone(), Arc::clone(&self.clock));
                    let timeout = self.timeout;
                    connections.spawn(async move {
                        serve(stream, probes, timeout, &*clock).await;
                        drop(slot);
                    });
                }
                Err(error) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(address = %self.address, %error, "accepting a probe connection failed");
                    tokio::select! {
                        biased;
                        () = context.stopped() => break,
                        () = self.clock.sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        }
        connections.shutdown().await;
        Ok(())
    }
}

/// Serves one request on `stream`, within `timeout`.
async fn serve(stream: TcpStream, probes: Probes, timeout: Duration, clock: &dyn Clock) {
    let service = service_fn(move |request: Request<Incoming>| {
        let response = respond(&probes, &request);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = http1::Builder::new();
    builder.keep_alive(false).max_buf_size(MAX_HEAD).header_read_timeout(None);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        served = connection => {
            if let Err(error) = served {
                tracing::debug!(%error, "a probe connection ended badly");
            }
        }
        () = clock.sleep(timeout) => tracing::debug!(?timeout, "a probe connection timed out"),
    }
}

/// The answer to `request`.
fn respond(probes: &Probes, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let (status, body) = match (request.method(), path) {
        (&Method::GET | &Method::HEAD, "/health/live") => {
            let liveness = probes.liveness();
            (ok_or_unavailable(liveness.is_live()), liveness.to_string())
        }
        (&Method::GET | &Method::HEAD, "/health/ready") => {
            let readiness = probes.readiness();
            (ok_or_unavailable(readiness.is_ready()), readiness.to_string())
        }
        (_, "/health/live" | "/health/ready") => {
            (StatusCode::METHOD_NOT_ALLOWED, "use GET or HEAD".to_owned())
        }
        _ => (StatusCode::NOT_FOUND, "not found: /health/live and /health/ready".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body + "\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn ok_or_unavailable(ok: bool) -> StatusCode {
    if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
}
