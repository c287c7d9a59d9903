//! The signature-wrapping (XSW) shapes an attacker makes of a genuine ADFS-shaped response (unsigned
//! Response, signed Assertion): plain string surgery on the XML, shared by the SAML suite (which
//! checks the typed refusal) and the ACS test (which checks the refusal and its audit-log entry).

/// The response cut around its assertion: what comes before, the signed `<saml:Assertion>`, and
/// what comes after.
pub fn split_assertion(xml: &str) -> (String, String, String) {
    let start = xml.find("<saml:Assertion").expect("a saml:Assertion");
    let end = xml
        .rfind("</saml:Assertion>")
        .expect("a closing saml:Assertion")
        + "</saml:Assertion>".len();
    (
        xml[..start].to_string(),
        xml[start..end].to_string(),
        xml[end..].to_string(),
    )
}

/// An attacker's copy of the signed assertion: ID `id`, `victim` replaced by `attacker`
/// everywhere, the original signature left in place.
pub fn evil_copy(signed: &str, id: &str, victim: &str, attacker: &str) -> String {
    let original_id = signed
        .split("ID=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the assertion has an ID");
    signed
        .replacen(&format!("ID=\"{original_id}\""), &format!("ID=\"{id}\""), 1)
        .replace(victim, attacker)
}

/// The classic wrapping shapes of `response` (ADFS-shaped), each with what it does: an evil
/// assertion for `attacker` beside, inside and around the signed one (about `victim`), and the signed
/// one moved into the Response's Extensions or into a `ds:Object` of the evil one's signature. Each
/// leaves two assertions in the document.
pub fn signature_wrapping(
    response: &str,
    victim: &str,
    attacker: &str,
) -> Vec<(&'static str, String)> {
    let (head, signed, tail) = split_assertion(response);
    let bad = evil_copy(&signed, "_evil", victim, attacker);
    let status = head.find("<samlp:Status>").expect("a samlp:Status");
    vec![
        (
            "a second assertion beside the signed one",
            format!("{head}{bad}{signed}{tail}"),
        ),
        (
            "the evil assertion inside the signed one",
            format!(
                "{head}{}{tail}",
                signed.replacen("<saml:Subject>", &format!("{bad}<saml:Subject>"), 1)
            ),
        ),
        (
            "the evil assertion around the signed one",
            format!(
                "{head}{}{tail}",
                bad.replacen("<saml:Subject>", &format!("{signed}<saml:Subject>"), 1)
            ),
        ),
        (
            "the signed assertion moved into the response's Extensions",
            format!(
                "{}<samlp:Extensions>{signed}</samlp:Extensions>{}{bad}{tail}",
                &head[..status],
                &head[status..]
            ),
        ),
        (
            "the signed assertion moved into a ds:Object of the evil one's signature",
            format!(
                "{head}{}{tail}",
                bad.replacen(
                    "</ds:Signature>",
                    &format!("<ds:Object>{signed}</ds:Object></ds:Signature>"),
                    1
                )
            ),
        ),
    ]
}
