// Runs Node's own crypto and the jsonwebtoken npm package on the cases countersign's interop
// test sends on stdin, the way Contentstack and its official samples sign and verify.
//
// Input:  {private_pem, public_pem, rsa: [{body, ours, salt}], hmac: [{secret, t, body}],
//          tokens: [token], json: [text]}
// Output: {rsa: [{node_accepts_ours, node_signature}], hmac: [v1 hex], tokens: [{claims}|{error}],
//          json: [canonical | null]}
import crypto from 'node:crypto';
import jwt from 'jsonwebtoken';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const privateKey = crypto.createPrivateKey(input.private_pem);
const publicKey = crypto.createPublicKey(input.public_pem);
const SALT = { digest: 32, max: crypto.constants.RSA_PSS_SALTLEN_MAX_SIGN };

const rsa = input.rsa.map(({ body, ours, salt }) => {
  const data = Buffer.from(body, 'utf8');
  const node_accepts_ours = crypto.verify('sha256', data, {
    key: publicKey,
    padding: crypto.constants.RSA_PKCS1_PSS_PADDING,
    saltLength: crypto.constants.RSA_PSS_SALTLEN_AUTO,
  }, Buffer.from(ours.replace(/^v1=/, ''), 'base64'));
  const node_signature = 'v1=' + crypto.sign('sha256', data, {
    key: privateKey,
    padding: crypto.constants.RSA_PKCS1_PSS_PADDING,
    saltLength: SALT[salt],
  }).toString('base64');
  return { node_accepts_ours, node_signature };
});

const hmac = input.hmac.map(({ secret, t, body }) =>
  crypto.createHmac('sha256', secret).update(`${t}.${body}`).digest('hex'));

const tokens = input.tokens.map((token) => {
  try {
    return { claims: jwt.verify(token, input.public_pem, { algorithms: ['RS256'] }) };
  } catch (e) {
    return { error: e.name };
  }
});

const json = input.json.map((text) => {
  try {
    return JSON.stringify(JSON.parse(text));
  } catch {
    return null;
  }
});

process.stdout.write(JSON.stringify({ rsa, hmac, tokens, json }));
