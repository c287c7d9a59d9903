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

/// Signatures whose form asks xmlsec to reach outside the document or run code before the
/// SignatureValue is checked, made of a genuine ADFS-shaped `response` (signed Assertion, unsigned
/// Response): a reference to `file://{fifo}` (a FIFO the caller made: a console that opens it is
/// seen as a reader), an http reference, XSLT and XPath transforms, two references, a reference to
/// another element, inclusive canonicalization, a `ds:Object`, a `RetrievalMethod` and a `KeyName`.
/// Each must be refused before xmlsec sees it.
pub fn reference_attacks(response: &str, fifo: &str) -> Vec<(&'static str, String)> {
    let uri_at = response.find("URI=\"#").expect("a Reference URI") + "URI=\"".len();
    let uri = &response[uri_at..uri_at + response[uri_at..].find('"').expect("a closing quote")];
    let response_id = response
        .split("<samlp:Response")
        .nth(1)
        .and_then(|r| r.split("ID=\"").nth(1))
        .and_then(|r| r.split('"').next())
        .expect("the response has an ID");
    let reference_start = response.find("<ds:Reference").expect("a ds:Reference");
    let reference_end = response
        .find("</ds:Reference>")
        .expect("a closing ds:Reference")
        + "</ds:Reference>".len();
    let reference = &response[reference_start..reference_end];
    let enveloped =
        r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"#;
    let with_uri =
        |new: &str| response.replacen(&format!("URI=\"{uri}\""), &format!("URI=\"{new}\""), 1);
    let with_transform = |new: &str| response.replacen(enveloped, new, 1);
    vec![
        ("a reference to a file (a FIFO)", with_uri(&format!("file://{fifo}"))),
        ("a reference to an http URL", with_uri("http://127.0.0.1:9/x")),
        (
            "an XSLT transform",
            with_transform(
                r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"><xsl:template match="/"><xsl:value-of select="document('file:///etc/passwd')"/></xsl:template></xsl:stylesheet></ds:Transform>"#,
            ),
        ),
        (
            "an XPath transform",
            with_transform(
                r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"><ds:XPath>count(//. | //@* | //namespace::*)</ds:XPath></ds:Transform>"#,
            ),
        ),
        (
            "two references",
            response.replacen(reference, &format!("{reference}{reference}"), 1),
        ),
        ("a reference to another element", with_uri(&format!("#{response_id}"))),
        (
            "inclusive canonicalization",
            response.replacen(
                r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
                r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315"/>"#,
                1,
            ),
        ),
        (
            "a ds:Object in the signature",
            response.replacen("</ds:Signature>", "<ds:Object><x/></ds:Object></ds:Signature>", 1),
        ),
        (
            "a RetrievalMethod in the KeyInfo",
            response.replacen(
                "<ds:KeyInfo>",
                &format!(r#"<ds:KeyInfo><ds:RetrievalMethod URI="file://{fifo}"/>"#),
                1,
            ),
        ),
        (
            "a KeyName in the KeyInfo",
            response.replacen("<ds:KeyInfo>", "<ds:KeyInfo><ds:KeyName>idp</ds:KeyName>", 1),
        ),
    ]
}
