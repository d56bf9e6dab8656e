//! The files the console serves, embedded in the binary: qchar's own pages
//! (`www/src/`) and the xterm.js files `build.rs` took from the npm
//! packages pinned in `www/package-lock.json`.

/// One embedded file.
pub(crate) struct Asset {
    /// Its name under `/static/`.
    pub(crate) name: &'static str,
    /// Its `Content-Type`.
    pub(crate) mime: &'static str,
    /// Its bytes.
    pub(crate) body: &'static [u8],
}

macro_rules! own {
    ($name:literal, $mime:expr) => {
        Asset {
            name: $name,
            mime: $mime,
            body: include_bytes!(concat!("../www/src/", $name)),
        }
    };
}

macro_rules! npm {
    ($name:literal, $mime:expr) => {
        Asset {
            name: $name,
            mime: $mime,
            body: include_bytes!(concat!(env!("OUT_DIR"), "/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// The index page.
pub(crate) const INDEX: Asset = own!("index.html", HTML);
/// A chardev's terminal page.
pub(crate) const CONSOLE: Asset = own!("console.html", HTML);

/// Everything under `/static/`.
pub(crate) static STATIC: &[Asset] = &[
    own!("index.js", JS),
    own!("console.js", JS),
    own!("qchar.css", CSS),
    npm!("xterm.js", JS),
    npm!("xterm.css", CSS),
    npm!("addon-fit.js", JS),
    // Not used by qchar's pages: for pages that attach a stock xterm.js
    // to a `websocket=on` chardev.
    npm!("addon-attach.js", JS),
    Asset {
        name: "licenses.txt",
        mime: "text/plain; charset=utf-8",
        body: LICENSES.as_bytes(),
    },
];

/// The notices of the embedded third-party files (MIT: kept with copies).
const LICENSES: &str = concat!(
    "qchar's web console embeds these npm packages (see crates/web/www/package-lock.json).\n\n",
    "== @xterm/xterm ==\n\n",
    include_str!(concat!(env!("OUT_DIR"), "/LICENSE.xterm")),
    "\n== @xterm/addon-fit ==\n\n",
    include_str!(concat!(env!("OUT_DIR"), "/LICENSE.addon-fit")),
    "\n== @xterm/addon-attach ==\n\n",
    include_str!(concat!(env!("OUT_DIR"), "/LICENSE.addon-attach")),
);

/// The file `/static/NAME`.
pub(crate) fn find(name: &str) -> Option<&'static Asset> {
    STATIC.iter().find(|a| a.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_typed() {
        for a in STATIC.iter().chain([&INDEX, &CONSOLE]) {
            assert!(!a.body.is_empty(), "{} is empty", a.name);
            assert!([JS, CSS, HTML, "text/plain; charset=utf-8"].contains(&a.mime));
        }
        // The real xterm.js, not a placeholder.
        let xterm = find("xterm.js").unwrap();
        assert!(xterm.body.len() > 100_000);
        assert!(find("licenses.txt")
            .map(|a| String::from_utf8_lossy(a.body).contains("The xterm.js authors"))
            .unwrap());
        assert!(find("../Cargo.toml").is_none());
    }
}
