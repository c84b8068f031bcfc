//! `slotgate mock-backend`: an OpenAI-compatible fake model server shaped like llama-server, for
//! demos, integration tests and benchmarks (DESIGN.md §5).
//!
//! One thread, one monoio runtime. Endpoints: `GET /health`, `GET /v1/models`,
//! `POST /v1/chat/completions`, `POST /v1/completions` (JSON or SSE), `POST /v1/embeddings`,
//! and `GET /mock/stats` (what the mock saw, for tests).

mod render;
mod server;
mod stats;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;

use monoio::net::ListenerOpts;
use monoio::FusionDriver;

pub use stats::StatsSnapshot;

/// How the mock behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct MockConfig {
    /// Address to bind (default loopback).
    pub host: IpAddr,
    /// Port to bind; 0 picks a free one (read it from [`MockHandle::addr`]).
    pub port: u16,
    /// Model ids advertised by `/v1/models`; the first is the default for requests without one.
    pub models: Vec<String>,
    /// Tokens per completion (a request's `max_tokens` may lower it).
    pub tokens: usize,
    /// Streaming pace; 0 = as fast as possible.
    pub tokens_per_sec: f64,
    /// Delay before the first token of a stream.
    pub ttft_ms: u64,
    /// After start, `/health` answers 503 loading and `/v1/models` is empty for this long.
    pub load_ms: u64,
    /// Drop the connection after this many SSE events (no terminating chunk).
    pub fail_after: Option<usize>,
    /// Force every inference answer to this status with an OpenAI error body; 0 or 200 = off.
    pub status: u16,
    /// Pad non-stream completions to about this many bytes (benchmarks).
    pub response_bytes: Option<usize>,
    /// Components per embedding vector.
    pub embedding_dims: usize,
    /// The `created` timestamp put in bodies (fixed, so streams compare byte for byte).
    pub created: u64,
    /// How many completion request ids `completion_order` keeps.
    pub order_ring: usize,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            models: vec!["mock".to_string()],
            tokens: 16,
            tokens_per_sec: 0.0,
            ttft_ms: 0,
            load_ms: 0,
            fail_after: None,
            status: 0,
            response_bytes: None,
            embedding_dims: 8,
            created: 1_700_000_000,
            order_ring: 64,
        }
    }
}

/// Command-line flags of `slotgate mock-backend`.
#[derive(Debug, Clone, clap::Args)]
pub struct MockArgs {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0 = any free port).
    #[arg(long, default_value_t = 8100)]
    pub port: u16,
    /// Model id to advertise (repeatable); default `mock`.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// Tokens per completion.
    #[arg(long, default_value_t = 16)]
    pub tokens: usize,
    /// Streaming pace in tokens per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub tokens_per_sec: f64,
    /// Time to first token in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub ttft_ms: u64,
    /// Simulated model load time after start, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub load_ms: u64,
    /// Drop the connection after this many SSE events.
    #[arg(long)]
    pub fail_after: Option<usize>,
    /// Answer every inference request with this HTTP status.
    #[arg(long, default_value_t = 0)]
    pub status: u16,
    /// Pad non-stream answers to about this many bytes.
    #[arg(long)]
    pub response_bytes: Option<usize>,
}

impl From<MockArgs> for MockConfig {
    fn from(a: MockArgs) -> MockConfig {
        let d = MockConfig::default();
        MockConfig {
            host: a.host,
            port: a.port,
            models: if a.models.is_empty() {
                d.models
            } else {
                a.models
            },
            tokens: a.tokens,
            tokens_per_sec: a.tokens_per_sec,
            ttft_ms: a.ttft_ms,
            load_ms: a.load_ms,
            fail_after: a.fail_after,
            status: a.status,
            response_bytes: a.response_bytes,
            ..d
        }
    }
}

/// A running mock server on its own thread; stops when [`MockHandle::stop`] is called or dropped.
pub struct MockHandle {
    addr: SocketAddr,
    stats: Arc<stats::Stats>,
    stop: Arc<AtomicBool>,
    load_until: std::time::Instant,
    thread: Option<JoinHandle<()>>,
}

impl MockHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/v1`, the base URL an upstream config would use.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// What the mock has seen so far (same data as `GET /mock/stats`).
    pub fn stats(&self) -> StatsSnapshot {
        self.stats
            .snapshot(std::time::Instant::now() < self.load_until)
    }

    /// Stops accepting, drops open connections and joins the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(t) = self.thread.take() else { return };
        self.stop.store(true, Relaxed);
        // The accept loop checks the flag after each accept; one connection wakes it.
        let _ = TcpStream::connect_timeout(&self.addr, std::time::Duration::from_secs(1));
        let _ = t.join();
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the mock on its own thread; returns once it is bound (bind errors surface here).
pub fn spawn(cfg: MockConfig) -> io::Result<MockHandle> {
    let stats = Arc::new(stats::Stats::new(cfg.order_ring));
    let stop = Arc::new(AtomicBool::new(false));
    let load_until = std::time::Instant::now() + std::time::Duration::from_millis(cfg.load_ms);
    let (st, sp) = (stats.clone(), stop.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("mock-{}", cfg.port))
        .spawn(move || {
            let res = run_on_this_thread(cfg, st, sp, |r| {
                let _ = ready_tx.send(r);
            });
            if let Err(e) = res {
                tracing::debug!(error = %e, "mock backend ended");
            }
        })?;
    match ready_rx.recv() {
        Ok(Ok(addr)) => Ok(MockHandle {
            addr,
            stats,
            stop,
            load_until,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(io::Error::other("mock thread died during start")),
    }
}

/// Runs the mock on the current thread until the process ends (the CLI entry point).
pub fn run(cfg: MockConfig) -> io::Result<()> {
    let stats = Arc::new(stats::Stats::new(cfg.order_ring));
    let stop = Arc::new(AtomicBool::new(false));
    run_on_this_thread(cfg, stats, stop, |r| {
        if let Ok(addr) = r {
            tracing::info!(%addr, "mock backend listening");
            eprintln!("mock-backend listening on http://{addr}/v1");
        }
    })
}

/// Builds the runtime, binds inside it (so monoio puts the socket in the mode its driver
/// needs: io_uring or epoll) and serves until stopped. `ready` hears the bound address or
/// the start-up error.
fn run_on_this_thread(
    cfg: MockConfig,
    stats: Arc<stats::Stats>,
    stop: Arc<AtomicBool>,
    ready: impl FnOnce(io::Result<SocketAddr>),
) -> io::Result<()> {
    let mut rt = match monoio::RuntimeBuilder::<FusionDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let msg = e.to_string();
            ready(Err(e));
            return Err(io::Error::other(msg));
        }
    };
    rt.block_on(async move {
        // No SO_REUSEPORT: a second mock on a taken port must fail, not share it.
        let opts = ListenerOpts::new().reuse_port(false);
        let bound = monoio::net::TcpListener::bind_with_config((cfg.host, cfg.port), &opts)
            .and_then(|l| l.local_addr().map(|a| (l, a)));
        let listener = match bound {
            Ok((l, addr)) => {
                ready(Ok(addr));
                l
            }
            Err(e) => {
                let msg = e.to_string();
                ready(Err(e));
                return Err(io::Error::other(msg));
            }
        };
        let srv = Rc::new(server::Server::new(cfg, stats, stop));
        server::serve(listener, srv).await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        mock: MockArgs,
    }

    #[test]
    fn args_convert_to_config() {
        let cli = Cli::try_parse_from([
            "mock",
            "--port",
            "0",
            "--model",
            "a",
            "--model",
            "b",
            "--tokens",
            "5",
            "--tokens-per-sec",
            "12.5",
            "--ttft-ms",
            "7",
            "--load-ms",
            "9",
            "--fail-after",
            "3",
            "--status",
            "503",
            "--response-bytes",
            "4096",
        ])
        .unwrap();
        let c = MockConfig::from(cli.mock);
        assert_eq!(c.port, 0);
        assert_eq!(c.models, vec!["a", "b"]);
        assert_eq!(
            (c.tokens, c.tokens_per_sec, c.ttft_ms, c.load_ms),
            (5, 12.5, 7, 9)
        );
        assert_eq!(
            (c.fail_after, c.status, c.response_bytes),
            (Some(3), 503, Some(4096))
        );
        let d = MockConfig::from(Cli::try_parse_from(["mock"]).unwrap().mock);
        assert_eq!(d.models, vec!["mock"]);
        assert_eq!(d.port, 8100);
    }

    #[test]
    fn second_bind_on_a_taken_port_fails() {
        let a = spawn(MockConfig::default()).unwrap();
        let err = spawn(MockConfig {
            port: a.addr().port(),
            ..MockConfig::default()
        });
        assert!(err.is_err());
    }
}
