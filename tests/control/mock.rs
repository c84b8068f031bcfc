//! A tiny std-thread model server for control-plane tests: `/health` and `/v1/models`, with
//! switches for going down (connection refused), hanging health checks and slow model lists.

use parking_lot::Mutex;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What the backend answers, shared with its connection threads.
#[derive(Default)]
pub struct Behaviour {
    pub models: Mutex<Vec<String>>,
    /// Accept health checks and never answer.
    pub hang_health: AtomicBool,
    /// Delay before answering `/v1/models`.
    pub models_delay_ms: AtomicU64,
    /// Use llama-server's `{"models":[{"name":..}]}` shape.
    pub llama_shape: AtomicBool,
    pub models_hits: AtomicUsize,
    pub health_hits: AtomicUsize,
}

/// A running (or stopped) mock backend on a fixed port.
pub struct Backend {
    pub addr: SocketAddr,
    pub b: Arc<Behaviour>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// Starts on an ephemeral loopback port serving `models`.
    pub fn start(models: &[&str]) -> Backend {
        let b = Arc::new(Behaviour::default());
        *b.models.lock() = models.iter().map(|s| s.to_string()).collect();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut me = Backend {
            addr,
            b,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        me.serve(l);
        me
    }

    /// `http://127.0.0.1:port/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn serve(&mut self, l: TcpListener) {
        let stop = Arc::new(AtomicBool::new(false));
        self.stop = stop.clone();
        let b = self.b.clone();
        self.thread = Some(std::thread::spawn(move || {
            for conn in l.incoming() {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let Ok(s) = conn else { continue };
                let b = b.clone();
                let stop = stop.clone();
                std::thread::spawn(move || handle(s, &b, &stop));
            }
        }));
    }

    /// Stops listening: new connections are refused.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        let l = TcpListener::bind(self.addr).unwrap();
        self.serve(l);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

fn handle(mut s: TcpStream, b: &Behaviour, stop: &AtomicBool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    if stop.load(Ordering::Acquire) {
        return;
    }
    let line = String::from_utf8_lossy(&buf);
    let path = line.split(' ').nth(1).unwrap_or("").to_string();
    let (status, body) = match path.as_str() {
        "/health" => {
            b.health_hits.fetch_add(1, Ordering::Relaxed);
            if b.hang_health.load(Ordering::Acquire) {
                // Hold the connection open without answering until the client gives up.
                while matches!(s.read(&mut chunk), Ok(n) if n > 0) {}
                return;
            }
            (200, "{\"status\":\"ok\"}".to_string())
        }
        "/v1/models" => {
            b.models_hits.fetch_add(1, Ordering::Relaxed);
            let d = b.models_delay_ms.load(Ordering::Acquire);
            if d > 0 {
                std::thread::sleep(Duration::from_millis(d));
            }
            let ids = b.models.lock().clone();
            let body = if b.llama_shape.load(Ordering::Acquire) {
                let items: Vec<_> = ids.iter().map(|i| serde_json::json!({"name": i})).collect();
                serde_json::json!({ "models": items })
            } else {
                let items: Vec<_> = ids
                    .iter()
                    .map(|i| serde_json::json!({"id": i, "object": "model"}))
                    .collect();
                serde_json::json!({"object": "list", "data": items})
            };
            (200, body.to_string())
        }
        _ => (404, "{}".to_string()),
    };
    let resp = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes());
}
