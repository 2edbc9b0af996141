//! Bundle and statement parsing: `Bundle::parse` on arbitrary bytes and, when it parses, the DSSE
//! payload decoding, the pre-authentication encoding, every signature's decoding and
//! `Statement::parse` on the payload. The raw input is also given to `Statement::parse` directly
//! (a payload is base64 inside the bundle, so mutations rarely reach the statement parser
//! otherwise). Nothing may panic, and whatever parses must survive a serialise/parse round trip
//! unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verifier_core::bundle::Bundle;
use verifier_core::statement::Statement;

fn statement(bytes: &[u8]) {
    let Ok(statement) = Statement::parse(bytes) else { return };
    let _ = statement.subject_digests().count();
    let _ = statement.expires_at();
    let again = Statement::parse(&statement.to_bytes()).expect("a serialised statement parses again");
    assert_eq!(again, statement, "statement round trip changed it");
}

fuzz_target!(|data: &[u8]| {
    statement(data);

    let Ok(bundle) = Bundle::parse(data) else { return };
    let again = Bundle::parse(&bundle.to_json()).expect("a serialised bundle parses again");
    assert_eq!(again, bundle, "bundle round trip changed it");

    let envelope = &bundle.dsse_envelope;
    for index in 0..envelope.signatures.len() {
        let _ = envelope.signature_bytes(index);
    }
    let _ = envelope.signed_message();
    if let Ok(payload) = envelope.payload_bytes() {
        statement(&payload);
    }
});
