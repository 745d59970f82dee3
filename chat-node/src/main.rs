use anyhow::Context;
use chat_node::config::{Cli, Command};
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if cli.config.log_json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let ran = chat_node::server::migrate(&cli.config)
                .await
                .context("migrating the database")?;
            tracing::info!(migrations = ran, "migrations done");
        }
        Command::Serve => chat_node::server::serve(cli.config)
            .await
            .context("running the node")?,
    }
    Ok(())
}
