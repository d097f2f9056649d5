// A fast, minimal protocol-4 gateway for scripts/bench.py: a Node `ws` server that answers
// as fast as it can so the benchmark measures the client, not the server.
//
//   WS_MODULE=/path/to/node_modules/ws node scripts/fastgw.mjs [--port 0] [--token T]
//
// Prints "listening <port>" on stdout once it accepts connections; exits on SIGTERM/SIGINT.
// Speaks just enough of the protocol: connect.challenge on open; `connect` (shared token)
// answered with hello-ok (protocol 4, policy, snapshot); `health` and `echo` answered at
// once; `bench.burst` {count, size} sends `count` events (per-connection seq) back to back,
// then answers {count}; `bench.stats` answers {accepted} (sockets accepted so far).
// The `ws` package comes from the pinned openclaw install (WS_MODULE or NODE_PATH).
import { createRequire } from 'node:module';
import { randomUUID } from 'node:crypto';
import path from 'node:path';

const require = createRequire(import.meta.url);
const wsPath = process.env.WS_MODULE ? path.resolve(process.env.WS_MODULE) : 'ws';
const { WebSocketServer } = require(wsPath);

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const port = Number(opt('--port', '0'));
const token = process.env.FASTGW_TOKEN ?? opt('--token', '');
const TICK_MS = 30000;
let accepted = 0;

const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, maxPayload: 64 << 20 });

wss.on('connection', (ws) => {
  accepted += 1;
  let seq = 0;
  let helloDone = false;
  const event = (name, payload) => {
    seq += 1;
    ws.send(`{"type":"event","event":"${name}","payload":${JSON.stringify(payload)},"seq":${seq}}`);
  };
  const answer = (id, payload) => ws.send(JSON.stringify({ type: 'res', id, ok: true, payload }));
  const fail = (id, code, message) => ws.send(JSON.stringify({ type: 'res', id, ok: false, error: { code, message } }));

  ws.send(JSON.stringify({
    type: 'event', event: 'connect.challenge', payload: { nonce: randomUUID(), ts: Date.now() },
  }));
  const ticker = setInterval(() => { if (helloDone) event('tick', { ts: Date.now() }); }, TICK_MS);
  ws.on('close', () => clearInterval(ticker));
  ws.on('error', () => {});

  ws.on('message', (data) => {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      ws.close(1003, 'invalid json');
      return;
    }
    if (frame.type !== 'req' || typeof frame.id !== 'string') return;
    const { id, method, params } = frame;
    if (!helloDone) {
      if (method !== 'connect') {
        fail(id, 'INVALID_REQUEST', 'connect first');
        return;
      }
      if ((params?.auth?.token ?? '') !== token) {
        fail(id, 'UNAUTHORIZED', 'token mismatch');
        ws.close(1008, 'unauthorized');
        return;
      }
      helloDone = true;
      answer(id, {
        type: 'hello-ok',
        protocol: 4,
        server: { version: 'fastgw', connId: randomUUID() },
        features: { methods: ['health', 'echo', 'bench.burst', 'bench.stats'], events: ['tick', 'bench.tick'], capabilities: [] },
        snapshot: { presence: [], health: { ok: true }, stateVersion: { presence: 0, health: 0 }, uptimeMs: Math.round(process.uptime() * 1000) },
        policy: { maxPayload: 64 << 20, maxBufferedBytes: 256 << 20, tickIntervalMs: TICK_MS },
        auth: { method: 'token', role: params?.role ?? 'operator', scopes: params?.scopes ?? [] },
      });
      return;
    }
    switch (method) {
      case 'health':
        answer(id, { ok: true, ts: Date.now() });
        return;
      case 'echo':
        answer(id, params ?? null);
        return;
      case 'bench.stats':
        answer(id, { accepted });
        return;
      case 'bench.burst': {
        const count = Math.max(0, Number(params?.count ?? 0) | 0);
        const pad = JSON.stringify('x'.repeat(Math.max(0, Number(params?.size ?? 0) | 0)));
        for (let i = 0; i < count; i += 1) {
          seq += 1;
          ws.send(`{"type":"event","event":"bench.tick","payload":{"i":${i},"data":${pad}},"seq":${seq}}`);
        }
        answer(id, { count });
        return;
      }
      default:
        fail(id, 'INVALID_REQUEST', `unknown method ${method}`);
    }
  });
});

wss.on('listening', () => {
  process.stdout.write(`listening ${wss.address().port}\n`);
});

const stop = () => {
  for (const client of wss.clients) client.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
