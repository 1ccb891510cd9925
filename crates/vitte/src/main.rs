//! The `vitte` executable; everything it does lives in the library.

fn main() -> std::process::ExitCode {
    // Before anything can count: every subcommand's metrics go to it.
    vitte_runtime::telemetry::install_metrics();
    vitte::cli::main()
}
