/**
 * MLM pretraining of a base from scratch (random tiny base, full training, masked LM 15% 80/10/10), saved as a
 * new base folder that loads and has a lower dev perplexity than the random base.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { train } from '../../server/train/trainer';
import { saveTrainedBase } from '../../server/train/save-base';
import { loadBase } from '../../server/model/base';
import { tinyBase, mlmData } from '../helpers/train-fixtures';

test('pretrain a tiny base with MLM and save it as a base', async () => {
  const base = await tinyBase();
  const dev = mlmData(60, 2);
  const res = await train({ base, method: 'full', task: 'mlm', train: mlmData(400, 1), dev, epochs: 6, batchSize: 32, lr: 3e-3, seed: 0, threads: 1, evalEvery: 10 });
  await res.release();
  const ppl = res.history.filter((h) => h.eval).map((h) => h.eval!.perplexity);
  console.log('MLM pretraining dev perplexity:', ppl.map((p) => p.toFixed(2)).join(' '));
  expect(res.metrics.perplexity).toBeLessThan(ppl[0] * 0.7);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-pretrained-'));
  saveTrainedBase(base, res.tensors, out);
  const again = await loadBase(out);
  expect(again.fingerprint).not.toBe(base.fingerprint);
  // continuing from the saved base: its first evaluation is already at the trained level
  const cont = await train({ base: again, method: 'full', task: 'mlm', train: mlmData(32, 1), dev, maxSteps: 1, lr: 1e-9, batchSize: 32, seed: 0, threads: 1 });
  await cont.release();
  expect(cont.metrics.perplexity).toBeLessThan(ppl[0] * 0.7);
  fs.rmSync(out, { recursive: true, force: true });
});
