//! The SAML service provider's checks against responses signed (and encrypted) with real keys by
//! the project's ADFS-like IdP: what must be accepted (ADFS' shape, a signed response, every
//! supported encryption, certificate rollover, SHA-1 when allowed), and the attacks that must be
//! refused, each with the reason the audit log will carry.

use app::auth::idp::{AssertionSpec, IdentityProvider, Shape, TestUser, encode};
use app::auth::keys::KeyPair;
use app::auth::saml::{
    AES128_CBC, AES128_GCM, AES256_CBC, AES256_GCM, IdpTrust, RSA_1_5, RSA_OAEP_MGF1P, SamlError,
    SpSettings, Verified, validate_response,
};
use chrono::{Duration, Utc};
use end2end::saml_attacks::{evil_copy, reference_attacks, signature_wrapping, split_assertion};

const IDP: &str = "http://idp.chalmers.se/adfs/services/trust";
const SP: &str = "https://ops.epsm.chalmers.se/saml/metadata";
const ACS: &str = "https://ops.epsm.chalmers.se/saml/acs";
const REQUEST: &str = "_3f1e9a0c4b5d6e7f8091a2b3c4d5e6f7";

struct Fixture {
    idp: IdentityProvider,
    sp: SpSettings,
    sp_key: KeyPair,
    trust: IdpTrust,
}

fn fixture() -> Fixture {
    let signing = KeyPair::generate("idp.chalmers.se").unwrap();
    let trust = IdpTrust {
        entity_id: IDP.into(),
        signing_certs: vec![signing.cert_der()],
    };
    Fixture {
        idp: IdentityProvider {
            entity_id: IDP.into(),
            signing,
        },
        sp: SpSettings {
            entity_id: SP.into(),
            acs_url: ACS.into(),
            allow_sha1: false,
            allow_rsa15: false,
            clock_skew: Duration::seconds(60),
            allow_unsolicited: false,
        },
        sp_key: KeyPair::generate("ops.epsm.chalmers.se").unwrap(),
        trust,
    }
}

impl Fixture {
    fn spec(&self) -> AssertionSpec {
        AssertionSpec::new(
            IDP,
            SP,
            ACS,
            Some(REQUEST),
            TestUser {
                subject_id: "anna@chalmers.se".into(),
                display_name: "Anna Andersson".into(),
                mail: "anna.andersson@chalmers.se".into(),
                affiliations: vec!["employee@chalmers.se".into(), "member@chalmers.se".into()],
            },
            Utc::now(),
        )
    }

    fn xml(&self, spec: &AssertionSpec, shape: Shape) -> String {
        self.idp
            .response_xml(spec, shape, Some(&self.sp_key.cert))
            .unwrap()
    }

    fn check_xml(&self, xml: &str) -> Result<Verified, SamlError> {
        validate_response(
            &encode(xml),
            &self.sp,
            &self.sp_key,
            &self.trust,
            Some(REQUEST),
            Utc::now(),
        )
    }

    fn check(&self, spec: &AssertionSpec, shape: Shape) -> Result<Verified, SamlError> {
        self.check_xml(&self.xml(spec, shape))
    }
}

fn accepted(result: Result<Verified, SamlError>) -> Verified {
    result.unwrap_or_else(|e| panic!("refused: {e}"))
}

#[test]
fn the_adfs_shape_unsigned_response_signed_assertion_is_accepted_with_the_attributes() {
    let f = fixture();
    let spec = f.spec();
    let v = accepted(f.check(&spec, Shape::ADFS));
    assert_eq!(v.identity.id, "anna@chalmers.se");
    assert_eq!(v.identity.display_name.as_deref(), Some("Anna Andersson"));
    assert_eq!(
        v.identity.mail.as_deref(),
        Some("anna.andersson@chalmers.se")
    );
    assert_eq!(
        v.identity.affiliations,
        ["employee@chalmers.se", "member@chalmers.se"]
    );
    assert_eq!(v.assertion_id, spec.assertion_id);
    assert!(v.valid_until >= spec.not_on_or_after);
}

#[test]
fn a_signed_response_is_accepted_with_or_without_a_signed_assertion() {
    let f = fixture();
    for sign_assertion in [false, true] {
        let shape = Shape {
            sign_response: true,
            sign_assertion,
            ..Shape::ADFS
        };
        accepted(f.check(&f.spec(), shape));
    }
}

#[test]
fn an_encrypted_assertion_is_accepted_with_each_supported_algorithm() {
    let mut f = fixture();
    // RSA 1.5 key transport only when configured (padding oracles).
    let rsa15 = Shape {
        encrypt: Some((RSA_1_5, AES256_GCM)),
        ..Shape::ADFS
    };
    assert_eq!(f.check(&f.spec(), rsa15).unwrap_err(), SamlError::Decrypt);
    f.sp.allow_rsa15 = true;
    for transport in [RSA_OAEP_MGF1P, RSA_1_5] {
        for content in [AES128_CBC, AES256_CBC, AES128_GCM, AES256_GCM] {
            let shape = Shape {
                encrypt: Some((transport, content)),
                ..Shape::ADFS
            };
            let v = f
                .check(&f.spec(), shape)
                .unwrap_or_else(|e| panic!("{transport} + {content}: {e}"));
            assert_eq!(v.identity.id, "anna@chalmers.se");
        }
    }
}

#[test]
fn during_a_certificate_rollover_both_certificates_are_accepted_and_a_third_is_not() {
    let mut f = fixture();
    let old = f.idp.signing.clone();
    let new = KeyPair::generate("idp.chalmers.se 2027").unwrap();
    f.trust.signing_certs = vec![old.cert_der(), new.cert_der()];
    for key in [old, new] {
        f.idp.signing = key;
        accepted(f.check(&f.spec(), Shape::ADFS));
    }
    f.idp.signing = KeyPair::generate("someone else").unwrap();
    assert_eq!(
        f.check(&f.spec(), Shape::ADFS).unwrap_err(),
        SamlError::Unsigned
    );
}

#[test]
fn sha1_is_refused_unless_the_configuration_allows_it() {
    let mut f = fixture();
    let shape = Shape {
        sha1: true,
        ..Shape::ADFS
    };
    assert!(matches!(
        f.check(&f.spec(), shape),
        Err(SamlError::Algorithm(a)) if a.ends_with("rsa-sha1")
    ));
    f.sp.allow_sha1 = true;
    accepted(f.check(&f.spec(), shape));
}

#[test]
fn no_signature_or_a_signature_by_another_key_is_refused() {
    let mut f = fixture();
    let unsigned = Shape {
        sign_assertion: false,
        ..Shape::ADFS
    };
    assert_eq!(
        f.check(&f.spec(), unsigned).unwrap_err(),
        SamlError::Unsigned
    );
    // An encrypted assertion must carry its own signature too.
    let unsigned_encrypted = Shape {
        sign_assertion: false,
        ..Shape::ADFS_ENCRYPTED
    };
    assert_eq!(
        f.check(&f.spec(), unsigned_encrypted).unwrap_err(),
        SamlError::Unsigned
    );
    f.idp.signing = KeyPair::generate("idp.chalmers.se").unwrap();
    assert_eq!(
        f.check(&f.spec(), Shape::ADFS).unwrap_err(),
        SamlError::Unsigned
    );
    // A metadata without a signing certificate never means "no check".
    let f = fixture();
    let mut trust = f.trust.clone();
    trust.signing_certs.clear();
    let result = validate_response(
        &encode(&f.xml(&f.spec(), Shape::ADFS)),
        &f.sp,
        &f.sp_key,
        &trust,
        Some(REQUEST),
        Utc::now(),
    );
    assert_eq!(result.unwrap_err(), SamlError::Unsigned);
}

#[test]
fn an_assertion_changed_after_signing_is_refused() {
    let f = fixture();
    for shape in [
        Shape::ADFS,
        Shape {
            sign_response: true,
            sign_assertion: false,
            ..Shape::ADFS
        },
    ] {
        let xml = f.xml(&f.spec(), shape);
        let tampered = xml.replace("anna@chalmers.se", "admin@chalmers.se");
        assert_ne!(xml, tampered);
        assert_eq!(f.check_xml(&tampered).unwrap_err(), SamlError::Unsigned);
    }
}

#[test]
fn signature_wrapping_shapes_are_refused() {
    let f = fixture();
    let xml = f.xml(&f.spec(), Shape::ADFS);
    let cases = signature_wrapping(&xml, "anna@chalmers.se", "mallory@chalmers.se");
    assert_eq!(cases.len(), 5);
    for (what, attack) in cases {
        assert!(
            matches!(f.check_xml(&attack), Err(SamlError::AssertionCount(n)) if n >= 2),
            "{what}: {:?}",
            f.check_xml(&attack)
        );
    }
    // One assertion only, but not the signed one: the evil assertion carries the original's
    // signature (which points at an ID no longer in the document).
    let (head, signed, tail) = split_assertion(&xml);
    let bad = evil_copy(&signed, "_evil", "anna@chalmers.se", "mallory@chalmers.se");
    let alone = format!("{head}{bad}{tail}");
    assert!(matches!(
        f.check_xml(&alone).unwrap_err(),
        SamlError::SignatureForm(_)
    ));
}

#[test]
fn a_signed_response_wrapped_in_an_unsigned_one_is_refused() {
    let f = fixture();
    let signed_response = Shape {
        sign_response: true,
        sign_assertion: false,
        ..Shape::ADFS
    };
    let xml = f.xml(&f.spec(), signed_response);
    let (_, signed, _) = split_assertion(&xml);
    let inner = xml.replacen("<samlp:Response ", "<samlp:Response ID2=\"x\" ", 1);
    // The attacker's response: the original (signed) response hidden in Extensions, an evil
    // assertion where the SP looks.
    let attack = format!(
        "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_wrap\" Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{ACS}\" InResponseTo=\"{REQUEST}\"><saml:Issuer>{IDP}</saml:Issuer><samlp:Extensions>{inner}</samlp:Extensions><samlp:Status><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/></samlp:Status>{}</samlp:Response>",
        Utc::now().to_rfc3339(),
        evil_copy(&signed, "_evil", "anna@chalmers.se", "mallory@chalmers.se")
    );
    assert!(matches!(
        f.check_xml(&attack),
        Err(SamlError::AssertionCount(2))
    ));
}

#[test]
fn times_audience_recipient_destination_and_issuer_are_checked() {
    let f = fixture();
    let now = Utc::now();
    type Edit = fn(&mut AssertionSpec, chrono::DateTime<Utc>);
    type Expected = fn(&SamlError) -> bool;
    let cases: [(&str, Edit, Expected); 7] = [
        (
            "expired",
            |s, now| s.not_on_or_after = now - Duration::minutes(10),
            |e| matches!(e, SamlError::Expired(_)),
        ),
        (
            "not yet valid",
            |s, now| s.not_before = now + Duration::minutes(10),
            |e| matches!(e, SamlError::NotYetValid(_)),
        ),
        (
            "another audience",
            |s, _| s.audience = "https://other.example/sp".into(),
            |e| matches!(e, SamlError::Audience(a) if a == &["https://other.example/sp"]),
        ),
        (
            "another recipient",
            |s, _| s.recipient = "https://evil.example/acs".into(),
            |e| matches!(e, SamlError::Destination(d) if d == "https://evil.example/acs"),
        ),
        (
            "another destination",
            |s, _| s.destination = Some("https://evil.example/acs".into()),
            |e| matches!(e, SamlError::Destination(_)),
        ),
        (
            "another issuer",
            |s, _| s.issuer = "https://evil.example/idp".into(),
            |e| matches!(e, SamlError::Issuer { .. }),
        ),
        (
            "within the clock skew is still fine",
            |s, now| s.not_before = now + Duration::seconds(30),
            |_| false,
        ),
    ];
    for (what, edit, expected) in cases {
        let mut spec = f.spec();
        edit(&mut spec, now);
        let result = f.check(&spec, Shape::ADFS);
        if what.starts_with("within") {
            accepted(result);
        } else {
            let err = result.expect_err(what);
            assert!(expected(&err), "{what}: {err}");
        }
    }
}

#[test]
fn in_response_to_must_be_the_request_of_this_browser_and_unsolicited_is_opt_in() {
    let mut f = fixture();
    let mut spec = f.spec();
    spec.in_response_to = Some("_someone_elses_request".into());
    assert!(matches!(
        f.check(&spec, Shape::ADFS),
        Err(SamlError::InResponseTo { .. })
    ));
    spec.in_response_to = None;
    assert!(matches!(
        f.check(&spec, Shape::ADFS),
        Err(SamlError::InResponseTo { found: None, .. })
    ));
    // Unsolicited: no login was started here, and the response answers none.
    let unsolicited = |f: &Fixture| {
        validate_response(
            &encode(&f.xml(&spec, Shape::ADFS)),
            &f.sp,
            &f.sp_key,
            &f.trust,
            None,
            Utc::now(),
        )
    };
    assert_eq!(unsolicited(&f).unwrap_err(), SamlError::Unsolicited);
    f.sp.allow_unsolicited = true;
    accepted(unsolicited(&f));
}

#[test]
fn a_doctype_or_entity_expansion_is_refused_before_parsing() {
    let f = fixture();
    let xml = f.xml(&f.spec(), Shape::ADFS);
    let laughs = "<!DOCTYPE r [<!ENTITY a \"ha\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">]>";
    for attack in [
        format!("{laughs}{}", xml.replacen("anna@chalmers.se", "&b;", 1)),
        format!(
            "<?xml version=\"1.0\"?><!DOCTYPE samlp:Response SYSTEM \"http://evil.example/x.dtd\">{xml}"
        ),
    ] {
        assert_eq!(f.check_xml(&attack).unwrap_err(), SamlError::Doctype);
    }
}

#[test]
fn garbage_is_a_clear_error_not_a_panic() {
    let f = fixture();
    for (input, want) in [
        ("not base64!", "not base64"),
        ("PHgvPg==", "not a SAML 2.0 Response"),
        ("PHg+", "not well-formed"),
        ("PHg", "not base64"),
        ("PA==", "not well-formed"),
    ] {
        let err = validate_response(input, &f.sp, &f.sp_key, &f.trust, Some(REQUEST), Utc::now())
            .unwrap_err();
        assert!(err.to_string().contains(want), "{input}: {err}");
    }
}

#[test]
fn a_signed_response_covers_an_unsigned_encrypted_assertion_and_only_its_own() {
    // Shibboleth's default (and ADFS signing the message): the Response is signed, the assertion
    // inside is encrypted and unsigned.
    let f = fixture();
    let shape = Shape {
        sign_response: true,
        sign_assertion: false,
        ..Shape::ADFS_ENCRYPTED
    };
    let v = accepted(f.check(&f.spec(), shape));
    assert_eq!(v.identity.id, "anna@chalmers.se");
    // Anyone can encrypt for the SP (its certificate is public): an assertion for mallory,
    // encrypted and put in place of the signed one, breaks the Response's signature.
    let genuine = f.xml(&f.spec(), shape);
    let mut evil_spec = f.spec();
    evil_spec.user.subject_id = "mallory@chalmers.se".into();
    let evil = f.xml(&evil_spec, shape);
    let encrypted = |xml: &str| {
        let start = xml.find("<saml:EncryptedAssertion").unwrap();
        let end =
            xml.find("</saml:EncryptedAssertion>").unwrap() + "</saml:EncryptedAssertion>".len();
        xml[start..end].to_string()
    };
    let swapped = genuine.replace(&encrypted(&genuine), &encrypted(&evil));
    assert_ne!(swapped, genuine);
    assert_eq!(f.check_xml(&swapped).unwrap_err(), SamlError::Unsigned);
}

#[test]
fn every_decryption_failure_gives_the_same_answer() {
    let f = fixture();
    let xml = f.xml(&f.spec(), Shape::ADFS_ENCRYPTED);
    // The text of each CipherValue element: the wrapped key, then the data.
    let values: Vec<&str> = xml
        .match_indices("CipherValue>")
        .map(|(at, tag)| {
            let rest = &xml[at + tag.len()..];
            &rest[..rest.find('<').unwrap()]
        })
        .filter(|v| !v.is_empty())
        .collect();
    assert_eq!(values.len(), 2, "the key and the data: {values:?}");
    let (key, data) = (values[0], values[1]);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut data_bytes = b64.decode(data).unwrap();
    let last = data_bytes.len() - 1;
    data_bytes[last] ^= 0x55; // the padding byte of the last block, scrambled
    let other_key = openssl::rsa::Rsa::generate(2048).unwrap();
    let mut wrapped = vec![0u8; 256];
    let n = other_key
        .public_encrypt(&[7u8; 32], &mut wrapped, openssl::rsa::Padding::PKCS1_OAEP)
        .unwrap();
    wrapped.truncate(n);
    let cases = [
        ("bad padding", xml.replace(data, &b64.encode(&data_bytes))),
        (
            "a key for another SP",
            xml.replace(key, &b64.encode(&wrapped)),
        ),
        (
            "a short ciphertext",
            xml.replace(data, &b64.encode([1u8; 16])),
        ),
        ("not base64", xml.replace(data, "!!!")),
        ("an unknown cipher", xml.replace(AES256_CBC, "urn:x")),
    ];
    for (what, attack) in cases {
        let err = f.check_xml(&attack).unwrap_err();
        assert_eq!(err, SamlError::Decrypt, "{what}");
        assert_eq!(
            err.to_string(),
            "the response could not be decrypted",
            "{what}"
        );
    }
}

#[test]
fn a_signature_that_reaches_outside_the_document_is_refused_before_xmlsec() {
    let f = fixture();
    let xml = f.xml(&f.spec(), Shape::ADFS);
    // A path that does not exist: were it opened, xmlsec would fail with "unsigned", not refuse
    // the form.
    let attacks = reference_attacks(&xml, "/nonexistent/epsm-ops-fifo");
    assert_eq!(attacks.len(), 10);
    for (what, attack) in attacks {
        assert_ne!(attack, xml, "{what}: the attack changed nothing");
        let err = f.check_xml(&attack).unwrap_err();
        assert!(matches!(err, SamlError::SignatureForm(_)), "{what}: {err}");
    }
    // The same checks pass every shape the IdP sends.
    for shape in [
        Shape::ADFS,
        Shape::ADFS_ENCRYPTED,
        Shape {
            sign_response: true,
            ..Shape::ADFS
        },
        Shape {
            sign_response: true,
            sign_assertion: false,
            ..Shape::ADFS_ENCRYPTED
        },
    ] {
        accepted(f.check(&f.spec(), shape));
    }
}
