//! Reading a server-sent event stream as a browser would: events one by one, with a deadline.

use std::time::Duration;

/// Reads a server-sent event stream: `next_data` returns the `data:` of the next event.
pub struct SseReader {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
    /// Every byte received so far, for leak checks.
    pub raw: String,
}

impl SseReader {
    /// GETs `url` with `client` (a console's logged-in client) and checks it answers 200 with
    /// `text/event-stream`.
    pub async fn open(client: &reqwest::Client, url: &str) -> SseReader {
        let reply = client.get(url).send().await.expect("GET event stream");
        assert_eq!(reply.status(), 200, "{url}");
        let kind = reply
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(kind.starts_with("text/event-stream"), "{url}: {kind}");
        SseReader {
            body: Box::pin(reply.bytes_stream()),
            buffer: String::new(),
            raw: String::new(),
        }
    }

    /// The data of the next event (keep-alive comments skipped), or None when the stream ended or
    /// nothing came within `within`.
    pub async fn next_data(&mut self, within: Duration) -> Option<String> {
        use futures::StreamExt;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if !data.is_empty() {
                    return Some(data.join("\n"));
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??;
            let text = String::from_utf8_lossy(&chunk.ok()?).into_owned();
            self.raw.push_str(&text);
            self.buffer.push_str(&text);
        }
    }
}
