/**
 * The safe torch `.bin` reader (modules-store/interop/pickle.ts) on pickles written by hand from the pickle
 * protocol spec (test/helpers/torch-files.ts): state dicts read back exactly, strided views and F16 storages
 * materialise correctly, and every opcode or global beyond tensor data is refused with the conversion hint —
 * nothing is ever executed.
 */
import { readTorchBin, readTorchStateDict, unpickle } from '../../modules-store/interop/pickle';
import { f32 } from '../../modules-store/safetensors';
import { Pickler, stateDictPickle, torchSave, zipStored } from '../helpers/torch-files';

describe('safe torch .bin reader', () => {
  it('reads an OrderedDict state dict written as torch.save does', () => {
    const w = f32([2, 3], [1, -2, 3.5, 4, 5, 6e-7]);
    const b = f32([3], [0.25, -0.5, 1e3]);
    const sd = readTorchStateDict(torchSave(stateDictPickle([['bert.x.weight', w], ['bert.x.bias', b]])), 'pytorch_adapter.bin');
    expect([...sd.keys()]).toEqual(['bert.x.weight', 'bert.x.bias']);
    expect(sd.get('bert.x.weight')!.shape).toEqual([2, 3]);
    expect(Array.from(sd.get('bert.x.weight')!.data as Float32Array)).toEqual(Array.from(w.data as Float32Array));
    expect(Array.from(sd.get('bert.x.bias')!.data as Float32Array)).toEqual(Array.from(b.data as Float32Array));
  });

  it('materialises a transposed (strided) view with an offset, and widens F16 storages', () => {
    // storage [0, 1, 2, 3, 4, 5, 6]; view offset 1, size [2, 3], stride [1, 2] = [[1, 3, 5], [2, 4, 6]]
    const p = new Pickler();
    p.global('torch._utils', '_rebuild_tensor_v2').mark();
    p.mark().str('storage').global('torch', 'FloatStorage').str('0').str('cpu').int(7).tuple().raw(0x51);
    p.int(1).ints([2, 3]).ints([1, 2]).raw(0x89).global('collections', 'OrderedDict').raw(0x29, 0x52).tuple().raw(0x52);
    const storage = Buffer.from(Float32Array.from([0, 1, 2, 3, 4, 5, 6]).buffer);
    const t = readTorchBin(torchSave({ pkl: p.done(), storages: new Map([['0', storage]]) })).value as { shape: number[]; data: Float32Array };
    expect(t.shape).toEqual([2, 3]);
    expect(Array.from(t.data)).toEqual([1, 3, 5, 2, 4, 6]);

    const h = new Pickler();
    h.global('torch._utils', '_rebuild_tensor_v2').mark();
    h.mark().str('storage').global('torch', 'HalfStorage').str('0').str('cpu').int(2).tuple().raw(0x51);
    h.int(0).ints([2]).ints([1]).raw(0x89).global('collections', 'OrderedDict').raw(0x29, 0x52).tuple().raw(0x52);
    const half = Buffer.from([0x00, 0x3c, 0x00, 0xc0]); // 1.0, -2.0 in IEEE half
    const ht = readTorchBin(torchSave({ pkl: h.done(), storages: new Map([['0', half]]) })).value as { dtype: string; data: Float32Array };
    expect(ht.dtype).toBe('F32');
    expect(Array.from(ht.data)).toEqual([1, -2]);
  });

  it('reads torch.Size, numpy int64 scalars and nested dicts (composable-sft layout)', () => {
    const p = new Pickler();
    p.raw(0x7d).mark().str('size').global('torch', 'Size').mark().ints([4, 5]).tuple().raw(0x52);
    p.str('first').global('numpy.core.multiarray', 'scalar').mark().global('numpy', 'dtype').mark().str('i8').raw(0x89, 0x88).tuple().raw(0x52);
    p.mark().int(3).str('<').raw(0x4e, 0x4e, 0x4e).int(-1).int(-1).int(0).tuple().raw(0x62); // dtype state, dropped
    p.bytes(Buffer.from([7, 0, 0, 0, 0, 0, 0, 0])).tuple().raw(0x52).raw(0x75);
    const v = unpickle(p.done()) as Map<string, unknown>;
    expect(v.get('size')).toEqual([4, 5]);
    expect(v.get('first')).toBe(7);
  });

  it.each([
    ['os.system (GLOBAL)', (p: Pickler) => p.global('os', 'system').str('echo hi').raw(0x85, 0x52), /global 'os\.system'/],
    ['builtins.eval (STACK_GLOBAL)', (p: Pickler) => p.str('builtins').str('eval').raw(0x93), /global 'builtins\.eval'/],
    ['INST opcode', (p: Pickler) => p.raw(0x28).raw(0x69).raw(...Buffer.from('os\nsystem\n')), /opcode 0x69/],
    ['OBJ opcode', (p: Pickler) => p.raw(0x28, 0x6f), /opcode 0x6f/],
    ['NEWOBJ opcode', (p: Pickler) => p.global('collections', 'OrderedDict').raw(0x29, 0x81), /opcode 0x81/],
    ['REDUCE on a non-global', (p: Pickler) => p.str('x').raw(0x29, 0x52), /REDUCE on something that is not an allowed global/],
    ['a persistent id that is not a storage', (p: Pickler) => p.str('evil').raw(0x85, 0x51), /persistent id that is not a torch storage/],
  ])('refuses %s with the conversion hint', (_what, build, message) => {
    const p = new Pickler();
    build(p);
    const pkl = p.done();
    expect(() => unpickle(pkl, 'pytorch_adapter.bin')).toThrow(message);
    expect(() => unpickle(pkl, 'pytorch_adapter.bin')).toThrow(/never runs pickled code: convert it to safetensors/);
    expect(() => readTorchBin(torchSave({ pkl, storages: new Map() }), 'pytorch_adapter.bin')).toThrow(message);
  });

  it('refuses legacy torch.save files, non-zips and archives without data.pkl', () => {
    expect(() => readTorchBin(new Pickler().int(1).done(), 'old.bin')).toThrow(/legacy \(pre-1\.6\) torch\.save format/);
    expect(() => readTorchBin(Buffer.from('hello world, not a zip'), 'x.bin')).toThrow(/not a torch\.save zip archive/);
    expect(() => readTorchBin(zipStored([['archive/other', Buffer.from('x')]]), 'x.bin')).toThrow(/no data\.pkl/);
  });

  it('refuses a tensor that reads past its storage and a state dict with non-tensor values', () => {
    const p = new Pickler();
    p.global('torch._utils', '_rebuild_tensor_v2').mark();
    p.mark().str('storage').global('torch', 'FloatStorage').str('0').str('cpu').int(2).tuple().raw(0x51);
    p.int(0).ints([4]).ints([1]).raw(0x89).global('collections', 'OrderedDict').raw(0x29, 0x52).tuple().raw(0x52);
    expect(() => readTorchBin(torchSave({ pkl: p.done(), storages: new Map([['0', Buffer.alloc(8)]]) }))).toThrow(/reads past the end of storage '0'/);
    const q = new Pickler();
    q.raw(0x7d).str('a').int(3).raw(0x73);
    expect(() => readTorchStateDict(torchSave({ pkl: q.done(), storages: new Map() }), 'pytorch_adapter.bin')).toThrow(/entry 'a' is not a tensor/);
  });
});
