//! Configuration from environment variables (or the matching flags), with local defaults. A
//! `.env` file in the working directory is read first (set variables win). Every variable is
//! listed in `.env.example` (a test keeps its values equal to the defaults here) and in
//! `docs/operations.md`; `stock-flow serve --help` prints them.

use clap::{Args, ValueEnum};
use sf_persistence::access::{Secret, SecretUrl};

/// The built-in `ADMIN_TOKEN`: accepted only with `DEMO=on` (see [`check_admin_token`]).
pub const DEV_ADMIN_TOKEN: &str = "stockflow-dev-admin";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the stores are. The URLs may carry passwords: their `Debug` shows them redacted.
#[derive(Debug, Clone, Args)]
pub struct StorageConfig {
    /// MySQL/MariaDB URL; the database is created if missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "mysql://root@127.0.0.1:3306/stock_flow"
    )]
    pub database_url: SecretUrl,
    /// Redis URL.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379/0")]
    pub redis_url: SecretUrl,
    /// Seed nodes of a Redis Cluster, comma-separated `redis://host:port`. When set, the service
    /// uses a cluster-aware client (following failovers by itself) and `REDIS_URL` is not used.
    #[arg(long, env = "REDIS_CLUSTER_NODES", value_delimiter = ',', num_args = 0..)]
    pub redis_cluster_nodes: Vec<SecretUrl>,
    /// Replicas that must hold a Redis-path order before it is answered 202 (Redis `WAIT`); 0
    /// answers as soon as the master holds it. An order that reaches fewer replicas in time is
    /// answered 504 `/problems/order-not-replicated` with its `orderId`: it stands unless its
    /// master fails first, and a retry with the same Idempotency-Key answers 202 once replicated.
    #[arg(long, env = "REDIS_MIN_REPLICA_ACKS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub redis_min_replica_acks: u32,
    /// Milliseconds the Redis path waits for `REDIS_MIN_REPLICA_ACKS` replicas.
    #[arg(long, env = "REDIS_WAIT_TIMEOUT_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub redis_wait_timeout_ms: u64,
    /// Prefix of every Redis key this service uses (no braces).
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "sf:")]
    pub redis_key_prefix: String,
    /// Most MySQL connections in the pool.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 32)]
    pub db_max_connections: u32,
    /// Most Redis connections in the pool.
    #[arg(long, env = "REDIS_POOL_SIZE", default_value_t = 32)]
    pub redis_pool_size: u32,
    /// Milliseconds to open a Redis connection.
    #[arg(long, env = "REDIS_CONNECT_TIMEOUT_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub redis_connect_timeout_ms: u64,
    /// Milliseconds one Redis command or script may take; a call without an answer by then fails
    /// and opens the Redis circuit.
    #[arg(long, env = "REDIS_COMMAND_TIMEOUT_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub redis_command_timeout_ms: u64,
    /// How often (ms) a store found down is probed: Redis while its circuit is open, MySQL while
    /// it does not answer.
    #[arg(long, env = "OUTAGE_PROBE_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..))]
    pub outage_probe_ms: u64,
    /// Milliseconds to get a MySQL connection from the pool (opening one included).
    #[arg(long, env = "DB_CONNECT_TIMEOUT_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub db_connect_timeout_ms: u64,
    /// Milliseconds the MySQL work of one request may take: its transaction's statements (with
    /// retries after deadlocks), then again its commit. A row-lock wait ends after it too.
    #[arg(long, env = "DB_COMMAND_TIMEOUT_MS", default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..))]
    pub db_command_timeout_ms: u64,
}

/// The running service.
#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub storage: StorageConfig,
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Bearer token of the operator `bootstrap` (role admin), who creates the other operators.
    /// The built-in default is refused unless `DEMO=on`.
    #[arg(
        long,
        env = "ADMIN_TOKEN",
        default_value = DEV_ADMIN_TOKEN,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub admin_token: Secret<String>,
    /// A local demo or trial (`ops/run` sets it): the built-in `ADMIN_TOKEN` is accepted, with a
    /// warning. `off` refuses to start with it.
    #[arg(long, env = "DEMO", default_value = "off", value_parser = on_off(), action = clap::ArgAction::Set)]
    pub demo: bool,
    /// Same-day delivery radius around the address, in km.
    #[arg(long, env = "SAME_DAY_RADIUS_KM", default_value_t = 10.0)]
    pub same_day_radius_km: f64,
    /// Run the consumer that persists Redis orders to MySQL in this instance.
    #[arg(long, env = "CONSUMER_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub consumer_enabled: bool,
    /// Most events the consumer reads per stream per batch.
    #[arg(long, env = "CONSUMER_BATCH", default_value_t = 500)]
    pub consumer_batch: usize,
    /// Events a dead consumer held this long (ms) are taken over by another.
    #[arg(long, env = "CONSUMER_RECLAIM_IDLE_MS", default_value_t = 15_000)]
    pub consumer_reclaim_idle_ms: u64,
    /// Seconds a Redis-path order record stays in Redis after it reached MySQL (status reads and
    /// cancels go to MySQL after that; a short stay keeps Redis small and its AOF rewrites cheap).
    #[arg(long, env = "ORDER_RECORD_TTL_SECS", default_value_t = 10)]
    pub order_record_ttl_secs: u64,
    /// Hours an Idempotency-Key is remembered (at least 24).
    #[arg(long, env = "IDEMPOTENCY_TTL_HOURS", default_value_t = 48, value_parser = clap::value_parser!(u64).range(24..))]
    pub idempotency_ttl_hours: u64,
    /// Run the scheduled jobs (reconcile, reclaim, housekeeping) in this instance. With several
    /// instances each job still runs on one at a time (a lease in Redis).
    #[arg(long, env = "JOBS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub jobs_enabled: bool,
    /// Cron schedule (sec min hour day month weekday) of reconciliation: every 5 minutes.
    #[arg(long, env = "RECONCILE_SCHEDULE", default_value = "0 */5 * * * *")]
    pub reconcile_schedule: String,
    /// Cron schedule of the reclaim of events a dead consumer held: every 10 seconds.
    #[arg(long, env = "RECLAIM_SCHEDULE", default_value = "*/10 * * * * *")]
    pub reclaim_schedule: String,
    /// Cron schedule of housekeeping (expired idempotency keys, old job runs, events past their
    /// 30 days): hourly.
    #[arg(long, env = "HOUSEKEEPING_SCHEDULE", default_value = "0 17 * * * *")]
    pub housekeeping_schedule: String,
    /// Cron schedule of the not-collected job (pickups ready longer than `PICKUP_EXPIRY` are
    /// cancelled): every 15 seconds.
    #[arg(long, env = "NOT_COLLECTED_SCHEDULE", default_value = "*/15 * * * * *")]
    pub not_collected_schedule: String,
    /// Cron schedule of the hold-expiry job (checkout holds past their `expiresAt` give their
    /// units back): every second, so they are available again within seconds.
    #[arg(long, env = "HOLD_EXPIRY_SCHEDULE", default_value = "* * * * * *")]
    pub hold_expiry_schedule: String,
    /// How long a pickup may wait ready at its store before it is cancelled as not collected: a
    /// number and a unit (`s`, `m`, `h`, `d`), such as `3d` or `90m`.
    #[arg(long, env = "PICKUP_EXPIRY", default_value = "3d", value_parser = parse_duration)]
    pub pickup_expiry: std::time::Duration,
    /// Seconds a job lease lasts without renewal (it is renewed while the job runs; a crashed
    /// holder's lease expires after this).
    #[arg(long, env = "JOB_LEASE_SECS", default_value_t = 30)]
    pub job_lease_secs: u64,
    /// How often (ms) the service checks that Redis still holds its data and that MySQL answers
    /// (readiness).
    #[arg(long, env = "HEALTH_CHECK_MS", default_value_t = 1000)]
    pub health_check_ms: u64,
    /// Largest request body, in bytes (the largest valid order, 50 lines, is about 3 KB).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(256..=16_777_216))]
    pub max_body_bytes: u64,
    /// Rendered product-read answers (body and ETag) kept per stock source, one per product and
    /// scope (a page of locations, or those near a point), for as long as the reading shows the
    /// same; 0 keeps none. About 4 KB each at 50 locations.
    #[arg(long, env = "PRODUCT_PAGES_KEPT", default_value_t = 16_384)]
    pub product_pages_kept: usize,
    /// Most DB-lock orders and cancels in flight at once (default: 4 × DB_MAX_CONNECTIONS);
    /// beyond it, 503 with Retry-After.
    #[arg(long, env = "MAX_IN_FLIGHT_DB_LOCK")]
    pub max_in_flight_db_lock: Option<usize>,
    /// Most Redis-path orders and cancels in flight at once (default: 32 × REDIS_POOL_SIZE).
    #[arg(long, env = "MAX_IN_FLIGHT_REDIS")]
    pub max_in_flight_redis: Option<usize>,
    /// Most POS sales and returns in flight at once (default: 2 × DB_MAX_CONNECTIONS).
    #[arg(long, env = "MAX_IN_FLIGHT_POS")]
    pub max_in_flight_pos: Option<usize>,
    /// Most shop and store reads in flight at once (default: 32 × DB_MAX_CONNECTIONS).
    #[arg(long, env = "MAX_IN_FLIGHT_READS")]
    pub max_in_flight_reads: Option<usize>,
    /// Milliseconds a request that finds its kind at the bound waits for a slot before it gets 503.
    #[arg(long, env = "SHED_WAIT_MS", default_value_t = 100)]
    pub shed_wait_ms: u64,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// One `info` line per request (method, route template, status, duration, request id):
    /// `on` or `off`.
    #[arg(long, env = "ACCESS_LOG", default_value = "on", value_parser = on_off(), action = clap::ArgAction::Set)]
    pub access_log: bool,
    /// Run the webhook dispatcher on this instance (`on` or `off`). Instances that run it share
    /// one lease: one of them delivers at a time, another takes over when it stops.
    #[arg(long, env = "WEBHOOK_DISPATCHER", default_value = "on", value_parser = on_off(), action = clap::ArgAction::Set)]
    pub webhook_dispatcher: bool,
    /// Hosts webhook endpoints may point at, comma-separated (`hooks.example.com,10.0.0.7`);
    /// empty: any host. Set it where the service must not call arbitrary addresses.
    #[arg(long, env = "WEBHOOK_ALLOWED_HOSTS", value_delimiter = ',', num_args = 0..)]
    pub webhook_allowed_hosts: Vec<String>,
    /// The bound on one webhook call, connecting included, in ms; past it the attempt failed.
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=300_000))]
    pub webhook_timeout_ms: u64,
    /// Webhook calls in flight per endpoint at once.
    #[arg(long, env = "WEBHOOK_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub webhook_concurrency: u64,
    /// How often the dispatcher looks for events to deliver, in ms.
    #[arg(long, env = "WEBHOOK_TICK_MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub webhook_tick_ms: u64,
    /// How long the dispatcher's lease lasts unless renewed (it is renewed every tick), in ms:
    /// how long deliveries pause when the instance holding it dies.
    #[arg(long, env = "WEBHOOK_LEASE_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub webhook_lease_ms: u64,
    /// The wait before the first retry of a failed delivery, in ms; later waits grow from it
    /// (×6, ×24, ×120, ×360, ×720: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h), with ±20 % jitter.
    #[arg(long, env = "WEBHOOK_RETRY_FIRST_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_retry_first_ms: u64,
    /// The longest wait between retries, in ms; past the steps, retries come every half of it
    /// to all of it (1 to 2 h).
    #[arg(long, env = "WEBHOOK_RETRY_MAX_MS", default_value_t = 7_200_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_retry_max_ms: u64,
    /// How long a failing delivery is retried from its first attempt, in seconds; then it is
    /// given up (`FAILED`; an operator can redeliver it).
    #[arg(long, env = "WEBHOOK_RETRY_FOR_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_retry_for_secs: u64,
    /// An endpoint whose every attempt has failed for this long, in seconds, is disabled (the
    /// reason is shown on it; re-enable it with `PATCH … {"enabled": true}`).
    #[arg(long, env = "WEBHOOK_DISABLE_AFTER_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_disable_after_secs: u64,
    /// How long a rotated-out signing secret keeps signing, in seconds (deliveries carry both
    /// signatures meanwhile).
    #[arg(long, env = "WEBHOOK_SECRET_OVERLAP_SECS", default_value_t = 86_400)]
    pub webhook_secret_overlap_secs: u64,
    /// Whether the shop's routes (orders, cancels, holds) need a channel key: `required`, or
    /// `off` for local experiments (requests without a key then act for no channel).
    #[arg(long, env = "SHOP_AUTH", value_enum, default_value_t = ShopAuth::Required)]
    pub shop_auth: ShopAuth,
}

/// `SHOP_AUTH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShopAuth {
    Required,
    Off,
}

impl Config {
    /// What webhook endpoints must satisfy.
    pub fn endpoint_rules(&self) -> sf_persistence::events::webhooks::EndpointRules {
        sf_persistence::events::webhooks::EndpointRules {
            allowed_hosts: self
                .webhook_allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            secret_overlap: std::time::Duration::from_secs(self.webhook_secret_overlap_secs),
        }
    }

    /// How the webhook dispatcher runs.
    pub fn dispatcher(&self) -> crate::webhooks::DispatcherSettings {
        use std::time::Duration;
        crate::webhooks::DispatcherSettings {
            tick: Duration::from_millis(self.webhook_tick_ms),
            lease: Duration::from_millis(self.webhook_lease_ms),
            timeout: Duration::from_millis(self.webhook_timeout_ms),
            concurrency: self.webhook_concurrency as usize,
            disable_after: Duration::from_secs(self.webhook_disable_after_secs),
            retry: crate::webhooks::retry::RetryPolicy {
                first: Duration::from_millis(self.webhook_retry_first_ms),
                longest: Duration::from_millis(self.webhook_retry_max_ms),
                retry_for: Duration::from_secs(self.webhook_retry_for_secs),
            },
        }
    }

    /// The body limit and the bounds on requests in flight, with the defaults derived from the
    /// pool sizes.
    pub fn limits(&self) -> sf_openapi::edge::Limits {
        let db = self.storage.db_max_connections as usize;
        let redis = self.storage.redis_pool_size as usize;
        sf_openapi::edge::Limits {
            max_body_bytes: self.max_body_bytes as usize,
            shed_wait: std::time::Duration::from_millis(self.shed_wait_ms),
            db_lock: self.max_in_flight_db_lock.unwrap_or(4 * db).max(1),
            redis: self.max_in_flight_redis.unwrap_or(32 * redis).max(1),
            pos: self.max_in_flight_pos.unwrap_or(2 * db).max(1),
            reads: self.max_in_flight_reads.unwrap_or(32 * db).max(1),
        }
    }
}

impl Config {
    /// The configuration from the environment alone, with defaults (tests start from this).
    pub fn from_env() -> Self {
        use clap::{FromArgMatches, Parser};
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            c: Config,
        }
        let matches = <Wrap as clap::CommandFactory>::command()
            .no_binary_name(true)
            .get_matches_from(Vec::<String>::new());
        Wrap::from_arg_matches(&matches).expect("defaults parse").c
    }
}

/// Settings renamed in this release, and their new names: a deployment that still sets an old
/// name gets the default, so it is told at startup.
const RENAMED: [(&str, &str); 2] = [
    ("REDIS_WATCH_MS", "HEALTH_CHECK_MS"),
    ("REDIS_PROBE_MS", "OUTAGE_PROBE_MS"),
];

/// A switch written `on` or `off` (shown as such in `--help`).
fn on_off() -> impl clap::builder::TypedValueParser<Value = bool> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["on", "off"]).map(|v| v == "on")
}

/// A duration written as a number and a unit: `30s`, `90m`, `12h`, `3d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit (s, m, h, d), such as 3d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(secs)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// Refuses the built-in `ADMIN_TOKEN` outside a demo; in a demo, answers the warning to log.
pub fn check_admin_token(config: &Config) -> anyhow::Result<Option<&'static str>> {
    let token = config.admin_token.expose();
    anyhow::ensure!(
        !token.trim().is_empty(),
        "ADMIN_TOKEN is empty: set a token of your own"
    );
    if token != DEV_ADMIN_TOKEN {
        return Ok(None);
    }
    anyhow::ensure!(
        config.demo,
        "ADMIN_TOKEN is the built-in development token {DEV_ADMIN_TOKEN:?}: set a token of your own \
         (for example `openssl rand -hex 24`), or DEMO=on for a local trial"
    );
    Ok(Some(
        "ADMIN_TOKEN is the built-in development token (DEMO=on); set your own outside local trials",
    ))
}

/// Logs a warning for each renamed setting still present in the environment.
pub fn warn_renamed_settings() {
    for (old, new) in RENAMED {
        if std::env::var_os(old).is_some() {
            tracing::warn!("{old} is no longer read: it is now {new}");
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        c: super::Config,
    }

    /// Every `NAME=value` line of `.env.example` names a setting and shows its default; a line
    /// commented out names a setting without a fixed default.
    #[test]
    fn durations_read_with_their_unit() {
        use std::time::Duration;
        assert_eq!(
            super::parse_duration("3d"),
            Ok(Duration::from_secs(259_200))
        );
        assert_eq!(super::parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(super::parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(super::parse_duration("3").is_err());
        assert!(super::parse_duration("d").is_err());
        assert!(super::parse_duration("3w").is_err());
    }

    #[test]
    fn the_default_admin_token_is_refused_outside_the_demo() {
        let mut c = super::Config::from_env();
        c.admin_token = super::DEV_ADMIN_TOKEN.into();
        c.demo = false;
        let refused = super::check_admin_token(&c).unwrap_err().to_string();
        assert!(refused.contains("DEMO=on"), "{refused}");
        c.demo = true;
        assert!(super::check_admin_token(&c).unwrap().is_some(), "a warning");
        c.demo = false;
        c.admin_token = "a-token-of-our-own".into();
        assert_eq!(super::check_admin_token(&c).unwrap(), None);
        c.admin_token = "  ".into();
        assert!(super::check_admin_token(&c).is_err());
    }

    #[test]
    fn debug_of_the_config_shows_no_secret() {
        let mut c = super::Config::from_env();
        c.admin_token = "tok-hunter2".into();
        c.storage.database_url = "mysql://app:pw-hunter2@db.internal:3306/stock_flow".into();
        c.storage.redis_url = "redis://:rpw-hunter2@cache:6379/0".into();
        c.storage.redis_cluster_nodes = vec!["redis://:cpw-hunter2@node1:7000".into()];
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("admin_token: [redacted]"), "{shown}");
        assert!(
            shown.contains("mysql://app:[redacted]@db.internal:3306/stock_flow"),
            "{shown}"
        );
        assert!(
            shown.contains("redis://:[redacted]@cache:6379/0"),
            "{shown}"
        );
        assert!(shown.contains("redis://:[redacted]@node1:7000"), "{shown}");
        // The values themselves are still there for the connections.
        assert_eq!(c.admin_token.expose(), "tok-hunter2");
    }

    #[test]
    fn env_example_shows_the_defaults() {
        let example = include_str!("../../.env.example");
        let command = Wrap::command();
        let args: Vec<_> = command.get_arguments().collect();
        let env_of = |a: &clap::Arg| a.get_env().map(|e| e.to_string_lossy().into_owned());
        let mut seen = std::collections::BTreeSet::new();
        for line in example.lines() {
            let line = line.trim();
            let commented = line.starts_with('#');
            let body = line.trim_start_matches('#').trim();
            let Some((name, rest)) = body.split_once('=') else {
                continue;
            };
            if !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') || name.is_empty() {
                continue;
            }
            let value = rest.split(" #").next().unwrap().trim().trim_matches('"');
            let Some(arg) = args.iter().find(|a| env_of(a).as_deref() == Some(name)) else {
                // Settings of the ops scripts and of logging (RUST_LOG) are not the service's.
                assert!(
                    commented || name == "RUST_LOG",
                    "{name} in .env.example is not a setting of the service"
                );
                continue;
            };
            seen.insert(name.to_owned());
            let default: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if commented {
                assert!(
                    default.is_empty(),
                    "{name} has a default; show it uncommented"
                );
            } else {
                assert_eq!(default, vec![value.to_owned()], "default of {name}");
            }
        }
        for arg in &args {
            if let Some(name) = env_of(arg) {
                assert!(seen.contains(&name), "{name} is missing from .env.example");
            }
        }
    }
}
