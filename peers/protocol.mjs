// The measurement protocol of ruvector-lab's Python harness (ruvector_lab/bench/runner.py), in plain JavaScript so
// that Node.js and the browser page run the very same code: one build, then per ef_search a warm-up, every query
// timed alone (p50/p95/p99/mean), and the whole query set timed as one batch loop (QPS) `repeats` times.
// Recall is not computed here: the returned ids go back to Python, which scores them with the project's one recall
// definition against the dataset's ground truth.
import { identityProbe } from './drift.mjs';

/** Nearest-rank-free percentiles as NumPy's default (linear interpolation), in milliseconds. */
export function percentilesMs(samplesMs) {
  const sorted = Float64Array.from(samplesMs).sort();
  const at = (q) => {
    const pos = (q / 100) * (sorted.length - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(lo + 1, sorted.length - 1);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  };
  let sum = 0;
  for (const v of sorted) sum += v;
  return { p50: at(50), p95: at(95), p99: at(99), mean: sum / sorted.length, count: sorted.length };
}

/** The smallest non-zero step the clock shows (ms): a browser coarsens performance.now() unless the page is
 * cross-origin isolated, and a latency below this step cannot be told apart from zero. */
export function clockResolutionMs(clock) {
  let best = Infinity;
  for (let i = 0; i < 200; i++) {
    const a = clock.now();
    let b = clock.now();
    while (b === a) b = clock.now();
    best = Math.min(best, b - a);
  }
  return best;
}

function row(matrix, dimensions, i) {
  return matrix.subarray(i * dimensions, (i + 1) * dimensions);
}

// awaiting a value that is not a promise still costs a microtask turn per query: only the async bindings pay it
function settle(value) {
  return value !== null && typeof value === 'object' && typeof value.then === 'function' ? value : null;
}

/**
 * Measure one side on one dataset.
 * side: {build(train, n, d, metric, build), setEf(ef) (absent: no ef_search), search(q, k) -> ids (Array-like),
 *        memoryBytes() -> number|null, info() -> object}
 * clock: {now() -> ms (float), cpuMs() -> ms of process CPU time or null}
 * data: {train: Float32Array, test: Float32Array, n_train, n_test, dimensions, metric}
 * spec: {build: {m, ef_construction, seed}, query: {k, ef_search: [..], n_queries, warmup, repeats},
 *        probe_min_share}
 * progress: optional (message) => void
 */
export async function measure(side, clock, data, spec, progress = () => {}) {
  const { train, test, dimensions: d } = data;
  const n = data.n_train;
  const nq = Math.min(spec.query.n_queries, data.n_test);
  const k = spec.query.k;
  if (!(k >= 1) || nq < 1 || n < k) throw new Error(`bad protocol: k=${k}, ${nq} queries, ${n} vectors`);

  const memBefore = await side.memoryBytes();
  const cpu0 = clock.cpuMs();
  const t0 = clock.now();
  await side.build(train, n, d, data.metric, spec.build);
  const buildS = (clock.now() - t0) / 1e3;
  const cpu1 = clock.cpuMs();
  const memAfter = await side.memoryBytes();
  progress(`built in ${buildS.toFixed(2)} s`);
  // a stored vector is its own nearest neighbour under a distance (not under inner product, where longer rows win)
  if (data.metric !== 'dot_product') {
    await identityProbe(side, train, n, d, k, Math.max(...spec.query.ef_search, k), spec.probe_min_share);
  }

  const efs = side.setEf ? spec.query.ef_search : [null];
  const sweep = [];
  for (const ef of efs) {
    if (ef !== null) await side.setEf(Math.max(ef, k));
    for (let i = 0; i < Math.min(spec.query.warmup, nq); i++) {
      const p = settle(side.search(row(test, d, i % nq), k));
      if (p) await p;
    }
    const ids = new Int32Array(nq * k).fill(-1);
    const lat = new Float64Array(nq);
    for (let i = 0; i < nq; i++) {
      const q = row(test, d, i);
      const a = clock.now();
      let got = side.search(q, k);
      const p = settle(got);
      if (p) got = await p;
      lat[i] = clock.now() - a;
      const m = Math.min(k, got.length);
      for (let j = 0; j < m; j++) ids[i * k + j] = Number(got[j]);
    }
    const qps = [];
    const cpuUtil = [];
    for (let r = 0; r < spec.query.repeats; r++) {
      const c0 = clock.cpuMs();
      const a = clock.now();
      for (let i = 0; i < nq; i++) {
        const p = settle(side.search(row(test, d, i), k));
        if (p) await p;
      }
      const wallMs = clock.now() - a;
      const c1 = clock.cpuMs();
      qps.push(nq / (wallMs / 1e3));
      cpuUtil.push(c0 === null ? null : (c1 - c0) / wallMs);
    }
    sweep.push({ ef_search: ef, latency_ms: percentilesMs(lat), qps, cpu_utilization: cpuUtil, ids: Array.from(ids) });
    progress(`ef ${ef}: p50 ${(sweep.at(-1).latency_ms.p50 * 1e3).toFixed(1)} us, ${qps[0].toFixed(0)} QPS`);
  }
  // no growth means the index fit in memory the runtime had already reserved (a WASM module's initial pages):
  // not a size of zero, so it is recorded as unmeasured
  const grown = memBefore === null || memAfter === null || memAfter <= memBefore ? null : memAfter - memBefore;
  return {
    build_time_s: buildS,
    build_cpu_utilization: cpu0 === null ? null : (cpu1 - cpu0) / (buildS * 1e3),
    memory: { bytes: grown, bytes_per_vector: grown === null ? null : grown / n, before: memBefore, after: memAfter },
    n_queries: nq,
    k,
    sweep,
    clock_resolution_ms: clockResolutionMs(clock),
  };
}
