// Generates crates/countersign-core/tests/data/contentstack-vectors.json with Node's own crypto
// (RSA-PSS, HMAC) and the jsonwebtoken npm package (app-tokens), the way Contentstack signs.
// The test keys in tests/data/keys are made once (by this script) and reused.
//
//   node interop/node/contentstack-vectors.mjs
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import jwt from 'jsonwebtoken';

const here = path.dirname(fileURLToPath(import.meta.url));
const data = path.join(here, '../../crates/countersign-core/tests/data');
const keysDir = path.join(data, 'keys');
fs.mkdirSync(keysDir, { recursive: true });

function keyPair(name) {
  const privatePath = path.join(keysDir, `${name}.private.pem`);
  if (!fs.existsSync(privatePath)) {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    fs.writeFileSync(privatePath, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  }
  const privateKey = crypto.createPrivateKey(fs.readFileSync(privatePath));
  const publicKey = crypto.createPublicKey(privateKey);
  const pkcs1 = publicKey.export({ type: 'pkcs1', format: 'pem' });
  fs.writeFileSync(path.join(keysDir, `${name}.public.pem`), pkcs1);
  fs.writeFileSync(path.join(keysDir, `${name}.spki.pem`), publicKey.export({ type: 'spki', format: 'pem' }));
  fs.writeFileSync(path.join(keysDir, `${name}.public-keys.json`), JSON.stringify({ 'signing-key': pkcs1 }));
  fs.writeFileSync(
    path.join(keysDir, `${name}.pkcs1-private.pem`),
    privateKey.export({ type: 'pkcs1', format: 'pem' }),
  );
  return { privateKey, publicKey };
}

const a = keyPair('contentstack-a');
const b = keyPair('contentstack-b');

const TRIGGERED_AT = '2024-07-25T08:48:46.861Z';
const NOW = Date.parse(TRIGGERED_AT) + 10_000; // ten seconds after delivery

function pss(key, text, saltLength) {
  return crypto
    .sign('sha256', Buffer.from(text, 'utf8'), {
      key,
      padding: crypto.constants.RSA_PKCS1_PSS_PADDING,
      saltLength,
    })
    .toString('base64');
}
const SALT_MAX = crypto.constants.RSA_PSS_SALTLEN_MAX_SIGN;

const envelope = (data, extra = {}) =>
  JSON.stringify({ triggered_at: TRIGGERED_AT, module: 'entry', api_key: 'blt0123456789abcdef', event: 'publish', data, ...extra });

const basic = envelope({ entry: { uid: 'blt1', title: 'Hello', locale: 'en-us' } });
const unicode = envelope({ entry: { title: 'héllo \u2028 😀 "q" \\ / \u0001 ü€', tags: ['a', 'ß'] } });

const rsa = [];
const add = (name, body, header, expect, extra = {}) => rsa.push({ name, body, header, expect, ...extra });

add('salt-32', basic, `v1=${pss(a.privateKey, basic, 32)}`, { ok: { salt: 'digest', element: 0 } });
add('salt-max', basic, `v1=${pss(a.privateKey, basic, SALT_MAX)}`, { ok: { salt: 'max', element: 0 } });
add('several-v1-second-matches', basic, `v1=${pss(b.privateKey, basic, 32)},v1=${pss(a.privateKey, basic, 32)}`, {
  ok: { salt: 'digest', element: 1 },
});
add('unpadded-base64', basic, `v1=${pss(a.privateKey, basic, 32).replace(/=+$/, '')}`, { ok: { salt: 'digest', element: 0 } });
add('unknown-prefix-ignored', basic, `v0=AAAA,v1=${pss(a.privateKey, basic, SALT_MAX)}`, { ok: { salt: 'max', element: 0 } });
add('spaces-after-commas', basic, `v0=AAAA, v1=${pss(a.privateKey, basic, 32)}`, { ok: { salt: 'digest', element: 0 } });
add('unicode-and-escapes', unicode, `v1=${pss(a.privateKey, unicode, 32)}`, { ok: { salt: 'digest', element: 0 } });
add('other-key', basic, `v1=${pss(b.privateKey, basic, 32)}`, { error: 'signature_mismatch' });
add('tampered-body', basic.replace('Hello', 'Hellp'), `v1=${pss(a.privateKey, basic, 32)}`, { error: 'signature_mismatch' });
add('no-v1', basic, `v0=${pss(a.privateKey, basic, 32)}`, { error: 'signature_malformed' });
add('salt-64-is-not-accepted', basic, `v1=${pss(a.privateKey, basic, 64)}`, { error: 'signature_mismatch' });

// JSON fallback: the body arrives re-encoded; Contentstack signed JSON.stringify(JSON.parse(body)).
const reencoded = [
  ['pretty-printed', JSON.stringify(JSON.parse(basic), null, 2)],
  ['one-point-zero', `{"triggered_at":"${TRIGGERED_AT}","module":"entry","data":{"n":1.0,"m":-1.50}}`],
  ['exponent', `{"triggered_at":"${TRIGGERED_AT}","data":{"n":1e2,"m":1E-7,"k":2.5e+21}}`],
  ['negative-zero', `{"triggered_at":"${TRIGGERED_AT}","data":{"n":-0,"m":-0.0}}`],
  ['integer-above-2-53', `{"triggered_at":"${TRIGGERED_AT}","data":{"id":12345678901234567890,"x":9007199254740993}}`],
  ['unicode-escape', `{"triggered_at":"${TRIGGERED_AT}","data":{"title":"caf\\u00e9 \\ud83d\\ude00 \\u0001"}}`],
  ['escaped-slash', `{"triggered_at":"${TRIGGERED_AT}","data":{"url":"https:\\/\\/example.com\\/a"}}`],
  ['integer-like-keys-out-of-order', `{"triggered_at":"${TRIGGERED_AT}","data":{"b":1,"10":2,"a":3,"2":4,"01":5}}`],
  ['duplicate-keys', `{"triggered_at":"1999-01-01T00:00:00.000Z","data":{"a":1,"b":2,"a":3},"triggered_at":"${TRIGGERED_AT}"}`],
  ['lone-surrogate', `{"triggered_at":"${TRIGGERED_AT}","data":{"s":"\\uD800x"}}`],
];
for (const [name, body] of reencoded) {
  const canonical = JSON.stringify(JSON.parse(body));
  if (canonical === body) throw new Error(`${name} is already canonical`);
  const header = `v1=${pss(a.privateKey, canonical, 32)}`;
  add(`fallback-${name}`, body, header, { ok: { salt: 'digest', element: 0, reencoded: true } }, {
    json_fallback: true,
    canonical,
  });
  add(`fallback-off-${name}`, body, header, { error: 'signature_mismatch' });
}

// HMAC method.
const hmacSign = (secret, t, body) => crypto.createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
const T = Math.floor(Date.parse(TRIGGERED_AT) / 1000);
const OLD = 'old-secret-0123456789';
const NEW = 'new-secret-abcdefghij';
const hmac = [
  { name: 'single', secrets: [NEW], body: basic, header: `t=${T},v1=${hmacSign(NEW, T, basic)}`, expect: { ok: { secret: 0, element: 0 } } },
  { name: 'spaces-after-commas', secrets: [NEW], body: basic, header: `t=${T}, v1=${hmacSign(NEW, T, basic)}`, expect: { ok: { secret: 0, element: 0 } } },
  {
    name: 'rotation-two-v1-new-secret',
    secrets: [NEW],
    body: unicode,
    header: `t=${T},v1=${hmacSign(OLD, T, unicode)},v1=${hmacSign(NEW, T, unicode)}`,
    expect: { ok: { secret: 0, element: 1 } },
  },
  {
    name: 'rotation-two-v1-old-secret',
    secrets: [OLD],
    body: unicode,
    header: `t=${T},v1=${hmacSign(OLD, T, unicode)},v1=${hmacSign(NEW, T, unicode)}`,
    expect: { ok: { secret: 0, element: 0 } },
  },
  { name: 'second-configured-secret', secrets: [OLD, NEW], body: basic, header: `t=${T},v1=${hmacSign(NEW, T, basic)}`, expect: { ok: { secret: 1, element: 0 } } },
  { name: 'wrong-secret', secrets: [OLD], body: basic, header: `t=${T},v1=${hmacSign(NEW, T, basic)}`, expect: { error: 'signature_mismatch' } },
  { name: 'other-t', secrets: [NEW], body: basic, header: `t=${T + 1},v1=${hmacSign(NEW, T, basic)}`, expect: { error: 'signature_mismatch' } },
  { name: 'no-t', secrets: [NEW], body: basic, header: `v1=${hmacSign(NEW, T, basic)}`, expect: { error: 'timestamp_missing' } },
];

// App-tokens.
const NOW_SECS = Math.floor(NOW / 1000);
const stackClaims = {
  app_uid: 'app123',
  installation_uid: 'inst456',
  organization_uid: 'org789',
  user_uid: 'user012',
  stack_api_key: 'blt0123456789abcdef',
};
const { stack_api_key: _dropped, ...orgClaims } = stackClaims;
const b64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
const rs = (claims, key, options = {}) => jwt.sign(claims, key, { algorithm: 'RS256', ...options });
const base = { iat: NOW_SECS - 5, exp: NOW_SECS + 300 };

const pubPem = fs.readFileSync(path.join(keysDir, 'contentstack-a.public.pem'), 'utf8');
const hs256WithPublicKey = (() => {
  const head = b64url({ alg: 'HS256', typ: 'JWT' });
  const body = b64url({ ...stackClaims, ...base });
  const sig = crypto.createHmac('sha256', pubPem).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
})();
const valid = rs({ ...stackClaims, ...base, region: 'NA' }, a.privateKey);
const [vh, vp, vs] = valid.split('.');
const tamperedPayload = b64url({ ...stackClaims, ...base, region: 'NA', user_uid: 'someone-else' });

const appTokens = [
  { name: 'valid-stack-app', token: valid, expect: { ok: { ...stackClaims, ...base, region: 'NA' } } },
  { name: 'valid-organization-app', token: rs({ ...orgClaims, ...base }, a.privateKey), expect: { ok: { ...orgClaims, ...base } } },
  { name: 'expired', token: rs({ ...stackClaims, iat: NOW_SECS - 900, exp: NOW_SECS - 120 }, a.privateKey), expect: { error: 'app_token_expired' } },
  { name: 'expired-within-leeway', token: rs({ ...stackClaims, iat: NOW_SECS - 900, exp: NOW_SECS - 30 }, a.privateKey), expect: { ok: { ...stackClaims, iat: NOW_SECS - 900, exp: NOW_SECS - 30 } } },
  { name: 'not-yet-valid', token: rs({ ...stackClaims, ...base, nbf: NOW_SECS + 120 }, a.privateKey), expect: { error: 'app_token_not_yet_valid' } },
  { name: 'no-exp', token: rs({ ...stackClaims, iat: NOW_SECS }, a.privateKey), expect: { error: 'app_token_malformed' } },
  { name: 'rs512', token: jwt.sign({ ...stackClaims, ...base }, a.privateKey, { algorithm: 'RS512' }), expect: { error: 'app_token_algorithm_not_allowed' } },
  { name: 'alg-none', token: `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ ...stackClaims, ...base })}.`, expect: { error: 'app_token_algorithm_not_allowed' } },
  { name: 'hs256-with-public-key-as-secret', token: hs256WithPublicKey, expect: { error: 'app_token_algorithm_not_allowed' } },
  { name: 'tampered-payload', token: `${vh}.${tamperedPayload}.${vs}`, expect: { error: 'app_token_signature_mismatch' } },
  { name: 'other-key', token: rs({ ...stackClaims, ...base }, b.privateKey), expect: { error: 'app_token_signature_mismatch' } },
  { name: 'not-a-jwt', token: 'abc.def', expect: { error: 'app_token_malformed' } },
];
void vp;

const out = {
  about:
    'Produced by interop/node/contentstack-vectors.mjs with Node ' + process.version +
    ' crypto (RSA-PSS SHA-256, HMAC-SHA256) and jsonwebtoken 9 (app-tokens). Keys: tests/data/keys/contentstack-a (the key to verify with) and contentstack-b (another key).',
  triggered_at: TRIGGERED_AT,
  now_ms: NOW,
  rsa,
  hmac,
  app_tokens: appTokens,
};
fs.writeFileSync(path.join(data, 'contentstack-vectors.json'), JSON.stringify(out, null, 1) + '\n');
console.log(`wrote ${rsa.length} RSA, ${hmac.length} HMAC and ${appTokens.length} app-token vectors`);
