//! One module per command: build the typed request from the arguments,
//! call the operation in `ops`, print what it returns.

mod adopt;
mod apply_config;
mod check;
mod demo;
mod destroy;
mod ha;
mod ha_mode;
mod hba;
mod host;
mod init;
mod list;
mod log;
mod psql;
mod resume;
mod scale_in;
mod scale_out;
mod shard;
mod status;
mod store;

use crate::args::{Cli, Command, OutputFormat};
use crate::output::print_plan;
use crate::term::TermUi;
use ops::error::{invalid, OpError};
use ops::{Env, Outcome};
use std::path::PathBuf;

pub async fn run(cli: Cli) -> Result<u8, OpError> {
    let mut cfg = ::store::StoresConfig::new(home_dir(cli.home.clone())?);
    if !cli.etcd.is_empty() {
        let spec = model::EtcdSpec { endpoints: cli.etcd.clone(), prefix: cli.etcd_prefix.clone() };
        let ps = spec.problems();
        if !ps.is_empty() {
            return Err(invalid(format!("--etcd/PGSCALE_ETCD: {}", ps.join("; "))));
        }
        cfg.etcd = Some(spec);
    }
    cfg.key_file = cli.etcd_key_file.clone();
    cfg.deadline = cli.store_timeout;
    cfg.lock_ttl = cli.lock_ttl;
    cfg.lock_wait = cli.lock_wait;
    let stores = ::store::Stores::new(cfg);
    let fmt = cli.output;
    let ui = TermUi::new(fmt);
    let argv: Vec<String> = crate::group::rewrite(std::env::args().collect()).map_err(invalid)?;
    // A data group's node named on its sharded cluster: the group's cluster.
    let (argv, command) = match crate::group::infer(&stores, &argv).await? {
        Some(v) => {
            use clap::Parser;
            let c = crate::args::Cli::try_parse_from(&v).map_err(|e| invalid(e.to_string()))?;
            (v, c.command)
        }
        None => (argv, cli.command),
    };
    let env = Env { stores: &stores, ui: &ui, argv: &argv };
    let r = dispatch(env, fmt, command).await;
    // Flush the operation log and release locks before exiting.
    stores.close().await;
    r
}

async fn dispatch(env: Env<'_>, fmt: OutputFormat, command: Command) -> Result<u8, OpError> {
    match command {
        Command::Init(a) => init::run(env, fmt, a).await,
        Command::Status(a) => status::run(env, fmt, a).await,
        Command::Psql(a) => psql::run(env, a).await,
        Command::Destroy(a) => destroy::run(env, fmt, a).await,
        Command::List => list::run(env, fmt).await,
        Command::Store(crate::args::StoreCommand::Migrate(a)) => store::migrate(env, a).await,
        Command::Log(a) => log::run(env, fmt, a).await,
        Command::Ha(a) => ha_mode::run(env, fmt, a).await,
        Command::Agent(a) => agent(env, a).await,
        Command::History(a) => {
            let v = ops::ha_mode::history(env, a.name.as_ref(), a.limit).await?;
            if fmt == OutputFormat::Json {
                println!("{}", serde_json::Value::Array(v));
            } else if v.is_empty() {
                env.ui.say(&format!("no automatic-failover events recorded for {}", a.name));
            } else {
                for e in v {
                    let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
                    println!("{}  {:<6} {}: {}", s("at"), s("node"), s("did"), s("why"));
                }
            }
            Ok(0)
        }
        Command::HaproxyConfig(a) => {
            let l = plan::haproxy::Listen { bind: a.bind, rw_port: a.rw_port, ro_port: a.ro_port, max_lag: a.max_lag };
            print!("{}", ops::ha_mode::haproxy_config(env, a.name.as_ref(), &l).await?);
            Ok(0)
        }
        Command::Hba(a) => hba::run(env, fmt, a).await,
        Command::ApplyConfig(a) => apply_config::run(env, fmt, a).await,
        Command::Adopt(a) => adopt::run(env, fmt, a).await,
        Command::Demo(a) => demo::run(env, a).await,
        Command::ScaleOut(a) => scale_out::run(env, fmt, a).await,
        Command::ScaleIn(a) => scale_in::run(env, fmt, a).await,
        Command::Resume(a) => resume::run(env, fmt, a).await,
        Command::Switchover(a) => ha::switchover(env, fmt, a).await,
        Command::Failover(a) => ha::failover(env, fmt, a).await,
        Command::Rejoin(a) => ha::rejoin(env, fmt, a).await,
        Command::Check(a) => Ok(check::run(env, fmt, a).await),
        Command::Host(crate::args::HostCommand::Check(a)) => host::check(env, fmt, a).await,
        Command::Table(c) => shard::table(env, fmt, c).await,
        Command::Ddl(a) => shard::ddl(env, fmt, a).await,
        Command::Expand(a) => shard::expand(env, fmt, a).await,
        Command::Shrink(a) => shard::shrink(env, fmt, a).await,
        Command::Rebalance(a) => shard::rebalance(env, fmt, a).await,
        Command::Shards(a) => shard::shards(env, fmt, a).await,
        Command::Move(a) => shard::move_one(env, fmt, a).await,
    }
}

async fn agent(env: Env<'_>, a: crate::args::AgentArgs) -> Result<u8, OpError> {
    if let Some(crate::args::AgentCommand::Guard(g)) = &a.command {
        ::agent::guard::run(&g.fifo, &g.data_dir).map_err(invalid)?;
        return Ok(0);
    }
    if let Some(crate::args::AgentCommand::Unit(u)) = a.command {
        let store = env.stores.for_cluster(&u.name).await?;
        let inv = store.load(&u.name).await?;
        if inv.node(&u.node).is_none() {
            return Err(invalid(format!("`{}` is not a node of cluster {}", u.node, u.name)));
        }
        let Some(spec) = store.dcs().and_then(|d| d.etcd) else {
            return Err(invalid(format!(
                "cluster {n} is kept in {}: the agents meet in etcd; move it there first with `pgscale store migrate -n {n} --to etcd --etcd URL,...`",
                store.describe(),
                n = u.name
            )));
        };
        let c = env.stores.config();
        let mut vars = vec![
            ("PGSCALE_HOME".to_string(), c.home.display().to_string()),
            ("PGSCALE_ETCD".to_string(), spec.endpoints.join(",")),
            ("PGSCALE_ETCD_PREFIX".to_string(), spec.prefix.clone()),
        ];
        if let Some(k) = &c.key_file {
            vars.push(("PGSCALE_ETCD_KEY_FILE".to_string(), k.display().to_string()));
        }
        let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "pgscale".into());
        let mut extra = match u.profile {
            crate::args::AgentProfile::Fast => vec!["--profile".to_string(), "fast".to_string()],
            crate::args::AgentProfile::Default => vec![],
        };
        for (on, flag) in [(u.failsafe, "--failsafe"), (u.auto_reclone, "--auto-reclone")] {
            if on {
                extra.push(flag.to_string());
            }
        }
        let user = inv.postgres.os_user.clone().unwrap_or_else(|| "postgres".into());
        print!("{}", ::agent::unit(&u.name, &u.node, &exe, &user, &vars, &extra));
        return Ok(0);
    }
    let (Some(name), Some(node)) = (a.name, a.node) else {
        return Err(invalid("pgscale agent needs -n NAME and --node NODE"));
    };
    let cfg = ::agent::Config {
        name: name.to_string(),
        node: node.to_string(),
        profile: match a.profile {
            crate::args::AgentProfile::Default => doctor::fence::Profile::DEFAULT,
            crate::args::AgentProfile::Fast => doctor::fence::Profile::FAST,
        },
        max_lag_on_failover: a.max_lag_on_failover,
        failsafe: a.failsafe,
        auto_reclone: a.auto_reclone,
        run_for: a.run_for,
        http: a.http,
    };
    ::agent::run(env.stores, cfg).await?;
    Ok(0)
}

fn home_dir(opt: Option<PathBuf>) -> Result<PathBuf, OpError> {
    if let Some(h) = opt {
        return Ok(h);
    }
    match std::env::var_os("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".pgscale")),
        None => Err(invalid("no home directory: set --home or PGSCALE_HOME")),
    }
}

/// Print what a mutating operation returned; exit 0.
pub fn show(env: Env<'_>, fmt: OutputFormat, out: &Outcome) -> u8 {
    match out {
        Outcome::Planned(p) => print_plan(p, fmt),
        Outcome::PlannedMany(ps) => ps.iter().for_each(|p| print_plan(p, fmt)),
        Outcome::Applied { plan, report: None } if plan.is_empty() => {
            env.ui.say("nothing to do: the cluster already matches")
        }
        Outcome::Applied { .. } => {}
        Outcome::Unchanged(why) | Outcome::Done(why) => env.ui.say(why),
    }
    0
}
