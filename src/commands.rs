//! One function per subcommand: turns parsed options into work.

use crate::cli::{Command, Opts};
use crate::exit::ExitCode;

pub fn dispatch(opts: Opts) -> anyhow::Result<ExitCode> {
    match opts.command {
        Command::Validate(args) => {
            let mut code = ExitCode::Success;
            for file in &args.files {
                match crate::experiment::load(file) {
                    Ok(exp) => println!(
                        "{}: ok ({} services, {} proxies, {} load streams, {} timeline steps)",
                        file.display(),
                        exp.services.len(),
                        exp.proxies.len(),
                        exp.streams.len(),
                        exp.timeline.len()
                    ),
                    Err(e) => {
                        eprintln!("{e}");
                        code = ExitCode::BadInput;
                    }
                }
            }
            Ok(code)
        }
        _ => anyhow::bail!("not yet"),
    }
}
