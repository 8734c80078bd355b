// Signs requests with @contentful/node-apps-toolkit's signRequest, as Contentful's own
// senders do: the Lambda tests turn each into an event of a trigger and verify it there.
//
// Input: {"cases": [{secret, timestamp, method, path, headers: [[name, value]...], body,
//                    context: {spaceId, envId, appId, userId, crn}}]}
// Output: {"signed": [{header: value, ...}]}, the headers signRequest adds, in case order.
import { signRequest } from '@contentful/node-apps-toolkit';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { cases } = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const signed = cases.map((c) =>
  signRequest(
    c.secret,
    { method: c.method, path: c.path, headers: Object.fromEntries(c.headers), body: c.body },
    c.timestamp,
    c.context,
  ),
);
process.stdout.write(JSON.stringify({ signed }));
