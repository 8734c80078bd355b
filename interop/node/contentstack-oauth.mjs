// Runs @contentstack/management's OAuthHandler (the reference OAuth client) on the cases
// countersign's interop test sends on stdin, with its HTTP client's `post` replaced by one
// that records what it would send: the URL and the form of each code exchange and refresh.
//
// Input:  [{host, app_uid, client_id, redirect_uri, client_secret | null, code_verifier | null,
//           code, refresh_token}]
// Output: [{code_challenge | null, exchange: {url, form}, refresh: {url, form}}]
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const contentstack = require('@contentstack/management');

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const cases = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const out = [];
for (const c of cases) {
  const client = contentstack.client({ host: c.host });
  const handler = client.oauth({
    appId: c.app_uid,
    clientId: c.client_id,
    redirectUri: c.redirect_uri,
    ...(c.client_secret ? { clientSecret: c.client_secret } : {}),
  });
  const posts = [];
  handler.axiosInstance.post = async (url, body) => {
    posts.push({ url, form: body.toString() });
    return { data: { access_token: 'a', refresh_token: 'r', expires_in: 3600 } };
  };
  let code_challenge = null;
  if (c.code_verifier) {
    handler.codeVerifier = c.code_verifier;
    code_challenge = await handler.generateCodeChallenge(c.code_verifier);
  }
  await handler.exchangeCodeForToken(c.code);
  await handler.refreshAccessToken(c.refresh_token);
  out.push({ code_challenge, exchange: posts[0], refresh: posts[1] });
}
process.stdout.write(JSON.stringify(out));
