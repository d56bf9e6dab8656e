//! Fetches xterm.js and its addons from the npm registry (the versions
//! pinned in `www/package-lock.json`) and copies the files the web console
//! serves into `OUT_DIR`, where `src/assets.rs` embeds them.
//!
//! `npm ci` runs when `www/node_modules` is missing or does not hold the
//! locked versions (a changed lockfile); otherwise the build is offline.
//! Install scripts are not run. Set `NPM` to use another npm binary.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The npm packages the console uses, and the files taken from each:
/// (path in the package, name in `OUT_DIR`).
const PACKAGES: &[(&str, &[(&str, &str)])] = &[
    (
        "@xterm/xterm",
        &[
            ("lib/xterm.js", "xterm.js"),
            ("css/xterm.css", "xterm.css"),
            ("LICENSE", "LICENSE.xterm"),
        ],
    ),
    (
        "@xterm/addon-fit",
        &[
            ("lib/addon-fit.js", "addon-fit.js"),
            ("LICENSE", "LICENSE.addon-fit"),
        ],
    ),
    (
        "@xterm/addon-attach",
        &[
            ("lib/addon-attach.js", "addon-attach.js"),
            ("LICENSE", "LICENSE.addon-attach"),
        ],
    ),
];

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let www = manifest.join("www");
    println!("cargo:rerun-if-changed=www/package.json");
    println!("cargo:rerun-if-changed=www/package-lock.json");
    println!("cargo:rerun-if-changed=www/node_modules/.package-lock.json");
    println!("cargo:rerun-if-env-changed=NPM");

    let lock = read_json(&www.join("package-lock.json"));
    // Two builds at once (another target directory) must not run `npm ci`
    // in the same directory together.
    let guard = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(www.join(".npm-ci.lock"))
        .unwrap_or_else(|e| fail(&format!("cannot create www/.npm-ci.lock: {e}")));
    rustix::fs::flock(&guard, rustix::fs::FlockOperation::LockExclusive)
        .unwrap_or_else(|e| fail(&format!("cannot lock www/.npm-ci.lock: {e}")));

    if let Some(why) = stale(&www, &lock) {
        println!("cargo:warning=running npm ci in crates/web/www ({why})");
        npm_ci(&www);
        if let Some(why) = stale(&www, &lock) {
            fail(&format!(
                "npm ci did not install the locked packages: {why}"
            ));
        }
    }
    for (pkg, files) in PACKAGES {
        for (from, to) in *files {
            let src = www.join("node_modules").join(pkg).join(from);
            std::fs::copy(&src, out.join(to))
                .unwrap_or_else(|e| fail(&format!("cannot copy {}: {e}", src.display())));
        }
    }
    drop(guard);
}

/// Why `node_modules` does not hold what the lockfile pins, if it does not.
fn stale(www: &Path, lock: &serde_json::Value) -> Option<String> {
    for (pkg, files) in PACKAGES {
        let key = format!("node_modules/{pkg}");
        let want = lock["packages"][&key]["version"].as_str().unwrap_or_else(|| {
            fail(&format!(
                "www/package-lock.json does not pin {pkg}: add it to www/package.json and run npm install"
            ))
        });
        let installed = www.join(&key).join("package.json");
        if !installed.exists() {
            return Some(format!("{pkg} is not installed"));
        }
        let have = read_json(&installed);
        if have["version"].as_str() != Some(want) {
            return Some(format!(
                "{pkg} {} is installed, the lockfile pins {want}",
                have["version"]
            ));
        }
        for (from, _) in *files {
            if !www.join(&key).join(from).exists() {
                return Some(format!("{pkg} lacks {from}"));
            }
        }
    }
    None
}

fn npm_ci(www: &Path) {
    let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".into());
    let status = Command::new(&npm)
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(www)
        .status()
        .unwrap_or_else(|e| {
            fail(&format!(
                "cannot run `{npm} ci` (qchar-web fetches xterm.js with npm; install node and npm): {e}"
            ))
        });
    if !status.success() {
        fail(&format!("`{npm} ci` in crates/web/www failed ({status})"));
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", path.display())));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| fail(&format!("{} is not JSON: {e}", path.display())))
}

fn fail(msg: &str) -> ! {
    eprintln!("qchar-web build: {msg}");
    std::process::exit(1);
}
