//! The dashboard's files, compiled into the binary: nothing is read from disk or fetched
//! from another site when it is served, and there is no build step.

/// One embedded file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Asset {
    /// Where it is served.
    pub(crate) path: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) body: &'static str,
}

const HTML: &str = "text/html;charset=utf-8";

/// The process table.
pub(crate) static INDEX: Asset =
    Asset { path: "/", content_type: HTML, body: include_str!("ui/index.html") };

/// The log follower.
pub(crate) static TAIL: Asset =
    Asset { path: "/tail.html", content_type: HTML, body: include_str!("ui/tail.html") };

/// A script the pages load.
const fn script(path: &'static str, body: &'static str) -> Asset {
    Asset { path, content_type: "text/javascript;charset=utf-8", body }
}

/// The scripts and the style sheet the two pages load.
static FILES: [Asset; 4] = [
    script("/ui/common.js", include_str!("ui/common.js")),
    script("/ui/dashboard.js", include_str!("ui/dashboard.js")),
    script("/ui/tail.js", include_str!("ui/tail.js")),
    Asset {
        path: "/ui/dashboard.css",
        content_type: "text/css;charset=utf-8",
        body: include_str!("ui/dashboard.css"),
    },
];

/// The script or style sheet served at `path`.
pub(crate) fn find(path: &str) -> Option<&'static Asset> {
    FILES.iter().find(|asset| asset.path == path)
}
