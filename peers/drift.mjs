// Version drift: a published package whose API is not the one the runner was written against must fail its side
// with a message naming the package and version, before anything is timed, never with a wrong number.

/** A package's API differs from what the runner calls. */
export class DriftError extends Error {
  constructor(pkg, version, detail) {
    super(`${pkg} ${version}: API differs from what the runner expects (${detail}); ` +
      'the runner was written against the version pinned in package.json');
    this.name = 'DriftError';
    this.drift = true;
    this.package = pkg;
    this.version = version;
  }
}

/** An error saying the side cannot run here (a package, addon, runtime or metric missing): recorded as "not available"
 * with this message, never as a failure of the library. */
export function notAvailable(message) {
  return Object.assign(new Error(message), { notAvailable: true });
}

/**
 * Check that every named function exists before any is called.
 * objects: {name: class or object}; methods: {name: [function names]}; on the class's prototype, or on the object
 * itself when `plain` is true (a module namespace, a WebAssembly instance's exports).
 */
export function checkApi(pkg, version, objects, methods, plain = false) {
  for (const [name, wanted] of Object.entries(methods)) {
    const owner = objects[name];
    if (owner === undefined || owner === null) throw new DriftError(pkg, version, `no ${name}`);
    const where = plain ? owner : owner.prototype;
    if (!plain && typeof owner !== 'function') throw new DriftError(pkg, version, `${name} is not a class`);
    const missing = wanted.filter((fn) => typeof where?.[fn] !== 'function');
    if (missing.length) throw new DriftError(pkg, version, `${name} has no ${missing.join(', ')}`);
  }
}

/**
 * After the build, before anything is timed: a few stored vectors searched for (at ef_search `ef` when the side
 * has one) must come back among their own k nearest, at least `minShare` of them (the spec's probe_min_share, set
 * in ruvector_lab/bench/peers.py), or the side fails naming its package and version instead of reporting a recall
 * of zero as a measurement. A package whose ids, metric or argument order changed meaning finds almost none; a
 * graph index on hard data misses a few even at a wide ef_search, and duplicates may rank another id first.
 */
export async function identityProbe(side, train, n, d, k, ef, minShare) {
  if (ef !== null && side.setEf) await side.setEf(ef);
  const probes = Math.min(20, n);
  const step = Math.max(1, Math.floor(n / probes));
  let found = 0;
  const seen = [];
  for (let p = 0; p < probes; p++) {
    const i = p * step;
    let got = side.search(train.subarray(i * d, (i + 1) * d), Math.min(k, n));
    if (got && typeof got.then === 'function') got = await got;
    const ids = Array.from(got, Number);
    if (ids.includes(i)) found += 1;
    else if (seen.length < 3) seen.push(`${i} -> [${ids.slice(0, 3).join(', ')}, ...]`);
  }
  if (found < minShare * probes) {
    throw new DriftError(side.package, side.version,
      `only ${found} of ${probes} stored vectors found themselves among their ${k} nearest (${seen.join('; ')})`);
  }
}
