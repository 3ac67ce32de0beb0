use std::process::ExitCode;

fn main() -> ExitCode {
    match faultline::run_cli() {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            faultline::exit::exit_code_for(&err).into()
        }
    }
}
