use clap::{Args, Parser, Subcommand, ValueEnum};
use model::NodeName;
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
    after_help = "Examples:\n  pgscale demo\n  pgscale init -c cluster.yaml --dry-run\n  pgscale scale-out -n demo -c add.yaml\n  pgscale switchover -n demo --to pg2 --yes\n  pgscale status -n demo --output json\n  pgscale check -n demo\n  pgscale psql -n demo -- -Atc 'select 1'"
)]
pub struct Cli {
    /// Where inventories, secrets and journals live.
    #[arg(long, global = true, env = "PGSCALE_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Keep and find clusters' state in etcd (client URLs, comma-separated)
    /// instead of the home; see `pgscale store --help`.
    #[arg(long, global = true, env = "PGSCALE_ETCD", value_name = "URL,...", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// Key prefix in etcd.
    #[arg(long, global = true, env = "PGSCALE_ETCD_PREFIX", default_value = "/pgscale", value_name = "PREFIX")]
    pub etcd_prefix: String,
    /// The key file sealing passwords kept in etcd (never stored in etcd). Default: <home>/etcd.key.
    #[arg(long, global = true, env = "PGSCALE_ETCD_KEY_FILE", value_name = "FILE")]
    pub etcd_key_file: Option<PathBuf>,
    /// Deadline of each call to the store (etcd).
    #[arg(long, global = true, env = "PGSCALE_STORE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub store_timeout: Duration,
    /// TTL of the cluster lock's lease in etcd: a crashed holder's lock vanishes within it.
    #[arg(long, global = true, env = "PGSCALE_LOCK_TTL", default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub lock_ttl: Duration,
    /// Wait this long for a busy cluster's lock before refusing (default: refuse at once).
    #[arg(long, global = true, env = "PGSCALE_LOCK_WAIT", default_value = "0s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub lock_wait: Duration,
    /// Output format of data printed on stdout.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// With -n NAME of a sharded cluster: act on its group GROUP (the
    /// cluster NAME_GROUP; `coordinator` is NAME itself). Naming a data
    /// group's node with --node/--to does the same.
    #[arg(long, global = true, value_name = "GROUP")]
    pub group: Option<String>,
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
    /// Create the whole cluster an inventory file describes (primary and standbys) and record it.
    #[command(
        after_help = "Examples:\n  pgscale init --gen-template > cluster.yaml   # a commented 3-node spec\n  pgscale init -c cluster.yaml --dry-run       # print the whole plan, change nothing\n  pgscale init -c cluster.yaml\n  pgscale init -c cluster.yaml --install       # install PostgreSQL where it is missing first\n\nThe hosts are checked first (see `pgscale host check`). The primary is created, then every standby\n(sync, potential, async, cascaded) is copied from its upstream, in parallel where they are independent;\nsynchronous_standby_names is set last, once the synchronous standbys stream.\nRe-running an interrupted init (or `pgscale resume`) continues where it stopped; re-running a\nfinished one with the same file does nothing."
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
    /// List the clusters known in the home (and those it keeps in etcd), or in etcd with --etcd.
    #[command(
        after_help = "Examples:\n  pgscale list --output json\n  pgscale list --etcd 10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379"
    )]
    List,
    /// Where clusters' state lives: the home directory (default) or etcd.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Automatic failover for a cluster: on, off, paused for maintenance, and what its agents see.
    #[command(
        after_help = "Examples:\n  pgscale ha -n demo status\n  pgscale ha -n demo enable\n  pgscale ha -n demo pause     # maintenance: agents observe and report, never act\n  pgscale ha -n demo resume\n  pgscale ha -n demo disable\n\n\
                      The mode is kept in etcd beside the cluster's inventory, where the agents (`pgscale agent`)\n\
                      meet; a cluster kept in the home is refused (move it with `pgscale store migrate --to etcd`).\n\
                      A cluster starts disabled."
    )]
    Ha(HaArgs),
    /// What the automatic-failover agents did and why (fences, promotions, rejoins), oldest first.
    #[command(after_help = "Examples:\n  pgscale history -n demo\n  pgscale history -n demo --limit 20 --output json")]
    History(HistoryArgs),
    /// Print an HAProxy configuration: a read-write port on the primary, a read-only port on the standbys.
    #[command(
        name = "haproxy-config",
        after_help = "Examples:\n  pgscale haproxy-config -n demo > /etc/haproxy/haproxy.cfg\n  pgscale haproxy-config -n demo --bind 10.0.0.9 --rw-port 5000 --ro-port 5001 --max-lag 16MB\n\n\
                      Each server is checked through its agent's Patroni-compatible paths (/primary, /replica), at\n\
                      the address the agent published in etcd (else the node's address, port 8008)."
    )]
    HaproxyConfig(HaproxyArgs),
    /// The automatic-failover agent for one node (runs in the foreground; one per node).
    #[command(
        after_help = "Examples:\n  pgscale agent -n demo --node pg1\n  pgscale agent -n demo --node pg2 --profile fast --log-format json\n\n\
                      Needs the cluster in etcd (the agents meet there) and `pgscale ha -n NAME enable` to act.\n\
                      Each tick (250 ms; fast: 150 ms) it renews its lease, publishes its node's state, reads the\n\
                      others' and decides: keep or take the leader key, fence a failed or hung primary, withdraw\n\
                      from the lost primary and report (the quorum proof), promote the safest standby through\n\
                      the same failover operation as `pgscale failover`, re-point standbys, rejoin a former primary\n\
                      with pg_rewind. Logs go to stderr."
    )]
    Agent(AgentArgs),
    /// The operation log of a cluster (what each pgscale command did, step by step), from its store.
    #[command(after_help = "Examples:\n  pgscale log -n demo\n  pgscale log -n demo --limit 500 --output json")]
    Log(LogArgs),
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
    /// Take over a running primary/standby cluster pgscale did not create.
    #[command(
        after_help = "Examples:\n  pgscale adopt --gen-spec -n sales --primary 10.0.0.1:5432 --admin-password-file ~/pw > sales.yaml\n  pgscale adopt --gen-spec -n sales --primary 127.0.0.1:5432 --standby 127.0.0.2:5433 --admin-password-file ~/pw > sales.yaml\n  pgscale adopt -c sales.yaml --admin-password-file ~/pw --dry-run\n  pgscale adopt -c sales.yaml --admin-password-file ~/pw --yes\n\n\
                      --gen-spec finds the standbys from pg_stat_replication (and theirs, for cascades), trying each\n\
                      client address at the primary's port; name standbys it cannot guess with --standby HOST:PORT.\n\
                      adopt checks that the spec matches what runs (roles, upstreams, ports, data directories,\n\
                      versions, wal_level, hot_standby, wal_log_hints or checksums) and refuses with every difference.\n\
                      Then: the replication role, a slot per standby on its upstream (orphan slots are reported, never\n\
                      dropped), pg_hba.conf replaced after its diff is printed (your lines go into postgres.hba),\n\
                      passfiles and primary_conninfo, the managed settings (reload; restarts only with --yes,\n\
                      standbys first), and the cluster is recorded. The admin password file (mode 0600) holds the\n\
                      admin role's current password; it is never changed."
    )]
    Adopt(AdoptArgs),
    /// Add standbys (cascaded, sync or async) online.
    #[command(
        name = "scale-out",
        after_help = "Examples:\n  pgscale scale-out -n demo --gen-template > add.yaml   # a commented template with the next free name and port\n  pgscale scale-out -n demo -c add.yaml --dry-run\n  pgscale scale-out -n demo -c add.yaml\n\nadd.yaml holds `nodes:` with the inventory's node fields (name, host, port, data_dir, upstream, sync, ssh, transport).\nEach new node: pg_hba on the others, a slot on its upstream, pg_basebackup through the slot, its own config,\nstart, wait until it streams and has caught up; only then does a sync/potential node enter\nsynchronous_standby_names. Independent nodes are added in parallel; a cascaded node waits for its upstream.\nAn interrupted scale-out continues when run again (or with `pgscale resume`)."
    )]
    ScaleOut(ScaleOutArgs),
    /// Remove standbys online (their slots, pg_hba lines and sync names with them).
    #[command(
        name = "scale-in",
        after_help = "Examples:\n  pgscale scale-in -n demo --node pg3 --dry-run\n  pgscale scale-in -n demo --node pg3 --yes\n  pgscale scale-in -n demo --node pg2 --node pg3 --clear-dir --timeout 5s --yes\n\nA leaving synchronous standby is taken out of synchronous_standby_names first (a potential or\nasynchronous direct standby takes its place when one can); its downstream standbys are re-pointed\nto its upstream; then it stops (a node that does not answer within --timeout is skipped and\nreported), its slot is dropped and pg_hba updated everywhere. Data is kept unless --clear-dir."
    )]
    ScaleIn(ScaleInArgs),
    /// Continue an interrupted scale-out, scale-in, switchover, failover or shard move.
    #[command(
        after_help = "Examples:\n  pgscale resume -n demo\n  pgscale resume -n shop    # a sharded cluster: also finishes unfinished shard moves"
    )]
    Resume(ResumeArgs),
    /// Planned role change: NODE becomes primary, the old primary a standby (no data lost, no rewind).
    #[command(
        after_help = "Examples:\n  pgscale switchover -n demo --to pg2 --dry-run\n  pgscale switchover -n demo --to pg2 --yes\n\nRefused (exit 3) when the target is not streaming or lags more than --max-lag.\nSequence: checkpoint, clean stop of the primary, wait until the target replayed its shutdown\ncheckpoint, promote, the old primary restarted as a standby of the new one, other standbys\nre-pointed, synchronous_standby_names and slots carried over."
    )]
    Switchover(SwitchoverArgs),
    /// The primary is gone: promote the best standby.
    #[command(
        after_help = "Examples:\n  pgscale failover -n demo --dry-run\n  pgscale failover -n demo --yes\n  pgscale failover -n demo --to pg3 --force --yes\n\nRefused (exit 3) when the primary still answers (use switchover) or when no standby was\nsynchronous (committed data could be lost), unless --force. Without --to: the standby with the\nhighest timeline and received LSN (a synchronous one on a tie). The old primary is marked as\nneeding a rejoin and is never started as a primary again."
    )]
    Failover(FailoverArgs),
    /// Bring a former primary (or any diverged node) back as a standby (pg_rewind, or --reclone).
    #[command(
        after_help = "Examples:\n  pgscale rejoin -n demo --node pg1 --dry-run\n  pgscale rejoin -n demo --node pg1 --yes\n  pgscale rejoin -n demo --node pg1 --reclone --yes   # when pg_rewind cannot work"
    )]
    Rejoin(RejoinArgs),
    /// Health findings, one line each; exit 0 ok, 1 warning, 2 critical, 3 unknown (Nagios).
    #[command(after_help = "Examples:\n  pgscale check -n demo\n  pgscale check -n demo --node pg2 --output json")]
    Check(CheckArgs),
    /// Create a throw-away cluster on this machine, show it working under a write load, clean up.
    #[command(
        after_help = "Examples:\n  pgscale demo\n  pgscale demo --keep --dir /tmp/pgdemo\n\nInstalls the PostgreSQL server first when this machine has none (as root or with sudo -n), saying what it runs."
    )]
    Demo(DemoArgs),
    /// Check hosts before anything changes (and with --install, make them ready).
    #[command(subcommand)]
    Host(HostCommand),
    /// Sharded tables of a sharded cluster (`pgscale table create`).
    #[command(subcommand)]
    Table(TableCommand),
    /// Schema changes of a sharded cluster: run on the coordinator and every shard (refused while a move runs).
    #[command(
        after_help = "Examples:\n  pgscale ddl -n shop -c 'ALTER TABLE orders ADD COLUMN note text'\n  pgscale ddl -n shop -f change.sql --dry-run\n\n\
                      The statements are tried on every data group and on the coordinator and rolled back first: if\n\
                      they fail anywhere, nothing changes. Then they run on every data group (the partitioned root\n\
                      there carries them to each shard) and on the coordinator (its root carries them to the foreign\n\
                      leaves), and are logged so that groups added later replay them. Logical replication does not\n\
                      carry DDL, so a running shard move refuses it."
    )]
    Ddl(DdlArgs),
    /// Add data groups to a sharded cluster and move shards onto them until balanced.
    #[command(
        after_help = "Examples:\n  pgscale expand -n shop -c add.yaml --dry-run     # the groups' plans, the moves, bytes and an ETA\n  pgscale expand -n shop -c add.yaml\n  pgscale expand -n shop -c add.yaml --parallel 2 --max-pause 500ms --output json\n\n\
                      add.yaml lists the new groups as in the sharded spec:\n  data:\n    - name: dg3\n      nodes:\n        - {name: dg3a, host: 10.0.0.31, port: 5432, data_dir: /var/lib/pgscale/shop/dg3a}\n        - {name: dg3b, host: 10.0.0.32, port: 5432, data_dir: /var/lib/pgscale/shop/dg3b, sync: sync}\n\n\
                      Each group is created like `pgscale init` creates a cluster (hosts checked first), every group\n\
                      lets the others in (pg_hba), the coordinator gets a foreign server for it, then shards move one\n\
                      at a time per pair of groups: copy by logical replication, catch up, and a cut-over that pauses\n\
                      writes to that one shard for at most --max-pause (else it rolls back and retries).\n\
                      Interrupted? Run the same command again (or `pgscale resume -n NAME`)."
    )]
    Expand(ExpandArgs),
    /// Move every shard off a data group, then remove the group (its servers and data).
    #[command(
        after_help = "Examples:\n  pgscale shrink -n shop --drain dg3 --dry-run\n  pgscale shrink -n shop --drain dg3 --yes\n\n\
                      The group is marked draining first (it stays so if the command stops), its shards move to the\n\
                      groups holding the fewest, then its foreign server is dropped and its cluster destroyed."
    )]
    Shrink(ShrinkArgs),
    /// Even the shards out over the data groups (and finish unfinished moves).
    #[command(
        after_help = "Examples:\n  pgscale rebalance -n shop --dry-run\n  pgscale rebalance -n shop --parallel 2 --output json"
    )]
    Rebalance(RebalanceArgs),
    /// Move one shard to a data group (online, like every move of rebalance).
    #[command(
        name = "move",
        after_help = "Examples:\n  pgscale move -n shop --shard 7 --to dg2 --dry-run\n  pgscale move -n shop --shard 7 --to dg2 --max-pause 300ms\n\n\
                      An unfinished move of that shard is finished instead (wherever it was going)."
    )]
    Move(MoveOneArgs),
    /// Which data group holds which shard, sizes, and moves in progress.
    #[command(after_help = "Examples:\n  pgscale shards -n shop\n  pgscale shards -n shop --output json")]
    Shards(ShardsArgs),
}

#[derive(Subcommand, Debug)]
pub enum TableCommand {
    /// Create a sharded table: hash-partitioned by KEY into the cluster's shards, each on a data group.
    #[command(
        after_help = "Examples:\n  pgscale table create -n shop --table orders --key customer_id -- \\\n    'CREATE TABLE orders (customer_id bigint, id bigint, total numeric, PRIMARY KEY (customer_id, id))'\n\n\
                      The primary key must include the key (each shard enforces it on its group; a shard move\n\
                      replicates UPDATE and DELETE by it). Defaults and identities run on the coordinator.\n\
                      Applications use the table through the coordinator with plain SQL (INSERT ... ON CONFLICT DO\n\
                      UPDATE is not available through postgres_fdw; DO NOTHING is)."
    )]
    Create(TableCreateArgs),
}

#[derive(Args, Debug)]
pub struct TableCreateArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// The table's name (in schema public).
    #[arg(long)]
    pub table: String,
    /// The column that decides a row's shard (in the primary key).
    #[arg(long)]
    pub key: String,
    /// Deadline of one call.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// `CREATE TABLE <table> (...)`, without PARTITION BY.
    #[arg(last = true, required = true, value_name = "CREATE TABLE ...")]
    pub create: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DdlArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// A file of statements.
    #[arg(short = 'f', long = "file", conflicts_with = "command", required_unless_present = "command")]
    pub file: Option<PathBuf>,
    /// Statements given inline.
    #[arg(short = 'c', long = "command")]
    pub command: Option<String>,
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// How shards move (shared by expand, shrink and rebalance).
#[derive(Args, Debug)]
pub struct MoveArgs {
    /// Print the moves (bytes each, an ETA from the measured rate) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Moves at the same time, each between its own pair of groups.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Longest write pause of one cut-over; a cut-over that would take longer rolls back and retries.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub max_pause: Duration,
    /// Cut-over attempts of one move before giving up (the move stays ready: run again).
    #[arg(long, default_value_t = 30)]
    pub attempts: u32,
    /// Keep at least this much free on every node of a target group besides what its new shards need (e.g. 10GB).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    pub min_free: u64,
    /// Deadline of one call.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct ExpandArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// The file listing the data groups to add (`data:`).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: PathBuf,
    /// Make the new hosts ready first (install PostgreSQL, the OS user, directories).
    #[arg(long)]
    pub install: bool,
    /// Only add the groups; move shards onto them later with `pgscale rebalance`.
    #[arg(long)]
    pub no_rebalance: bool,
    #[command(flatten)]
    pub moves: MoveArgs,
}

#[derive(Args, Debug)]
pub struct ShrinkArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// The data group to empty and remove.
    #[arg(long, value_name = "GROUP")]
    pub drain: String,
    /// Do not ask.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub moves: MoveArgs,
}

#[derive(Args, Debug)]
pub struct RebalanceArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    #[command(flatten)]
    pub moves: MoveArgs,
}

#[derive(Args, Debug)]
pub struct MoveOneArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    #[arg(long)]
    pub shard: u32,
    /// The data group that takes it.
    #[arg(long, value_name = "GROUP")]
    pub to: String,
    #[command(flatten)]
    pub moves: MoveArgs,
}

#[derive(Args, Debug)]
pub struct ShardsArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 3s or 500ms: {e}"))
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Cluster name.
    #[arg(short = 'n', long = "name")]
    pub name: NodeName,
    /// At most this many events (the newest).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

#[derive(Args, Debug)]
pub struct HaproxyArgs {
    /// Cluster name.
    #[arg(short = 'n', long = "name")]
    pub name: NodeName,
    /// The address HAProxy listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    #[arg(long, default_value_t = 5000)]
    pub rw_port: u16,
    #[arg(long, default_value_t = 5001)]
    pub ro_port: u16,
    /// Read-only: only standbys at most this far behind (e.g. 16MB).
    #[arg(long)]
    pub max_lag: Option<String>,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
    /// Cluster name.
    #[arg(short = 'n', long = "name", required = true)]
    pub name: Option<NodeName>,
    /// The node this agent looks after (it runs on that node's host).
    #[arg(long, required = true)]
    pub node: Option<NodeName>,
    /// Lease timing: default (2 s lease, 250 ms ticks) or fast (1 s, 150 ms; etcd with a 500 ms election timeout).
    #[arg(long, value_enum, default_value = "default")]
    pub profile: AgentProfile,
    /// Asynchronous mode: the most a standby may lag the last recorded primary position and still be promoted (default: the spec's `ha.maximum_lag_on_failover`, 1 MiB).
    #[arg(long, value_parser = parse_size)]
    pub max_lag_on_failover: Option<u64>,
    /// Keep a synchronous primary running when etcd is unreachable (its standbys' quorum protects the data); also on when the spec's `ha.failsafe` is.
    #[arg(long)]
    pub failsafe: bool,
    /// When pg_rewind cannot bring a former primary back, empty its data directory and copy it afresh from the new primary (what it wrote alone is discarded either way; without this it stays down until `pgscale rejoin --reclone`); also on when the spec's `ha.auto_reclone` is.
    #[arg(long)]
    pub auto_reclone: bool,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Stop after this long (for tests and trials).
    #[arg(long, value_parser = parse_duration)]
    pub run_for: Option<Duration>,
    /// Where the Patroni-compatible health checks and /metrics listen (default: the node's address, port 8008).
    #[arg(long, value_name = "ADDR:PORT")]
    pub http: Option<std::net::SocketAddr>,
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// The fence guard the agent starts (internal).
    #[command(hide = true)]
    Guard(AgentGuardArgs),
    /// Print a systemd unit that runs this agent (Type=notify with a watchdog, Restart=always, KillMode=process).
    #[command(
        after_help = "Example:\n  pgscale agent unit -n demo --node pg1 > /etc/systemd/system/pgscale-agent-demo-pg1.service"
    )]
    Unit(AgentUnitArgs),
}

#[derive(Args, Debug)]
pub struct AgentGuardArgs {
    #[arg(long)]
    pub fifo: PathBuf,
    #[arg(long)]
    pub data_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct AgentUnitArgs {
    #[arg(short = 'n', long = "name")]
    pub name: NodeName,
    #[arg(long)]
    pub node: NodeName,
    /// Lease timing of the agent the unit runs.
    #[arg(long, value_enum, default_value = "default")]
    pub profile: AgentProfile,
    /// The agent keeps a synchronous primary while etcd is unreachable (see `pgscale agent --help`).
    #[arg(long)]
    pub failsafe: bool,
    /// The agent reclones a former primary that pg_rewind cannot bring back (see `pgscale agent --help`).
    #[arg(long)]
    pub auto_reclone: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentProfile {
    Default,
    Fast,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_size(s: &str) -> Result<u64, String> {
    doctor::health::parse_size(s).ok_or_else(|| format!("`{s}`: a size in bytes, or with kB, MB, GB"))
}

#[derive(Args, Debug)]
pub struct HaArgs {
    /// Cluster name.
    #[arg(short = 'n', long = "name")]
    pub name: NodeName,
    #[command(subcommand)]
    pub action: HaAction,
}

#[derive(Subcommand, Debug, Clone, Copy)]
pub enum HaAction {
    /// Agents act: fence a failed primary, promote the safest standby, re-point, rejoin.
    Enable,
    /// Agents only observe and publish.
    Disable,
    /// Maintenance mode: agents observe and report, never act; the leader keeps its key.
    Pause,
    /// Back from pause to enabled.
    Resume,
    /// The mode, who set it, the leader and each agent's published state.
    Status,
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Move a cluster's state (inventory, passwords) between the home and etcd, without touching its servers.
    #[command(
        after_help = "Examples:\n  pgscale store migrate -n demo --to etcd --etcd 10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379\n  pgscale store migrate -n demo --to home\n\nIn etcd, passwords are sealed with the key file (--etcd-key-file, default <home>/etcd.key,\ncreated when first needed); copy that file (mode 0600) to every machine that runs pgscale\nagainst the cluster. The key is never written to etcd. After a move to etcd, this machine\nremembers where the cluster is, so `-n NAME` works without --etcd here."
    )]
    Migrate(MigrateArgs),
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// Cluster name.
    #[arg(short, long)]
    pub name: NodeName,
    /// Where the state goes.
    #[arg(long, value_enum)]
    pub to: StoreKind,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Home,
    Etcd,
}

#[derive(Args, Debug)]
pub struct LogArgs {
    /// Cluster name.
    #[arg(short, long)]
    pub name: NodeName,
    /// Show at most this many of the latest lines.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

#[derive(Subcommand, Debug)]
pub enum HostCommand {
    /// Per host: reachable, OS user, server binaries, one major version, writable data_dir parents with
    /// room for a copy, free ports, clock skew. Every finding at once; exit 0 ok, 2 problems, 3 unreachable.
    #[command(
        after_help = "Examples:\n  pgscale host check -c cluster.yaml\n  pgscale host check -n demo --output json\n  pgscale host check -c cluster.yaml --install --dry-run   # the install commands, not run\n  pgscale host check -c cluster.yaml --install             # apt-get/dnf install, useradd, mkdir, as root or sudo -n"
    )]
    Check(HostCheckArgs),
}

#[derive(Args, Debug)]
pub struct HostCheckArgs {
    /// An inventory file (its nodes are checked as nodes about to be created).
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        conflicts_with = "name",
        required_unless_present = "name"
    )]
    pub config: Option<PathBuf>,
    /// A recorded cluster.
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
    /// Make the hosts ready: install the server package (apt without its default cluster, or dnf),
    /// create the OS user and the data directories' parents.
    #[arg(long)]
    pub install: bool,
    /// The PostgreSQL major version to install where no host has one (default: the distribution's).
    #[arg(long, value_name = "N")]
    pub pg_major: Option<u32>,
    /// With --install: show the commands, run none.
    #[arg(long)]
    pub dry_run: bool,
    /// Deadline of each host's probe.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The inventory file (YAML).
    #[arg(short = 'c', long = "config", value_name = "FILE", required_unless_present = "gen_template")]
    pub config: Option<PathBuf>,
    /// Print a commented 3-node spec (primary, sync standby, async standby) and exit.
    #[arg(long)]
    pub gen_template: bool,
    /// With --gen-template: a sharded cluster's spec (a coordinator and two data groups).
    #[arg(long, requires = "gen_template")]
    pub sharded: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Answer yes to questions (init asks none; accepted for scripts).
    #[arg(long)]
    pub yes: bool,
    /// Make the hosts ready first (install PostgreSQL, create the OS user and directories), as root or sudo -n.
    #[arg(long)]
    pub install: bool,
    /// With --install: the major version to install where no host has one (default: the distribution's).
    #[arg(long, value_name = "N")]
    pub pg_major: Option<u32>,
    /// How many standbys to copy at the same time (default: all whose upstream exists).
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Limit each base copy to this rate (kB/s, or with k/M: 50M), to spare the upstream's disks.
    #[arg(long, value_parser = plan::argv::parse_max_rate)]
    pub max_rate: Option<String>,
    /// Deadline of one remote call.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long a new standby may take to stream and catch up after its copy.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub catchup_timeout: Duration,
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
    pub node: Option<NodeName>,
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
    pub node: Option<NodeName>,
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
pub struct AdoptArgs {
    /// The spec of the running cluster (as for init; `--gen-spec` writes one).
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        required_unless_present = "gen_spec",
        conflicts_with = "gen_spec"
    )]
    pub config: Option<PathBuf>,
    /// Print a spec discovered from the running primary (with --primary and -n).
    #[arg(long, requires_all = ["primary", "name"])]
    pub gen_spec: bool,
    /// --gen-spec: the primary's HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", requires = "gen_spec")]
    pub primary: Option<String>,
    /// --gen-spec: a standby's HOST:PORT the primary cannot tell (repeatable).
    #[arg(long = "standby", value_name = "HOST:PORT", requires = "gen_spec")]
    pub standbys: Vec<String>,
    /// --gen-spec: the cluster's name in the spec.
    #[arg(short = 'n', long = "name", requires = "gen_spec")]
    pub name: Option<String>,
    /// --gen-spec: the superuser pgscale connects as.
    #[arg(long, default_value = "postgres", requires = "gen_spec")]
    pub admin_user: String,
    /// A file (mode 0600) with the admin role's current password.
    #[arg(long, value_name = "FILE")]
    pub admin_password_file: PathBuf,
    /// A file (mode 0600) with the replication role's password, when that role exists already.
    #[arg(long, value_name = "FILE")]
    pub replication_password_file: Option<PathBuf>,
    #[arg(long)]
    pub dry_run: bool,
    /// Allow restarts (standbys first, then the primary) for settings that need one.
    #[arg(long)]
    pub yes: bool,
    /// Deadline of one remote call.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long each standby may take to stream through its new slot.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub catchup_timeout: Duration,
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

#[derive(Args, Debug)]
pub struct ScaleOutArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// File with the `nodes:` to add.
    #[arg(short = 'c', long = "config", value_name = "FILE", required_unless_present = "gen_template")]
    pub config: Option<PathBuf>,
    /// Print a commented template for the next node and exit.
    #[arg(long)]
    pub gen_template: bool,
    #[arg(long)]
    pub dry_run: bool,
    /// Accepted for scripts (scale-out asks nothing).
    #[arg(long)]
    pub yes: bool,
    /// How many nodes to copy at the same time (default: all whose upstream exists).
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Make the new hosts ready first (install PostgreSQL, create the OS user and directories).
    #[arg(long)]
    pub install: bool,
    /// Limit each base copy to this rate (kB/s, or with k/M: 50M), to spare the upstream's disks.
    #[arg(long, value_parser = plan::argv::parse_max_rate)]
    pub max_rate: Option<String>,
    /// Deadline of one remote call.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long a new standby may take to stream and catch up after its copy.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub catchup_timeout: Duration,
}

#[derive(Args, Debug)]
pub struct ScaleInArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// Node to remove (repeat for several).
    #[arg(long = "node", required = true)]
    pub nodes: Vec<NodeName>,
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask (required without a terminal); also accepts dropping to asynchronous replication.
    #[arg(long)]
    pub yes: bool,
    /// Remove the data directories pgscale created for the removed nodes.
    #[arg(long)]
    pub clear_dir: bool,
    /// Deadline of each remote call and of stopping a leaving node.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask (scale-in resumes ask like scale-in does).
    #[arg(long)]
    pub yes: bool,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct SwitchoverArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// The standby that becomes primary.
    #[arg(long)]
    pub to: NodeName,
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask (required without a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Refuse when the target is further behind than this many bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_lag: u64,
    /// Deadline of one remote call, and of stopping the old primary.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct FailoverArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// The standby to promote (default: the best candidate).
    #[arg(long)]
    pub to: Option<NodeName>,
    /// Go on although the primary answers or no standby was synchronous.
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub yes: bool,
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct RejoinArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// The node to bring back as a standby.
    #[arg(long = "node")]
    pub node: NodeName,
    /// Empty its data directory and take a fresh copy instead of pg_rewind.
    #[arg(long)]
    pub reclone: bool,
    /// With --reclone: limit the copy to this rate (kB/s, or with k/M: 50M).
    #[arg(long, value_parser = plan::argv::parse_max_rate)]
    pub max_rate: Option<String>,
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub yes: bool,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// Only findings about this node.
    #[arg(long = "node")]
    pub node: Option<NodeName>,
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
}
