//! RSA keys and self-signed X.509 certificates for SAML: the service provider's (signing requests,
//! decrypting assertions) and the development IdP's. Loaded from PEM files, generated when absent.

use std::path::Path;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("cannot make a key: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// A private key with the certificate that carries its public half.
#[derive(Clone)]
pub struct KeyPair {
    pub key: PKey<Private>,
    pub cert: X509,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself, not even in a debug print.
        f.debug_struct("KeyPair")
            .field("subject", &self.cert.subject_name())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A new RSA 2048-bit key and a self-signed certificate for `common_name`, valid ten years (SAML
    /// metadata certificates are trust anchors by exchange, not by a CA).
    pub fn generate(common_name: &str) -> Result<KeyPair, KeyError> {
        let key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_text("CN", common_name)?;
        let name = name.build();
        let mut serial = BigNum::new()?;
        serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
        let mut builder = X509::builder()?;
        builder.set_version(2)?;
        let serial = serial.to_asn1_integer()?;
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(&name)?;
        builder.set_pubkey(&key)?;
        let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(3650)?);
        builder.set_not_before(&from)?;
        builder.set_not_after(&until)?;
        builder.sign(&key, MessageDigest::sha256())?;
        Ok(KeyPair {
            key,
            cert: builder.build(),
        })
    }

    /// Reads `key` and `cert` (PEM); when both are absent, generates a pair and writes them (the key
    /// readable by its owner only). Returns the pair and whether it was generated.
    pub fn load_or_generate(
        key_path: &Path,
        cert_path: &Path,
        common_name: &str,
    ) -> Result<(KeyPair, bool), KeyError> {
        if !key_path.exists() && !cert_path.exists() {
            let pair = KeyPair::generate(common_name)?;
            if let Some(dir) = key_path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| file_error(key_path, &e))?;
            }
            write_private(key_path, &pair.key.private_key_to_pem_pkcs8()?)?;
            std::fs::write(cert_path, pair.cert.to_pem()?)
                .map_err(|e| file_error(cert_path, &e))?;
            return Ok((pair, true));
        }
        let key_pem = std::fs::read(key_path).map_err(|e| file_error(key_path, &e))?;
        let cert_pem = std::fs::read(cert_path).map_err(|e| file_error(cert_path, &e))?;
        let key = PKey::private_key_from_pem(&key_pem).map_err(|_| KeyError::File {
            path: key_path.display().to_string(),
            reason: "not a PEM private key".into(),
        })?;
        let cert = X509::from_pem(&cert_pem).map_err(|_| KeyError::File {
            path: cert_path.display().to_string(),
            reason: "not a PEM certificate".into(),
        })?;
        if !cert.public_key()?.public_eq(&key) {
            return Err(KeyError::File {
                path: cert_path.display().to_string(),
                reason: format!("does not belong to the key in {}", key_path.display()),
            });
        }
        Ok((KeyPair { key, cert }, false))
    }

    /// The certificate as it stands in metadata and KeyInfo: base64 DER, no PEM armour.
    pub fn cert_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.cert_der())
    }

    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.to_der().unwrap_or_default()
    }

    /// The private key as DER, as xmlsec loads it for signing.
    pub fn key_der(&self) -> Result<Vec<u8>, KeyError> {
        Ok(self.key.private_key_to_der()?)
    }
}

fn write_private(path: &Path, pem: &[u8]) -> Result<(), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| file_error(path, &e))?;
    file.write_all(pem).map_err(|e| file_error(path, &e))
}

fn file_error(path: &Path, e: &std::io::Error) -> KeyError {
    KeyError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_is_written_once_read_back_and_a_foreign_cert_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("sp.key"), dir.path().join("sp.crt"));
        let (made, generated) = KeyPair::load_or_generate(&key, &cert, "sp").unwrap();
        assert!(generated);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (read, generated) = KeyPair::load_or_generate(&key, &cert, "sp").unwrap();
        assert!(!generated);
        assert_eq!(read.cert_der(), made.cert_der());
        std::fs::write(
            &cert,
            KeyPair::generate("other").unwrap().cert.to_pem().unwrap(),
        )
        .unwrap();
        let err = KeyPair::load_or_generate(&key, &cert, "sp").unwrap_err();
        assert!(
            err.to_string().contains("does not belong to the key"),
            "{err}"
        );
    }
}
