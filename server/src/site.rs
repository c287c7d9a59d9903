//! The compiled site: the wasm, its JS loader, the stylesheet and `public/`, as `cargo leptos build`
//! leaves them in `target/site`. The binary carries them (one file to install); pages load them from
//! a folder named by a hash of their content, `/pkg/<hash>/`, so a browser keeps them for a year, an
//! upgrade is never mixed with an old wasm, and a relative import between two of them stays within
//! one build. A release build made with `--precompress` carries brotli and gzip copies beside each
//! file, sent to a browser that takes them. `site_root` serves a directory instead
//! (the development loop rebuilds the wasm without rebuilding the server).

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::{EmbeddedFile, RustEmbed};
use sha2::{Digest, Sha256};

/// What `cargo leptos build` wrote when this binary was compiled. Missing (a build before the site's)
/// means an empty set: the console then says so at start and serves pages that do not hydrate.
#[derive(RustEmbed)]
#[folder = "../target/site"]
#[allow_missing = true]
#[exclude = "*.d.ts*"]
struct Embedded;

/// The name cargo-leptos gives the site's JS, wasm and CSS (`output-name` in Cargo.toml).
pub const OUTPUT_NAME: &str = "epsm-ops";
/// The folder of what the pages load: the wasm, the JS and the CSS.
const PKG: &str = "pkg";

/// The compressed copies `cargo leptos build --precompress` writes beside a file: the encoding and
/// its suffix, in the order they are preferred.
const COPIES: [(&str, &str); 2] = [("br", ".br"), ("gzip", ".gz")];

/// A year, and never revalidated: the name changes when the content does.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Files whose name does not change (the icon): kept, but asked again with their ETag.
const REVALIDATE: &str = "no-cache";

/// Where pages get the site's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    /// From this binary; `version` names the folder the pages load it from.
    Embedded { version: String },
    /// From this directory, by their plain names (`site_root`).
    Directory(PathBuf),
    /// Neither: this binary was built before the site and no `site_root` is set.
    Missing,
}

impl Site {
    /// The directory when one is configured, else what this binary carries.
    pub fn choose(site_root: Option<&Path>) -> Site {
        match site_root {
            Some(dir) => Site::Directory(dir.to_path_buf()),
            None => match version() {
                Some(version) => Site::Embedded { version },
                None => Site::Missing,
            },
        }
    }

    /// The folder pages load the JS, wasm and CSS from: `pkg/<version>` when embedded, else `pkg`.
    pub fn pkg_dir(&self) -> String {
        match self {
            Site::Embedded { version } => format!("{PKG}/{version}"),
            Site::Directory(_) | Site::Missing => PKG.to_string(),
        }
    }

    /// The directory Leptos' file handler serves (none for an embedded site: it serves nothing
    /// from disk then).
    pub fn directory(&self) -> Option<&Path> {
        match self {
            Site::Directory(dir) => Some(dir),
            Site::Embedded { .. } | Site::Missing => None,
        }
    }

    /// Routes for the embedded files: each under its own name, revalidated (the icon; the stylesheet
    /// of the login pages, which are not the app's), and those in `pkg/` also in the versioned folder,
    /// kept for good. Empty unless embedded.
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let Site::Embedded { version } = self else {
            return Router::new();
        };
        let route = |router: Router<S>, route: String, path: &str, cache: &'static str| {
            let path = path.to_string();
            router.route(
                &route,
                get(move |headers: HeaderMap| async move { serve(&path, cache, &headers) }),
            )
        };
        Embedded::iter()
            .filter(|path| !is_compressed_copy(path))
            .fold(Router::new(), |router, path| {
                let router = route(router, format!("/{path}"), &path, REVALIDATE);
                match in_pkg(&path) {
                    Some(name) => {
                        route(router, format!("/{PKG}/{version}/{name}"), &path, IMMUTABLE)
                    }
                    None => router,
                }
            })
    }
}

/// The hash of the content of `pkg/` (names and bytes), short: what names its folder. None when the
/// binary carries no wasm.
fn version() -> Option<String> {
    Embedded::get(&format!("{PKG}/{OUTPUT_NAME}.wasm"))?;
    let mut files: Vec<_> = Embedded::iter()
        .filter(|path| in_pkg(path).is_some())
        .collect();
    files.sort();
    let mut hasher = Sha256::new();
    for path in files {
        let file = Embedded::get(&path)?;
        hasher.update(path.as_bytes());
        hasher.update(file.metadata.sha256_hash());
    }
    Some(hex::encode(&hasher.finalize()[..8]))
}

/// The name within `pkg/` of a file there (not a compressed copy: those are sent in its place).
fn in_pkg(path: &str) -> Option<&str> {
    path.strip_prefix(PKG)?
        .strip_prefix('/')
        .filter(|name| !is_compressed_copy(name))
}

fn is_compressed_copy(path: &str) -> bool {
    COPIES.iter().any(|(_, suffix)| path.ends_with(suffix))
}

/// The embedded file at `path`, in the best encoding the browser takes and the binary has.
fn serve(path: &str, cache: &'static str, headers: &HeaderMap) -> Response {
    let Some(plain) = Embedded::get(path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let accepted = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (file, encoding) = COPIES
        .into_iter()
        .filter(|(encoding, _)| accepts(accepted, encoding))
        .find_map(|(encoding, suffix)| {
            Embedded::get(&format!("{path}{suffix}")).map(|f| (f, Some(encoding)))
        })
        .unwrap_or((plain.clone(), None));
    let etag = etag(&file);
    let mut response = if if_none_match(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(file.data))
    };
    let out = response.headers_mut();
    if let Ok(content_type) = HeaderValue::from_str(plain.metadata.mimetype()) {
        out.insert(header::CONTENT_TYPE, content_type);
    }
    if let Some(encoding) = encoding {
        out.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, etag);
    }
    response
}

/// A strong ETag of the bytes sent (each encoding its own).
fn etag(file: &EmbeddedFile) -> String {
    format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]))
}

/// Whether `If-None-Match` names this ETag (or `*`); weak tags compare by their value.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

/// Whether an `Accept-Encoding` value takes `encoding`: named or `*`, and not with `q=0`.
fn accepts(accept_encoding: &str, encoding: &str) -> bool {
    let mut named = None;
    let mut any = None;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let token = parts.next().unwrap_or("");
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if token.eq_ignore_ascii_case(encoding) {
            named = Some(!refused);
        } else if token == "*" {
            any = Some(!refused);
        }
    }
    named.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        assert!(accepts("gzip, deflate, br, zstd", "br"));
        assert!(accepts("gzip, deflate, br, zstd", "gzip"));
        assert!(!accepts("gzip, deflate", "br"));
        assert!(!accepts("", "gzip"));
        assert!(!accepts("br;q=0, gzip", "br"));
        assert!(accepts("br;q=0.5", "br"));
        assert!(accepts("*", "br"));
        assert!(!accepts("*, br;q=0", "br"));
        assert!(accepts("BR", "br"));
        // `identity` alone takes nothing compressed.
        assert!(!accepts("identity", "gzip"));
    }

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_any() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(if_none_match(&with("\"abc\""), "\"abc\""));
        assert!(if_none_match(&with("\"x\", W/\"abc\""), "\"abc\""));
        assert!(if_none_match(&with("*"), "\"abc\""));
        assert!(!if_none_match(&with("\"abd\""), "\"abc\""));
        assert!(!if_none_match(&HeaderMap::new(), "\"abc\""));
    }

    #[test]
    fn what_is_in_pkg_is_served_from_the_versioned_folder_too() {
        assert_eq!(in_pkg("pkg/epsm-ops.wasm"), Some("epsm-ops.wasm"));
        assert_eq!(in_pkg("pkg/epsm-ops.css"), Some("epsm-ops.css"));
        assert_eq!(in_pkg("pkg/epsm-ops.js"), Some("epsm-ops.js"));
        assert_eq!(in_pkg("pkg/epsm-ops.wasm.br"), None);
        assert_eq!(in_pkg("favicon.svg"), None);
        assert_eq!(in_pkg("pkgs/epsm-ops.js"), None);
    }

    #[test]
    fn a_configured_directory_wins_and_keeps_the_plain_folder() {
        let site = Site::choose(Some(Path::new("/srv/site")));
        assert_eq!(site, Site::Directory(PathBuf::from("/srv/site")));
        assert_eq!(site.pkg_dir(), "pkg");
        let embedded = Site::Embedded {
            version: "0123456789abcdef".into(),
        };
        assert_eq!(embedded.pkg_dir(), "pkg/0123456789abcdef");
        assert_eq!(embedded.directory(), None);
    }
}
