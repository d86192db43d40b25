// ruvector-lab's peer runner: one side (one package in one runtime) measured on one exported dataset.
//   node peers/runner.mjs SPEC.json
// The spec (written by ruvector_lab/bench/peers.py) names the side, the runtime (node or browser), the export
// folder (train.f32, test.f32: little-endian float32 rows), the build and query parameters, and where to write the
// result JSON. Node sides run in this process; browser sides run in a local page (peers/page.html) in headless
// Chromium, served from 127.0.0.1 with no other network, and post their result back here.
// Exit status: 0 with status "ok" or "not available" written; 3 with status "failed" (the reason written); any
// other exit (a crash) leaves no result and the caller records the stderr tail.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

import { notAvailable } from './drift.mjs';
import { measure } from './protocol.mjs';
import { NODE_SIDES } from './sides-node.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PINNED_ENV = ['RAYON_NUM_THREADS', 'OMP_NUM_THREADS', 'UV_THREADPOOL_SIZE'];

function log(message) {
  process.stderr.write(`[peers ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

function readMatrix(file, rows, dimensions) {
  const buf = fs.readFileSync(file);
  if (buf.byteLength !== rows * dimensions * 4) {
    throw new Error(`${file} holds ${buf.byteLength} bytes, expected ${rows} x ${dimensions} float32`);
  }
  // a fresh, aligned copy: Buffer slices of the shared pool need not start on a 4-byte boundary
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

function processThreads() {
  try {
    return fs.readdirSync('/proc/self/task').length;
  } catch {
    return null;
  }
}

function writeAtomic(file, value) {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, `${JSON.stringify(value, null, 1)}\n`);
  fs.renameSync(tmp, file);
}

const nodeClock = {
  now: () => performance.now(),
  cpuMs: () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e3;
  },
};

async function runNode(spec) {
  const factory = NODE_SIDES[spec.side];
  if (!factory) throw notAvailable(`no Node side ${spec.side}`);
  const side = await factory(spec.root);
  const { meta } = spec;
  const data = {
    train: readMatrix(path.join(spec.data_dir, 'train.f32'), meta.n_train, meta.dimensions),
    test: readMatrix(path.join(spec.data_dir, 'test.f32'), meta.n_test, meta.dimensions),
    n_train: meta.n_train, n_test: meta.n_test, dimensions: meta.dimensions, metric: meta.metric,
  };
  try {
    const measured = await measure(side, nodeClock, data, spec, log);
    return {
      package: side.package, version: side.version, algorithm: side.algorithm,
      memory_measure: side.memoryMeasure, info: side.info ? side.info() : {},
      engine: { name: 'node', version: process.versions.node, v8: process.versions.v8, napi: process.versions.napi },
      threads: { env: Object.fromEntries(PINNED_ENV.map((k) => [k, process.env[k] ?? null])),
        process_threads: processThreads() },
      measured,
    };
  } finally {
    side.close?.();
  }
}

// ------------------------------------------------------------------------------------------------ browser side
const TYPES = { '.html': 'text/html', '.mjs': 'text/javascript', '.js': 'text/javascript', '.json': 'application/json',
  '.wasm': 'application/wasm', '.f32': 'application/octet-stream' };

/** The files the page may fetch: the peers folder, the browser packages' dist folders, the export, the spec. */
function servedFile(spec, urlPath) {
  const clean = path.posix.normalize(decodeURIComponent(urlPath));
  if (clean.includes('..')) return null;
  if (clean === '/spec.json') return { body: JSON.stringify(spec) };
  if (clean.startsWith('/peers/')) return { file: path.join(HERE, clean.slice('/peers/'.length)) };
  if (clean.startsWith('/data/')) return { file: path.join(spec.data_dir, clean.slice('/data/'.length)) };
  for (const pkg of spec.browser_packages ?? []) {
    const prefix = `/node_modules/${pkg}/`;
    if (clean.startsWith(prefix)) return { file: path.join(spec.root, 'node_modules', pkg, clean.slice(prefix.length)) };
  }
  return null;
}

function serve(spec, onResult, onLog) {
  const server = http.createServer((req, res) => {
    const headers = {
      // cross-origin isolation: the page gets performance.now() at its finest resolution and measureUserAgentMemory
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cache-Control': 'no-store',
    };
    const url = new URL(req.url, 'http://127.0.0.1');
    if (req.method === 'POST') {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        res.writeHead(204, headers).end();
        const body = Buffer.concat(chunks).toString('utf8');
        if (url.pathname === '/result') onResult(JSON.parse(body));
        else onLog(body);
      });
      return;
    }
    const found = servedFile(spec, url.pathname);
    if (!found || (found.file && !fs.existsSync(found.file))) {
      res.writeHead(404, headers).end(`not served: ${url.pathname}`);
      return;
    }
    const type = TYPES[path.extname(found.file ?? '.json')] ?? 'application/octet-stream';
    res.writeHead(200, { ...headers, 'Content-Type': type });
    if (found.body !== undefined) res.end(found.body);
    else fs.createReadStream(found.file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function runBrowser(spec) {
  const chromium = spec.chromium;
  if (!chromium || !fs.existsSync(chromium)) {
    throw notAvailable('Chromium not found (Debian: apt-get install -y chromium; make setup-browser)');
  }
  let settle;
  const done = new Promise((resolve) => { settle = resolve; });
  const server = await serve(spec, (result) => settle({ result }), (line) => log(`page: ${line}`));
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ruvector-lab-chromium-'));
  const url = `http://127.0.0.1:${server.address().port}/peers/page.html`;
  // no network but the local server: every other host resolves nowhere and the browser's own services are off
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-extensions',
    '--disable-default-apps', '--no-first-run', '--no-default-browser-check', '--no-proxy-server',
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1', '--disable-features=Translate,MediaRouter',
    '--enable-blink-features=ForceEagerMeasureMemory', `--user-data-dir=${profile}`, url];
  const child = spawn(chromium, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c) => { stderr = (stderr + c.toString()).slice(-4000); });
  child.on('exit', (code, signal) => settle({ exited: { code, signal } }));
  const timer = setTimeout(() => settle({ timeout: true }), spec.timeout_s * 1e3);
  const outcome = await done;
  clearTimeout(timer);
  if (child.exitCode === null && child.signalCode === null) {
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await gone;
  }
  server.close();
  try {
    // the browser's helper processes may still be closing files in the profile: retry, and never fail the run on it
    fs.rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  } catch (e) {
    log(`could not remove the browser profile ${profile}: ${e.message}`);
  }
  if (outcome.timeout) throw new Error(`the browser page gave no result within ${spec.timeout_s} s`);
  if (outcome.exited) {
    throw new Error(`Chromium exited (code ${outcome.exited.code}, signal ${outcome.exited.signal}) before the page ` +
      `gave a result: ${stderr.trim().split('\n').slice(-5).join(' | ')}`);
  }
  const { result } = outcome;
  if (result.error) {
    throw Object.assign(new Error(result.error), { notAvailable: result.notAvailable, drift: result.drift });
  }
  return result;
}

// ------------------------------------------------------------------------------------------------------- main
async function main() {
  const specFile = process.argv[2];
  if (!specFile) {
    process.stderr.write('usage: node peers/runner.mjs SPEC.json\n');
    process.exit(2);
  }
  const spec = JSON.parse(fs.readFileSync(specFile, 'utf8'));
  const base = { side: spec.side, runtime: spec.runtime };
  let record;
  let code = 0;
  try {
    log(`${spec.runtime}:${spec.side} on ${spec.meta.n_train} x ${spec.meta.dimensions} (${spec.meta.metric})`);
    const measured = spec.runtime === 'browser' ? await runBrowser(spec) : await runNode(spec);
    record = { ...base, status: 'ok', ...measured };
  } catch (e) {
    const status = e.notAvailable ? 'not available' : 'failed';
    record = { ...base, status, reason: e.message, drift: Boolean(e.drift) };
    if (status === 'failed') code = 3;
    log(`${status}: ${e.message}`);
  }
  writeAtomic(spec.output, record);
  process.exit(code);
}

main();
