// Independent computation of the test vectors in signal/vectors_test.go,
// with Node.js's crypto module only (X25519 through diffieHellman, HKDF,
// HMAC-SHA256, AES-256-CBC) and a protobuf writer of a few lines
// (run: node vectors.js > vectors.json). The Go tests read vectors.json; this
// script records how its numbers were obtained.
'use strict';
const c = require('crypto');
const hex = (b) => Buffer.from(b).toString('hex');
const fill = (start) => Buffer.from([...Array(32).keys()].map((i) => (start + i) & 0xff));

function x25519(priv) {
  const der = Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), priv]);
  const key = c.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  const pub = Buffer.from(c.createPublicKey(key).export({ format: 'jwk' }).x, 'base64url');
  return { key, pub };
}
function dh(priv, pub) {
  const pubKey = c.createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: pub.toString('base64url') }, format: 'jwk' });
  return c.diffieHellman({ privateKey: priv.key, publicKey: pubKey });
}
const hkdf = (ikm, salt, info, n) => Buffer.from(c.hkdfSync('sha256', ikm, salt, info, n));
const hmac = (key, data) => c.createHmac('sha256', key).update(data).digest();
const cbc = (key, iv, pt) => { const e = c.createCipheriv('aes-256-cbc', key, iv); return Buffer.concat([e.update(pt), e.final()]); };
const ser = (pub) => Buffer.concat([Buffer.from([5]), pub]);

// protobuf: varint and length-delimited fields, in the order given.
function varint(n) { const out = []; while (n > 127) { out.push((n & 127) | 128); n >>>= 7; } out.push(n); return Buffer.from(out); }
const fVarint = (num, v) => Buffer.concat([varint(num << 3), varint(v)]);
const fBytes = (num, b) => Buffer.concat([varint((num << 3) | 2), varint(b.length), b]);

// Keys: private keys of 32 consecutive byte values from the given start.
const aliceID = x25519(fill(0x10)), bobID = x25519(fill(0x30));
const bobSPK = x25519(fill(0x50)), bobOPK = x25519(fill(0x70));
const aliceBase = x25519(fill(0x90)), aliceRatchet = x25519(fill(0xb0));
const aliceReg = 0x1234, spkID = 7, opkID = 42;

// X3DH, initiator side (Alice), with and without the one-time prekey.
const disc = Buffer.alloc(32, 0xff);
const dh1 = dh(aliceID, bobSPK.pub), dh2 = dh(aliceBase, bobID.pub), dh3 = dh(aliceBase, bobSPK.pub);
const dh4 = dh(aliceBase, bobOPK.pub);
const x4 = hkdf(Buffer.concat([disc, dh1, dh2, dh3, dh4]), Buffer.alloc(0), 'WhisperText', 64);
const x3 = hkdf(Buffer.concat([disc, dh1, dh2, dh3]), Buffer.alloc(0), 'WhisperText', 64);
// Responder side (Bob) gets the same master secret from the other ends.
const bx = hkdf(Buffer.concat([disc, dh(bobSPK, aliceID.pub), dh(bobID, aliceBase.pub), dh(bobSPK, aliceBase.pub), dh(bobOPK, aliceBase.pub)]), Buffer.alloc(0), 'WhisperText', 64);
if (!bx.equals(x4)) throw new Error('X3DH sides disagree');

// Alice's first sending chain: a ratchet step with her ratchet key and Bob's signed prekey.
const dh5 = dh(aliceRatchet, bobSPK.pub);
const rs = hkdf(dh5, x4.subarray(0, 32), 'WhisperRatchet', 64);
const sendCK = rs.subarray(32);
const seed0 = hmac(sendCK, Buffer.from([1])), ck1 = hmac(sendCK, Buffer.from([2]));
const seed1 = hmac(ck1, Buffer.from([1])), ck2 = hmac(ck1, Buffer.from([2]));
const mk = hkdf(seed0, Buffer.alloc(0), 'WhisperMessageKeys', 80);

// Alice's first message: "hello, signal" with 3 bytes of WhatsApp padding.
const plaintext = Buffer.concat([Buffer.from('hello, signal'), Buffer.from([3, 3, 3])]);
const ct = cbc(mk.subarray(0, 32), mk.subarray(64, 80), plaintext);
const sm = Buffer.concat([fBytes(1, ser(aliceRatchet.pub)), fVarint(2, 0), fVarint(3, 0), fBytes(4, ct)]);
const signed = Buffer.concat([Buffer.from([0x33]), sm]);
const mac = hmac(mk.subarray(32, 64), Buffer.concat([ser(aliceID.pub), ser(bobID.pub), signed])).subarray(0, 8);
const msg = Buffer.concat([signed, mac]);
const pk = Buffer.concat([fVarint(1, opkID), fBytes(2, ser(aliceBase.pub)), fBytes(3, ser(aliceID.pub)),
  fBytes(4, msg), fVarint(5, aliceReg), fVarint(6, spkID)]);
const pkmsg = Buffer.concat([Buffer.from([0x33]), pk]);

// Sender key: chain key from 0xe0, key ID 0x01020304, iteration 0.
const skCK = fill(0xe0);
const skSeed0 = hmac(skCK, Buffer.from([1])), skCK1 = hmac(skCK, Buffer.from([2]));
const skKeys = hkdf(skSeed0, Buffer.alloc(0), 'WhisperGroup', 48);
const skPlain = Buffer.concat([Buffer.from('group hello'), Buffer.alloc(5, 5)]);
const skCT = cbc(skKeys.subarray(16, 48), skKeys.subarray(0, 16), skPlain);
const skSigned = Buffer.concat([Buffer.from([0x33]), fVarint(1, 0x01020304), fVarint(2, 0), fBytes(3, skCT)]);

console.log(JSON.stringify({
  alice_identity_pub: hex(aliceID.pub), bob_identity_pub: hex(bobID.pub),
  bob_signed_prekey_pub: hex(bobSPK.pub), bob_one_time_prekey_pub: hex(bobOPK.pub),
  alice_base_pub: hex(aliceBase.pub), alice_ratchet_pub: hex(aliceRatchet.pub),
  dh1: hex(dh1), dh2: hex(dh2), dh3: hex(dh3), dh4: hex(dh4),
  x3dh4_root: hex(x4.subarray(0, 32)), x3dh4_chain: hex(x4.subarray(32)),
  x3dh3_root: hex(x3.subarray(0, 32)), x3dh3_chain: hex(x3.subarray(32)),
  ratchet_dh: hex(dh5), ratchet_root: hex(rs.subarray(0, 32)), ratchet_chain: hex(sendCK),
  seed0: hex(seed0), chain1: hex(ck1), seed1: hex(seed1), chain2: hex(ck2),
  message_cipher_key: hex(mk.subarray(0, 32)), message_mac_key: hex(mk.subarray(32, 64)), message_iv: hex(mk.subarray(64)),
  plaintext: hex(plaintext), ciphertext: hex(ct), mac: hex(mac), msg: hex(msg), pkmsg: hex(pkmsg),
  sender_chain_key: hex(skCK), sender_seed0: hex(skSeed0), sender_chain1: hex(skCK1),
  sender_iv: hex(skKeys.subarray(0, 16)), sender_cipher_key: hex(skKeys.subarray(16)),
  sender_plaintext: hex(skPlain), sender_ciphertext: hex(skCT), skmsg_signed: hex(skSigned),
}, null, 1));
