// The toolkit's app identity, for countersign's interop test.
//
// Input on stdin, one of:
//   {"mode": "sign", "key": PEM, "appId", "keyId" (optional), "iat"}
//     -> {"token"}: jsonwebtoken.sign exactly as the toolkit's generateOneTimeToken calls it,
//        with the issue time fixed (the toolkit reads the clock).
//   {"mode": "fetch", "key": PEM, "appInstallationId", "spaceId", "environmentId",
//    "keyId" (optional), "host"}
//     -> {"token"} or {"error"}: the toolkit's getManagementToken against `host`.
import jwt from 'jsonwebtoken';
// The toolkit prints a refused answer's body with console.log: keep stdout for the result.
console.log = (...args) => console.error(...args);
import { getManagementToken } from '@contentful/node-apps-toolkit';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));

if (input.mode === 'sign') {
  const base = { algorithm: 'RS256', issuer: input.appId, expiresIn: '10m' };
  const options = input.keyId ? { ...base, keyid: input.keyId } : base;
  // The toolkit signs `{}`; an explicit `iat` takes the clock's place and the same position.
  const token = jwt.sign({ iat: input.iat }, input.key, options);
  process.stdout.write(JSON.stringify({ token }));
} else {
  try {
    const token = await getManagementToken(input.key, {
      appInstallationId: input.appInstallationId,
      spaceId: input.spaceId,
      environmentId: input.environmentId,
      keyId: input.keyId,
      host: input.host,
      reuseToken: false,
    });
    process.stdout.write(JSON.stringify({ token }));
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: String(e.message) }));
  }
}
