//! Builds the built-in plugins (`builtin-plugins/*` with a `manifest.toml`) for wasm32-wasip2 and
//! embeds them in the binary, so a fresh install has a working router with no download.
//!
//! The guest build is a separate cargo invocation on the `builtin-plugins/` workspace with its
//! own target directory (beside this build's, shared by debug and release), so it never
//! waits on this build's lock and is incremental from run to run.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.join("../..");
    let plugins_dir = root.join("builtin-plugins");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));

    for watched in ["builtin-plugins", "sdk-guest", "wit"] {
        rerun_if_changed_under(&root.join(watched));
    }

    // Every plugin crate that ships a manifest is a built-in.
    let mut builtins: Vec<(String, PathBuf)> = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(&plugins_dir)
        .expect("reading builtin-plugins/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("manifest.toml").is_file() && p.join("Cargo.toml").is_file())
        .collect();
    entries.sort();
    for dir in entries {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("plugin directory names are UTF-8")
            .to_string();
        builtins.push((name, dir.join("manifest.toml")));
    }

    // `<target>/wasm-plugins`: OUT_DIR is `<target>/<profile>/build/<pkg>/out`.
    let guest_target_dir = env::var_os("TESSERA_GUEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            out_dir
                .ancestors()
                .nth(4)
                .map(|t| t.join("wasm-plugins"))
                .unwrap_or_else(|| out_dir.join("wasm-plugins"))
        });

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--locked")
        .arg("--target")
        .arg(GUEST_TARGET)
        .arg("--manifest-path")
        .arg(plugins_dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &guest_target_dir);
    for (name, _) in &builtins {
        cmd.arg("-p").arg(name);
    }
    // Settings of the outer build must not leak into the guest build.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_ENCODED_RUSTFLAGS")
            || key == "RUSTFLAGS"
            || key.starts_with("CARGO_BUILD_")
            || key.starts_with("CARGO_PROFILE_")
            || key == "RUSTC_WRAPPER"
            || key == "RUSTC_WORKSPACE_WRAPPER"
            || key == "CARGO_MAKEFLAGS"
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running cargo for the built-in plugins: {e}"));
    if !status.success() {
        panic!(
            "building the built-in plugins (builtin-plugins/) for {GUEST_TARGET} failed; \
             if the target is missing: rustup target add {GUEST_TARGET}"
        );
    }

    let mut code = String::from(
        "/// The built-in plugins, built from builtin-plugins/ by build.rs.\n\
         pub static BUILTINS: &[tessera_registry::Builtin] = &[\n",
    );
    for (name, manifest) in &builtins {
        let wasm = guest_target_dir
            .join(GUEST_TARGET)
            .join("release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        let embedded = out_dir.join(format!("{name}.wasm"));
        fs::copy(&wasm, &embedded).unwrap_or_else(|e| panic!("copying {}: {e}", wasm.display()));
        let _ = writeln!(
            code,
            "    tessera_registry::Builtin {{ manifest: include_str!({:?}), component: include_bytes!({:?}) }},",
            manifest.canonicalize().unwrap_or_else(|_| manifest.clone()),
            embedded
        );
    }
    code.push_str("];\n");
    fs::write(out_dir.join("builtins.rs"), code).expect("writing builtins.rs");
}

fn rerun_if_changed_under(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        // Build output and dependencies of the guest workspaces are not sources.
        if matches!(name.to_str(), Some("target" | "dist" | "node_modules")) {
            continue;
        }
        if path.is_dir() {
            rerun_if_changed_under(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
