/**
 * Writes PyTorch `.bin` files by hand, opcode by opcode, from the pickle protocol spec (Python's
 * Lib/pickletools.py) and torch.save's zip layout (`archive/data.pkl`, `archive/data/<key>` raw little-endian
 * storages, `archive/version`), so tests need no Python. A tensor is pickled as torch does:
 * `torch._utils._rebuild_tensor_v2(persistent_load(('storage', torch.FloatStorage, key, 'cpu', numel)), offset,
 * size, stride, requires_grad, OrderedDict())`; a state dict is an OrderedDict (REDUCE, SETITEMS, BUILD of its
 * `_metadata`). Also a stored (uncompressed) zip writer with CRC-32.
 * Example: `torchSave(stateDictPickle([['w', f32([2, 2], [1, 2, 3, 4])]]))`.
 */
import type { Tensor } from '../../modules-store/safetensors';

/** Builds pickle bytes opcode by opcode. */
export class Pickler {
  private parts: Buffer[] = [Buffer.from([0x80, 0x02])]; // PROTO 2
  private memo = 0;
  raw(...bytes: number[]): this {
    this.parts.push(Buffer.from(bytes));
    return this;
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    this.parts.push(Buffer.from([0x58]), len, b); // BINUNICODE
    return this;
  }
  int(n: number): this {
    if (n >= 0 && n < 256) return this.raw(0x4b, n); // BININT1
    const b = Buffer.alloc(5);
    b[0] = 0x4a; // BININT
    b.writeInt32LE(n, 1);
    this.parts.push(b);
    return this;
  }
  bytes(buf: Buffer): this {
    this.parts.push(Buffer.from([0x43, buf.length]), buf); // SHORT_BINBYTES
    return this;
  }
  global(mod: string, name: string): this {
    this.parts.push(Buffer.from(`c${mod}\n${name}\n`, 'latin1')); // GLOBAL
    return this;
  }
  mark(): this {
    return this.raw(0x28);
  }
  tuple(): this {
    return this.raw(0x74);
  }
  put(): number {
    this.raw(0x71, this.memo); // BINPUT
    return this.memo++;
  }
  get(i: number): this {
    return this.raw(0x68, i); // BINGET
  }
  /** A tuple of ints: MARK ints TUPLE. */
  ints(xs: number[]): this {
    this.mark();
    for (const x of xs) this.int(x);
    return this.tuple();
  }
  done(): Buffer {
    this.raw(0x2e); // STOP
    return Buffer.concat(this.parts);
  }
}

const STORAGE: Record<string, [string, number]> = { F32: ['FloatStorage', 4], I64: ['LongStorage', 8], F16: ['HalfStorage', 2] };

/** Little-endian bytes of a tensor's data. */
function storageBytes(t: Tensor): Buffer {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** Appends a tensor as torch pickles it; its storage gets `key`. */
export function pickleTensor(p: Pickler, t: Tensor, key: string, storages: Map<string, Buffer>): void {
  const [cls] = STORAGE[t.dtype];
  const stride = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
  p.global('torch._utils', '_rebuild_tensor_v2');
  p.mark();
  p.mark().str('storage').global('torch', cls).str(key).str('cpu').int(t.data.length).tuple();
  p.raw(0x51); // BINPERSID
  p.int(0).ints(t.shape).ints(stride);
  p.raw(0x89); // NEWFALSE (requires_grad)
  p.global('collections', 'OrderedDict').raw(0x29, 0x52); // OrderedDict() = backward hooks
  p.tuple().raw(0x52); // REDUCE
  storages.set(key, storageBytes(t));
}

export interface TorchPickle {
  pkl: Buffer;
  storages: Map<string, Buffer>;
}

/** An OrderedDict state dict `name → tensor`, with torch's `_metadata` state. */
export function stateDictPickle(entries: [string, Tensor][]): TorchPickle {
  const p = new Pickler();
  const storages = new Map<string, Buffer>();
  p.global('collections', 'OrderedDict').raw(0x29, 0x52); // OrderedDict()
  p.put();
  p.mark();
  entries.forEach(([name, t], i) => {
    p.str(name);
    pickleTensor(p, t, String(i), storages);
  });
  p.raw(0x75); // SETITEMS
  p.raw(0x7d).str('_metadata').raw(0x7d).raw(0x73).raw(0x62); // {"_metadata": {}} BUILD
  return { pkl: p.done(), storages };
}

// ---- zip ----------------------------------------------------------------------------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(b: Buffer): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A zip archive with stored (uncompressed) entries, as torch.save writes. */
export function zipStored(files: [string, Buffer][]): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of files) {
    const n = Buffer.from(name, 'utf8');
    const h = Buffer.alloc(30);
    h.writeUInt32LE(0x04034b50, 0);
    h.writeUInt16LE(20, 4);
    h.writeUInt32LE(crc32(data), 14);
    h.writeUInt32LE(data.length, 18);
    h.writeUInt32LE(data.length, 22);
    h.writeUInt16LE(n.length, 26);
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(20, 4);
    c.writeUInt16LE(20, 6);
    c.writeUInt32LE(crc32(data), 16);
    c.writeUInt32LE(data.length, 20);
    c.writeUInt32LE(data.length, 24);
    c.writeUInt16LE(n.length, 28);
    c.writeUInt32LE(offset, 42);
    locals.push(h, n, data);
    central.push(c, n);
    offset += 30 + n.length + data.length;
  }
  const cd = Buffer.concat(central);
  const e = Buffer.alloc(22);
  e.writeUInt32LE(0x06054b50, 0);
  e.writeUInt16LE(files.length, 8);
  e.writeUInt16LE(files.length, 10);
  e.writeUInt32LE(cd.length, 12);
  e.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, e]);
}

/** torch.save's archive: `archive/data.pkl`, `archive/data/<key>`, `archive/version`. */
export function torchSave(p: TorchPickle, prefix = 'archive'): Buffer {
  return zipStored([[`${prefix}/data.pkl`, p.pkl], ...[...p.storages].map(([k, b]) => [`${prefix}/data/${k}`, b] as [string, Buffer]), [`${prefix}/version`, Buffer.from('3\n')]]);
}
