use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    cinevec::tune_allocator();
    cinevec::tune_threads();
    let cli = cinevec::cli::Cli::parse();
    cinevec::cli::init_logging(cli.verbose);
    match cinevec::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One clear line (with causes), never a backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
