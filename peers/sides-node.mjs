// The sides that run in Node.js: each package called as its own README shows, behind one small interface
// (see protocol.mjs). A side checks the package's version and the functions it will call before it measures
// anything, so version drift fails the side with a message naming the package, never with a wrong number.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

import { checkApi, DriftError, notAvailable } from './drift.mjs';

/** Version of an installed package, read from its own package.json under the project's node_modules. */
export function installedVersion(root, pkg) {
  const file = path.join(root, 'node_modules', pkg, 'package.json');
  if (!fs.existsSync(file)) throw notAvailable(`${pkg} is not installed (node_modules/${pkg}); run make setup-npm`);
  return JSON.parse(fs.readFileSync(file, 'utf8')).version;
}

function residentBytes() {
  return process.memoryUsage().rss;
}

function scratchDir(tag) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ruvector-lab-peers-${tag}-`));
}

const HNSWLIB_SPACES = { cosine: 'cosine', euclidean: 'l2', dot_product: 'ip' };
const RVF_NODE_METRICS = { cosine: 'cosine', euclidean: 'l2', dot_product: 'inner_product' };
const RVF_WASM_METRICS = { euclidean: 0, dot_product: 1, cosine: 2 };
const CORE_METRICS = { cosine: 'Cosine', euclidean: 'Euclidean', dot_product: 'DotProduct' };
const RUVECTOR_WASM_METRICS = { cosine: 'cosine', euclidean: 'euclidean', dot_product: 'dotproduct' };

function metricOf(table, metric, pkg) {
  const name = table[metric];
  if (name === undefined) throw notAvailable(`${pkg} has no metric for ${metric}`);
  return name;
}

/** A CommonJS package with a native part: its exports, or "not available" saying why it does not load here
 * (`hint`: what builds or provides the native part). */
function requireNative(root, pkg, version, hint) {
  try {
    return createRequire(path.join(root, 'package.json'))(pkg);
  } catch (e) {
    throw notAvailable(`${pkg} ${version} cannot load its native module for ${process.platform}-${process.arch} ` +
      `(${String(e.message).split('\n')[0]})${hint ? `; ${hint}` : ''}`);
  }
}

// ------------------------------------------------------------------------------------------------ hnswlib-node
async function hnswlibNative(root) {
  const pkg = 'hnswlib-node';
  const version = installedVersion(root, pkg);
  // the addon is compiled by the package's install script (node-gyp): without it the package cannot load
  const lib = requireNative(root, pkg, version, 'make setup-npm compiles it with node-gyp');
  checkApi(pkg, version, { HierarchicalNSW: lib.HierarchicalNSW },
    { HierarchicalNSW: ['initIndex', 'addPoint', 'searchKnn', 'setEf', 'getCurrentCount'] });
  let index = null;
  return {
    package: pkg, version, algorithm: 'hnsw', runtime: 'node',
    build(train, n, d, metric, build) {
      index = new lib.HierarchicalNSW(metricOf(HNSWLIB_SPACES, metric, pkg), d);
      index.initIndex(n, build.m, build.ef_construction, build.seed);
      // the binding takes plain Arrays only (number[]): the copy is part of what a Node user pays, both ways
      for (let i = 0; i < n; i++) index.addPoint(Array.from(train.subarray(i * d, (i + 1) * d)), i);
      if (index.getCurrentCount() !== n) throw new DriftError(pkg, version, `holds ${index.getCurrentCount()} of ${n}`);
    },
    setEf(ef) { index.setEf(ef); },
    search(q, k) { return index.searchKnn(Array.from(q), k).neighbors; },
    memoryBytes: residentBytes,
    memoryMeasure: 'process RSS growth',
  };
}

// ------------------------------------------------------------------------------------------ @ruvector/rvf-node
async function rvfNative(root) {
  const pkg = '@ruvector/rvf-node';
  const version = installedVersion(root, pkg);
  const lib = requireNative(root, pkg, version, null);
  checkApi(pkg, version, { RvfDatabase: lib.RvfDatabase }, { RvfDatabase: ['ingestBatch', 'query', 'close', 'indexStats'] });
  if (typeof lib.RvfDatabase.create !== 'function') throw new DriftError(pkg, version, 'no RvfDatabase.create');
  let db = null;
  let dir = null;
  let ef = null;
  return {
    package: pkg, version, algorithm: 'hnsw', runtime: 'node',
    build(train, n, d, metric, build) {
      dir = scratchDir('rvf');
      db = lib.RvfDatabase.create(path.join(dir, 'index.rvf'),
        { dimension: d, metric: metricOf(RVF_NODE_METRICS, metric, pkg), m: build.m, efConstruction: build.ef_construction });
      const ids = Array.from({ length: n }, (_, i) => i);
      const got = db.ingestBatch(train.subarray(0, n * d), ids);
      if (got.accepted !== n) throw new DriftError(pkg, version, `ingestBatch accepted ${got.accepted} of ${n}`);
      // the store builds its HNSW graph on the first query after an ingest (seconds at 10k x 384, where each later
      // query takes under a millisecond): that query belongs to the build, or the build time would be the ingest alone
      db.query(train.subarray(0, d), 1, {});
    },
    setEf(value) { ef = value; },
    search(q, k) { return db.query(q, k, ef === null ? {} : { efSearch: ef }).map((hit) => hit.id); },
    info() { return { index_stats: db.indexStats() }; },
    close() {
      db?.close();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    },
    memoryBytes: residentBytes,
    memoryMeasure: 'process RSS growth',
  };
}

// ------------------------------------------------------------------------------------------ @ruvector/rvf-wasm
/** The rvf microkernel's C ABI (the same calls ruvector_lab/wasm/rvf.py makes through wasmtime). */
export function rvfWasmStore(exports, pkg, version) {
  checkApi(pkg, version, { exports }, {
    exports: ['rvf_alloc', 'rvf_free', 'rvf_store_create', 'rvf_store_ingest', 'rvf_store_query', 'rvf_store_close'],
  }, true);
  const RECORD = 12; // (u64 id, f32 distance), unaligned
  let handle = 0;
  let metricCode = 0;
  let queryAt = 0;
  let outAt = 0;
  let outK = 0;
  let dims = 0;
  const alloc = (bytes) => {
    const at = exports.rvf_alloc(bytes);
    if (!at) throw new Error(`${pkg} ${version}: rvf_alloc(${bytes}) failed (wasm memory exhausted)`);
    return at;
  };
  return {
    build(train, n, d, metric, _build) {
      metricCode = metricOf(RVF_WASM_METRICS, metric, pkg);
      dims = d;
      handle = exports.rvf_store_create(d, metricCode);
      if (handle <= 0) throw new DriftError(pkg, version, `rvf_store_create(${d}, ${metricCode}) returned ${handle}`);
      const chunk = 1024;
      const vecAt = alloc(chunk * d * 4);
      const idAt = alloc(chunk * 8);
      for (let start = 0; start < n; start += chunk) {
        const m = Math.min(chunk, n - start);
        new Float32Array(exports.memory.buffer, vecAt, m * d).set(train.subarray(start * d, (start + m) * d));
        const ids = new BigUint64Array(exports.memory.buffer, idAt, m);
        for (let j = 0; j < m; j++) ids[j] = BigInt(start + j);
        const got = exports.rvf_store_ingest(handle, vecAt, idAt, m);
        if (got !== m) throw new DriftError(pkg, version, `rvf_store_ingest took ${got} of ${m}`);
      }
      exports.rvf_free(vecAt, chunk * d * 4);
      exports.rvf_free(idAt, chunk * 8);
      queryAt = alloc(d * 4);
    },
    search(q, k) {
      if (k !== outK) {
        if (outAt) exports.rvf_free(outAt, outK * RECORD);
        outAt = alloc(k * RECORD);
        outK = k;
      }
      new Float32Array(exports.memory.buffer, queryAt, dims).set(q);
      const got = exports.rvf_store_query(handle, queryAt, k, metricCode, outAt);
      if (got < 0 || got > k) throw new DriftError(pkg, version, `rvf_store_query returned ${got} for k=${k}`);
      const view = new DataView(exports.memory.buffer, outAt, got * RECORD);
      const ids = new Array(got);
      for (let j = 0; j < got; j++) ids[j] = Number(view.getBigUint64(j * RECORD, true));
      return ids;
    },
    memoryBytes() { return exports.memory.buffer.byteLength; },
    memoryMeasure: 'wasm linear memory growth',
  };
}

async function rvfWasm(root) {
  const pkg = '@ruvector/rvf-wasm';
  const version = installedVersion(root, pkg);
  const bytes = fs.readFileSync(path.join(root, 'node_modules', pkg, 'pkg', 'rvf_wasm_bg.wasm'));
  const { instance } = await WebAssembly.instantiate(bytes, {});
  return { package: pkg, version, algorithm: 'exact', runtime: 'node', ...rvfWasmStore(instance.exports, pkg, version) };
}

// ------------------------------------------------------------------------------------------- @ruvector/core
async function ruvectorCore(root) {
  const pkg = '@ruvector/core';
  const version = installedVersion(root, pkg);
  const lib = requireNative(root, pkg, version, null);
  const VectorDb = lib.VectorDb ?? lib.VectorDB;
  checkApi(pkg, version, { VectorDb }, { VectorDb: ['insertBatch', 'search'] });
  let db = null;
  let dir = null;
  let ef = null;
  return {
    package: pkg, version, algorithm: 'hnsw', runtime: 'node',
    async build(train, n, d, metric, build) {
      // a VectorDb without storagePath opens ./ruvector.db and keeps what an earlier run put there: a fresh folder
      dir = scratchDir('core');
      db = new VectorDb({ dimensions: d, distanceMetric: metricOf(CORE_METRICS, metric, pkg),
        storagePath: path.join(dir, 'db'), hnswConfig: { m: build.m, efConstruction: build.ef_construction } });
      const chunk = 1000;
      for (let start = 0; start < n; start += chunk) {
        const entries = [];
        for (let i = start; i < Math.min(n, start + chunk); i++) {
          entries.push({ id: String(i), vector: train.subarray(i * d, (i + 1) * d) });
        }
        await db.insertBatch(entries);
      }
    },
    setEf(value) { ef = value; },
    // the binding's search is async (a Promise resolved from the libuv pool): what a Node user awaits per query
    search(q, k) {
      const query = ef === null ? { vector: q, k } : { vector: q, k, efSearch: ef };
      return db.search(query).then((hits) => hits.map((h) => Number(h.id)));
    },
    close() { if (dir) fs.rmSync(dir, { recursive: true, force: true }); },
    memoryBytes: residentBytes,
    memoryMeasure: 'process RSS growth',
  };
}

// ------------------------------------------------------------------------------------------- @ruvector/wasm
async function ruvectorWasm(root) {
  const pkg = '@ruvector/wasm';
  const version = installedVersion(root, pkg);
  const dir = path.join(root, 'node_modules', pkg, 'pkg');
  const lib = await import(pathToFileURL(path.join(dir, 'ruvector_wasm.js')).href);
  checkApi(pkg, version, { lib }, { lib: ['initSync', 'detectSIMD', 'version'] }, true);
  checkApi(pkg, version, { VectorDB: lib.VectorDB }, { VectorDB: ['insert', 'search'] });
  const wasm = lib.initSync({ module: fs.readFileSync(path.join(dir, 'ruvector_wasm_bg.wasm')) });
  // the WASM build logs (through console) when it cannot give the HNSW index asked for and falls back to a flat scan
  const said = [];
  let db = null;
  return {
    package: pkg, version, algorithm: 'unknown', runtime: 'node',
    build(train, n, d, metric, _build) {
      const saved = { log: console.log, warn: console.warn, error: console.error };
      for (const name of Object.keys(saved)) console[name] = (...args) => { said.push(args.join(' ')); };
      try {
        db = new lib.VectorDB(d, metricOf(RUVECTOR_WASM_METRICS, metric, pkg), true);
      } finally {
        Object.assign(console, saved);
      }
      this.algorithm = said.some((s) => /flat index/i.test(s)) ? 'exact' : 'hnsw';
      for (let i = 0; i < n; i++) db.insert(train.slice(i * d, (i + 1) * d), String(i));
    },
    search(q, k) { return db.search(q, k).map((hit) => Number(hit.id)); },
    info() { return { library_said: said, simd: lib.detectSIMD(), module_version: lib.version() }; },
    memoryBytes() { return wasm.memory.buffer.byteLength; },
    memoryMeasure: 'wasm linear memory growth',
  };
}

/** side name -> factory(root) for the sides that run in Node.js */
export const NODE_SIDES = {
  'hnswlib-native': hnswlibNative,
  'rvf-native': rvfNative,
  'rvf-wasm': rvfWasm,
  'ruvector-core': ruvectorCore,
  'ruvector-wasm': ruvectorWasm,
};

