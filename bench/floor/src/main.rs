//! `sf-floor`: serve the benchmark floor until SIGINT or SIGTERM (see the library's docs).

use clap::Parser;
use sf_floor::{Floor, Settings};
use std::io::Write;

// The same allocator as the service, so the floor measures the same machinery.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    let host = settings.host.clone();
    let floor = Floor::build(settings).await?;
    // ops/bench reads this line to learn the port (with --port 0).
    println!("sf-floor listening on http://{host}:{}", floor.port());
    std::io::stdout().flush()?;
    floor.run_until_stopped().await
}
