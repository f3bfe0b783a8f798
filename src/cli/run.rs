//! `decent run` and `decent check-config`.

use std::path::PathBuf;

use crate::node::{self, config};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The node's configuration file (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The configuration file to check.
    pub file: PathBuf,
}

/// Prints every configuration error with its field path; false when there was any.
fn report(errs: &[config::ConfigError], file: &std::path::Path) -> bool {
    eprintln!("decent: {} has {} error(s):", file.display(), errs.len());
    for e in errs {
        eprintln!("  {e}");
    }
    false
}

pub fn check(args: &CheckArgs) -> anyhow::Result<bool> {
    match config::load(&args.file) {
        Ok(c) => {
            println!(
                "{}: ok (node {}, {} RLOC(s), {} database mapping(s))",
                args.file.display(),
                c.name,
                c.rlocs.len(),
                c.database.len()
            );
            Ok(true)
        }
        Err(errs) => Ok(report(&errs, &args.file)),
    }
}

pub fn run(args: &RunArgs) -> anyhow::Result<bool> {
    let cfg = match config::load(&args.config) {
        Ok(c) => c,
        Err(errs) => return Ok(report(&errs, &args.config)),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (handle, requests) = node::handle::channel();
        if let Some(listen) = cfg.api.listen {
            let token = match &cfg.api.token_file {
                Some(f) => Some(crate::api::read_token(f)?.into()),
                None => None,
            };
            let st = crate::api::ApiState {
                node: handle,
                token,
                resolver: node::own_map_resolver(&cfg).await?,
                name: cfg.name.as_str().into(),
                counters: Default::default(),
            };
            crate::api::serve(listen, st).await?;
        }
        node::run(cfg, requests).await
    })?;
    Ok(true)
}
