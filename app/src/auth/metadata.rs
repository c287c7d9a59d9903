//! The IdP's metadata: where it comes from (an https URL, or a file), how it is trusted (optionally a
//! signature by `auth.idp_metadata_cert`, as SWAMID signs its aggregate), which IdP of an aggregate
//! (`auth.idp_entity_id`), the last good copy kept in the data directory with its age, and whether it
//! is fresh enough to log in with (`auth.metadata_max_age_days`).

use base64::Engine;
use chrono::{DateTime, Utc};
use samael::crypto::{CertificateDer, CryptoProvider, ReduceMode, XmlSec};

use super::saml::{self, IdpTrust, parse_xml};
use crate::config::Config;

const MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
const REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
/// The most metadata read (SWAMID's whole aggregate is ~40 MB; one IdP's is a few KB).
const MAX_METADATA_BYTES: usize = 64 * 1024 * 1024;

/// The IdP as its metadata describes it.
#[derive(Debug, Clone)]
pub struct IdpInfo {
    pub trust: IdpTrust,
    pub sso_url: String,
    pub slo_url: Option<String>,
}

/// A copy of the metadata and when it was read from its source.
#[derive(Debug, Clone)]
pub struct MetadataCopy {
    pub info: IdpInfo,
    pub fetched_at: DateTime<Utc>,
}

/// What the console knows of its IdP now.
#[derive(Debug, Clone)]
pub enum IdpState {
    /// A copy (maybe an old one; `last_error` says why it was not renewed).
    Ready {
        copy: MetadataCopy,
        last_error: Option<String>,
    },
    /// No usable copy yet: why.
    Unavailable(String),
}

impl IdpState {
    /// The IdP to log in with, or why there is none: no copy, or one older than `max_age_days`.
    pub fn usable(&self, now: DateTime<Utc>, max_age_days: u64) -> Result<&IdpInfo, String> {
        match self {
            IdpState::Unavailable(reason) => Err(reason.clone()),
            IdpState::Ready { copy, last_error } => {
                let age = now - copy.fetched_at;
                if max_age_days > 0 && age > chrono::Duration::days(max_age_days as i64) {
                    return Err(format!(
                        "the IdP metadata was last read {} days ago, more than \
                         auth.metadata_max_age_days ({max_age_days}){}",
                        age.num_days(),
                        last_error
                            .as_deref()
                            .map(|e| format!("; reading it again failed: {e}"))
                            .unwrap_or_default()
                    ));
                }
                Ok(&copy.info)
            }
        }
    }

    /// What the Overview should say, if anything: login unavailable, or a copy past half its
    /// allowed age (so someone fixes the source before logins stop).
    pub fn warning(&self, now: DateTime<Utc>, max_age_days: u64) -> Option<String> {
        match self.usable(now, max_age_days) {
            Err(reason) => Some(format!("login unavailable: {reason}")),
            Ok(_) => match self {
                IdpState::Ready {
                    copy,
                    last_error: Some(e),
                } if max_age_days > 0
                    && now - copy.fetched_at
                        > chrono::Duration::hours(max_age_days as i64 * 12) =>
                {
                    Some(format!(
                        "the IdP metadata could not be read again for {} days ({e}); logins stop \
                         after {max_age_days} days",
                        (now - copy.fetched_at).num_days()
                    ))
                }
                _ => None,
            },
        }
    }
}

/// Reads the metadata from its source, checks and parses it and keeps it as the last good copy;
/// when the source fails, the last good copy (with its own age). Err when neither works.
pub async fn load(config: &Config) -> Result<MetadataCopy, String> {
    let cache = config.data_path(std::path::Path::new("saml/idp-metadata.xml"));
    match read_source(config).await {
        Ok((xml, info)) => {
            if let Some(dir) = cache.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Err(e) = std::fs::write(&cache, xml) {
                tracing::warn!("cannot keep the IdP metadata in {}: {e}", cache.display());
            }
            Ok(MetadataCopy {
                info,
                fetched_at: Utc::now(),
            })
        }
        Err(e) => {
            let kept = std::fs::read_to_string(&cache)
                .ok()
                .and_then(|xml| parse_for(config, &xml).ok())
                .zip(
                    std::fs::metadata(&cache)
                        .and_then(|m| m.modified())
                        .ok()
                        .map(DateTime::<Utc>::from),
                );
            match kept {
                Some((info, fetched_at)) => {
                    tracing::warn!("{e}; using the last good copy {}", cache.display());
                    Ok(MetadataCopy { info, fetched_at })
                }
                None => Err(e),
            }
        }
    }
}

/// The metadata from its source (URL or file), checked and parsed, with its text; the last good
/// copy is not looked at (`epsm-ops doctor` asks whether the source works).
pub async fn read_source(config: &Config) -> Result<(String, IdpInfo), String> {
    let source = config.auth.idp_metadata.trim();
    let fetched = if source.starts_with("https://") || source.starts_with("http://") {
        fetch(source).await
    } else {
        std::fs::read_to_string(source).map_err(|e| e.to_string())
    };
    fetched
        .and_then(|xml| parse_for(config, &xml).map(|info| (xml, info)))
        .map_err(|reason| format!("IdP metadata {source}: {reason}"))
}

fn parse_for(config: &Config, xml: &str) -> Result<IdpInfo, String> {
    let cert = match &config.auth.idp_metadata_cert {
        Some(path) => Some(read_cert(path)?),
        None => None,
    };
    parse(xml, config.auth.idp_entity_id.as_deref(), cert.as_deref())
}

/// A PEM or DER certificate file, as DER.
fn read_cert(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("auth.idp_metadata_cert {}: {e}", path.display()))?;
    openssl::x509::X509::from_pem(&bytes)
        .or_else(|_| openssl::x509::X509::from_der(&bytes))
        .and_then(|c| c.to_der())
        .map_err(|_| {
            format!(
                "auth.idp_metadata_cert {}: not a certificate",
                path.display()
            )
        })
}

async fn fetch(url: &str) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let reply = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !reply.status().is_success() {
        return Err(format!("HTTP {}", reply.status()));
    }
    if reply
        .content_length()
        .is_some_and(|n| n > MAX_METADATA_BYTES as u64)
    {
        return Err(format!("larger than {MAX_METADATA_BYTES} bytes"));
    }
    let body = reply.bytes().await.map_err(|e| e.to_string())?;
    if body.len() > MAX_METADATA_BYTES {
        return Err(format!("larger than {MAX_METADATA_BYTES} bytes"));
    }
    String::from_utf8(body.to_vec()).map_err(|_| "not UTF-8".into())
}

/// The IdP in `xml` (one EntityDescriptor, or an aggregate): its entity id, signing certificates (all
/// of them: rollover), SSO (HTTP-Redirect) and SLO locations. With `signing_cert`, only what a valid
/// signature by it covers is read. In an aggregate, `entity_id` picks the IdP (needed when it lists
/// more than one). A metadata without a signing certificate is refused.
pub fn parse(
    xml: &str,
    entity_id: Option<&str>,
    signing_cert: Option<&[u8]>,
) -> Result<IdpInfo, String> {
    let verified;
    let xml = match signing_cert {
        None => xml,
        Some(cert) => {
            let doc = parse_xml(xml).map_err(|e| e.to_string())?;
            saml::check_signature_form(&doc).map_err(|e| e.to_string())?;
            verified = XmlSec::reduce_xml_to_signed(
                xml,
                &[CertificateDer::from(cert.to_vec())],
                ReduceMode::ValidateAndMarkNoAncestors,
            )
            .map_err(|_| "is not signed by auth.idp_metadata_cert".to_string())?;
            &verified
        }
    };
    let doc = parse_xml(xml).map_err(|e| e.to_string())?;
    let idps: Vec<roxmltree::Node> = doc
        .descendants()
        .filter(|n| n.has_tag_name((MD, "EntityDescriptor")))
        .filter(|n| {
            n.children()
                .any(|c| c.has_tag_name((MD, "IDPSSODescriptor")))
        })
        .collect();
    let entity = match entity_id {
        Some(wanted) => idps
            .iter()
            .find(|n| n.attribute("entityID") == Some(wanted))
            .ok_or_else(|| format!("lists no IdP {wanted:?} (auth.idp_entity_id)"))?,
        None => match &idps[..] {
            [one] => one,
            [] => return Err("no EntityDescriptor with an IDPSSODescriptor".into()),
            many => {
                return Err(format!(
                    "lists {} IdPs: set auth.idp_entity_id to the one to trust",
                    many.len()
                ));
            }
        },
    };
    let idp = entity
        .children()
        .find(|n| n.has_tag_name((MD, "IDPSSODescriptor")))
        .ok_or("no IDPSSODescriptor")?;
    let signing_certs: Vec<Vec<u8>> = idp
        .children()
        .filter(|n| n.has_tag_name((MD, "KeyDescriptor")))
        .filter(|k| matches!(k.attribute("use"), None | Some("signing")))
        .flat_map(|k| {
            k.descendants()
                .filter(|n| n.has_tag_name((saml::NS_DSIG, "X509Certificate")))
        })
        .filter_map(|c| {
            let text: String = c.text()?.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD.decode(text).ok()
        })
        .filter(|der| openssl::x509::X509::from_der(der).is_ok())
        .collect();
    if signing_certs.is_empty() {
        return Err("has no signing certificate (refused: signatures could not be checked)".into());
    }
    let location = |service: &str| {
        idp.children()
            .filter(|n| n.has_tag_name((MD, service)))
            .find(|n| n.attribute("Binding") == Some(REDIRECT))
            .and_then(|n| n.attribute("Location"))
            .map(String::from)
    };
    Ok(IdpInfo {
        trust: IdpTrust {
            entity_id: entity.attribute("entityID").unwrap_or_default().to_string(),
            signing_certs,
        },
        sso_url: location("SingleSignOnService")
            .ok_or("no SingleSignOnService with the HTTP-Redirect binding")?,
        slo_url: location("SingleLogoutService"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::KeyPair;

    #[tokio::test]
    async fn metadata_from_a_file_is_kept_and_the_last_good_copy_serves_when_it_goes() {
        let data = tempfile::tempdir().unwrap();
        let file = data.path().join("idp.xml");
        let cert = KeyPair::generate("idp").unwrap().cert_base64();
        std::fs::write(
            &file,
            format!(
                r#"<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="idp"><IDPSSODescriptor><KeyDescriptor><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></KeyDescriptor><SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp/sso"/></IDPSSODescriptor></EntityDescriptor>"#
            ),
        )
        .unwrap();
        let defaults = Config::default();
        let config = Config {
            data_dir: data.path().join("data"),
            auth: crate::config::AuthConfig {
                idp_metadata: file.display().to_string(),
                ..defaults.auth.clone()
            },
            ..defaults
        };
        assert_eq!(load(&config).await.unwrap().info.sso_url, "https://idp/sso");
        std::fs::remove_file(&file).unwrap();
        let kept = load(&config).await.unwrap();
        assert_eq!(kept.info.trust.signing_certs.len(), 1, "the last good copy");
        std::fs::remove_dir_all(config.data_dir.join("saml")).unwrap();
        let err = load(&config).await.unwrap_err();
        assert!(err.to_string().contains("idp.xml"), "{err}");
    }

    #[test]
    fn idp_metadata_gives_every_signing_cert_and_refuses_none() {
        let a = KeyPair::generate("a").unwrap().cert_base64();
        let b = KeyPair::generate("b").unwrap().cert_base64();
        let md = |keys: &str| {
            format!(
                r#"<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="http://idp.chalmers.se/adfs/services/trust"><IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{keys}<SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.chalmers.se/adfs/ls/"/><SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://idp.chalmers.se/adfs/ls/post"/><SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.chalmers.se/adfs/ls/"/></IDPSSODescriptor></EntityDescriptor>"#
            )
        };
        let key = |usage: &str, cert: &str| {
            format!(
                r#"<KeyDescriptor use="{usage}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></KeyDescriptor>"#
            )
        };
        let info = parse(
            &md(&format!(
                "{}{}{}",
                key("signing", &a),
                key("signing", &b),
                key("encryption", &a)
            )),
            None,
            None,
        )
        .unwrap();
        assert_eq!(info.trust.signing_certs.len(), 2);
        assert_eq!(
            info.trust.entity_id,
            "http://idp.chalmers.se/adfs/services/trust"
        );
        assert_eq!(info.sso_url, "https://idp.chalmers.se/adfs/ls/");
        assert_eq!(
            info.slo_url.as_deref(),
            Some("https://idp.chalmers.se/adfs/ls/")
        );
        let err = parse(&md(&key("encryption", &a)), None, None).unwrap_err();
        assert!(err.to_string().contains("no signing certificate"), "{err}");
    }

    /// An aggregate of two IdPs (and an SP), signed the way SWAMID signs: an enveloped signature of
    /// the root EntitiesDescriptor by `signer`.
    fn aggregate(signer: &KeyPair, idp_cert: &str) -> String {
        let idp = |id: &str| {
            format!(
                r#"<EntityDescriptor entityID="{id}"><IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{idp_cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></KeyDescriptor><SingleSignOnService Binding="{REDIRECT}" Location="{id}/sso"/></IDPSSODescriptor></EntityDescriptor>"#
            )
        };
        let template = format!(
            r##"<ds:Signature><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#_swamid"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"##,
            signer.cert_base64()
        );
        let xml = format!(
            r#"<EntitiesDescriptor xmlns="{MD}" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" ID="_swamid" Name="http://md.swamid.se/md/swamid-idp.xml">{template}{}{}<EntityDescriptor entityID="https://sp.example.org"><SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/></EntityDescriptor></EntitiesDescriptor>"#,
            idp("https://idp.chalmers.se"),
            idp("https://idp.kth.se"),
        );
        XmlSec::sign_xml(&xml, &signer.key_der().unwrap()).unwrap()
    }

    #[test]
    fn an_aggregate_is_read_only_when_signed_by_the_configured_certificate_and_the_idp_is_named() {
        let swamid = KeyPair::generate("md-signer.swamid.se").unwrap();
        let idp_cert = KeyPair::generate("idp.chalmers.se").unwrap().cert_base64();
        let xml = aggregate(&swamid, &idp_cert);
        let cert = swamid.cert_der();
        let info = parse(&xml, Some("https://idp.chalmers.se"), Some(&cert)).unwrap();
        assert_eq!(info.sso_url, "https://idp.chalmers.se/sso");
        let err = parse(&xml, None, Some(&cert)).unwrap_err();
        assert!(
            err.contains("lists 2 IdPs: set auth.idp_entity_id"),
            "{err}"
        );
        let err = parse(&xml, Some("https://idp.lu.se"), Some(&cert)).unwrap_err();
        assert!(err.contains("lists no IdP"), "{err}");
        // Another signer, or a change after signing (a swapped IdP certificate), is refused.
        let other = KeyPair::generate("someone").unwrap().cert_der();
        let err = parse(&xml, Some("https://idp.chalmers.se"), Some(&other)).unwrap_err();
        assert!(
            err.contains("not signed by auth.idp_metadata_cert"),
            "{err}"
        );
        let evil = KeyPair::generate("evil").unwrap().cert_base64();
        let swapped = xml.replacen(&idp_cert, &evil, 1);
        assert_ne!(swapped, xml);
        let err = parse(&swapped, Some("https://idp.chalmers.se"), Some(&cert)).unwrap_err();
        assert!(
            err.contains("not signed by auth.idp_metadata_cert"),
            "{err}"
        );
        // Without a configured certificate the signature is not needed.
        assert!(parse(&swapped, Some("https://idp.chalmers.se"), None).is_ok());
    }

    #[test]
    fn an_old_copy_warns_at_half_its_age_and_stops_logins_at_its_age() {
        let info = IdpInfo {
            trust: IdpTrust {
                entity_id: "idp".into(),
                signing_certs: vec![vec![1]],
            },
            sso_url: "https://idp/sso".into(),
            slo_url: None,
        };
        let now = Utc::now();
        let state = |days: i64| IdpState::Ready {
            copy: MetadataCopy {
                info: info.clone(),
                fetched_at: now - chrono::Duration::days(days),
            },
            last_error: Some("HTTP 503".into()),
        };
        assert!(state(2).usable(now, 14).is_ok());
        assert_eq!(state(2).warning(now, 14), None);
        let warning = state(8).warning(now, 14).unwrap();
        assert!(
            warning.contains("could not be read again for 8 days (HTTP 503)"),
            "{warning}"
        );
        assert!(state(8).usable(now, 14).is_ok());
        let err = state(15).usable(now, 14).unwrap_err();
        assert!(
            err.contains("last read 15 days ago") && err.contains("HTTP 503"),
            "{err}"
        );
        assert!(
            state(15)
                .warning(now, 14)
                .unwrap()
                .starts_with("login unavailable")
        );
        assert!(state(400).usable(now, 0).is_ok(), "0: no limit");
        let none = IdpState::Unavailable("IdP metadata https://x: timeout".into());
        assert_eq!(
            none.usable(now, 14).unwrap_err(),
            "IdP metadata https://x: timeout"
        );
    }
}
