//! A fault-injecting TCP proxy for the tests: it sits between the service and MariaDB or Redis and,
//! on command, loses the reply to one request, cuts every connection, refuses new ones, or adds
//! latency. It forwards bytes as they come and understands no protocol: a request is recognised
//! by a byte pattern in what the client sends (`COMMIT` for MySQL, a script's SHA-1 for Redis).
//!
//! Running proxies are registered by port, so that the harness's own connections go straight to
//! the real server ([`super::direct`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// `host:port` of the server behind each running proxy, by the proxy's port.
static UPSTREAMS: Mutex<BTreeMap<u16, String>> = Mutex::new(BTreeMap::new());

/// `host:port` of the server behind the running proxy on `port`.
pub fn upstream_of(port: u16) -> Option<String> {
    UPSTREAMS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&port)
        .cloned()
}

#[derive(Default)]
struct Control {
    /// The next client chunk containing this is forwarded, its reply is lost and the connection
    /// cut; `remaining` says how many more times to do it.
    armed: Mutex<Option<(Vec<u8>, u32)>>,
    /// Replies lost so far.
    fired: AtomicU64,
    latency_ms: AtomicU64,
    /// Client chunks containing this are held this long before they are forwarded.
    slow: Mutex<Option<(Vec<u8>, Duration)>>,
    refuse: AtomicBool,
}

pub struct Proxy {
    pub port: u16,
    control: Arc<Control>,
    cut: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let control = Arc::new(Control::default());
        let (cut, cut_rx) = watch::channel(0u64);
        UPSTREAMS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port, upstream.to_owned());
        let upstream = upstream.to_owned();
        let ctl = control.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if ctl.refuse.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let ctl = ctl.clone();
                let upstream = upstream.clone();
                let mut cut_rx = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let dropping = Arc::new(AtomicBool::new(false));
                    let up = pump(cr, sw, ctl.clone(), Some(dropping.clone()));
                    let down = pump_down(sr, cw, ctl.clone(), dropping);
                    cut_rx.borrow_and_update();
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Self {
            port,
            control,
            cut,
            task,
        }
    }

    /// Loses the reply to the next `times` requests whose bytes contain `pattern`: the request
    /// reaches the server (which carries it out), the reply is thrown away and the connection is
    /// cut, as when a network fails at the worst moment.
    pub fn lose_reply_to(&self, pattern: &[u8], times: u32) {
        *self.control.armed.lock().unwrap() = Some((pattern.to_vec(), times));
    }

    /// Forgets a lost reply armed by [`Self::lose_reply_to`] that has not fired yet.
    pub fn disarm(&self) {
        *self.control.armed.lock().unwrap() = None;
    }

    /// How many replies were lost so far.
    pub fn lost_replies(&self) -> u64 {
        self.control.fired.load(Ordering::SeqCst)
    }

    /// Cuts every open connection.
    pub fn cut_all(&self) {
        self.cut.send_modify(|g| *g += 1);
    }

    /// Refuses (closes at once) new connections while `on`.
    pub fn refuse(&self, on: bool) {
        self.control.refuse.store(on, Ordering::SeqCst);
    }

    /// Holds each client chunk containing `pattern` for `d` before forwarding it (`None`: none).
    pub fn slow_down(&self, slow: Option<(&[u8], Duration)>) {
        *self.control.slow.lock().unwrap() = slow.map(|(p, d)| (p.to_vec(), d));
    }

    pub fn set_latency(&self, d: Duration) {
        self.control
            .latency_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        UPSTREAMS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.port);
        self.cut_all();
        self.task.abort();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Client to server: forwards, and fires an armed lost reply.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    ctl: Arc<Control>,
    dropping: Option<Arc<AtomicBool>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    // The end of the previous chunk, so that a pattern split across two reads is still seen.
    let mut seen: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let latency = ctl.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let hold = match ctl.slow.lock().unwrap().as_ref() {
            Some((pattern, d)) if contains(&buf[..n], pattern) => Some(*d),
            _ => None,
        };
        if let Some(d) = hold {
            tokio::time::sleep(d).await;
        }
        let fire = {
            let mut armed = ctl.armed.lock().unwrap();
            match armed.as_mut() {
                // The window is this chunk plus fewer bytes of the last than the pattern has, so
                // a match always ends in this chunk.
                Some((pattern, left))
                    if contains(
                        &[
                            &seen[seen.len().saturating_sub(pattern.len() - 1)..],
                            &buf[..n],
                        ]
                        .concat(),
                        pattern,
                    ) =>
                {
                    *left -= 1;
                    if *left == 0 {
                        *armed = None;
                    }
                    true
                }
                _ => false,
            }
        };
        seen.extend_from_slice(&buf[..n]);
        if seen.len() > 256 {
            seen.drain(..seen.len() - 256);
        }
        if fire {
            if let Some(d) = &dropping {
                d.store(true, Ordering::SeqCst);
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if fire {
            // Let the server carry the request out; its reply is thrown away meanwhile.
            tokio::time::sleep(Duration::from_millis(300)).await;
            ctl.fired.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

/// Server to client: forwards unless the reply is being lost.
async fn pump_down(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    ctl: Arc<Control>,
    dropping: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                // Keep the connection open while a lost reply is being thrown away.
                if dropping.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                return;
            }
            Ok(n) => n,
        };
        if dropping.load(Ordering::SeqCst) {
            continue;
        }
        let latency = ctl.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
