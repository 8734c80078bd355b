// Runs @contentstack/management's OAuthHandler (the reference OAuth client) against a local
// Developer Hub over real HTTP: it exchanges the code it is given, then refreshes with the
// refresh token it got. countersign's interop test points our client at the same server and
// compares what the server received.
//
// Input:  {hub, app_uid, client_id, client_secret, redirect_uri, code}
// Output: {exchange: {access_token, organization_uid} | {error}, refresh: {access_token} | {error}}
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const contentstack = require('@contentstack/management');

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const c = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const handler = contentstack.client({}).oauth({
  appId: c.app_uid,
  clientId: c.client_id,
  redirectUri: c.redirect_uri,
  clientSecret: c.client_secret,
});
// The SDK posts to `${developerHubBaseUrl}/token`; here, the local hub.
handler.developerHubBaseUrl = c.hub;

const attempt = async (call) => {
  try {
    const data = await call();
    return { access_token: data.access_token, organization_uid: data.organization_uid };
  } catch (error) {
    // The SDK rethrows the HTTP error as an Error whose message is JSON with its status.
    let status = error?.response?.status ?? error?.status;
    try {
      status ??= JSON.parse(error.message).status;
    } catch {}
    return { error: String(status ?? error) };
  }
};
const exchange = await attempt(() => handler.exchangeCodeForToken(c.code));
const refresh = await attempt(() => handler.refreshAccessToken());
process.stdout.write(JSON.stringify({ exchange, refresh }));
