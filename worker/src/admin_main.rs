//! The `tokenvault-admin` binary: runs [`tokenvault_worker::admin_cli::run`]
//! on a small runtime with the process's arguments, stdout and stderr.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let code = runtime.block_on(tokenvault_worker::admin_cli::run(
        std::env::args_os(),
        &mut out,
        &mut err,
    ));
    ExitCode::from(code)
}
