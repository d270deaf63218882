//! Builds the application: pools, migrations, the storage, the HTTP server, the consumer and the
//! scheduled jobs. `main` and the tests both start the service through [`Application::build`].

use crate::config::{Config, ShopAuth};
use anyhow::Context;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::Server;
use sf_openapi::metrics::Metrics;
use sf_openapi::ApiState;
use sf_persistence::consumer::{self, ConsumerConfig, ConsumerStats};
use sf_persistence::infra::jobs::JobRunner;
use sf_persistence::infra::{mysql, redis_link};
use sf_persistence::{RedisSettings, Storage, StorageOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A running service.
pub struct Application {
    port: u16,
    pub storage: Arc<Storage>,
    pub state: Arc<ApiState>,
    config: Config,
    /// Cancelled when the service stops: the server drains, the consumer and the background
    /// work end their current step.
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    consumer: Option<JoinHandle<()>>,
    scheduler: Option<tokio_cron_scheduler::JobScheduler>,
    /// The background work (cache refresh, Redis and MySQL watches, metrics), waited for on stop.
    background: TaskTracker,
    /// This instance's id (job leases, consumer names).
    pub instance: String,
}

fn consumer_config(config: &Config, name: &str) -> ConsumerConfig {
    ConsumerConfig {
        name: name.to_owned(),
        batch: config.consumer_batch,
        idle: ConsumerConfig::default().idle,
        reclaim_idle: Duration::from_millis(config.consumer_reclaim_idle_ms),
    }
}

/// Connects to MySQL (creating the database and applying migrations) and Redis.
pub async fn connect(config: &Config) -> anyhow::Result<Arc<Storage>> {
    let s = &config.storage;
    anyhow::ensure!(
        config.same_day_radius_km.is_finite()
            && (0.1..=1000.0).contains(&config.same_day_radius_km),
        "SAME_DAY_RADIUS_KM must be between 0.1 and 1000, got {}",
        config.same_day_radius_km
    );
    anyhow::ensure!(
        !s.redis_key_prefix.contains(['{', '}']),
        "REDIS_KEY_PREFIX must not contain braces (they mark Redis Cluster hash tags)"
    );
    let pool = mysql::connect(
        s.database_url.expose(),
        s.db_max_connections,
        Duration::from_millis(s.db_connect_timeout_ms),
        Duration::from_millis(s.db_command_timeout_ms),
        mysql::idle_transaction_bound(
            Duration::from_millis(s.redis_command_timeout_ms),
            Duration::from_millis(s.redis_wait_timeout_ms),
        ),
    )
    .await
    .with_context(|| format!("connecting to MySQL at {}", redact(s.database_url.expose())))?;
    mysql::migrate(&pool).await.context("applying migrations")?;
    let cluster_nodes: Vec<String> = s
        .redis_cluster_nodes
        .iter()
        .map(|n| n.expose().trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    let redis_at = if cluster_nodes.is_empty() {
        redact(s.redis_url.expose())
    } else {
        format!(
            "the cluster seeded by {}",
            cluster_nodes
                .iter()
                .map(|n| redact(n))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let redis = redis_link::connect(RedisSettings {
        url: s.redis_url.expose().to_owned(),
        cluster_nodes,
        pool_size: s.redis_pool_size,
        connect_timeout: Duration::from_millis(s.redis_connect_timeout_ms),
        command_timeout: Duration::from_millis(s.redis_command_timeout_ms),
        probe_every: Duration::from_millis(s.outage_probe_ms),
        min_replica_acks: s.redis_min_replica_acks,
        wait_timeout: Duration::from_millis(s.redis_wait_timeout_ms),
    })
    .await
    .with_context(|| format!("connecting to Redis at {redis_at}"))?;
    // Events show orders and holds as the API does.
    sf_persistence::events::set_bodies(sf_openapi::events::EventBodies);
    let storage = Storage::new(
        pool,
        redis,
        StorageOptions {
            key_prefix: s.redis_key_prefix.clone(),
            same_day_radius_km: config.same_day_radius_km,
            record_ttl_secs: config.order_record_ttl_secs,
            idempotency_ttl_secs: config.idempotency_ttl_hours * 3600,
            db_timeout: Duration::from_millis(s.db_command_timeout_ms),
            pickup_expiry: config.pickup_expiry,
        },
    )
    .await
    .context("loading catalogue and locations")?;
    Ok(Arc::new(storage))
}

/// A URL without its password, for logs (a string that is no URL is shown as it is).
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only a URL that cannot have a password refuses one; this one has one.
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Refused before anything is touched: a production instance with a known token.
        if let Some(warning) = crate::config::check_admin_token(&config)? {
            tracing::warn!("{warning}");
        }
        let storage = connect(&config).await?;
        warn_if_redis_forgets(&storage).await;
        if config.shop_auth == ShopAuth::Off {
            tracing::warn!(
                "SHOP_AUTH=off: the shop's routes take orders without a channel key; for local \
                 experiments only"
            );
        }
        let bootstrap_operator = storage
            .access()
            .ensure_bootstrap()
            .await
            .context("making sure the operator bootstrap exists")?;
        let stats = Arc::new(ConsumerStats::default());
        let instance = format!("i-{}", uuid::Uuid::new_v4().simple());
        let jobs = Arc::new(JobRunner::new(
            storage.clone(),
            instance.clone(),
            Duration::from_secs(config.job_lease_secs.max(1)),
            consumer_config(&config, &instance),
            stats.clone(),
        ));
        let state = Arc::new(ApiState {
            storage: storage.clone(),
            admin_token: config.admin_token.clone(),
            bootstrap_operator,
            metrics: Metrics::new(),
            consumer: stats,
            jobs: jobs.clone(),
            shedder: Arc::new(sf_openapi::edge::Shedder::new(config.limits())),
            pages: sf_openapi::state::PageAnswers::new(config.product_pages_kept),
            access_log: config.access_log,
            shop_auth: config.shop_auth == ShopAuth::Required,
            webhooks: config.endpoint_rules(),
        });

        let acceptor = TcpListener::bind(format!("{}:{}", config.host, config.port))
            .into_acceptor()
            .await
            .with_context(|| format!("listening on {}:{}", config.host, config.port))?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().map(|s| s.port()))
            .context("listener has no address")?;
        let shutdown = CancellationToken::new();
        let routes = sf_openapi::routes(state.clone());
        let server_stop = shutdown.clone();
        let server = tokio::spawn(async move {
            Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    routes,
                    async move { server_stop.cancelled().await },
                    Some(Duration::from_secs(10)),
                )
                .await
        });

        let scheduler = if config.jobs_enabled {
            Some(crate::jobs::start_scheduler(&config, jobs).await?)
        } else {
            None
        };
        let mut app = Self {
            port,
            storage: storage.clone(),
            state,
            instance,
            config,
            shutdown,
            server,
            consumer: None,
            scheduler,
            background: TaskTracker::new(),
        };
        if app.config.consumer_enabled {
            app.start_consumer();
        }
        let (stop, bg) = (&app.shutdown, &app.background);
        bg.spawn(crate::jobs::refresh_caches(storage.clone(), stop.clone()));
        bg.spawn(crate::jobs::watch_redis(
            storage.clone(),
            Duration::from_millis(app.config.health_check_ms.max(50)),
            Duration::from_millis(app.config.storage.outage_probe_ms),
            stop.clone(),
        ));
        bg.spawn(crate::jobs::refresh_metrics(
            app.state.clone(),
            Duration::from_secs(2),
            stop.clone(),
        ));
        bg.spawn(crate::jobs::watch_mysql(
            storage.clone(),
            Duration::from_millis(app.config.health_check_ms.max(50)),
            Duration::from_millis(app.config.storage.outage_probe_ms),
            stop.clone(),
        ));
        if app.config.webhook_dispatcher {
            bg.spawn(crate::webhooks::run(
                storage.clone(),
                app.state.metrics.clone(),
                app.config.dispatcher(),
                app.instance.clone(),
                stop.clone(),
            ));
        }
        bg.close();
        tracing::info!(port, "stock flow listening on port {port}");
        Ok(app)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts (or restarts) this instance's consumer.
    pub fn start_consumer(&mut self) {
        self.stop_consumer_now();
        // A restarted consumer gets a new name: the old one's events are reclaimed like a dead
        // consumer's would be.
        let config = consumer_config(
            &self.config,
            &format!("{}-{}", self.instance, uuid::Uuid::new_v4().simple()),
        );
        self.consumer = Some(tokio::spawn(consumer::run(
            self.storage.clone(),
            config,
            self.state.consumer.clone(),
            self.shutdown.clone(),
        )));
    }

    /// Kills the consumer task where it stands (as a crash would), leaving its events pending.
    pub fn stop_consumer_now(&mut self) {
        if let Some(handle) = self.consumer.take() {
            handle.abort();
        }
    }

    /// Serves until SIGINT or SIGTERM, then drains requests and stops the background work.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let signal = async {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("SIGTERM handler");
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            #[cfg(not(unix))]
            let _ = ctrl_c.await;
        };
        signal.await;
        tracing::info!("shutting down: draining requests and stopping background work");
        self.stop().await
    }

    /// Stops serving and waits for the consumer and jobs to finish their current step.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(mut s) = self.scheduler.take() {
            let _ = s.shutdown().await;
        }
        let _ = (&mut self.server).await;
        if let Some(c) = self.consumer.take() {
            let _ = c.await;
        }
        self.background.wait().await;
        Ok(())
    }
}

/// Warns when the Redis in use would lose accepted orders on a crash.
async fn warn_if_redis_forgets(storage: &Storage) {
    use sf_persistence::RedisPersistence;
    match storage.health().redis_persistence().await {
        Ok(RedisPersistence::Nothing) => tracing::warn!(
            "Redis persists nothing (appendonly no, no save points): orders answered ACCEPTED but \
             not yet in MySQL are lost if Redis crashes. Run Redis with --appendonly yes."
        ),
        Ok(RedisPersistence::Snapshots) => tracing::warn!(
            "Redis has append-only persistence off: only snapshots are kept, and orders accepted \
             since the last snapshot are lost if Redis crashes"
        ),
        Ok(RedisPersistence::AppendOnly) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not read the Redis persistence settings (CONFIG GET)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn a_redacted_url_keeps_everything_but_its_password() {
        assert_eq!(
            redact("mysql://app:s3cret@db.internal:3306/stock_flow?ssl-mode=required"),
            "mysql://app@db.internal:3306/stock_flow?ssl-mode=required"
        );
        assert_eq!(
            redact("redis://:pw@127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redact("not a url"), "not a url");
    }
}
