//! DSSE (Dead Simple Signing Envelope): the signature covers the pre-authentication encoding of
//! payload type and payload, never the JSON around them. The envelope itself is read and written
//! as part of a bundle (`bundle`); its payload is streamed (`payload`).

pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = pae_header(payload_type, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// The pre-authentication encoding up to the body, for a body streamed after it.
pub fn pae_header(payload_type: &str, payload_len: u64) -> Vec<u8> {
    format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload_len).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }
}
