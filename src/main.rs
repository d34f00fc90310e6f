//! `mcp-warden`: dispatch only. The sandbox helper mode is selected before anything else
//! runs, so it starts single-threaded.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if args
        .nth(1)
        .is_some_and(|a| a == mcp_warden::sandbox::HELPER_ARG)
    {
        mcp_warden::sandbox::exec::main(args)
    }
    mcp_warden::cli::main()
}
