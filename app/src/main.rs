//! `stock-flow`: serve, migrate, or seed.

use clap::{Parser, Subcommand};

// The order paths allocate many small, short-lived buffers (JSON, keys, HTTP); glibc's allocator
// showed as the largest cost in profiles of the hot-product run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use sf_persistence::catalog::seed::{self, Profile, Sizes};
use stock_flow::config::{Config, LogFormat, StorageConfig};
use stock_flow::{config, telemetry, Application};

#[derive(Parser)]
#[command(
    name = "stock-flow",
    version,
    about = "Store-aware inventory and fulfillment service"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default command).
    Serve(Box<Config>),
    /// Create the database if needed and apply migrations.
    Migrate(StorageConfig),
    /// Apply migrations and load deterministic demo or benchmark data into an empty database.
    Seed {
        #[command(flatten)]
        storage: StorageConfig,
        /// `demo` (2 warehouses, 30 stores, 200 products), `bench` (5 warehouses, 45 stores,
        /// 10,000 products) or `retail` (10 warehouses, 1,300 stores, 10,000 products: 13.1
        /// million stock rows; a few minutes).
        #[arg(long, default_value = "demo", value_parser = Profile::NAMES)]
        profile: String,
        /// Warehouses instead of the profile's number.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        warehouses: Option<u32>,
        /// Stores instead of the profile's number.
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100_000))]
        stores: Option<u32>,
        /// Products instead of the profile's number.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        products: Option<u32>,
        /// Leave a database that already has products alone instead of failing.
        #[arg(long)]
        if_empty: bool,
        /// Also write the CSV files the JMeter plans read into this folder.
        #[arg(long)]
        csv_dir: Option<std::path::PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A `.env` file in the working directory fills in variables that are not set (a variable set
    // in the environment wins).
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    match cli.command {
        None => {
            let config = Config::from_env();
            telemetry::init(config.log_format);
            config::warn_renamed_settings();
            Application::build(config).await?.run_until_stopped().await
        }
        Some(Command::Serve(config)) => {
            telemetry::init(config.log_format);
            config::warn_renamed_settings();
            Application::build(*config).await?.run_until_stopped().await
        }
        Some(Command::Migrate(storage)) => {
            telemetry::init(LogFormat::Text);
            let pool = connect_for_batch(&storage, 2).await?;
            sf_persistence::infra::mysql::migrate(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
        Some(Command::Seed {
            storage,
            profile,
            warehouses,
            stores,
            products,
            if_empty,
            csv_dir,
        }) => {
            telemetry::init(LogFormat::Text);
            let profile = Profile::parse(&profile).expect("clap checked the profile");
            let own = profile.sizes();
            let sizes = Sizes {
                warehouses: warehouses.map_or(own.warehouses, |n| n as usize),
                stores: stores.map_or(own.stores, |n| n as usize),
                products: products.map_or(own.products, |n| n as usize),
            };
            run_seed(&storage, profile, sizes, if_empty, csv_dir).await
        }
    }
}

/// A pool for a one-off command: MariaDB's own lock-wait limit, not a request's.
async fn connect_for_batch(
    storage: &StorageConfig,
    connections: u32,
) -> anyhow::Result<sqlx::MySqlPool> {
    Ok(sf_persistence::infra::mysql::connect(
        storage.database_url.expose(),
        connections,
        std::time::Duration::from_millis(storage.db_connect_timeout_ms.max(10_000)),
        std::time::Duration::from_secs(50),
        // A batch job's transactions run back to back: an idle one is a frozen job.
        std::time::Duration::from_secs(600),
    )
    .await?)
}

async fn run_seed(
    storage: &StorageConfig,
    profile: Profile,
    sizes: Sizes,
    if_empty: bool,
    csv_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let pool = connect_for_batch(storage, 4).await?;
    sf_persistence::infra::mysql::migrate(&pool).await?;
    let started = std::time::Instant::now();
    let report = seed::seed(&pool, profile, sizes, if_empty, &|msg| {
        println!("==> seeding {msg}")
    })
    .await?;
    if report.skipped {
        println!("database already has data; not seeded");
    } else {
        println!(
            "seeded {} locations, {} products, {} stock rows in {:.1}s",
            report.locations,
            report.products,
            report.stock_rows,
            started.elapsed().as_secs_f64()
        );
        // Stock keys of an earlier database would be wrong for this one.
        let n = clear_redis(storage).await?;
        if n > 0 {
            println!(
                "cleared {n} stale Redis keys under prefix {:?}",
                storage.redis_key_prefix
            );
        }
    }
    if let Some(dir) = csv_dir {
        seed::write_csv(&pool, &dir).await?;
        println!("wrote JMeter CSV files to {}", dir.display());
    }
    if let Some((id, key)) = &report.channel {
        println!(
            "demo channel key (channel {id}, web; send as Authorization: Bearer <key> on \
             /api/orders, /api/redis/orders, /api/holds): {key}"
        );
    }
    if !report.store_keys.is_empty() {
        println!(
            "demo POS keys (send as Authorization: Bearer <key> on /api/stores/<storeId>/...):"
        );
        for (id, name, key) in report.store_keys.iter().take(5) {
            println!("  store {id:>3} {name:<24} {key}");
        }
        if report.store_keys.len() > 5 {
            println!(
                "  ... and {} more, each sfk_demo_<storeId>",
                report.store_keys.len() - 5
            );
        }
    }
    Ok(())
}

async fn clear_redis(storage: &StorageConfig) -> anyhow::Result<u64> {
    let mut removed = 0;
    for url in redis_servers(storage).await? {
        removed += clear_server(&url, &storage.redis_key_prefix).await?;
    }
    Ok(removed)
}

/// The servers holding the service's keys: `REDIS_URL`, or every master of the cluster
/// (from `CLUSTER NODES` of the first seed that answers).
async fn redis_servers(storage: &StorageConfig) -> anyhow::Result<Vec<String>> {
    let seeds: Vec<&str> = storage
        .redis_cluster_nodes
        .iter()
        .map(|n| n.expose())
        .filter(|n| !n.trim().is_empty())
        .collect();
    if seeds.is_empty() {
        return Ok(vec![storage.redis_url.expose().to_owned()]);
    }
    let mut last = None;
    for seed in seeds {
        let nodes = async {
            let client = redis::Client::open(seed.trim())?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async::<String>(&mut conn)
                .await
        };
        match nodes.await {
            Ok(nodes) => {
                return Ok(nodes
                    .lines()
                    .filter_map(|line| {
                        let fields: Vec<&str> = line.split_whitespace().collect();
                        let flags = fields.get(2)?;
                        let live_master =
                            flags.split(',').any(|f| f == "master") && !flags.contains("fail");
                        let addr = fields.get(1)?.split('@').next()?;
                        live_master.then(|| format!("redis://{addr}"))
                    })
                    .collect())
            }
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow::anyhow!(
        "no seed node of REDIS_CLUSTER_NODES answered CLUSTER NODES: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// Unlinks the keys under `prefix` on one server, one key per command (on a cluster node, keys
/// of different slots cannot share a command).
async fn clear_server(url: &str, prefix: &str) -> anyhow::Result<u64> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{prefix}*");
    let mut cursor: u64 = 0;
    let mut removed = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            removed += keys.len() as u64;
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("UNLINK").arg(k).ignore();
            }
            let _: () = pipe.query_async(&mut conn).await?;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}
