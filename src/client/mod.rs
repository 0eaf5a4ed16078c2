//! The client side of `reach`: subcommands for people (tables by default,
//! `--json` for scripts) and `reach import` for backfills.

/// `println!` for command output: a closed pipe (`reach best alice | head`)
/// ends the command quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::client::write_out(format_args!($($arg)*))
    };
}

pub mod backup;
pub mod commands;
pub mod connect;
pub mod import;
pub mod json;

pub use connect::{Client, ClientArgs};

#[doc(hidden)]
pub fn write_out(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(text)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("reach: writing the output: {e}");
        std::process::exit(1);
    }
}
