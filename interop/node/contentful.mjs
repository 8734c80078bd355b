// Runs @contentful/node-apps-toolkit on the cases countersign's interop test sends on stdin.
//
// Input: {"cases": [{secret, timestamp, method, path, headers: [[name, value]...], body,
//                    context: {spaceId, envId, appId, userId, crn}, arrived: [[name, value]...]}]}
// For each case: the toolkit's signRequest output, and whether its verifyRequest accepts the
// request as it arrived with countersign's signature (`arrived`), or, for a case with
// `forged` headers, those headers with the toolkit's own signature of the case.
import { signRequest, verifyRequest } from '@contentful/node-apps-toolkit';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { cases } = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const results = cases.map((c) => {
  const request = {
    method: c.method,
    path: c.path,
    headers: Object.fromEntries(c.headers),
    body: c.body,
  };
  const signed = signRequest(c.secret, request, c.timestamp, c.context);
  const arrived = c.forged
    ? [...c.forged, ['x-contentful-signature', signed['x-contentful-signature']]]
    : c.arrived;
  let verified;
  try {
    verified = verifyRequest(
      c.secret,
      { method: c.method, path: c.path, headers: Object.fromEntries(arrived), body: c.body },
      0,
    );
  } catch (e) {
    verified = `threw: ${e.message}`;
  }
  return { signed, verified };
});
process.stdout.write(JSON.stringify({ results }));
