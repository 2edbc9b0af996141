// Verifies an imgsign bundle with the independent Sigstore JS client (@sigstore/verify), trust
// material built from the public key alone (no Fulcio, Rekor, CT log or timestamp authority), and
// checks that one flipped byte in the payload or in the signature makes it reject the bundle.
//
// usage: node check.js BUNDLE.json KEY.pub KEYID
'use strict';

const fs = require('node:fs');
const crypto = require('node:crypto');
const { bundleFromJSON } = require('@sigstore/bundle');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

const [bundlePath, pubPath, keyId] = process.argv.slice(2);
if (!bundlePath || !pubPath || !keyId) {
  console.error('usage: node check.js BUNDLE.json KEY.pub KEYID');
  process.exit(2);
}

const bundleJSON = JSON.parse(fs.readFileSync(bundlePath, 'utf8'));
const pem = fs.readFileSync(pubPath, 'utf8');
const der = crypto.createPublicKey(pem).export({ format: 'der', type: 'spki' });

// A TrustedRoot with no authorities at all: only the public key, keyed by imgsign's key id (the
// hint the bundle must carry).
const trustedRoot = {
  mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
  tlogs: [],
  certificateAuthorities: [],
  ctlogs: [],
  timestampAuthorities: [],
};
const keys = {
  [keyId]: {
    rawBytes: der,
    keyDetails: 'PKIX_ED25519',
    validFor: { start: new Date(0) },
  },
};
const trustMaterial = toTrustMaterial(trustedRoot, keys);
const verifier = new Verifier(trustMaterial, {
  tlogThreshold: 0,
  ctlogThreshold: 0,
  timestampThreshold: 0,
});

function verify(json) {
  const bundle = bundleFromJSON(json);
  return verifier.verify(toSignedEntity(bundle));
}

function flipByte(b64, at) {
  const bytes = Buffer.from(b64, 'base64');
  const i = at(bytes.length);
  bytes[i] ^= 0x01;
  return bytes.toString('base64');
}

let passed = 0;
let failed = 0;
function check(name, fn) {
  try {
    fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

function expectRejected(json, code) {
  let err;
  try {
    verify(json);
  } catch (e) {
    err = e;
  }
  if (!err) throw new Error('the tampered bundle was accepted');
  // Rejected for the right reason: the signature, not a parse or format problem.
  if (err.code !== code) {
    throw new Error(`rejected with ${err.name} ${err.code || ''}: ${err.message}, expected code ${code}`);
  }
  console.log(`     (rejected: ${err.code}: ${err.message})`);
}

check('@sigstore/verify accepts the imgsign bundle with the public key', () => {
  const signer = verify(bundleJSON);
  if (!signer || !signer.key) throw new Error('no signer returned');
  if (signer.key.asymmetricKeyType !== 'ed25519') {
    throw new Error(`signer key is ${signer.key.asymmetricKeyType}, expected ed25519`);
  }
});

check('@sigstore/verify rejects the bundle after one payload byte changes', () => {
  const tampered = structuredClone(bundleJSON);
  tampered.dsseEnvelope.payload = flipByte(tampered.dsseEnvelope.payload, (n) => Math.floor(n / 2));
  expectRejected(tampered, 'SIGNATURE_ERROR');
});

check('@sigstore/verify rejects the bundle after one signature byte changes', () => {
  const tampered = structuredClone(bundleJSON);
  const sig = tampered.dsseEnvelope.signatures[0];
  sig.sig = flipByte(sig.sig, () => 0);
  expectRejected(tampered, 'SIGNATURE_ERROR');
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
