//! `mcp-warden`: dispatch only. Inherited descriptors are made close-on-exec and the
//! sandbox helper mode is selected before anything else runs, so it starts single-threaded.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Descriptors a launcher left open must reach nothing this process starts. (A failure
    // here leaves the helper's close before exec as the guarantee for servers.)
    let _ = mcp_warden::sandbox::exec::close_inherited_on_exec();
    let mut args = std::env::args_os();
    if args
        .nth(1)
        .is_some_and(|a| a == mcp_warden::sandbox::HELPER_ARG)
    {
        mcp_warden::sandbox::exec::main(args)
    }
    mcp_warden::cli::main()
}
