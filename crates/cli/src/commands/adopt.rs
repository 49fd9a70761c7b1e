use super::show;
use crate::args::{AdoptArgs, OutputFormat};
use ops::adopt;
use ops::error::OpError;
use ops::Env;

pub async fn run(env: Env<'_>, fmt: OutputFormat, a: AdoptArgs) -> Result<u8, OpError> {
    if a.gen_spec {
        let r = adopt::GenRequest {
            name: a.name.expect("clap requires -n with --gen-spec"),
            primary: a.primary.expect("clap requires --primary with --gen-spec"),
            standbys: a.standbys,
            admin_user: a.admin_user,
            admin_password_file: a.admin_password_file,
            timeout: a.timeout,
        };
        let (spec, notes) = adopt::gen_spec(r).await?;
        for n in notes {
            env.ui.say(&format!("note: {n}"));
        }
        print!("{spec}");
        return Ok(0);
    }
    let r = adopt::Request {
        config: a.config.expect("clap requires -c without --gen-spec"),
        dry_run: a.dry_run,
        yes: a.yes,
        timeout: a.timeout,
        catchup: a.catchup_timeout,
        admin_password_file: a.admin_password_file,
        replication_password_file: a.replication_password_file,
    };
    let out = adopt::run(env, r).await?;
    Ok(show(env, fmt, &out))
}
