//! A message as each channel takes it: an Adaptive Card for Microsoft Teams (a Workflows or incoming
//! webhook URL), Slack's text blocks, a JSON body signed with HMAC-SHA256 for a generic webhook, and
//! a mail with a plain-text and a small HTML part. Pure: what is sent is tested without a receiver.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Message, Severity};

/// The header a generic webhook's signature is in: `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "x-epsm-ops-signature";

/// The Adaptive Card Teams' Workflows ("post to a channel when a webhook request is received") and
/// the older incoming webhooks both accept: one attachment of content type
/// `application/vnd.microsoft.card.adaptive`.
pub fn teams_card(message: &Message) -> Value {
    let colour = match message.severity {
        Severity::Error => "Attention",
        Severity::Warning => "Warning",
        Severity::Info => "Good",
    };
    let mut body = vec![
        json!({"type": "TextBlock", "text": message.title, "weight": "Bolder", "size": "Medium",
               "color": colour, "wrap": true}),
        json!({"type": "TextBlock", "text": message.text, "wrap": true}),
    ];
    if !message.facts.is_empty() {
        let facts: Vec<Value> = message
            .facts
            .iter()
            .map(|(title, value)| json!({"title": title, "value": value}))
            .collect();
        body.push(json!({"type": "FactSet", "facts": facts}));
    }
    let actions: Vec<Value> = message
        .link
        .iter()
        .map(|url| json!({"type": "Action.OpenUrl", "title": "Open EPSM Ops", "url": url}))
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": actions,
            }
        }]
    })
}

/// A Slack-compatible incoming webhook's body (Mattermost and Rocket.Chat take it too).
pub fn slack(message: &Message) -> Value {
    let mut text = format!("*{}*\n{}", message.title, message.text);
    for (name, value) in &message.facts {
        text.push_str(&format!("\n• {name}: {value}"));
    }
    if let Some(url) = &message.link {
        text.push_str(&format!("\n<{url}|Open EPSM Ops>"));
    }
    json!({"text": text})
}

/// A generic webhook's body (the message as JSON) and its signature header's value.
pub fn signed_webhook(message: &Message, secret: &[u8]) -> (Vec<u8>, String) {
    let body = serde_json::to_vec(message).unwrap_or_default();
    (body.clone(), signature(secret, &body))
}

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `body`).
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A mail's plain text and its small HTML part (every value escaped).
pub fn mail_parts(message: &Message) -> (String, String) {
    let mut text = format!("{}\n\n{}\n", message.title, message.text);
    for (name, value) in &message.facts {
        text.push_str(&format!("{name}: {value}\n"));
    }
    if let Some(url) = &message.link {
        text.push_str(&format!("\n{url}\n"));
    }
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut html = format!(
        "<h2>{}</h2><p>{}</p>",
        escape(&message.title),
        escape(&message.text)
    );
    if !message.facts.is_empty() {
        html.push_str("<table>");
        for (name, value) in &message.facts {
            html.push_str(&format!(
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                escape(name),
                escape(value)
            ));
        }
        html.push_str("</table>");
    }
    if let Some(url) = &message.link {
        html.push_str(&format!(
            "<p><a href=\"{}\">Open EPSM Ops</a></p>",
            escape(url)
        ));
    }
    (text, html)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::EventKind;

    fn message() -> Message {
        Message {
            kind: EventKind::ServiceDown,
            severity: Severity::Error,
            at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            title: "epsm: redis is down".into(),
            text: "redis has been down for 75 s: <exited> & gone".into(),
            facts: vec![("service".into(), "redis".into())],
            link: Some("https://ops.example/health".into()),
        }
    }

    #[test]
    fn teams_gets_an_adaptive_card_with_its_facts_and_link() {
        let card = teams_card(&message());
        let content = &card["attachments"][0]["content"];
        assert_eq!(
            card["attachments"][0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(content["type"], "AdaptiveCard");
        assert_eq!(content["body"][0]["text"], "epsm: redis is down");
        assert_eq!(content["body"][0]["color"], "Attention");
        assert_eq!(content["body"][2]["facts"][0]["value"], "redis");
        assert_eq!(content["actions"][0]["url"], "https://ops.example/health");
    }

    #[test]
    fn a_webhook_body_is_signed_with_hmac_sha256() {
        let (body, sig) = signed_webhook(&message(), b"shared secret");
        let back: Message = serde_json::from_slice(&body).unwrap();
        assert_eq!(back, message());
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
    }

    #[test]
    fn slack_and_mail_carry_the_same_facts_and_the_html_is_escaped() {
        let text = slack(&message())["text"].as_str().unwrap().to_string();
        assert!(text.starts_with("*epsm: redis is down*\n"));
        assert!(text.contains("• service: redis") && text.contains("<https://ops.example/health|"));
        let (plain, html) = mail_parts(&message());
        assert!(plain.contains("service: redis") && plain.contains("<exited> & gone"));
        assert!(html.contains("&lt;exited&gt; &amp; gone") && !html.contains("<exited>"));
    }
}
