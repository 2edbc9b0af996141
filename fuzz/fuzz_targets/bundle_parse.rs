//! Bundle and statement parsing: `CheckedBundle::parse` (the streaming bundle reader: skeleton
//! scanner, chunked base64 decoding of the payload, strict skeleton parse) on arbitrary bytes
//! and, when it parses, `Statement::parse` (the streaming statement parser) on the decoded
//! payload. The raw input is also given to `Statement::parse` directly (a payload is base64
//! inside the bundle, so mutations rarely reach the statement parser otherwise). Nothing may
//! panic, and whatever parses must survive a write/read round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verifier_core::bundle::CheckedBundle;
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

    let Ok(bundle) = CheckedBundle::parse(data) else { return };
    let again = CheckedBundle::parse(&bundle.to_json()).expect("a written bundle reads again");
    assert_eq!(again, bundle, "bundle round trip changed it");

    let _ = bundle.signatures().len();
    if let Ok(payload) = bundle.payload().to_vec() {
        statement(&payload);
    }
});
