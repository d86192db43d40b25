// The sides that run in the browser page (peers/page.html): WASM builds made for the web (ENVIRONMENT=web), which
// refuse Node.js. Same interface as sides-node.mjs; the page serves each package from the project's node_modules.
import { checkApi, DriftError, notAvailable } from './drift.mjs';

// Emscripten keeps its WebAssembly.Memory to itself; seeing every instance the page creates lets the side report
// the module's linear memory growth, the measure the Node WASM sides report
const instances = [];
for (const name of ['instantiate', 'instantiateStreaming']) {
  const original = WebAssembly[name];
  WebAssembly[name] = async (...args) => {
    const made = await original.apply(WebAssembly, args);
    instances.push(made.instance ?? made);
    return made;
  };
}

function linearMemoryBytes() {
  let total = 0;
  for (const instance of instances) {
    const memory = Object.values(instance.exports).find((v) => v instanceof WebAssembly.Memory);
    if (memory) total += memory.buffer.byteLength;
  }
  return instances.length ? total : null;
}

async function packageVersion(pkg) {
  const res = await fetch(`/node_modules/${pkg}/package.json`);
  if (!res.ok) throw notAvailable(`${pkg} is not installed (node_modules/${pkg}); run make setup-npm`);
  return (await res.json()).version;
}

const HNSWLIB_SPACES = { cosine: 'cosine', euclidean: 'l2', dot_product: 'ip' };

async function hnswlibWasm() {
  const pkg = 'hnswlib-wasm';
  const version = await packageVersion(pkg);
  let lib;
  try {
    const mod = await import(`/node_modules/${pkg}/dist/hnswlib.js`);
    if (typeof mod.loadHnswlib !== 'function') throw new DriftError(pkg, version, 'no loadHnswlib export');
    lib = await mod.loadHnswlib();
  } catch (e) {
    if (e.drift) throw e;
    throw notAvailable(`${pkg} ${version} does not load in this browser: ${e.message}`);
  }
  checkApi(pkg, version, { HierarchicalNSW: lib.HierarchicalNSW },
    { HierarchicalNSW: ['initIndex', 'addPoint', 'searchKnn', 'setEfSearch', 'getCurrentCount'] });
  let index = null;
  return {
    package: pkg, version, algorithm: 'hnsw', runtime: 'browser',
    build(train, n, d, metric, build) {
      const space = HNSWLIB_SPACES[metric];
      if (!space) throw notAvailable(`${pkg} has no metric for ${metric}`);
      // '' as the auto-save file name: nothing is written to the page's IndexedDB file system
      index = new lib.HierarchicalNSW(space, d, '');
      index.initIndex(n, build.m, build.ef_construction, build.seed);
      for (let i = 0; i < n; i++) index.addPoint(train.subarray(i * d, (i + 1) * d), i, false);
      if (index.getCurrentCount() !== n) throw new DriftError(pkg, version, `holds ${index.getCurrentCount()} of ${n}`);
    },
    setEf(ef) { index.setEfSearch(ef); },
    search(q, k) { return index.searchKnn(q, k, undefined).neighbors; },
    memoryBytes: linearMemoryBytes,
    memoryMeasure: 'wasm linear memory growth',
  };
}

/** side name -> factory() for the sides that run in the browser page */
export const BROWSER_SIDES = { 'hnswlib-wasm': hnswlibWasm };
