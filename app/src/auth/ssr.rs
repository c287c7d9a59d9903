//! The SAML service provider at work: SP metadata, the AuthnRequest redirect, the ACS (checks in
//! `saml.rs`, replay cache in the store, the login itself in `gate.rs`) and logout. The IdP is Chalmers' (metadata from URL or file, refreshed,
//! the last good copy kept) or, for development, the console's own (`idp.rs`).

use std::sync::{Arc, RwLock};

use base64::Engine;
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use super::AuthError;
use super::User;
use super::gate::{Gate, session_error};
use super::idp::{IdentityProvider, random_id};
use super::keys::{KeyError, KeyPair};
use super::metadata::{IdpInfo, IdpState, MetadataCopy};
use super::saml::{self, IdpTrust, SpSettings, parse_xml, xml_escape};
use crate::audit::{AuditEvent, AuditOutcome};
use crate::config::Config;
use crate::store::{Store, now_text};

const REQUEST_KEY: &str = "saml_request";

/// The AuthnRequest this browser started: its id and the local page to return to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingLogin {
    id: String,
    return_to: String,
}

/// The service provider: its settings and keys, the trusted IdP, and the development IdP when on.
pub struct ServiceProvider {
    pub settings: SpSettings,
    pub keys: KeyPair,
    /// The IdP's metadata as last read (or why there is none); renewed by `refresh_metadata`.
    idp: RwLock<IdpState>,
    max_age_days: u64,
    pub dev_idp: Option<IdentityProvider>,
    sign_requests: bool,
    /// Responses checked at once (xmlsec and RSA are CPU work, run off the async runtime); more wait
    /// up to `VALIDATION_WAIT`, then get "busy".
    validations: tokio::sync::Semaphore,
    /// Who a login becomes (role, session) and who a logout ends.
    gate: Arc<Gate>,
    /// The replay cache and the audit log of logins.
    store: Store,
}

/// Refusals of one client within this long are one audit entry with a count.
const FOLD_WINDOW: Duration = Duration::minutes(10);

/// How many responses are checked at once, and how long one waits for its turn.
const VALIDATIONS: usize = 2;
const VALIDATION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl std::fmt::Debug for ServiceProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceProvider")
            .field("entity_id", &self.settings.entity_id)
            .finish_non_exhaustive()
    }
}

impl ServiceProvider {
    /// Loads (or generates, saying where) the SP keys and the IdP: the development IdP's key when it
    /// is on, else the metadata.
    pub async fn start(
        config: &Config,
        gate: Arc<Gate>,
        store: Store,
    ) -> Result<Arc<ServiceProvider>, AuthError> {
        let auth = &config.auth;
        let base = config.public_url.as_str().trim_end_matches('/').to_string();
        let (keys, generated) = KeyPair::load_or_generate(
            &config.data_path(&auth.sp_key),
            &config.data_path(&auth.sp_cert),
            config.public_url.host_str().unwrap_or("epsm-ops"),
        )?;
        if generated {
            tracing::warn!(
                key = %config.data_path(&auth.sp_key).display(),
                cert = %config.data_path(&auth.sp_cert).display(),
                "generated the SAML SP key and certificate (register {base}/saml/metadata with the IdP)"
            );
        }
        let (idp, dev_idp) = if auth.dev_idp {
            let (signing, _) = KeyPair::load_or_generate(
                &config.data_path(std::path::Path::new("saml/dev-idp.key")),
                &config.data_path(std::path::Path::new("saml/dev-idp.crt")),
                "EPSM Ops development IdP",
            )?;
            let entity_id = format!("{base}/dev-idp");
            let info = IdpInfo {
                trust: IdpTrust {
                    entity_id: entity_id.clone(),
                    signing_certs: vec![signing.cert_der()],
                },
                sso_url: format!("{base}/dev-idp/sso"),
                slo_url: None,
            };
            let copy = MetadataCopy {
                info,
                fetched_at: Utc::now(),
            };
            let state = IdpState::Ready {
                copy,
                last_error: None,
            };
            (state, Some(IdentityProvider { entity_id, signing }))
        } else {
            // The console starts without its IdP (it serves /saml/metadata and /healthz, and says
            // why login is unavailable) and keeps trying.
            let state = match super::metadata::load(config).await {
                Ok(copy) => IdpState::Ready {
                    copy,
                    last_error: None,
                },
                Err(e) => {
                    tracing::error!("{e}; login is unavailable until it can be read (retrying)");
                    IdpState::Unavailable(e)
                }
            };
            (state, None)
        };
        Ok(Arc::new(ServiceProvider {
            settings: SpSettings {
                entity_id: format!("{base}/saml/metadata"),
                acs_url: format!("{base}/saml/acs"),
                allow_sha1: auth.allow_sha1,
                allow_rsa15: auth.allow_rsa15,
                clock_skew: Duration::seconds(auth.clock_skew_secs as i64),
                allow_unsolicited: auth.allow_unsolicited,
            },
            keys,
            idp: RwLock::new(idp),
            max_age_days: auth.metadata_max_age_days,
            dev_idp,
            sign_requests: auth.sign_requests,
            validations: tokio::sync::Semaphore::new(VALIDATIONS),
            gate,
            store,
        }))
    }

    /// The IdP to log in with, or why login is unavailable now.
    pub fn idp(&self) -> Result<IdpInfo, AuthError> {
        self.idp
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .usable(Utc::now(), self.max_age_days)
            .cloned()
            .map_err(AuthError::Unavailable)
    }

    /// The IdP's single-logout URL, if its usable metadata has one (read for every page's CSP:
    /// without copying the rest).
    pub fn slo_url(&self) -> Option<String> {
        let state = self.idp.read().unwrap_or_else(|e| e.into_inner());
        state
            .usable(Utc::now(), self.max_age_days)
            .ok()
            .and_then(|idp| idp.slo_url.clone())
    }

    /// The certificates the IdP signs with, as its usable metadata names them (none when there is
    /// none).
    pub fn idp_signing_certs(&self) -> Vec<Vec<u8>> {
        let state = self.idp.read().unwrap_or_else(|e| e.into_inner());
        state
            .usable(Utc::now(), self.max_age_days)
            .map(|idp| idp.trust.signing_certs.clone())
            .unwrap_or_default()
    }

    /// What the Overview should warn about the IdP's metadata, if anything.
    pub fn idp_warning(&self) -> Option<String> {
        self.idp
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .warning(Utc::now(), self.max_age_days)
    }

    /// Re-reads the metadata every `metadata_refresh_hours`, or every `metadata_retry_secs` while
    /// there is none; a failed refresh keeps the last good copy (and says so in the log).
    pub async fn refresh_metadata(self: Arc<Self>, config: Arc<Config>) {
        if self.dev_idp.is_some() {
            return;
        }
        let refresh =
            std::time::Duration::from_secs(config.auth.metadata_refresh_hours.max(1) * 3600);
        let retry = std::time::Duration::from_secs(config.auth.metadata_retry_secs.max(1));
        loop {
            let ready = matches!(
                &*self.idp.read().unwrap_or_else(|e| e.into_inner()),
                IdpState::Ready {
                    last_error: None,
                    ..
                }
            );
            tokio::time::sleep(if ready { refresh } else { retry }).await;
            let loaded = super::metadata::load(&config).await;
            let mut state = self.idp.write().unwrap_or_else(|e| e.into_inner());
            *state = match (loaded, &*state) {
                (Ok(copy), _) => IdpState::Ready {
                    copy,
                    last_error: None,
                },
                (Err(e), IdpState::Ready { copy, .. }) => {
                    tracing::error!("IdP metadata refresh failed, keeping the last good copy: {e}");
                    IdpState::Ready {
                        copy: copy.clone(),
                        last_error: Some(e),
                    }
                }
                (Err(e), IdpState::Unavailable(_)) => {
                    tracing::error!("{e}; login is still unavailable (retrying)");
                    IdpState::Unavailable(e)
                }
            };
        }
    }

    /// The SP metadata to register with the IdP (Chalmers IT / SWAMID).
    pub fn metadata_xml(&self, config: &Config) -> String {
        let auth = &config.auth;
        let cert = self.keys.cert_base64();
        let key = |usage: &str| {
            format!(
                r#"<md:KeyDescriptor use="{usage}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>{methods}</md:KeyDescriptor>"#,
                methods = if usage == "encryption" {
                    format!(
                        r#"<md:EncryptionMethod Algorithm="{}"/><md:EncryptionMethod Algorithm="{}"/><md:EncryptionMethod Algorithm="{}"/>"#,
                        saml::AES256_GCM,
                        saml::AES256_CBC,
                        saml::RSA_OAEP_MGF1P
                    )
                } else {
                    String::new()
                }
            )
        };
        let requested = [
            ("urn:oasis:names:tc:SAML:attribute:subject-id", "subject-id", true),
            ("urn:oid:0.9.2342.19200300.100.1.3", "mail", true),
            ("urn:oid:2.16.840.1.113730.3.1.241", "displayName", true),
            ("urn:oid:2.5.4.42", "givenName", false),
            ("urn:oid:2.5.4.4", "sn", false),
            ("urn:oid:1.3.6.1.4.1.5923.1.1.1.9", "eduPersonScopedAffiliation", true),
        ]
        .iter()
        .map(|(name, friendly, required)| {
            format!(
                r#"<md:RequestedAttribute FriendlyName="{friendly}" Name="{name}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri" isRequired="{required}"/>"#
            )
        })
        .collect::<String>();
        let contact = |kind: &str, mail: &str| {
            format!(
                r#"<md:ContactPerson contactType="{kind}"><md:GivenName>EPSM Ops</md:GivenName><md:EmailAddress>mailto:{}</md:EmailAddress></md:ContactPerson>"#,
                xml_escape(mail)
            )
        };
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:mdui="urn:oasis:names:tc:SAML:metadata:ui" entityID="{entity}"><md:SPSSODescriptor AuthnRequestsSigned="{signed}" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:Extensions><mdui:UIInfo><mdui:DisplayName xml:lang="en">EPSM Ops</mdui:DisplayName><mdui:DisplayName xml:lang="sv">EPSM Ops</mdui:DisplayName><mdui:Description xml:lang="en">Deploy console of EPSM, the Energy Performance Simulation Manager at Chalmers: service health, deploys, environment audit and database backups.</mdui:Description><mdui:Description xml:lang="sv">Driftkonsol för EPSM (Energy Performance Simulation Manager) vid Chalmers.</mdui:Description></mdui:UIInfo></md:Extensions>{signing}{encryption}<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:transient</md:NameIDFormat><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{acs}" index="0" isDefault="true"/><md:AttributeConsumingService index="0"><md:ServiceName xml:lang="en">EPSM Ops</md:ServiceName>{requested}</md:AttributeConsumingService></md:SPSSODescriptor><md:Organization><md:OrganizationName xml:lang="en">{org}</md:OrganizationName><md:OrganizationDisplayName xml:lang="en">{org}</md:OrganizationDisplayName><md:OrganizationURL xml:lang="en">{org_url}</md:OrganizationURL></md:Organization>{technical}{support}</md:EntityDescriptor>
"#,
            entity = xml_escape(&self.settings.entity_id),
            signed = self.sign_requests,
            signing = key("signing"),
            encryption = key("encryption"),
            acs = xml_escape(&self.settings.acs_url),
            org = xml_escape(&auth.organization_name),
            org_url = xml_escape(&auth.organization_url),
            technical = contact("technical", &auth.technical_contact),
            support = contact("support", &auth.support_contact),
        )
    }

    /// Starts a login: a new request id (160 random bits) and the page to return to kept in the
    /// session; returns the IdP URL to redirect to (HTTP-Redirect binding, signed when configured).
    pub async fn login_url(&self, session: &Session, return_to: &str) -> Result<String, AuthError> {
        let id = random_id();
        let idp = self.idp()?;
        let request = format!(
            r#"<samlp:AuthnRequest xmlns:samlp="{}" xmlns:saml="{}" ID="{id}" Version="2.0" IssueInstant="{}" Destination="{}" AssertionConsumerServiceURL="{}" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"><saml:Issuer>{}</saml:Issuer><samlp:NameIDPolicy AllowCreate="true" Format="urn:oasis:names:tc:SAML:2.0:nameid-format:transient"/></samlp:AuthnRequest>"#,
            saml::NS_PROTOCOL,
            saml::NS_ASSERTION,
            now_text(),
            xml_escape(&idp.sso_url),
            xml_escape(&self.settings.acs_url),
            xml_escape(&self.settings.entity_id),
        );
        session
            .insert(
                REQUEST_KEY,
                PendingLogin {
                    id,
                    return_to: local_path(return_to),
                },
            )
            .await
            .map_err(session_error)?;
        self.redirect_url(&idp.sso_url, &request)
    }

    /// The IdP's single-logout URL with a LogoutRequest (HTTP-Redirect, signed when configured).
    fn logout_url(
        &self,
        slo_url: &str,
        name_id: &str,
        session_index: Option<&str>,
    ) -> Result<String, AuthError> {
        let request = format!(
            r#"<samlp:LogoutRequest xmlns:samlp="{}" xmlns:saml="{}" ID="{}" Version="2.0" IssueInstant="{}" Destination="{}"><saml:Issuer>{}</saml:Issuer><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:transient">{}</saml:NameID>{}</samlp:LogoutRequest>"#,
            saml::NS_PROTOCOL,
            saml::NS_ASSERTION,
            random_id(),
            now_text(),
            xml_escape(slo_url),
            xml_escape(&self.settings.entity_id),
            xml_escape(name_id),
            session_index
                .map(|i| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", xml_escape(i)))
                .unwrap_or_default(),
        );
        self.redirect_url(slo_url, &request)
    }

    /// `url` with `xml` as the HTTP-Redirect binding carries it (deflated, base64, signed when
    /// configured).
    fn redirect_url(&self, url: &str, xml: &str) -> Result<String, AuthError> {
        let mut query = format!("SAMLRequest={}", url_encode(&deflate_base64(xml)));
        if self.sign_requests {
            query.push_str("&SigAlg=");
            query.push_str(&url_encode(
                "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            ));
            let signature = sign_sha256(&self.keys, query.as_bytes())?;
            query.push_str("&Signature=");
            query.push_str(&url_encode(&signature));
        }
        let separator = if url.contains('?') { '&' } else { '?' };
        Ok(format!("{url}{separator}{query}"))
    }

    /// The ACS: checks the posted response against the request this session started, refuses a
    /// replay, finds the role, cycles the session id and logs the person in. Returns the user and
    /// the page to go back to. Every outcome is in the audit log.
    /// A refusal is recorded as `anonymous (<client address>)`, folded with that client's other
    /// refusals of the last `FOLD_WINDOW`.
    pub async fn accept(
        &self,
        session: &Session,
        saml_response: &str,
        client: &str,
    ) -> Result<(User, String), AuthError> {
        // One use: a second post of the same response finds no pending request.
        let pending: Option<PendingLogin> =
            session.remove(REQUEST_KEY).await.map_err(session_error)?;
        let result = self
            .accept_checked(session, saml_response, pending.as_ref())
            .await;
        let event = |actor, outcome, detail| AuditEvent {
            actor,
            action: "auth.login".into(),
            target: self.idp().map(|i| i.trust.entity_id).unwrap_or_default(),
            outcome,
            detail,
        };
        match &result {
            Ok((user, _)) => {
                let detail = format!("role {}", user.role.as_str());
                self.store
                    .record(event(user.actor().name, AuditOutcome::Ok, detail))
                    .await?;
            }
            Err(e) => {
                let actor = format!("anonymous ({client})");
                self.store
                    .record_folded(
                        event(actor, AuditOutcome::Refused, e.to_string()),
                        e.kind(),
                        FOLD_WINDOW,
                    )
                    .await?;
            }
        }
        result
    }

    async fn accept_checked(
        &self,
        session: &Session,
        saml_response: &str,
        pending: Option<&PendingLogin>,
    ) -> Result<(User, String), AuthError> {
        let verified = self
            .validate(saml_response, pending.map(|p| p.id.clone()))
            .await?;
        if !self
            .store
            .first_use_of_assertion(&verified.assertion_id, verified.valid_until)
            .await?
        {
            return Err(AuthError::Replayed);
        }
        let identity = verified.identity;
        let (name_id, session_index) = (identity.name_id.clone(), identity.session_index.clone());
        let user = self
            .gate
            .sign_in(session, identity, name_id, session_index)
            .await?;
        Ok((
            user,
            pending.map_or_else(|| "/".to_string(), |p| p.return_to.clone()),
        ))
    }

    /// Ends the session (audited). Returns where to send the browser: the IdP's single logout (a
    /// LogoutRequest naming this login's NameID and SessionIndex) when its metadata has one.
    pub async fn logout(&self, session: &Session) -> Result<String, AuthError> {
        let who = self.gate.sign_out(session).await?;
        match (who, self.slo_url()) {
            (Some(who), Some(slo)) => {
                self.logout_url(&slo, &who.name_id, who.session_index.as_deref())
            }
            _ => Ok("/logged-out".to_string()),
        }
    }
}

impl ServiceProvider {
    /// `saml::validate_response` on a blocking thread, at most `VALIDATIONS` at once.
    async fn validate(
        &self,
        saml_response: &str,
        request_id: Option<String>,
    ) -> Result<saml::Verified, AuthError> {
        let _turn = tokio::time::timeout(VALIDATION_WAIT, self.validations.acquire())
            .await
            .map_err(|_| AuthError::Busy)?
            .map_err(|_| AuthError::Busy)?;
        let (response, settings, keys, trust) = (
            saml_response.to_string(),
            self.settings.clone(),
            self.keys.clone(),
            self.idp()?.trust,
        );
        let checked = tokio::task::spawn_blocking(move || {
            saml::validate_response(
                &response,
                &settings,
                &keys,
                &trust,
                request_id.as_deref(),
                Utc::now(),
            )
        })
        .await
        .map_err(|_| AuthError::Busy)?;
        Ok(checked?)
    }
}

/// The longest page address kept to return to after login (an anonymous visitor chooses it, and it
/// is stored in a session row).
pub const MAX_RETURN_TO: usize = 1024;

/// A path on this console to return to after login; anything else (another host, `//host`,
/// backslashes, longer than `MAX_RETURN_TO`) becomes `/`.
pub fn local_path(return_to: &str) -> String {
    let ok = return_to.len() <= MAX_RETURN_TO
        && return_to.starts_with('/')
        && !return_to.starts_with("//")
        && !return_to.contains('\\')
        && !return_to.chars().any(char::is_control);
    if ok {
        return_to.to_string()
    } else {
        "/".to_string()
    }
}

/// The id and ACS URL of an AuthnRequest (for the development IdP).
pub fn read_authn_request(xml: &str) -> Option<(String, String)> {
    let doc = parse_xml(xml).ok()?;
    let root = doc.root_element();
    if !root.has_tag_name((saml::NS_PROTOCOL, "AuthnRequest")) {
        return None;
    }
    Some((
        root.attribute("ID")?.to_string(),
        root.attribute("AssertionConsumerServiceURL")?.to_string(),
    ))
}

fn deflate_base64(xml: &str) -> String {
    use std::io::Write;
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = encoder.write_all(xml.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(encoder.finish().unwrap_or_default())
}

/// The AuthnRequest XML of an HTTP-Redirect `SAMLRequest` value (for the development IdP).
pub fn inflate_request(saml_request: &str) -> Option<String> {
    use std::io::Read;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(saml_request)
        .ok()?;
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&bytes[..])
        .take(64 * 1024)
        .read_to_string(&mut xml)
        .ok()?;
    Some(xml)
}

fn sign_sha256(keys: &KeyPair, data: &[u8]) -> Result<String, AuthError> {
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &keys.key)
        .map_err(KeyError::from)?;
    signer.update(data).map_err(KeyError::from)?;
    let signature = signer.sign_to_vec().map_err(KeyError::from)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(signature))
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_returned_to() {
        for (given, want) in [
            ("/deploys/3?x=1", "/deploys/3?x=1"),
            ("https://evil.example/", "/"),
            ("//evil.example/", "/"),
            ("/\\evil.example", "/"),
            ("deploys", "/"),
            ("/a\nb", "/"),
        ] {
            assert_eq!(local_path(given), want, "{given}");
        }
    }
}
