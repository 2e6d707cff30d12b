/**
 * How many times the resident pools of mixed batches are held (pool-space.ts): an engine of BERT-base shape (random
 * weights, worker sessions as `serve` runs them) loads N modules (seq_bn adapters and LoRA r=8 q/v, each with a
 * 2-layer classification head), then runs them in mixed batches of 8 so that every module gets its pool slots.
 * Printed side by side: the pools' own bytes (`engine.memory().pools`) and how much the process grew while the
 * batches ran (RSS after − before, after a GC). Growth / pool bytes near 1 means the pools are held once (in the
 * session worker); with a second copy on the main thread, as before, it was near 2.
 *
 *   npm run build:bench && node --expose-gc dist-bench/bench/pool-memory.js [N]      (N: modules, default 96)
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadBase } from '../server/model/base';
import { initModule } from '../server/model/module-init';
import { createTinyBase } from '../server/model/tiny';
import { Engine } from '../server/runtime/engine';

const N = Number(process.argv[2] ?? 96);
const MB = 2 ** 20;

/** RSS after a full GC when the process allows one (`--expose-gc`), else as it stands. */
async function settledRss(): Promise<number> {
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((r) => setTimeout(r, 300));
  return process.memoryUsage().rss;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-bench-pool-memory-'));
  try {
    await createTinyBase({ out: dir, family: 'bert', layers: 12, hidden: 768, heads: 12, seed: 0 });
    const base = await loadBase(dir);
    const engine = await Engine.create({ base, residentPoolBytes: 8 * 2 ** 30 });
    const head = { type: 'classification' as const, labels: ['a', 'b', 'c'] };
    for (let i = 0; i < N; i++) {
      const m =
        i % 2
          ? initModule(base, { kind: 'lora', id: `bench/m${i}`, version: '1.0.0', config: { r: 8, lora_alpha: 16, target_modules: ['query', 'value'] }, head, seed: i })
          : initModule(base, { kind: 'bottleneck', id: `bench/m${i}`, version: '1.0.0', config: { preset: 'seq_bn', reduction_factor: 16 }, head, seed: i });
      engine.addModule(m.manifest, m.tensors);
    }
    const enc = await base.tokenizer.encodeBatch(Array.from({ length: 8 }, (_, i) => `the quick brown fox jumps over the lazy dog ${i}`));
    // one mixed batch first: sessions and the first pool generation exist before the baseline is read
    const plansOf = async (from: number) => Promise.all(Array.from({ length: 8 }, async (_, j) => (await engine.plan(`bench/m${(from + j) % N}@1.0.0`))[0]));
    await engine.forward(enc, await plansOf(0));
    const before = await settledRss();
    const poolsBefore = engine.memory().pools.bytes;
    for (let b = 8; b < N; b += 8) await engine.forward(enc, await plansOf(b));
    const after = await settledRss();
    const mem = engine.memory();
    const grown = after - before;
    const pools = mem.pools.bytes - poolsBefore;
    console.log(`modhub pool memory: BERT-base shape (12L/768H), ${N} modules (adapters and LoRAs with 2-layer heads), mixed batches of 8`);
    console.log(`modules loaded (engine layout): ${(mem.modules.bytes / MB).toFixed(0)} MB`);
    console.log(`resident pools: ${(poolsBefore / MB).toFixed(0)} MB after the first batch, ${(mem.pools.bytes / MB).toFixed(0)} MB after all`);
    console.log(`process RSS while the batches ran: ${(before / MB).toFixed(0)} -> ${(after / MB).toFixed(0)} MB (+${(grown / MB).toFixed(0)} MB)`);
    console.log(`RSS growth / pool growth: ${(grown / Math.max(1, pools)).toFixed(2)}x (1 = pools held once; a copy on each thread would be ~2)`);
    if (!(globalThis as { gc?: () => void }).gc) console.log('(run with node --expose-gc for settled RSS readings)');
    await engine.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
