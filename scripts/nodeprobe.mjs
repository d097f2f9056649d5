// The official Node GatewayClient (openclaw's packages/gateway-client, from the pinned
// install) probing a gateway for scripts/bench.py --real --node-client: it keeps asking
// `health` and prints "ok <wall-clock ms>" for every answer, so the benchmark can time its
// reconnect after a gateway restart next to gwclient's.
//
//   OPENCLAW_PREFIX=~/.cache/gwclient/openclaw-2026.9.6 PROBE_URL=ws://127.0.0.1:P PROBE_TOKEN=T \
//     node scripts/nodeprobe.mjs
//
// The client is built into a hashed dist chunk; the chunk that exports `GatewayClient` is
// found by its export line.  Runs until SIGTERM.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const dist = path.join(process.env.OPENCLAW_PREFIX, 'node_modules', 'openclaw', 'dist');
let chunk = null;
let exportName = null;
for (const name of readdirSync(dist)) {
  if (!/^client-[\w-]+\.mjs$/.test(name)) continue;
  const text = readFileSync(path.join(dist, name), 'utf8');
  const m = text.match(/export \{[^}]*\bGatewayClient as (\w+)[^}]*\};?\s*$/);
  if (m && text.includes('createOpenClawGatewayClientHostDeps')) {
    chunk = name;
    exportName = m[1];
    break;
  }
}
if (!chunk) {
  process.stderr.write('GatewayClient not found in the openclaw dist\n');
  process.exit(2);
}
const mod = await import(pathToFileURL(path.join(dist, chunk)).href);
const GatewayClient = mod[exportName];

// Its request() writes on any open socket, even before hello-ok (the gateway then closes
// it: "first request must be connect"), so the probe asks only between hello-ok and close.
let ready = false;
const client = new GatewayClient({
  url: process.env.PROBE_URL,
  token: process.env.PROBE_TOKEN,
  clientName: 'cli',
  mode: 'cli',
  role: 'operator',
  scopes: ['operator.read'],
  requestTimeoutMs: 2000,
  onHelloOk: () => { ready = true; },
  onClose: () => { ready = false; },
});
client.start();

let stopped = false;
process.on('SIGTERM', () => {
  stopped = true;
  client.stop();
  setTimeout(() => process.exit(0), 200).unref();
});
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const wallMs = () => performance.timeOrigin + performance.now();
while (!stopped) {
  if (!ready) {
    await sleep(1);
    continue;
  }
  try {
    await client.request('health', {}, { timeoutMs: 2000 });
    process.stdout.write(`ok ${wallMs().toFixed(3)}\n`);
  } catch {
    await sleep(5);
  }
}
