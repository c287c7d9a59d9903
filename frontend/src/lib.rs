//! The browser half of EPSM Ops: nothing but hydration of what the server rendered. Each page's own
//! code is a part of the wasm loaded when the page is first shown (`app`'s lazy routes).

use std::panic::PanicHookInfo;

/// What the loader of the wasm's parts panics with when it cannot fetch one (`wasm_split_macros`:
/// the wrapper of a lazy function that is not `fallible`, as Leptos' lazy routes are).
const PART_NOT_LOADED: &str = "load callback should succeed";
/// A tab reloads itself for a missing part at most once in this long (a build that lacks a part
/// would otherwise reload it for ever).
const RELOAD_AT_MOST_EVERY_MS: f64 = 30_000.0;
const LAST_RELOAD_KEY: &str = "epsm-ops.reloaded-for-a-missing-part";

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    std::panic::set_hook(Box::new(on_panic));
    leptos::mount::hydrate_lazy(app::App);
}

/// Says the panic in the console; when it is a page's part that could not be fetched, reloads the
/// page. That is a tab left open across an upgrade of the console: the parts of its build are gone
/// (each build's files live in a folder named by their hash), and the reload brings the new build
/// instead of a page that no longer answers.
fn on_panic(info: &PanicHookInfo) {
    console_error_panic_hook::hook(info);
    if !info.to_string().contains(PART_NOT_LOADED) {
        return;
    }
    let Some(window) = web_sys::window() else {
        return;
    };
    let storage = window.session_storage().ok().flatten();
    let now = js_sys::Date::now();
    let last = storage
        .as_ref()
        .and_then(|s| s.get_item(LAST_RELOAD_KEY).ok().flatten())
        .and_then(|v| v.parse::<f64>().ok());
    if last.is_some_and(|last| now - last < RELOAD_AT_MOST_EVERY_MS) {
        return;
    }
    if let Some(storage) = &storage {
        let _ = storage.set_item(LAST_RELOAD_KEY, &now.to_string());
    }
    let _ = window.location().reload();
}
