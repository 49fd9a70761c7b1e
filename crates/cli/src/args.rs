use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "pgscale",
    version,
    about = "Create PostgreSQL clusters and scale them out and in online",
    long_about = "Create PostgreSQL primary/standby clusters from an inventory file, see their \
                  health, and change them through plans you can inspect first (--dry-run).\n\n\
                  Exit codes of mutating commands: 0 done; 1 failed while changing the cluster \
                  (re-running is safe); 2 invalid input or usage, nothing changed; 3 refused by a \
                  safety check or because another operation holds the cluster, nothing changed.",
    after_help = "Examples:\n  pgscale demo\n  pgscale init -c cluster.yaml --dry-run\n  pgscale status -n demo --output json\n  pgscale psql -n demo -- -Atc 'select 1'"
)]
pub struct Cli {
    /// Where inventories, secrets and journals live.
    #[arg(long, global = true, env = "PGSCALE_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Output format of data printed on stdout.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Show logs on stderr (-v debug). PGSCALE_LOG=filter overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the cluster described by an inventory file and record it.
    #[command(
        after_help = "Examples:\n  pgscale init -c cluster.yaml --dry-run   # print the plan, change nothing\n  pgscale init -c cluster.yaml\n\nRe-running an interrupted init continues where it stopped."
    )]
    Init(InitArgs),
    /// Probe every node in parallel (each with a deadline) and show roles, LSNs, lag.
    #[command(after_help = "Examples:\n  pgscale status -n demo\n  pgscale status -n demo --output json --timeout 1s")]
    Status(StatusArgs),
    /// Run psql against a node (default: the primary) as the admin user.
    #[command(
        after_help = "Examples:\n  pgscale psql -n demo\n  pgscale psql -n demo --node pg2 -- -Atc 'select pg_is_in_recovery()'"
    )]
    Psql(PsqlArgs),
    /// Stop every node, remove the directories pgscale created, forget the cluster.
    #[command(
        after_help = "Examples:\n  pgscale destroy -n demo            # shows the plan and asks\n  pgscale destroy -n demo --yes      # scripts: no question"
    )]
    Destroy(DestroyArgs),
    /// List the clusters known in the home.
    #[command(after_help = "Example:\n  pgscale list --output json")]
    List,
    /// Show a node's pg_hba.conf as the server has it, and whether it matches the inventory.
    #[command(after_help = "Examples:\n  pgscale hba -n demo\n  pgscale hba -n demo --node pg2")]
    Hba(HbaArgs),
    /// Roll changed `postgres.hba` / `postgres.parameters` out to every node.
    #[command(
        name = "apply-config",
        after_help = "Examples:\n  pgscale apply-config -n demo -c cluster.yaml --dry-run\n  pgscale apply-config -n demo -c cluster.yaml --yes\n\nReloads when that is enough; restarts (standbys first, the primary last) when a \
                      changed parameter needs it. Restarting the primary asks first unless --yes."
    )]
    ApplyConfig(ApplyConfigArgs),
    /// Create a throw-away cluster on this machine, show it working, clean up.
    #[command(after_help = "Examples:\n  pgscale demo\n  pgscale demo --keep --dir /tmp/pgdemo")]
    Demo(DemoArgs),
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 3s or 500ms: {e}"))
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The inventory file (YAML).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: PathBuf,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Answer yes to questions (init asks none today; accepted for scripts).
    #[arg(long)]
    pub yes: bool,
    /// Deadline of one remote call.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Cluster name.
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// Deadline of each node's probe.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct PsqlArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// Node to connect to (default: the primary).
    #[arg(long)]
    pub node: Option<String>,
    /// Arguments passed to psql as they are.
    #[arg(last = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DestroyArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// Do not ask for confirmation (required without a terminal).
    #[arg(long)]
    pub yes: bool,
    #[arg(long)]
    pub dry_run: bool,
    /// Deadline of one remote call; a node that does not answer is skipped.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct HbaArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// Node to read (default: the primary).
    #[arg(long)]
    pub node: Option<String>,
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct ApplyConfigArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// The inventory file with the new `postgres.hba` / `postgres.parameters`.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: PathBuf,
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before restarting the primary.
    #[arg(long)]
    pub yes: bool,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Directory for the demo's data (default: a new temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the cluster running at the end (remove it later with `pgscale destroy -n demo`).
    #[arg(long)]
    pub keep: bool,
}
