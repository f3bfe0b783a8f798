fn main() -> std::process::ExitCode {
    lisp_decent::cli::main()
}
