//! Encrypted assertions: the content key unwrapped with the SP's key (RSA-OAEP; RSA 1.5 only when
//! allowed), the content decrypted (AES-CBC or AES-GCM, 128 or 256 bits), one error for every failure.

use super::*;

/// The plaintext `<Assertion>` of an `<EncryptedAssertion>`. The EncryptedKey may sit in the
/// EncryptedData's KeyInfo (in the dsig or, as ADFS writes it, the default namespace) or beside it.
pub(super) fn decrypt_assertion(
    encrypted: roxmltree::Node,
    sp_key: &KeyPair,
    allow_rsa15: bool,
) -> Result<String, SamlError> {
    decrypt(encrypted, sp_key, allow_rsa15).map_err(|detail| decryption_failed(&detail))
}

/// The one answer to every decryption failure; the detail goes to the server log at debug only.
pub(super) fn decryption_failed(detail: &str) -> SamlError {
    tracing::debug!(detail, "an encrypted assertion did not decrypt");
    SamlError::Decrypt
}

pub(super) fn decrypt(
    encrypted: roxmltree::Node,
    sp_key: &KeyPair,
    allow_rsa15: bool,
) -> Result<String, String> {
    let fail = |m: &str| m.to_string();
    let data = encrypted
        .descendants()
        .find(|n| is(*n, NS_XENC, "EncryptedData"))
        .ok_or_else(|| fail("no EncryptedData"))?;
    let key = encrypted
        .descendants()
        .find(|n| is(*n, NS_XENC, "EncryptedKey"))
        .ok_or_else(|| fail("no EncryptedKey"))?;
    let method = |n: roxmltree::Node| {
        child(n, NS_XENC, "EncryptionMethod")
            .and_then(|m| m.attribute("Algorithm"))
            .unwrap_or("")
            .to_string()
    };
    let cipher_value = |n: roxmltree::Node| -> Result<Vec<u8>, String> {
        use base64::Engine;
        let text: String = child(n, NS_XENC, "CipherData")
            .and_then(|c| child(c, NS_XENC, "CipherValue"))
            .and_then(|v| v.text())
            .ok_or_else(|| fail("no CipherValue"))?
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| fail("CipherValue is not base64"))
    };
    if let Some(digest) = child(key, NS_XENC, "EncryptionMethod")
        .and_then(|m| child(m, NS_DSIG, "DigestMethod"))
        .and_then(|d| d.attribute("Algorithm"))
        && digest != SHA1
    {
        return Err(format!(
            "key transport digest {digest} is not supported (only SHA-1, the mgf1p default)"
        ));
    }
    let content_key = unwrap_key(&method(key), &cipher_value(key)?, sp_key, allow_rsa15)?;
    let plain = decrypt_content(&method(data), &content_key, &cipher_value(data)?)?;
    String::from_utf8(plain).map_err(|_| fail("the plaintext is not UTF-8"))
}

pub(super) fn unwrap_key(
    method: &str,
    wrapped: &[u8],
    sp_key: &KeyPair,
    allow_rsa15: bool,
) -> Result<Vec<u8>, String> {
    use openssl::rsa::Padding;
    let padding = match method {
        RSA_OAEP_MGF1P => Padding::PKCS1_OAEP,
        RSA_1_5 if allow_rsa15 => Padding::PKCS1,
        RSA_1_5 => return Err("RSA 1.5 key transport is off (auth.allow_rsa15)".into()),
        other => return Err(format!("key transport {other:?} is not supported")),
    };
    let rsa = sp_key
        .key
        .rsa()
        .map_err(|_| "the SP key is not RSA".to_string())?;
    let mut out = vec![0u8; rsa.size() as usize];
    let n = rsa
        .private_decrypt(wrapped, &mut out, padding)
        .map_err(|_| "the content key does not decrypt with the SP key".to_string())?;
    out.truncate(n);
    Ok(out)
}

pub(super) fn decrypt_content(method: &str, key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    use openssl::symm::{Cipher, Crypter, Mode, decrypt_aead};
    let fail = |m: &str| m.to_string();
    let (cipher, gcm) = match method {
        AES128_CBC => (Cipher::aes_128_cbc(), false),
        AES256_CBC => (Cipher::aes_256_cbc(), false),
        AES128_GCM => (Cipher::aes_128_gcm(), true),
        AES256_GCM => (Cipher::aes_256_gcm(), true),
        other => return Err(format!("content cipher {other:?} is not supported")),
    };
    if key.len() != cipher.key_len() {
        return Err(fail("the content key has the wrong length for its cipher"));
    }
    if gcm {
        // IV (12 bytes) || ciphertext || tag (16 bytes).
        if data.len() < 12 + 16 {
            return Err(fail("the ciphertext is too short"));
        }
        let (iv, rest) = data.split_at(12);
        let (body, tag) = rest.split_at(rest.len() - 16);
        return decrypt_aead(cipher, key, Some(iv), &[], body, tag)
            .map_err(|_| fail("AES-GCM authentication failed"));
    }
    // CBC: IV (16 bytes) || ciphertext; XML-Enc padding is not PKCS#7 (only the last byte, the pad
    // length, is defined), so padding is off and stripped here.
    if data.len() < 32 || !data.len().is_multiple_of(16) {
        return Err(fail("the ciphertext length is not whole AES blocks"));
    }
    let (iv, body) = data.split_at(16);
    let mut crypter =
        Crypter::new(cipher, Mode::Decrypt, key, Some(iv)).map_err(|_| fail("bad key or IV"))?;
    crypter.pad(false);
    let mut out = vec![0u8; body.len() + 16];
    let mut n = crypter
        .update(body, &mut out)
        .map_err(|_| fail("AES-CBC failed"))?;
    n += crypter
        .finalize(&mut out[n..])
        .map_err(|_| fail("AES-CBC failed"))?;
    out.truncate(n);
    let pad = usize::from(*out.last().ok_or_else(|| fail("empty plaintext"))?);
    if pad == 0 || pad > 16 || pad > out.len() {
        return Err(fail("bad XML-Enc padding"));
    }
    out.truncate(out.len() - pad);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_enc_padding_is_the_last_byte_only() {
        use openssl::symm::{Cipher, Crypter, Mode};
        let key = [7u8; 32];
        let iv = [9u8; 16];
        // 5 bytes of text + 11 bytes of padding whose filler is arbitrary (not PKCS#7): last byte 11.
        let mut block = b"hello".to_vec();
        block.extend_from_slice(&[0xAA; 10]);
        block.push(11);
        let mut c = Crypter::new(Cipher::aes_256_cbc(), Mode::Encrypt, &key, Some(&iv)).unwrap();
        c.pad(false);
        let mut out = vec![0u8; 32];
        let n = c.update(&block, &mut out).unwrap();
        out.truncate(n);
        let mut data = iv.to_vec();
        data.extend_from_slice(&out);
        assert_eq!(decrypt_content(AES256_CBC, &key, &data).unwrap(), b"hello");
        assert!(
            decrypt_content(AES128_CBC, &key, &data).is_err(),
            "key length checked"
        );
    }
}
