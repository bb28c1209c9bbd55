//! picolet's command line: picks the subcommand and hands it to its module:
//! `run` to daemon/, `images ...` to cli.rs, `reaper` to runtime::reaper.
//! Parsing is config.rs; the parts are the modules below (see lib.rs).

// The modules of lib.rs, compiled into the binary itself rather than linked
// from the library: as one crate, LTO sees all but `main` as internal, and
// the stripped binary is 45 KB (1%) smaller than when it links `picolet`.
mod api;
mod cgroup;
mod cli;
mod config;
mod daemon;
mod hostfs;
mod image;
mod logging;
mod metrics;
mod network;
mod node;
mod pod;
mod probe;
mod runtime;
mod server;
mod stats;
mod volume;

use config::Command;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The reaper is picolet's own binary in another role (see runtime/reaper).
    if args.first().map(String::as_str) == Some("reaper") {
        let root = args.iter().skip_while(|a| *a != "--root-dir").nth(1).cloned().unwrap_or_else(|| "/var/lib/picolet".into());
        if let Err(e) = runtime::reaper::serve(std::path::Path::new(&root)) {
            eprintln!("picolet reaper: {e}");
            std::process::exit(1);
        }
        return;
    }
    let cmd = match config::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("picolet: {e}");
            std::process::exit(2);
        }
    };
    let mut logged = false;
    let result = match cmd {
        Command::Help(text) => {
            print!("{text}");
            Ok(())
        }
        Command::Version => {
            println!("picolet {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::ImagesImport(cfg, files) => cli::images_import(&cfg, &files),
        Command::ImagesList(cfg) => cli::images_list(&cfg),
        Command::ImagesRemove(cfg, refs) => cli::images_rm(&cfg, &refs),
        Command::ImagesPull { config, reference, platform } => cli::images_pull(&config, &reference, platform.as_deref()),
        Command::Run(cfg) => {
            logging::init_logging(cfg.verbosity);
            logged = true;
            daemon::run(cfg)
        }
    };
    if let Err(e) = result {
        if logged {
            log::error!("{e}");
        } else {
            eprintln!("picolet: {e}");
        }
        std::process::exit(1);
    }
}
