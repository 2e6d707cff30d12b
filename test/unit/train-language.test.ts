/**
 * Language modules as MAD-X trains them: a language adapter (seq_bn_inv, masked LM) learns under the base's own
 * pretrained MLM head, frozen, so it starts at the base's perplexity and must lower the held-out perplexity of
 * its language; the package carries no MLM head of its own.
 */
import { train } from '../../server/train/trainer';
import { mlmData, pretrainedTinyBase, tinyBase } from '../helpers/train-fixtures';

test('MAD-X language adapter: trained under the frozen pretrained MLM head, lowers its language\'s perplexity', async () => {
  const base = await pretrainedTinyBase();
  // "its language": text with a structure the base was not pretrained on (same words, other patterns)
  const dev = mlmData(120, 2);
  const res = await train({ base, method: 'seq_bn_inv', task: 'mlm', train: mlmData(400, 1), dev, epochs: 4, batchSize: 16, lr: 2e-3, seed: 0, threads: 1, id: 'lang/xx', language: 'xx' });
  await res.release();
  const ppl = res.history.filter((h) => h.eval).map((h) => h.eval!.perplexity);
  console.log(`MAD-X language adapter on the pretrained tiny base: held-out perplexity ${res.before!.perplexity.toFixed(2)} (bare base) -> ${res.metrics.perplexity.toFixed(2)}; by evaluation ${ppl.map((p) => p.toFixed(2)).join(' ')}`);
  // no MLM head of its own: the engine uses the base's head, as training did
  expect(res.manifest.head).toBeNull();
  expect([...res.tensors.keys()].filter((k) => k.startsWith('head.'))).toEqual([]);
  expect(res.manifest.task).toBe('mlm');
  // the adapter starts as (almost) the identity, so the first step's model is the bare base: a fresh random
  // head would start far above it
  expect(res.before!.perplexity).toBeLessThan(base.config.vocabSize / 4);
  expect(res.metrics.perplexity).toBeLessThan(res.before!.perplexity * 0.9);
});

test('a LoRA module trained with task mlm also uses the base head; a base without an MLM head gets a fresh one', async () => {
  const base = await pretrainedTinyBase();
  const res = await train({ base, method: 'lora', task: 'mlm', train: mlmData(64, 1), dev: mlmData(32, 2), epochs: 1, batchSize: 16, lr: 2e-3, seed: 0, threads: 1 });
  await res.release();
  expect(res.manifest.head).toBeNull();
  expect([...res.tensors.keys()].some((k) => k.startsWith('head.'))).toBe(false);
  const raw = await tinyBase();
  const headless = { ...raw, weights: new Map([...raw.weights].filter(([k]) => !k.startsWith('mlm.'))) };
  const res2 = await train({ base: headless, method: 'seq_bn', task: 'mlm', train: mlmData(32, 1), epochs: 1, batchSize: 16, seed: 0, threads: 1 });
  await res2.release();
  expect(res2.manifest.head).toMatchObject({ type: 'masked_lm' });
  expect(res2.tensors.has('head.decoder.bias')).toBe(true);
});
