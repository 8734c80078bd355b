// The peer of the end-to-end benchmark: Express with @contentful/node-apps-toolkit's
// verifyRequest, as Contentful's docs show it.
//
//   node express-server.mjs <port>
import express from 'express';
import { verifyRequest } from '@contentful/node-apps-toolkit';

const SECRET = 'a'.repeat(64);
const app = express();
app.use(express.raw({ type: '*/*', limit: '2mb' }));
app.post('/webhook', (req, res) => {
  const request = { method: req.method, path: req.originalUrl, headers: req.headers, body: req.body.toString('utf8') };
  let ok = false;
  try {
    ok = verifyRequest(SECRET, request, 30);
  } catch {
    ok = false;
  }
  if (!ok) return res.status(401).send('unauthorized');
  res.send(`ok ${req.body.length}`);
});
const server = app.listen(Number(process.argv[2]), '127.0.0.1', () => console.log(`listening on ${process.argv[2]}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
