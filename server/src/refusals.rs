//! A person whose browser reaches a refusal or an error directly gets a page of the console that
//! says what happened and where to go next. That covers a download they may not take, a form posted
//! before the page's script ran, and an address that only takes posts. Without this they would see
//! plain text, raw JSON or the browser's own error page.
//!
//! Programs keep their JSON and text: the pages' own server-function calls, curl and the tests do
//! not ask for HTML.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use app::auth::saml::xml_escape;

/// The most of an error's body read to find its message. Errors are a sentence; anything longer is
/// not a message to show.
const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Turns an error reply to a browser's navigation or form post into a page of the console.
pub async fn html_for_browsers(request: Request, next: Next) -> Response {
    let wants_html = accepts_html(request.headers());
    let back = same_origin_referer(request.headers());
    let response = next.run(request).await;
    let status = response.status();
    if !wants_html || !(status.is_client_error() || status.is_server_error()) || is_html(&response)
    {
        return response;
    }
    let body = response.into_body();
    let bytes = axum::body::to_bytes(body, MAX_MESSAGE_BYTES)
        .await
        .unwrap_or_default();
    let message = message_of(status, &bytes);
    let (title, next_step) = wording(status);
    let back = match back {
        Some(path) => format!(
            r#"<a href="{}" data-testid="refusal-back">Back</a> · "#,
            xml_escape(&path)
        ),
        None => String::new(),
    };
    let body = format!(
        r#"<h1 data-testid="refusal-title">{title}</h1><p data-testid="refusal-message">{message}</p><p class="muted">{next_step}</p><p>{back}<a href="/" data-testid="refusal-home">The overview</a></p>"#,
        title = xml_escape(title),
        message = xml_escape(&message),
        next_step = xml_escape(next_step),
    );
    let mut page = (status, crate::auth::html_page(title, &body)).into_response();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        // Keep telling programs which methods the address takes.
        page.headers_mut()
            .insert(header::ALLOW, "POST".parse().expect("a header value"));
    }
    page
}

/// A navigation or a form post: browsers put `text/html` first in what they accept; the pages'
/// server-function calls ask for JSON.
fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

fn is_html(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"))
}

/// The page the person came from, when it is one of the console's own (a path, never another site).
fn same_origin_referer(headers: &HeaderMap) -> Option<String> {
    let referer = headers.get(header::REFERER)?.to_str().ok()?;
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let url = url::Url::parse(referer).ok()?;
    let authority = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str()?),
        None => url.host_str()?.to_string(),
    };
    (authority == host).then(|| match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    })
}

/// The sentence in an error reply: a server function's `{"Forbidden": "…"}`, a route's plain text,
/// or, when the reply carried none, what the status means.
fn message_of(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let sentence = match &value {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(map) if map.len() == 1 => map
                .values()
                .next()
                .and_then(|v| v.as_str())
                .map(String::from),
            _ => None,
        };
        if let Some(sentence) = sentence.filter(|s| !s.trim().is_empty()) {
            return sentence;
        }
    } else if !text.is_empty() && text.len() <= 500 && !text.contains('<') {
        return text.to_string();
    }
    match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            "This address takes what a button of the console sends, not a visit.".into()
        }
        StatusCode::NOT_FOUND => "There is nothing at this address.".into(),
        other => other
            .canonical_reason()
            .unwrap_or("The request failed")
            .to_string(),
    }
}

/// The page's title and what to do next, by status.
fn wording(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::FORBIDDEN => (
            "Not allowed",
            "Your role does not include this. An admin can give you another role (the role rules of the configuration).",
        ),
        StatusCode::UNAUTHORIZED => ("Log in first", "Your session has ended: log in again."),
        StatusCode::NOT_FOUND => (
            "Not found",
            "It may have been deleted, or the address is wrong.",
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "Not a page",
            "Open the page the button is on and use it there.",
        ),
        StatusCode::TOO_MANY_REQUESTS => ("Too many requests", "Wait a moment and try again."),
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => (
            "Took too long",
            "The console stopped waiting, but what was asked may still be running: look at its page.",
        ),
        s if s.is_client_error() => ("Request refused", "Nothing was changed."),
        _ => (
            "Something failed",
            "Nothing was changed by this request. The console's log has the details.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_the_sentence_of_a_server_function_error_or_a_plain_reply() {
        assert_eq!(
            message_of(
                StatusCode::FORBIDDEN,
                br#"{"Forbidden":"deploys need the deployer role"}"#
            ),
            "deploys need the deployer role"
        );
        assert_eq!(
            message_of(StatusCode::FORBIDDEN, b"not allowed: viewer"),
            "not allowed: viewer"
        );
        assert_eq!(
            message_of(StatusCode::METHOD_NOT_ALLOWED, b""),
            "This address takes what a button of the console sends, not a visit."
        );
        // Markup is not a message: the status speaks instead.
        assert_eq!(
            message_of(StatusCode::BAD_GATEWAY, b"<html>x</html>"),
            "Bad Gateway"
        );
    }

    #[test]
    fn back_leads_only_to_the_console_itself() {
        let headers = |referer: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
            h.insert(header::REFERER, referer.parse().unwrap());
            h
        };
        assert_eq!(
            same_origin_referer(&headers("http://127.0.0.1:8080/backups?x=1")).as_deref(),
            Some("/backups?x=1")
        );
        assert_eq!(
            same_origin_referer(&headers("https://evil.example/backups")),
            None
        );
    }
}
