//! The service provider's check of a SAML Response posted to the ACS, as strict as the auth issue
//! asks: nothing in the response is believed until the assertion used is covered by a valid signature
//! of a trusted IdP certificate, with an allowed algorithm, and every condition holds.
//!
//! The order: size and DOCTYPE refused before any parsing; the structure read with roxmltree (exactly
//! one assertion, plain or encrypted, anywhere in the document: a second one beside, inside or around
//! is how signature-wrapping attacks start); every signature and digest algorithm checked against the
//! allowed list; an encrypted assertion decrypted with the SP key (RSA-OAEP / RSA 1.5 key transport,
//! AES-CBC with XML-Enc padding or AES-GCM content); the signatures verified by xmlsec through samael,
//! which returns only the signed content; that content parsed with samael's schema types; then
//! issuer, audience, recipient, destination, times and InResponseTo. Replay is the caller's (it needs
//! the store): the verified assertion's id and validity come back for it.

use chrono::{DateTime, Duration, Utc};
use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, CryptoProvider, ReduceMode, XmlSec,
};
use samael::schema::Assertion;

use super::keys::KeyPair;

mod decrypt;
mod signature;

use decrypt::{decrypt_assertion, decryption_failed};
pub use signature::check_signature_form;
use signature::{check_algorithms, reduce};

pub const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const NS_XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
pub const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// A response larger than this is refused before it is parsed (real ones are 5-20 KB; the ACS
/// takes at most `MAX_ACS_BODY` bytes of form body, so this is what fits in it as base64).
pub const MAX_RESPONSE_BYTES: usize = 160 * 1024;
/// The most the ACS reads of a posted form.
pub const MAX_ACS_BODY: usize = 256 * 1024;

/// The only canonicalizations and transforms a signature may name: exclusive c14n (with or without
/// comments) and the enveloped-signature transform. XSLT, XPath, inclusive c14n and base64 are
/// refused before xmlsec sees the document.
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const EXC_C14N_COMMENTS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
const STRONG: [AllowedSignatureAlgorithm; 3] = [
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
];

/// Why a response was refused: the audit log's detail, and the sentence the person sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamlError {
    #[error("the SAMLResponse is not base64 of UTF-8 XML")]
    Encoding,
    #[error("the SAMLResponse is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("the response carries a DOCTYPE (DTDs and entities are refused)")]
    Doctype,
    #[error("the response is not well-formed XML: {0}")]
    Xml(String),
    #[error("the document is not a SAML 2.0 Response")]
    NotAResponse,
    #[error("the IdP refused the login: {0}")]
    Status(String),
    #[error("the response must carry exactly one assertion; it has {0}")]
    AssertionCount(usize),
    #[error("signature or digest algorithm {0} is not allowed")]
    Algorithm(String),
    #[error("the assertion is not covered by a valid signature of the IdP")]
    Unsigned,
    /// One sentence for every decryption failure (key unwrap, key length, padding, UTF-8, XML of
    /// the plaintext): a different answer per failure is an oracle. The detail is logged at debug.
    #[error("the response could not be decrypted")]
    Decrypt,
    #[error("the signature's form is not allowed: {0}")]
    SignatureForm(&'static str),
    #[error("the assertion cannot be read: {0}")]
    Assertion(String),
    #[error("issuer {found:?} is not the IdP ({expected})")]
    Issuer { found: String, expected: String },
    #[error("the assertion is not for this service (audience {0:?})")]
    Audience(Vec<String>),
    #[error("the response is addressed to {0:?}, not to this ACS")]
    Destination(String),
    #[error("the assertion is not valid before {0}")]
    NotYetValid(DateTime<Utc>),
    #[error("the assertion expired at {0}")]
    Expired(DateTime<Utc>),
    #[error("the assertion has no bearer confirmation with a recipient and an expiry")]
    NoBearerConfirmation,
    #[error(
        "the response answers request {found:?}, not the one this browser started ({expected:?})"
    )]
    InResponseTo {
        found: Option<String>,
        expected: Option<String>,
    },
    #[error("unsolicited responses (no login started here) are not accepted")]
    Unsolicited,
    #[error("the assertion names no user (no subject-id, eduPersonPrincipalName or NameID)")]
    NoSubject,
}

impl SamlError {
    /// The kind of refusal, never the poster's words: what repeated refusals are folded by.
    pub fn kind(&self) -> &'static str {
        match self {
            SamlError::Encoding => "encoding",
            SamlError::TooLarge => "too-large",
            SamlError::Doctype => "doctype",
            SamlError::Xml(_) => "xml",
            SamlError::NotAResponse => "not-a-response",
            SamlError::Status(_) => "status",
            SamlError::AssertionCount(_) => "assertion-count",
            SamlError::Algorithm(_) => "algorithm",
            SamlError::Unsigned => "unsigned",
            SamlError::Decrypt => "decrypt",
            SamlError::SignatureForm(_) => "signature-form",
            SamlError::Assertion(_) => "assertion",
            SamlError::Issuer { .. } => "issuer",
            SamlError::Audience(_) => "audience",
            SamlError::Destination(_) => "destination",
            SamlError::NotYetValid(_) => "not-yet-valid",
            SamlError::Expired(_) => "expired",
            SamlError::NoBearerConfirmation => "no-bearer",
            SamlError::InResponseTo { .. } => "in-response-to",
            SamlError::Unsolicited => "unsolicited",
            SamlError::NoSubject => "no-subject",
        }
    }
}

/// What this SP is, as the IdP knows it.
#[derive(Debug, Clone)]
pub struct SpSettings {
    pub entity_id: String,
    pub acs_url: String,
    /// Accept rsa-sha1 / sha1 (ADFS may still use them).
    pub allow_sha1: bool,
    /// Accept RSA PKCS#1 v1.5 key transport for encrypted assertions (padding-oracle prone; off
    /// unless the IdP can do nothing else).
    pub allow_rsa15: bool,
    pub clock_skew: Duration,
    pub allow_unsolicited: bool,
}

/// The IdP this SP trusts: its entity id and every signing certificate its metadata lists.
#[derive(Debug, Clone)]
pub struct IdpTrust {
    pub entity_id: String,
    pub signing_certs: Vec<Vec<u8>>,
}

/// The person the IdP vouches for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// subject-id, else eduPersonPrincipalName, else the NameID.
    pub id: String,
    pub display_name: Option<String>,
    pub mail: Option<String>,
    pub affiliations: Vec<String>,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
}

/// A response that passed every check. The caller records `assertion_id` until `valid_until` and
/// refuses it a second time.
#[derive(Debug, Clone)]
pub struct Verified {
    pub identity: Identity,
    pub assertion_id: String,
    pub valid_until: DateTime<Utc>,
}

/// Checks a posted `SAMLResponse` (base64). `request_id` is the id of the AuthnRequest this browser
/// session sent (None: no login was started here).
pub fn validate_response(
    saml_response: &str,
    sp: &SpSettings,
    sp_key: &KeyPair,
    idp: &IdpTrust,
    request_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Verified, SamlError> {
    use base64::Engine;
    let compact: String = saml_response
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if compact.len() > MAX_RESPONSE_BYTES * 4 / 3 + 4 {
        return Err(SamlError::TooLarge);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| SamlError::Encoding)?;
    let xml = String::from_utf8(bytes).map_err(|_| SamlError::Encoding)?;
    validate_xml(&xml, sp, sp_key, idp, request_id, now)
}

/// `validate_response` on the decoded XML.
pub fn validate_xml(
    xml: &str,
    sp: &SpSettings,
    sp_key: &KeyPair,
    idp: &IdpTrust,
    request_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Verified, SamlError> {
    let doc = parse_xml(xml)?;
    let root = doc.root_element();
    if !is(root, NS_PROTOCOL, "Response") {
        return Err(SamlError::NotAResponse);
    }
    check_status(root)?;
    if let Some(destination) = root.attribute("Destination")
        && destination != sp.acs_url
    {
        return Err(SamlError::Destination(destination.into()));
    }
    if let Some(issuer) = child(root, NS_ASSERTION, "Issuer").and_then(|i| i.text()) {
        check_issuer(issuer.trim(), idp)?;
    }
    // The response's own InResponseTo is unsigned in the ADFS shape: checked when present, and the
    // signed one in the assertion is checked below in any case.
    if let Some(found) = root.attribute("InResponseTo")
        && Some(found) != request_id
    {
        return Err(SamlError::InResponseTo {
            found: Some(found.into()),
            expected: request_id.map(String::from),
        });
    }
    let assertions: Vec<roxmltree::Node> = root
        .descendants()
        .filter(|n| is(*n, NS_ASSERTION, "Assertion") || is(*n, NS_ASSERTION, "EncryptedAssertion"))
        .collect();
    if assertions.len() != 1 {
        return Err(SamlError::AssertionCount(assertions.len()));
    }
    let allowed = allowed_algorithms(sp);
    check_algorithms(&doc, sp.allow_sha1)?;
    let certs: Vec<CertificateDer> = idp
        .signing_certs
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    if certs.is_empty() {
        // Never "no certificate, no check".
        return Err(SamlError::Unsigned);
    }
    check_signature_form(&doc)?;
    if !is(assertions[0], NS_ASSERTION, "EncryptedAssertion") {
        let signed = reduce(xml, &certs, allowed)?;
        let assertion = signed_assertion(&signed, assertions[0].attribute("ID"))?;
        return check_assertion(&assertion, sp, idp, request_id, now);
    }
    // Encrypted. A signed Response (Shibboleth's default, ADFS signing the message) covers the
    // EncryptedAssertion: its signature is checked first and the assertion decrypted from what it
    // signed. Otherwise the decrypted assertion must carry its own signature.
    let response_signed = child(root, NS_DSIG, "Signature").is_some();
    let plain = if response_signed {
        let signed = reduce(xml, &certs, allowed)?;
        let signed_doc = parse_xml(&signed)?;
        let encrypted = signed_doc
            .root_element()
            .children()
            .find(|n| is(*n, NS_ASSERTION, "EncryptedAssertion"))
            .ok_or(SamlError::Unsigned)?;
        decrypt_assertion(encrypted, sp_key, sp.allow_rsa15)?
    } else {
        decrypt_assertion(assertions[0], sp_key, sp.allow_rsa15)?
    };
    let inner = parse_xml(&plain).map_err(|e| decryption_failed(&e.to_string()))?;
    let inner_root = inner.root_element();
    let count = inner_root
        .descendants()
        .filter(|n| is(*n, NS_ASSERTION, "Assertion"))
        .count();
    if !is(inner_root, NS_ASSERTION, "Assertion") || count != 1 {
        return Err(SamlError::AssertionCount(count));
    }
    check_algorithms(&inner, sp.allow_sha1)?;
    check_signature_form(&inner)?;
    let wanted_id = inner_root.attribute("ID");
    let assertion = if child(inner_root, NS_DSIG, "Signature").is_some() {
        signed_assertion(&reduce(&plain, &certs, allowed)?, wanted_id)?
    } else if response_signed {
        plain
            .parse::<Assertion>()
            .map_err(|e| SamlError::Assertion(e.to_string()))?
    } else {
        return Err(SamlError::Unsigned);
    };
    check_assertion(&assertion, sp, idp, request_id, now)
}

/// None: every algorithm xmlsec knows, after `check_algorithms` let only SHA-1 and stronger through.
fn allowed_algorithms(sp: &SpSettings) -> Option<&'static [AllowedSignatureAlgorithm]> {
    (!sp.allow_sha1).then_some(&STRONG[..])
}

fn refuse_dtd(xml: &str) -> Result<(), SamlError> {
    let lower = xml.to_ascii_lowercase();
    if lower.contains("<!doctype") || lower.contains("<!entity") {
        return Err(SamlError::Doctype);
    }
    Ok(())
}

/// Every XML the SAML side reads (responses, decrypted assertions, metadata, requests): DOCTYPE and
/// entities refused before parsing, then roxmltree with DTDs off.
pub fn parse_xml(xml: &str) -> Result<roxmltree::Document<'_>, SamlError> {
    refuse_dtd(xml)?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(xml, options).map_err(|e| SamlError::Xml(e.to_string()))
}

fn is(node: roxmltree::Node, ns: &str, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace() == Some(ns)
}

fn child<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    ns: &str,
    name: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| is(*c, ns, name))
}

fn check_status(root: roxmltree::Node) -> Result<(), SamlError> {
    let status = child(root, NS_PROTOCOL, "Status");
    let code = status
        .and_then(|s| child(s, NS_PROTOCOL, "StatusCode"))
        .and_then(|c| c.attribute("Value"));
    if code == Some(STATUS_SUCCESS) {
        return Ok(());
    }
    let message = status
        .and_then(|s| child(s, NS_PROTOCOL, "StatusMessage"))
        .and_then(|m| m.text())
        .unwrap_or("");
    Err(SamlError::Status(
        format!("{} {message}", code.unwrap_or("no status code"))
            .trim()
            .to_string(),
    ))
}

fn check_issuer(found: &str, idp: &IdpTrust) -> Result<(), SamlError> {
    if found == idp.entity_id {
        Ok(())
    } else {
        Err(SamlError::Issuer {
            found: found.into(),
            expected: idp.entity_id.clone(),
        })
    }
}

/// The assertion inside the signed content (the root, or the signed Response's one child assertion),
/// and only when it is the one the document carried.
fn signed_assertion(signed: &str, wanted_id: Option<&str>) -> Result<Assertion, SamlError> {
    let doc = parse_xml(signed)?;
    let root = doc.root_element();
    let node = if is(root, NS_ASSERTION, "Assertion") {
        root
    } else if is(root, NS_PROTOCOL, "Response") {
        child(root, NS_ASSERTION, "Assertion").ok_or(SamlError::Unsigned)?
    } else {
        return Err(SamlError::Unsigned);
    };
    if wanted_id.is_some_and(|id| node.attribute("ID") != Some(id)) {
        return Err(SamlError::Unsigned);
    }
    let range = node.range();
    signed[range]
        .parse::<Assertion>()
        .map_err(|e| SamlError::Assertion(e.to_string()))
}

fn check_assertion(
    assertion: &Assertion,
    sp: &SpSettings,
    idp: &IdpTrust,
    request_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Verified, SamlError> {
    check_issuer(assertion.issuer.value.as_deref().unwrap_or("").trim(), idp)?;
    let skew = sp.clock_skew;
    let conditions = assertion
        .conditions
        .as_ref()
        .ok_or_else(|| SamlError::Audience(Vec::new()))?;
    if let Some(not_before) = conditions.not_before
        && now + skew < not_before
    {
        return Err(SamlError::NotYetValid(not_before));
    }
    let mut valid_until = conditions.not_on_or_after;
    if let Some(until) = conditions.not_on_or_after
        && now - skew >= until
    {
        return Err(SamlError::Expired(until));
    }
    let audiences: Vec<String> = conditions
        .audience_restrictions
        .iter()
        .flatten()
        .flat_map(|r| r.audience.iter().map(|a| a.trim().to_string()))
        .collect();
    // Every AudienceRestriction must name this SP (they are ANDed), and there must be one.
    let restrictions = conditions.audience_restrictions.as_deref().unwrap_or(&[]);
    if restrictions.is_empty()
        || !restrictions
            .iter()
            .all(|r| r.audience.iter().any(|a| a.trim() == sp.entity_id))
    {
        return Err(SamlError::Audience(audiences));
    }

    let subject = assertion.subject.as_ref().ok_or(SamlError::NoSubject)?;
    let bearer = subject
        .subject_confirmations
        .iter()
        .flatten()
        .filter(|c| c.method.as_deref() == Some(BEARER))
        .filter_map(|c| c.subject_confirmation_data.as_ref())
        .find(|d| d.recipient.is_some() && d.not_on_or_after.is_some())
        .ok_or(SamlError::NoBearerConfirmation)?;
    if bearer.recipient.as_deref() != Some(sp.acs_url.as_str()) {
        return Err(SamlError::Destination(
            bearer.recipient.clone().unwrap_or_default(),
        ));
    }
    if let Some(not_before) = bearer.not_before
        && now + skew < not_before
    {
        return Err(SamlError::NotYetValid(not_before));
    }
    let until = bearer.not_on_or_after.unwrap_or(now);
    if now - skew >= until {
        return Err(SamlError::Expired(until));
    }
    valid_until = Some(valid_until.map_or(until, |v| v.max(until)));
    match (request_id, bearer.in_response_to.as_deref()) {
        (Some(expected), Some(found)) if expected == found => {}
        (None, None) if sp.allow_unsolicited => {}
        (None, None) => return Err(SamlError::Unsolicited),
        (expected, found) => {
            return Err(SamlError::InResponseTo {
                found: found.map(String::from),
                expected: expected.map(String::from),
            });
        }
    }

    let identity = identity(assertion)?;
    Ok(Verified {
        identity,
        assertion_id: assertion.id.clone(),
        valid_until: valid_until.unwrap_or(until) + skew,
    })
}

/// The attributes the console reads, by `urn:oid:` name or friendly name.
const SUBJECT_ID: [&str; 2] = ["urn:oasis:names:tc:SAML:attribute:subject-id", "subject-id"];
const EPPN: [&str; 2] = ["urn:oid:1.3.6.1.4.1.5923.1.1.1.6", "eduPersonPrincipalName"];
const MAIL: [&str; 2] = ["urn:oid:0.9.2342.19200300.100.1.3", "mail"];
const DISPLAY_NAME: [&str; 2] = ["urn:oid:2.16.840.1.113730.3.1.241", "displayName"];
const GIVEN_NAME: [&str; 2] = ["urn:oid:2.5.4.42", "givenName"];
const SURNAME: [&str; 2] = ["urn:oid:2.5.4.4", "sn"];
const SCOPED_AFFILIATION: [&str; 2] = [
    "urn:oid:1.3.6.1.4.1.5923.1.1.1.9",
    "eduPersonScopedAffiliation",
];

fn identity(assertion: &Assertion) -> Result<Identity, SamlError> {
    let attributes: Vec<&samael::attribute::Attribute> = assertion
        .attribute_statements
        .iter()
        .flatten()
        .flat_map(|s| s.attributes.iter())
        .collect();
    let values = |names: [&str; 2]| -> Vec<String> {
        attributes
            .iter()
            .filter(|a| {
                a.name.as_deref().is_some_and(|n| names.contains(&n))
                    || a.friendly_name
                        .as_deref()
                        .is_some_and(|n| names.contains(&n))
            })
            .flat_map(|a| a.values.iter().filter_map(|v| v.value.clone()))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let first = |names| values(names).into_iter().next();
    let name_id = assertion.subject.as_ref().and_then(|s| s.name_id.as_ref());
    let id = first(SUBJECT_ID)
        .or_else(|| first(EPPN))
        .or_else(|| {
            name_id
                .map(|n| n.value.trim().to_string())
                .filter(|v| !v.is_empty())
        })
        .ok_or(SamlError::NoSubject)?;
    let display_name = first(DISPLAY_NAME).or_else(|| {
        let full = [first(GIVEN_NAME), first(SURNAME)]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        (!full.is_empty()).then_some(full)
    });
    Ok(Identity {
        id,
        display_name,
        mail: first(MAIL),
        affiliations: values(SCOPED_AFFILIATION),
        name_id: name_id
            .map(|n| n.value.trim().to_string())
            .unwrap_or_default(),
        name_id_format: name_id.and_then(|n| n.format.clone()),
        session_index: assertion
            .authn_statements
            .iter()
            .flatten()
            .find_map(|s| s.session_index.clone()),
    })
}

/// Text for an XML (or HTML) attribute value or element.
pub fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Key transport and content encryption this SP decrypts.
pub const RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
pub const RSA_1_5: &str = "http://www.w3.org/2001/04/xmlenc#rsa-1_5";
pub const AES128_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes128-cbc";
pub const AES256_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes256-cbc";
pub const AES128_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes128-gcm";
pub const AES256_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_doctype_or_entity_is_refused_before_parsing() {
        assert_eq!(
            refuse_dtd("<!DOCTYPE x [<!ENTITY a 'b'>]><x/>"),
            Err(SamlError::Doctype)
        );
        assert_eq!(
            refuse_dtd("<x><!ENTITY a 'b'></x>"),
            Err(SamlError::Doctype)
        );
        assert_eq!(refuse_dtd("<x/>"), Ok(()));
    }
}
