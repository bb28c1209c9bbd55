//! The command line's one-shot subcommands, `picolet images import|pull|list|rm`,
//! on the image store under the root dir (picolet need not be running).
//!
//! Not here: parsing the command line (config.rs), choosing the subcommand
//! (main.rs), `picolet run` (daemon/).

use crate::config::Config;
use crate::{image, runtime};

pub fn open_store(cfg: &Config) -> Result<image::Store, String> {
    image::Store::open(&cfg.root_dir.join("images-store")).map_err(|e| e.to_string())
}

pub fn images_import(cfg: &Config, files: &[std::path::PathBuf]) -> Result<(), String> {
    let store = open_store(cfg)?;
    for f in files {
        let refs = store.import_archive(f).map_err(|e| format!("{}: {e}", f.display()))?;
        for r in refs {
            println!("imported {r}");
        }
    }
    Ok(())
}

pub fn images_pull(cfg: &Config, reference: &str, platform: Option<&str>) -> Result<(), String> {
    let platform = match platform {
        Some(p) => image::Platform::parse(p).map_err(|e| format!("--platform {p:?}: {e}"))?,
        None => image::Platform::host(),
    };
    let mut regs = image::Registries::load(&cfg.registry_config).map_err(|e| e.to_string())?;
    regs.progress_timeout = Some(cfg.image_pull_progress_timeout);
    // The node's credentials file, as pods use it (imagePullSecrets aside).
    let node = image::credentials::load_node(&cfg.root_dir).map_err(|e| e.to_string())?;
    let store = open_store(cfg)?;
    let p = store.pull_with(&regs, &[&node], reference, &platform).map_err(|e| format!("pull {reference}: {e}"))?;
    let short = p.id.trim_start_matches("sha256:").chars().take(12).collect::<String>();
    let picked = p.platform.map(|x| format!(" for {x}")).unwrap_or_default();
    println!("pulled {}{picked} (image {short}, manifest {}) from {}", p.reference, p.manifest, p.endpoint);
    println!("{} layers fetched ({}), {} already present", p.fetched, human_size(p.bytes), p.reused);
    Ok(())
}

pub fn images_list(cfg: &Config) -> Result<(), String> {
    let store = open_store(cfg)?;
    println!("{:<50} {:<20} {:>10}", "REFERENCE", "IMAGE ID", "SIZE");
    for img in store.list().map_err(|e| e.to_string())? {
        let short = img.id.trim_start_matches("sha256:").chars().take(12).collect::<String>();
        for r in &img.references {
            println!("{:<50} {:<20} {:>10}", r, short, human_size(img.size));
        }
    }
    Ok(())
}

/// Deletes images by reference; one a container record names (running, or
/// exited and kept for its pod's status) is refused.
pub fn images_rm(cfg: &Config, refs: &[String]) -> Result<(), String> {
    let store = open_store(cfg)?;
    let records = runtime::record::Record::load_all(&cfg.root_dir);
    for r in refs {
        let img = store.resolve(r).map_err(|e| e.to_string())?.ok_or_else(|| format!("no image {r}"))?;
        let shared = store.list().map_err(|e| e.to_string())?.iter().any(|i| i.id == img.id && i.references.len() > 1);
        if let Some(c) = records.iter().find(|c| c.image == img.reference || (c.image_id == img.id && !shared)) {
            return Err(format!("image {r} is used by container {} of pod {}/{}: delete the pod first", c.container, c.pod_namespace, c.pod_name));
        }
        match store.remove_reference(r).map_err(|e| e.to_string())? {
            Some((id, 0)) => println!("untagged {} (image {} kept for its other references)", img.reference, &id[7..19]),
            Some((id, bytes)) => println!("deleted {} (image {}, {} freed)", img.reference, &id[7..19], human_size(bytes)),
            None => return Err(format!("no image {r}")),
        }
    }
    Ok(())
}

fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1}MiB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1}KiB", n as f64 / 1024.0),
        n => format!("{n}B"),
    }
}
