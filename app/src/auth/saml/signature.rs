//! The signatures' shape, checked before xmlsec sees the document (one Reference to its own element,
//! exclusive c14n and enveloped only, X.509 key info, nothing that reaches outside), the algorithms
//! allowed, and xmlsec's verification itself.

use super::*;

/// Every SignatureMethod and DigestMethod in the document: RSA with SHA-256 or stronger, SHA-1 only
/// when allowed. (EncryptionMethod digests are key transport, not signatures: not looked at here.)
pub(super) fn check_algorithms(
    doc: &roxmltree::Document,
    allow_sha1: bool,
) -> Result<(), SamlError> {
    for node in doc.descendants() {
        let signature_part = is(node, NS_DSIG, "SignatureMethod")
            || (is(node, NS_DSIG, "DigestMethod")
                && node.parent().is_some_and(|p| is(p, NS_DSIG, "Reference")));
        if !signature_part {
            continue;
        }
        let algorithm = node.attribute("Algorithm").unwrap_or("");
        let strong = STRONG
            .iter()
            .any(|a| a.signature_uri() == algorithm || a.digest_uri() == algorithm);
        let sha1 = algorithm == RSA_SHA1 || algorithm == SHA1;
        if !(strong || (sha1 && allow_sha1)) {
            return Err(SamlError::Algorithm(algorithm.to_string()));
        }
    }
    Ok(())
}

/// What xmlsec may see. xmlsec dereferences every `ds:Reference` and runs its transforms before it
/// checks the SignatureValue, and by default it allows any URI (file, http, ftp) and any transform
/// (XSLT, XPath): an anonymous post could make the console open a FIFO, read `/dev/zero` or call a
/// URL of the poster's choosing. So, before xmlsec: every `ds:Signature` is enveloped in the element
/// it signs and has exactly one Reference whose URI is `#<that element's ID>` (or empty when it
/// signs the whole document), exclusive c14n and enveloped-signature only, KeyInfo of X.509 data
/// only; no `ds:Object`, `ds:Manifest` or `RetrievalMethod`; and no ID used twice.
pub fn check_signature_form(doc: &roxmltree::Document) -> Result<(), SamlError> {
    use SamlError::SignatureForm as Form;
    let mut ids = std::collections::HashSet::new();
    for node in doc.descendants().filter(|n| n.is_element()) {
        if let Some(id) = node.attribute("ID")
            && !ids.insert(id)
        {
            return Err(Form("an ID is used twice"));
        }
        if is(node, NS_DSIG, "Object") || is(node, NS_DSIG, "Manifest") {
            return Err(Form("ds:Object and ds:Manifest are refused"));
        }
    }
    for signature in doc.descendants().filter(|n| is(*n, NS_DSIG, "Signature")) {
        let signed = signature
            .parent_element()
            .ok_or(Form("a signature signs no element"))?;
        let elements = |n: roxmltree::Node<'_, '_>| -> Vec<(String, Option<String>)> {
            n.children()
                .filter(|c| c.is_element())
                .map(|c| {
                    (
                        c.tag_name().name().to_string(),
                        c.tag_name().namespace().map(String::from),
                    )
                })
                .collect()
        };
        let dsig = |names: &[&str], n: roxmltree::Node<'_, '_>| {
            elements(n)
                .iter()
                .all(|(name, ns)| ns.as_deref() == Some(NS_DSIG) && names.contains(&name.as_str()))
        };
        if !dsig(&["SignedInfo", "SignatureValue", "KeyInfo"], signature) {
            return Err(Form(
                "a signature may hold only SignedInfo, SignatureValue and KeyInfo",
            ));
        }
        let info = child(signature, NS_DSIG, "SignedInfo").ok_or(Form("no SignedInfo"))?;
        if !dsig(
            &["CanonicalizationMethod", "SignatureMethod", "Reference"],
            info,
        ) {
            return Err(Form("SignedInfo holds an element it may not"));
        }
        let c14n = child(info, NS_DSIG, "CanonicalizationMethod")
            .and_then(|c| c.attribute("Algorithm"))
            .ok_or(Form("no CanonicalizationMethod"))?;
        if ![EXC_C14N, EXC_C14N_COMMENTS].contains(&c14n) {
            return Err(Form("only exclusive canonicalization is allowed"));
        }
        let references: Vec<_> = info
            .children()
            .filter(|c| is(*c, NS_DSIG, "Reference"))
            .collect();
        let [reference] = references[..] else {
            return Err(Form("a signature must have exactly one Reference"));
        };
        let uri = reference
            .attribute("URI")
            .ok_or(Form("a Reference has no URI"))?;
        let own = match uri.strip_prefix('#') {
            Some(id) => signed.attribute("ID") == Some(id),
            None => uri.is_empty() && signed == doc.root_element(),
        };
        if !own {
            return Err(Form(
                "a Reference must point to the element its signature is in",
            ));
        }
        if !dsig(&["Transforms", "DigestMethod", "DigestValue"], reference) {
            return Err(Form("a Reference holds an element it may not"));
        }
        for transform in child(reference, NS_DSIG, "Transforms")
            .into_iter()
            .flat_map(|t| t.children().filter(|c| c.is_element()))
        {
            if !is(transform, NS_DSIG, "Transform") {
                return Err(Form("Transforms holds an element it may not"));
            }
            let algorithm = transform.attribute("Algorithm").unwrap_or("");
            let exclusive = [EXC_C14N, EXC_C14N_COMMENTS].contains(&algorithm);
            if !(exclusive || algorithm == ENVELOPED) {
                return Err(Form(
                    "only the enveloped-signature and exclusive c14n transforms are allowed",
                ));
            }
            // Exclusive c14n may name its inclusive namespace prefixes; nothing else is inside.
            let inner_ok = transform.children().filter(|c| c.is_element()).all(|c| {
                exclusive
                    && c.tag_name().name() == "InclusiveNamespaces"
                    && c.tag_name().namespace() == Some(EXC_C14N)
                    && !c.children().any(|g| g.is_element())
            });
            if !inner_ok {
                return Err(Form("a transform holds an element it may not"));
            }
        }
        if let Some(key_info) = child(signature, NS_DSIG, "KeyInfo")
            && (!dsig(&["X509Data"], key_info)
                || key_info.descendants().any(|d| {
                    d != key_info && d.is_element() && d.tag_name().namespace() != Some(NS_DSIG)
                }))
        {
            return Err(Form("KeyInfo may hold only X.509 data"));
        }
    }
    Ok(())
}

/// xmlsec verifies every signature in `xml` against the trusted certificates (any of them: rollover)
/// and returns a document of only the signed content.
pub(super) fn reduce(
    xml: &str,
    certs: &[CertificateDer],
    allowed: Option<&[AllowedSignatureAlgorithm]>,
) -> Result<String, SamlError> {
    XmlSec::reduce_xml_to_signed_with_allowed_algorithms(
        xml,
        certs,
        ReduceMode::ValidateAndMarkNoAncestors,
        allowed,
    )
    .map_err(|_| SamlError::Unsigned)
}
