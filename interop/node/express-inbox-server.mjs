// The peer of the end-to-end benchmark's inbox rows: Express with @contentful/node-apps-toolkit's
// verifyRequest, then the delivery committed to PostgreSQL with `pg` before the answer, as a
// Node receiver that acknowledges fast and handles later would write it. It does less than
// countersign's inbox: one INSERT (no tenant count, no worker taking the deliveries).
//
//   node express-inbox-server.mjs <port> <postgres url>
import crypto from 'node:crypto';
import express from 'express';
import pg from 'pg';
import { verifyRequest } from '@contentful/node-apps-toolkit';

const SECRET = 'a'.repeat(64);
const pool = new pg.Pool({ connectionString: process.argv[3], max: 16 });
await pool.query(`CREATE TABLE IF NOT EXISTS express_inbox (
  id TEXT PRIMARY KEY, body BYTEA NOT NULL, received_at BIGINT NOT NULL)`);

const app = express();
app.use(express.raw({ type: '*/*', limit: '2mb' }));
app.post('/webhook', async (req, res) => {
  const request = { method: req.method, path: req.originalUrl, headers: req.headers, body: req.body.toString('utf8') };
  let ok = false;
  try {
    ok = verifyRequest(SECRET, request, 30);
  } catch {
    ok = false;
  }
  if (!ok) return res.status(401).send('unauthorized');
  // The delivery id: its idempotency key when there is one, else its signature's digest.
  const id = req.headers['x-contentful-idempotency-key']
    ?? crypto.createHash('sha256').update(String(req.headers['x-contentful-signature'])).digest('hex');
  try {
    const inserted = await pool.query(
      'INSERT INTO express_inbox (id, body, received_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING',
      [id, req.body, Date.now()],
    );
    res.json({ status: inserted.rowCount === 1 ? 'accepted' : 'duplicate' });
  } catch {
    res.status(503).json({ status: 'unavailable' });
  }
});
const server = app.listen(Number(process.argv[2]), '127.0.0.1', () => console.log(`listening on ${process.argv[2]}`));
process.on('SIGTERM', () => server.close(() => pool.end().then(() => process.exit(0))));
