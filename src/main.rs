use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cinevec::cli::Cli::parse();
    let serving = matches!(cli.command, cinevec::cli::Command::Serve(_));
    cinevec::tune_allocator(if serving { cinevec::Workload::Server } else { cinevec::Workload::Batch });
    cinevec::tune_threads();
    if !serving {
        // Like other command-line tools, end quietly when the reader of stdout goes away
        // (`cinevec ... | head`) instead of panicking on the failed write. The server keeps Rust's
        // default (SIGPIPE ignored): its sockets report a closed peer as an error.
        // SAFETY: restoring a signal's default disposition before any other thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
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
