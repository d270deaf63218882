//! Servers and processes a test starts besides its application: a private Redis it can kill,
//! and the service binary as a process of its own. Each is killed when dropped.

use super::TestApp;
use reqwest::{Client, StatusCode};
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private `redis-server` (append-only, `appendfsync always`) on a free loopback port, for tests
/// that kill Redis. Killed and its folder removed on drop.
pub struct PrivateRedis {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// Starts a server on a free port. A free port can be taken between being picked and the
    /// server listening on it (an outgoing connection's local port comes from the same range): a
    /// server that exits before it answers is started again on another port, a few times.
    pub fn start() -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!("sf-redis-{port}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut r = Self {
                port,
                dir,
                child: None,
            };
            match r.launch() {
                Ok(()) => return r,
                Err(why) => last = why,
            }
        }
        panic!("private redis exited at each of 5 starts: {last}");
    }

    /// A second private server replicating `master`, started once the replication link is up.
    pub fn replica_of(master: &PrivateRedis) -> Self {
        let r = Self::start();
        let command = format!("REPLICAOF 127.0.0.1 {}\r\n", master.port);
        assert!(r.ask(&command).starts_with("+OK"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !r
            .ask("INFO replication\r\n")
            .contains("master_link_status:up")
        {
            assert!(Instant::now() < deadline, "the replica never linked up");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    /// One inline command, and the start of its reply.
    fn ask(&self, command: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(command.as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server again on the same port and folder (it replays its append-only file).
    pub fn restart(&mut self) {
        if let Err(why) = self.launch() {
            panic!("private redis did not start again on {}: {why}", self.port);
        }
    }

    /// Starts the server and waits until it answers `PING` (within 20 s); `Err` if it exits first.
    fn launch(&mut self) -> Result<(), String> {
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let mut child = std::process::Command::new(bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir.to_str().unwrap(),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("redis-server starts (set REDIS_SERVER_BIN)");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf)
                        .map(|n| &buf[..n] == b"+PONG\r\n")
                        .unwrap_or(false)
                {
                    // Its log goes on to a pipe nobody reads: drained, so that it never blocks.
                    let mut out = child.stdout.take().expect("piped");
                    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
                    self.child = Some(child);
                    return Ok(());
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut log = String::new();
                use std::io::Read;
                let _ = child.stdout.take().expect("piped").read_to_string(&mut log);
                return Err(format!("exited ({status}): {}", log.trim_end()));
            }
            assert!(Instant::now() < deadline, "private redis did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Removes the data files of a killed server, so that it restarts empty.
    pub fn wipe(&mut self) {
        assert!(self.child.is_none(), "wipe a killed server");
        std::fs::remove_dir_all(&self.dir).unwrap();
        std::fs::create_dir_all(&self.dir).unwrap();
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `stock-flow` binary serving on a free port, on the test's database and Redis key prefix
/// (`kill -9`'d when dropped).
pub struct ServiceProcess {
    pub base: String,
    child: Option<std::process::Child>,
    /// Its standard output so far, line by line (for a process started with
    /// [`TestApp::spawn_process_logged`]).
    log: Arc<Mutex<Vec<String>>>,
}

impl TestApp {
    /// Starts the binary with the test's settings and `env` on top.
    pub fn spawn_process(&self, env: &[(&str, &str)]) -> ServiceProcess {
        self.start_process(env, false)
    }

    /// Starts the binary like [`TestApp::spawn_process`], keeping what it writes to standard
    /// output (its log) for [`ServiceProcess::log_lines`].
    pub fn spawn_process_logged(&self, env: &[(&str, &str)]) -> ServiceProcess {
        self.start_process(env, true)
    }

    fn start_process(&self, env: &[(&str, &str)], logged: bool) -> ServiceProcess {
        let port = free_port();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_stock-flow"));
        cmd.arg("serve")
            .env("DATABASE_URL", &self.database_url)
            .env("REDIS_URL", &self.redis_url)
            .env("REDIS_KEY_PREFIX", &self.prefix)
            .env("ADMIN_TOKEN", super::ADMIN)
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("RUST_LOG", "warn")
            .stdout(if logged {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            });
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the service binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            let log = log.clone();
            // Ends when the process does (its end of the pipe closes).
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        ServiceProcess {
            base: format!("http://127.0.0.1:{port}"),
            child: Some(child),
            log,
        }
    }
}

impl ServiceProcess {
    /// Waits until `path` answers 200, within `within`.
    pub async fn wait_for(&self, client: &Client, path: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = client.get(format!("{}{path}", self.base)).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} never answered 200 on {path}",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The log lines written so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the process (`SIGSTOP`): its connections stay open, nothing it holds is released.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused process run again (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("process running").id();
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {pid}");
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
