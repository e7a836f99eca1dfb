//! The page's files, compiled into the binary (directors are often
//! air-gapped: nothing is fetched at run time).

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    pub path: &'static str,
    pub ctype: &'static str,
    pub body: &'static [u8],
    /// Served only with a session (the console itself).
    pub private: bool,
}

/// The console (needs a session).
pub const INDEX: &Asset = &Asset {
    path: "/",
    ctype: "text/html; charset=utf-8",
    body: include_bytes!("assets/index.html"),
    private: true,
};

/// Every file, by path.
pub const ALL: &[Asset] = &[
    Asset { path: "/login", ctype: "text/html; charset=utf-8", body: include_bytes!("assets/login.html"), private: false },
    Asset { path: "/assets/login.js", ctype: "text/javascript; charset=utf-8", body: include_bytes!("assets/login.js"), private: false },
    Asset { path: "/assets/app.js", ctype: "text/javascript; charset=utf-8", body: include_bytes!("assets/app.js"), private: false },
    Asset { path: "/assets/charts.js", ctype: "text/javascript; charset=utf-8", body: include_bytes!("assets/charts.js"), private: false },
    Asset { path: "/assets/style.css", ctype: "text/css; charset=utf-8", body: include_bytes!("assets/style.css"), private: false },
    Asset { path: "/favicon.ico", ctype: "image/svg+xml", body: include_bytes!("assets/favicon.svg"), private: false },
];

/// The public asset at `path`, if any (the console is [`INDEX`]).
pub fn get(path: &str) -> Option<&'static Asset> {
    ALL.iter().find(|a| a.path == path)
}
