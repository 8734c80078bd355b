// Loads a host page in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// that frames a UI location on another origin, as Contentstack does, and reports what the framed
// page shows once its own API calls with the bearer session have run.
//
// Input: {"host_url": "...", "frame_path": "/ui/"}
// Output: {"status": "...", "settings": "...", "events": [...]}
import { chromium } from 'playwright-core';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { host_url: hostUrl, frame_path: framePath } = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
  ],
});
try {
  const page = await browser.newPage();
  await page.goto(hostUrl, { waitUntil: 'load', timeout: 30000 });
  let frame;
  for (let i = 0; i < 100 && !frame; i++) {
    frame = page.frames().find((f) => f.url().includes(framePath));
    if (!frame) await page.waitForTimeout(100);
  }
  if (!frame) throw new Error(`no frame with ${framePath}`);
  await frame.waitForFunction(() => {
    const status = document.getElementById('status');
    return status && status.textContent !== 'loading';
  }, null, { timeout: 30000 });
  const report = await frame.evaluate(() => ({
    status: document.getElementById('status').textContent,
    settings: document.getElementById('settings').textContent,
    events: [...document.querySelectorAll('#events li')].map((li) => li.textContent),
    origin: window.location.origin,
    top_origin: document.referrer === '' ? 'no-referrer' : document.referrer,
  }));
  process.stdout.write(JSON.stringify(report));
} finally {
  await browser.close();
}
