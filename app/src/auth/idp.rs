//! A small identity provider that answers like the Chalmers ADFS: an unsigned Response carrying a
//! signed Assertion (or a signed Response, on request), optionally encrypted for the SP. The
//! development IdP and the SAML tests issue their responses through it, signed by real keys.

use base64::Engine;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use samael::crypto::{CryptoProvider, XmlSec};

use super::keys::{KeyError, KeyPair};
use super::saml::{
    AES128_CBC, AES128_GCM, AES256_CBC, AES256_GCM, BEARER, NS_ASSERTION, NS_PROTOCOL, NS_XENC,
    RSA_1_5, RSA_OAEP_MGF1P, STATUS_SUCCESS, xml_escape,
};

/// A person the development IdP can log in, with the attributes it releases.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TestUser {
    pub subject_id: String,
    pub display_name: String,
    pub mail: String,
    pub affiliations: Vec<String>,
}

/// Everything an assertion states; `AssertionSpec::new` fills what a correct login would say, and a
/// test changes what its attack needs.
#[derive(Debug, Clone)]
pub struct AssertionSpec {
    pub issuer: String,
    pub audience: String,
    pub recipient: String,
    /// The Response's Destination (None: the attribute is left out).
    pub destination: Option<String>,
    pub in_response_to: Option<String>,
    pub issued_at: DateTime<Utc>,
    pub not_before: DateTime<Utc>,
    pub not_on_or_after: DateTime<Utc>,
    pub user: TestUser,
    pub assertion_id: String,
}

impl AssertionSpec {
    pub fn new(
        idp_entity_id: &str,
        sp_entity_id: &str,
        acs_url: &str,
        request_id: Option<&str>,
        user: TestUser,
        now: DateTime<Utc>,
    ) -> AssertionSpec {
        AssertionSpec {
            issuer: idp_entity_id.into(),
            audience: sp_entity_id.into(),
            recipient: acs_url.into(),
            destination: Some(acs_url.into()),
            in_response_to: request_id.map(String::from),
            issued_at: now,
            not_before: now - Duration::seconds(5),
            not_on_or_after: now + Duration::minutes(5),
            user,
            assertion_id: random_id(),
        }
    }
}

/// How the response is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub sign_assertion: bool,
    pub sign_response: bool,
    /// rsa-sha1 / sha1 instead of rsa-sha256 / sha256.
    pub sha1: bool,
    /// Key transport and content cipher URIs (`saml::RSA_OAEP_MGF1P`, `saml::AES256_CBC`, ...).
    pub encrypt: Option<(&'static str, &'static str)>,
}

impl Shape {
    /// What ADFS sends an SP without an encryption key: unsigned Response, signed Assertion.
    pub const ADFS: Shape = Shape {
        sign_assertion: true,
        sign_response: false,
        sha1: false,
        encrypt: None,
    };
    /// What ADFS sends an SP whose metadata offers an encryption key.
    pub const ADFS_ENCRYPTED: Shape = Shape {
        encrypt: Some((RSA_OAEP_MGF1P, AES256_CBC)),
        ..Shape::ADFS
    };
}

/// The IdP: its entity id and signing key.
#[derive(Debug, Clone)]
pub struct IdentityProvider {
    pub entity_id: String,
    pub signing: KeyPair,
}

impl IdentityProvider {
    /// The response XML for `spec` in `shape`; `sp_cert` is the SP's encryption certificate.
    pub fn response_xml(
        &self,
        spec: &AssertionSpec,
        shape: Shape,
        sp_cert: Option<&openssl::x509::X509>,
    ) -> Result<String, KeyError> {
        let mut assertion = assertion_xml(
            spec,
            shape
                .sign_assertion
                .then(|| self.template(&spec.assertion_id, shape.sha1)),
        );
        if shape.sign_assertion {
            assertion = self.sign(&assertion)?;
        }
        if let Some((transport, content)) = shape.encrypt {
            let cert = sp_cert.ok_or_else(|| KeyError::File {
                path: "SP metadata".into(),
                reason: "no encryption certificate to encrypt for".into(),
            })?;
            assertion = encrypted_assertion(&assertion, cert, transport, content)?;
        }
        let response_id = random_id();
        let response = format!(
            r#"<samlp:Response xmlns:samlp="{NS_PROTOCOL}" xmlns:saml="{NS_ASSERTION}" ID="{response_id}" Version="2.0" IssueInstant="{issued}"{destination}{in_response_to}><saml:Issuer>{issuer}</saml:Issuer>{signature}<samlp:Status><samlp:StatusCode Value="{STATUS_SUCCESS}"/></samlp:Status>{assertion}</samlp:Response>"#,
            issued = time(spec.issued_at),
            destination = spec
                .destination
                .as_deref()
                .map(|d| format!(r#" Destination="{}""#, xml_escape(d)))
                .unwrap_or_default(),
            in_response_to = spec
                .in_response_to
                .as_deref()
                .map(|r| format!(r#" InResponseTo="{}""#, xml_escape(r)))
                .unwrap_or_default(),
            issuer = xml_escape(&spec.issuer),
            signature = if shape.sign_response {
                self.template(&response_id, shape.sha1)
            } else {
                String::new()
            },
        );
        if shape.sign_response {
            self.sign(&response)
        } else {
            Ok(response)
        }
    }

    /// `response_xml`, base64 as the HTTP-POST binding carries it.
    pub fn response(
        &self,
        spec: &AssertionSpec,
        shape: Shape,
        sp_cert: Option<&openssl::x509::X509>,
    ) -> Result<String, KeyError> {
        Ok(encode(&self.response_xml(spec, shape, sp_cert)?))
    }

    fn template(&self, id: &str, sha1: bool) -> String {
        let (signature, digest) = if sha1 {
            (
                "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
                "http://www.w3.org/2000/09/xmldsig#sha1",
            )
        } else {
            (
                "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                "http://www.w3.org/2001/04/xmlenc#sha256",
            )
        };
        format!(
            r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="{signature}"/><ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="{digest}"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"##,
            cert = self.signing.cert_base64()
        )
    }

    /// Signs the first signature template in `xml` (xmlsec through samael); returns the element
    /// without an XML declaration, ready to embed.
    fn sign(&self, xml: &str) -> Result<String, KeyError> {
        let signed =
            XmlSec::sign_xml(xml, &self.signing.key_der()?).map_err(|e| KeyError::File {
                path: "xmlsec".into(),
                reason: format!("signing failed: {e}"),
            })?;
        Ok(strip_declaration(&signed))
    }
}

fn assertion_xml(spec: &AssertionSpec, signature: Option<String>) -> String {
    let attribute = |name: &str, friendly: &str, values: &[String]| {
        let values: String = values
            .iter()
            .map(|v| {
                format!(
                    "<saml:AttributeValue>{}</saml:AttributeValue>",
                    xml_escape(v)
                )
            })
            .collect();
        format!(
            r#"<saml:Attribute Name="{name}" FriendlyName="{friendly}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri">{values}</saml:Attribute>"#
        )
    };
    let user = &spec.user;
    let attributes = [
        attribute(
            "urn:oasis:names:tc:SAML:attribute:subject-id",
            "subject-id",
            std::slice::from_ref(&user.subject_id),
        ),
        attribute(
            "urn:oid:0.9.2342.19200300.100.1.3",
            "mail",
            std::slice::from_ref(&user.mail),
        ),
        attribute(
            "urn:oid:2.16.840.1.113730.3.1.241",
            "displayName",
            std::slice::from_ref(&user.display_name),
        ),
        attribute(
            "urn:oid:1.3.6.1.4.1.5923.1.1.1.9",
            "eduPersonScopedAffiliation",
            &user.affiliations,
        ),
    ]
    .concat();
    let in_response_to = spec
        .in_response_to
        .as_deref()
        .map(|r| format!(r#" InResponseTo="{}""#, xml_escape(r)))
        .unwrap_or_default();
    format!(
        r#"<saml:Assertion xmlns:saml="{NS_ASSERTION}" ID="{id}" Version="2.0" IssueInstant="{issued}"><saml:Issuer>{issuer}</saml:Issuer>{signature}<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:transient">{name_id}</saml:NameID><saml:SubjectConfirmation Method="{BEARER}"><saml:SubjectConfirmationData{in_response_to} NotOnOrAfter="{until}" Recipient="{recipient}"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{not_before}" NotOnOrAfter="{until}"><saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AttributeStatement>{attributes}</saml:AttributeStatement><saml:AuthnStatement AuthnInstant="{issued}" SessionIndex="{session}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement></saml:Assertion>"#,
        id = spec.assertion_id,
        issued = time(spec.issued_at),
        issuer = xml_escape(&spec.issuer),
        signature = signature.unwrap_or_default(),
        name_id = random_id(),
        until = time(spec.not_on_or_after),
        not_before = time(spec.not_before),
        recipient = xml_escape(&spec.recipient),
        audience = xml_escape(&spec.audience),
        session = spec.assertion_id,
    )
}

/// `<saml:EncryptedAssertion>` as ADFS writes it: the key's KeyInfo in the default dsig namespace.
fn encrypted_assertion(
    assertion: &str,
    sp_cert: &openssl::x509::X509,
    transport: &str,
    content: &str,
) -> Result<String, KeyError> {
    use openssl::rand::rand_bytes;
    use openssl::rsa::Padding;
    use openssl::symm::{Cipher, Crypter, Mode, encrypt_aead};
    let (cipher, gcm) = match content {
        AES128_CBC => (Cipher::aes_128_cbc(), false),
        AES256_CBC => (Cipher::aes_256_cbc(), false),
        AES128_GCM => (Cipher::aes_128_gcm(), true),
        AES256_GCM => (Cipher::aes_256_gcm(), true),
        other => {
            return Err(KeyError::File {
                path: "encryption".into(),
                reason: format!("unknown content cipher {other}"),
            });
        }
    };
    let mut key = vec![0u8; cipher.key_len()];
    rand_bytes(&mut key)?;
    let mut data = Vec::new();
    if gcm {
        let mut iv = [0u8; 12];
        rand_bytes(&mut iv)?;
        let mut tag = [0u8; 16];
        let body = encrypt_aead(cipher, &key, Some(&iv), &[], assertion.as_bytes(), &mut tag)?;
        data.extend_from_slice(&iv);
        data.extend_from_slice(&body);
        data.extend_from_slice(&tag);
    } else {
        let mut iv = [0u8; 16];
        rand_bytes(&mut iv)?;
        // XML-Enc padding: random filler, the last byte says how many bytes were added.
        let mut plain = assertion.as_bytes().to_vec();
        let pad = 16 - plain.len() % 16;
        let mut filler = vec![0u8; pad - 1];
        rand_bytes(&mut filler)?;
        plain.extend_from_slice(&filler);
        plain.push(pad as u8);
        let mut crypter = Crypter::new(cipher, Mode::Encrypt, &key, Some(&iv))?;
        crypter.pad(false);
        let mut out = vec![0u8; plain.len() + 16];
        let mut n = crypter.update(&plain, &mut out)?;
        n += crypter.finalize(&mut out[n..])?;
        out.truncate(n);
        data.extend_from_slice(&iv);
        data.extend_from_slice(&out);
    }
    let padding = if transport == RSA_1_5 {
        Padding::PKCS1
    } else {
        Padding::PKCS1_OAEP
    };
    let rsa = sp_cert.public_key()?.rsa()?;
    let mut wrapped = vec![0u8; rsa.size() as usize];
    let n = rsa.public_encrypt(&key, &mut wrapped, padding)?;
    wrapped.truncate(n);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let digest = if transport == RSA_OAEP_MGF1P {
        r#"<DigestMethod xmlns="http://www.w3.org/2000/09/xmldsig#" Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/>"#
    } else {
        ""
    };
    Ok(format!(
        r#"<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="{NS_XENC}" Type="http://www.w3.org/2001/04/xmlenc#Element"><xenc:EncryptionMethod Algorithm="{content}"/><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><e:EncryptedKey xmlns:e="{NS_XENC}"><e:EncryptionMethod Algorithm="{transport}">{digest}</e:EncryptionMethod><e:CipherData><e:CipherValue>{key}</e:CipherValue></e:CipherData></e:EncryptedKey></KeyInfo><xenc:CipherData><xenc:CipherValue>{data}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion>"#,
        key = b64(&wrapped),
        data = b64(&data),
    ))
}

pub fn encode(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml)
}

/// An XML ID: a letter, then 160 random bits in hex.
pub fn random_id() -> String {
    let mut bytes = [0u8; 20];
    openssl::rand::rand_bytes(&mut bytes).expect("the system's random source works");
    format!("_{}", hex::encode(bytes))
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn strip_declaration(xml: &str) -> String {
    let xml = xml.trim_start();
    match xml.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map(|(_, body)| body.trim_start().to_string())
            .unwrap_or_default(),
        None => xml.to_string(),
    }
}
