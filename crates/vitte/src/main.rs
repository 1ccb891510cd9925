//! The `vitte` executable; everything it does lives in the library.

fn main() -> std::process::ExitCode {
    vitte::cli::main()
}
