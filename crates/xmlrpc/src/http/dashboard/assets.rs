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

/// The scripts and the style sheet the two pages load.
static FILES: [Asset; 4] = [
    Asset {
        path: "/ui/common.js",
        content_type: "text/javascript;charset=utf-8",
        body: include_str!("ui/common.js"),
    },
    Asset {
        path: "/ui/dashboard.css",
        content_type: "text/css;charset=utf-8",
        body: include_str!("ui/dashboard.css"),
    },
    Asset {
        path: "/ui/dashboard.js",
        content_type: "text/javascript;charset=utf-8",
        body: include_str!("ui/dashboard.js"),
    },
    Asset {
        path: "/ui/tail.js",
        content_type: "text/javascript;charset=utf-8",
        body: include_str!("ui/tail.js"),
    },
];

/// The script or style sheet served at `path`.
pub(crate) fn find(path: &str) -> Option<&'static Asset> {
    FILES.iter().find(|asset| asset.path == path)
}
