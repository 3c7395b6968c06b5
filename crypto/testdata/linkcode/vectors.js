// Independent computation of the link-code test vectors in
// crypto/linkcode_test.go, with Node.js's crypto module (run: node vectors.js).
// The Go tests do not need it; it records how the numbers were obtained.
'use strict';
const c = require('crypto');
const hex = (b) => Buffer.from(b).toString('hex');
const h = (s) => Buffer.from(s, 'hex');
const fill = (start) => Buffer.from([...Array(32).keys()].map((i) => (start + i) & 0xff));

// base32 over the protocol alphabet, 5 bits at a time, most significant first.
const alphabet = '123456789ABCDEFGHJKLMNPQRSTVWXYZ';
function b32(bytes) {
  let bits = 0n;
  for (const b of bytes) bits = (bits << 8n) | BigInt(b);
  let out = '';
  for (let i = 7; i >= 0; i--) out += alphabet[Number((bits >> BigInt(5 * i)) & 31n)];
  return out;
}
function x25519(priv) {
  const der = Buffer.concat([h('302e020100300506032b656e04220420'), priv]);
  const key = c.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  const pub = Buffer.from(c.createPublicKey(key).export({ format: 'jwk' }).x, 'base64url');
  return { key, pub };
}
function dh(priv, pub) {
  const pubKey = c.createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: pub.toString('base64url') }, format: 'jwk' });
  return c.diffieHellman({ privateKey: priv.key, publicKey: pubKey });
}
function wrap(code, salt, iv, pub) {
  const key = c.pbkdf2Sync(code, salt, 131072, 32, 'sha256');
  const ct = c.createCipheriv('aes-256-ctr', key, iv);
  return { key, wrapped: Buffer.concat([salt, iv, ct.update(pub), ct.final()]) };
}

const codeBytes = h('a5c3f01e7d');
const code = b32(codeBytes);
const compEph = x25519(fill(0x10)), compId = x25519(fill(0x30));
const primEph = x25519(fill(0x50)), primId = x25519(fill(0x70));
const helloW = wrap(code, fill(0x90), fill(0xb0).subarray(0, 16), compEph.pub);
const primW = wrap(code, fill(0xc0), fill(0xe0).subarray(0, 16), primEph.pub);
const ephShared = dh(compEph, primEph.pub);
const idShared = dh(compId, primId.pub);
const S = fill(0x01), nonce = fill(0x21).subarray(0, 12), R = fill(0x41);
const bundleKey = Buffer.from(c.hkdfSync('sha256', ephShared, S, 'link_code_pairing_key_bundle_encryption_key', 32));
const gcm = c.createCipheriv('aes-256-gcm', bundleKey, nonce);
const sealed = Buffer.concat([gcm.update(Buffer.concat([compId.pub, primId.pub, R])), gcm.final()]);
const bundle = Buffer.concat([S, nonce, sealed, gcm.getAuthTag()]);
const adv = Buffer.from(c.hkdfSync('sha256', Buffer.concat([ephShared, idShared, R]), Buffer.alloc(0), 'adv_secret', 32));
console.log(JSON.stringify({
  code_bytes: hex(codeBytes), code,
  companion_ephemeral_pub: hex(compEph.pub), companion_identity_pub: hex(compId.pub),
  primary_ephemeral_pub: hex(primEph.pub), primary_identity_pub: hex(primId.pub),
  hello_code_key: hex(helloW.key), hello_wrapped: hex(helloW.wrapped),
  primary_wrapped: hex(primW.wrapped),
  eph_shared: hex(ephShared), identity_shared: hex(idShared),
  bundle_key: hex(bundleKey), bundle: hex(bundle), adv_secret: hex(adv),
}, null, 1));
