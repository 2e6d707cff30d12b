/**
 * The WordPiece vocabulary of `base tiny` (BERT / DistilBERT): learned pieces held once (as a word start or as a
 * '##' continuation, as HF's WordPiece trainer learns them), only the alphabet both ways; deterministic (same
 * corpus → byte-identical tokenizer.json); no word of the training corpus falls back to [UNK].
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Tokenizer } from 'tokenizers';
import { BUILTIN_CORPUS, createTinyBase } from '../../server/model/tiny';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-wordpiece-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

test('a real WordPiece vocabulary, deterministic, without [UNK] on its own corpus', async () => {
  const a = path.join(root, 'a');
  const b = path.join(root, 'b');
  await createTinyBase({ out: a, layers: 1, hidden: 8, heads: 1, seed: 0 });
  await createTinyBase({ out: b, layers: 1, hidden: 8, heads: 1, seed: 0 });
  const json = fs.readFileSync(path.join(a, 'tokenizer.json'), 'utf8');
  expect(fs.readFileSync(path.join(b, 'tokenizer.json'), 'utf8')).toBe(json);
  const vocab = Object.keys(JSON.parse(json).model.vocab as Record<string, number>);
  const bare = vocab.map((t) => t.replace(/^##/, ''));
  const distinct = new Set(bare).size;
  const alphabet = new Set(bare.filter((t) => [...t].length === 1)).size;
  console.log(`tiny WordPiece vocabulary: ${vocab.length} entries, ${distinct} distinct strings, alphabet ${alphabet}`);
  // before, every piece was held twice (distinct = entries / 2); now the alphabet is, and of the learned pieces
  // only the few that the corpus really uses both ways ('er' and '##er')
  const learned = vocab.length - 5 - 2 * alphabet;
  const learnedTwice = vocab.length - distinct - alphabet;
  expect(learnedTwice).toBeLessThan(0.1 * learned);
  expect(distinct).toBeGreaterThan(0.75 * vocab.length);
  // merged pieces: word starts and continuations are distinct learned units
  expect(vocab.some((t) => t.startsWith('##') && [...t].length > 3)).toBe(true);
  expect(vocab.some((t) => !t.startsWith('##') && !t.startsWith('[') && [...t].length > 2)).toBe(true);
  const tok = Tokenizer.fromFile(path.join(a, 'tokenizer.json'));
  for (const line of BUILTIN_CORPUS) {
    const ids = (await tok.encode(line)).getIds();
    expect(ids.includes(1)).toBe(false);
  }
});
