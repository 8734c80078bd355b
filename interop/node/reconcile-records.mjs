// Runs the vendors' CMA clients against a local server that plays both providers' record APIs
// over real HTTP: @contentstack/management's webhook executions, fetch and retry, and
// contentful-management's webhook calls, call details and health. countersign's interop test
// makes the same calls with its own readers and compares what the server received.
//
// Input:  {host, contentstack: {api_key, management_token, webhook, query, execution_uid},
//          contentful: {space, token, webhook, query, call_id}}
// Output: {contentstack: {executions, disabled, retried}, contentful: {calls, call, healthy}}
//         (counts and ids, or {error})
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const contentstack = require('@contentstack/management');
const contentful = require('contentful-management');

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const c = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const attempt = async (call) => {
  try {
    return await call();
  } catch (error) {
    return { error: String(error?.status ?? error?.message ?? error) };
  }
};

const cs = c.contentstack;
const stack = contentstack
  // The SDK takes no IP address as its host: the endpoint, version included.
  .client({ endpoint: `http://${c.host}/v3`, logHandler: () => {} })
  .stack({ api_key: cs.api_key, management_token: cs.management_token });
const csOut = {
  executions: await attempt(async () => (await stack.webhook(cs.webhook).executions(cs.query)).webhooks.length),
  disabled: await attempt(async () => (await stack.webhook(cs.webhook).fetch()).disabled),
  retried: await attempt(async () => (await stack.webhook(cs.webhook).retry(cs.execution_uid)).notice),
};

const cf = c.contentful;
const plain = contentful.createClient(
  { accessToken: cf.token, host: c.host, insecure: true, retryOnError: false, logHandler: () => {} },
  { type: 'plain' },
);
const params = { spaceId: cf.space, webhookDefinitionId: cf.webhook };
const cfOut = {
  calls: await attempt(async () => (await plain.webhook.getManyCallDetails({ ...params, query: cf.query })).items.length),
  call: await attempt(async () => (await plain.webhook.getCallDetails({ ...params, callId: cf.call_id })).sys.id),
  healthy: await attempt(async () => (await plain.webhook.getHealthStatus(params)).calls.healthy),
};
process.stdout.write(JSON.stringify({ contentstack: csOut, contentful: cfOut }));
