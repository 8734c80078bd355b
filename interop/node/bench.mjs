// Operations per second of the reference implementations on the inputs countersign's `ops`
// wrote: @contentful/node-apps-toolkit verifyRequest, Node's crypto.verify (RSA-PSS, the
// reference Contentstack verifier, salt 32 and the maximum) and jsonwebtoken.verify (RS256).
//
//   node bench.mjs <inputs.json> [seconds]
import crypto from 'node:crypto';
import fs from 'node:fs';
import jwt from 'jsonwebtoken';
import { verifyRequest } from '@contentful/node-apps-toolkit';

const inputs = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const seconds = Number(process.argv[3] || 2);

function rate(op) {
  for (let i = 0; i < 100; i++) op();
  const start = process.hrtime.bigint();
  let count = 0;
  for (;;) {
    for (let i = 0; i < 32; i++) op();
    count += 32;
    const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
    if (elapsed >= seconds) return count / elapsed;
  }
}

const results = {};
for (const [name, c] of Object.entries(inputs.contentful)) {
  const request = { method: 'POST', path: c.path, headers: c.headers, body: c.body };
  if (!verifyRequest(inputs.secret, request, 0)) throw new Error('toolkit did not verify');
  results[`contentful_verify_${name}`] = rate(() => verifyRequest(inputs.secret, request, 0));
}
const key = crypto.createPublicKey(inputs.contentstack.public_pem);
const body = Buffer.from(inputs.contentstack.body, 'utf8');
const signature = Buffer.from(inputs.contentstack.signature.replace(/^v1=/, ''), 'base64');
const options = { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 };
if (!crypto.verify('sha256', body, options, signature)) throw new Error('crypto.verify failed');
results.contentstack_rsa_verify = rate(() => crypto.verify('sha256', body, options, signature));
// The documented maximum salt, verified as Node's reference verifier does by default (auto).
const signatureMax = Buffer.from(inputs.contentstack.signature_max.replace(/^v1=/, ''), 'base64');
const auto = { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: crypto.constants.RSA_PSS_SALTLEN_AUTO };
if (!crypto.verify('sha256', body, auto, signatureMax)) throw new Error('crypto.verify (max salt) failed');
results.contentstack_rsa_verify_max = rate(() => crypto.verify('sha256', body, auto, signatureMax));
results.app_token_verify = rate(() => jwt.verify(inputs.app_token, inputs.contentstack.public_pem, { algorithms: ['RS256'] }));
process.stdout.write(JSON.stringify(results));
