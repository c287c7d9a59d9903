//! An HTTP receiver on loopback, standing for a Teams, Slack or webhook endpoint in the alerts'
//! tests and benchmark: it keeps every POST (when, path, signature header, body) and answers 200.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One request the receiver was sent.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    /// The `X-EPSM-Ops-Signature` header, if any.
    pub signature: Option<String>,
    /// The body as sent (a signature is over these bytes).
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// The message's title (a webhook's JSON).
    pub fn title(&self) -> String {
        self.json()["title"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

pub struct Receiver {
    /// `http://127.0.0.1:<port>`: add any path.
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// A receiver on a free loopback port.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        Receiver::on(listener)
    }

    /// A receiver on `listener` (a port chosen before it was served).
    pub fn on(listener: tokio::net::TcpListener) -> Receiver {
        let url = format!("http://{}", listener.local_addr().expect("bound address"));
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let app = axum::Router::new().route(
            "/{*path}",
            axum::routing::post({
                let got = got.clone();
                move |uri: axum::http::Uri,
                      headers: axum::http::HeaderMap,
                      body: axum::body::Bytes| async move {
                    let signature = headers
                        .get("x-epsm-ops-signature")
                        .and_then(|v| v.to_str().ok())
                        .map(String::from);
                    got.lock().unwrap().push(Received {
                        at: Instant::now(),
                        path: uri.path().to_string(),
                        signature,
                        body: body.to_vec(),
                    });
                    "1"
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, got }
    }

    /// Everything received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}
