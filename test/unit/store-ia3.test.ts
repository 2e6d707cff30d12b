/**
 * IA³ packages in the store: manifest defaults (AdapterHub's key, value, ffn_in), the documented tensor names
 * and PEFT shapes ([out, 1] output-scaled, [1, in] for ffn_out), and the validator naming missing, extra,
 * wrong-shape tensors and bad config fields.
 */
import { expectedTensors, parseManifest, StoreError, validatePackage } from '../../modules-store';
import { serializeSafetensors } from '../../modules-store/safetensors';
import { makeManifestInput, makePackageFiles, makeTensors, type MakeOptions } from '../helpers/hub';

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof StoreError) return `${e.code}: ${e.message}`;
    throw e;
  }
  return 'no error';
}

const FFN = { intermediate_size: 32 } as never;

function withTensors(o: MakeOptions, edit: (t: ReturnType<typeof makeTensors>) => void): Map<string, Buffer> {
  const files = makePackageFiles(o);
  const m = parseManifest(JSON.parse(files.get('module.json')!.toString()));
  const t = makeTensors(m);
  edit(t);
  files.set('weights.safetensors', serializeSafetensors(t));
  return files;
}

describe('ia3 packages', () => {
  it("defaults target_modules to AdapterHub's IA3Config placement (key, value, ffn_in)", () => {
    const m = parseManifest(makeManifestInput({ kind: 'ia3', config: {} }));
    expect(m.kind === 'ia3' && m.config.target_modules).toEqual(['key', 'value', 'ffn_in']);
  });

  it('derives the documented names and PEFT shapes', () => {
    const m = parseManifest(makeManifestInput({ kind: 'ia3', config: { target_modules: ['query', 'key', 'value', 'attn_output', 'ffn_in', 'ffn_out'], leave_out: [1] }, base: FFN }));
    const exp = expectedTensors(m);
    expect(exp.get('layers.0.key.ia3_l')?.shape).toEqual([8, 1]);
    expect(exp.get('layers.0.attn_output.ia3_l')?.shape).toEqual([8, 1]);
    expect(exp.get('layers.0.ffn_in.ia3_l')?.shape).toEqual([32, 1]);
    expect(exp.get('layers.0.ffn_out.ia3_l')?.shape).toEqual([1, 32]);
    expect(exp.has('layers.1.key.ia3_l')).toBe(false);
    expect([...exp.keys()].filter((n) => n.endsWith('ia3_l'))).toHaveLength(6);
  });

  it.each([
    ['AdapterHub placement', ['key', 'value', 'ffn_in']],
    ['PEFT placement', ['key', 'value', 'ffn_out']],
  ])('accepts a valid package (%s), inferring the FFN size from the tensors', (_n, targets) => {
    expect(validatePackage(makePackageFiles({ kind: 'ia3', config: { target_modules: targets } })).manifest.kind).toBe('ia3');
  });

  it('names a missing tensor', () => {
    const files = withTensors({ kind: 'ia3' }, (t) => t.delete('layers.1.value.ia3_l'));
    expect(code(() => validatePackage(files))).toMatch(/INVALID_WEIGHTS: .*lacks 1 tensor.*the ia3 config requires: 'layers\.1\.value\.ia3_l'/);
  });
  it('names an unexpected tensor', () => {
    const files = withTensors({ kind: 'ia3' }, (t) => t.set('layers.0.query.ia3_l', { dtype: 'F32', shape: [8, 1], data: new Float32Array(8) }));
    expect(code(() => validatePackage(files))).toMatch(/INVALID_WEIGHTS: .*the ia3 config does not define: 'layers\.0\.query\.ia3_l'/);
  });
  it('names a wrong shape (a feedforward [1, in] vector on an output-scaled target)', () => {
    const files = withTensors({ kind: 'ia3' }, (t) => t.set('layers.0.key.ia3_l', { dtype: 'F32', shape: [1, 8], data: new Float32Array(8) }));
    expect(code(() => validatePackage(files))).toMatch(/'layers\.0\.key\.ia3_l' has shape \[1, 8\], expected \[8, 1\]/);
  });
  it('names an FFN size that disagrees with the manifest', () => {
    const files = makePackageFiles({ kind: 'ia3', config: { target_modules: ['ffn_out'] } });
    const m = JSON.parse(files.get('module.json')!.toString());
    m.base.intermediate_size = 16;
    files.set('module.json', Buffer.from(JSON.stringify(m)));
    expect(code(() => validatePackage(files))).toMatch(/'layers\.0\.ffn_out\.ia3_l' has shape \[1, 32\], expected \[1, 16\]/);
  });
  it('names a bad target and an out-of-range leave_out', () => {
    expect(code(() => parseManifest(makeManifestInput({ kind: 'ia3', config: { target_modules: ['k'] } })))).toMatch(/INVALID_MANIFEST: .*config\.target_modules\.0/);
    expect(code(() => validatePackage(makePackageFiles({ kind: 'ia3', config: { leave_out: [5] } })))).toMatch(/config\.leave_out names layer 5, but the base has 2 layers/);
  });
});
