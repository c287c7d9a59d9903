//! Following a server-sent event stream from a page: each message is one JSON value of type `T`.
//! Used by every live view (health, logs). On the server (SSR) it does nothing: a page is rendered
//! with the latest value and starts following once hydrated.

#[cfg(feature = "hydrate")]
use leptos::prelude::on_cleanup;
use serde::de::DeserializeOwned;

/// Follows `url` while the calling component lives: `on_message` gets every decoded message,
/// `on_state` whether the stream is open (false after an error; the browser then retries by itself
/// unless `retry` is false).
pub fn follow<T, M, S>(url: String, retry: bool, on_message: M, on_state: S)
where
    T: DeserializeOwned + 'static,
    M: Fn(T) + 'static,
    S: Fn(bool) + 'static,
{
    #[cfg(feature = "hydrate")]
    {
        use send_wrapper::SendWrapper;
        use wasm_bindgen::JsCast;
        use wasm_bindgen::closure::Closure;

        let Ok(source) = web_sys::EventSource::new(&url) else {
            on_state(false);
            return;
        };
        let on_state = std::rc::Rc::new(on_state);
        let opened = {
            let on_state = on_state.clone();
            Closure::<dyn FnMut()>::new(move || on_state(true))
        };
        let message =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                if let Some(text) = e.data().as_string()
                    && let Ok(value) = serde_json::from_str::<T>(&text)
                {
                    on_message(value);
                }
            });
        let failed = {
            let source = source.clone();
            Closure::<dyn FnMut()>::new(move || {
                on_state(false);
                if !retry {
                    source.close();
                }
            })
        };
        source.set_onopen(Some(opened.as_ref().unchecked_ref()));
        source.set_onmessage(Some(message.as_ref().unchecked_ref()));
        source.set_onerror(Some(failed.as_ref().unchecked_ref()));
        // The closures live as long as the source; both go when the component is cleaned up.
        let held = SendWrapper::new((source, opened, message, failed));
        on_cleanup(move || {
            let (source, ..) = held.take();
            source.close();
        });
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (url, retry, on_message, on_state);
    }
}
