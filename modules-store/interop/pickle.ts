/**
 * Reads PyTorch `.bin` files (`torch.save` zip archives: `<prefix>/data.pkl` + `<prefix>/data/<key>` storages)
 * WITHOUT executing anything: a small pickle interpreter that knows only the opcodes a tensor state dict uses and
 * only the globals of tensor storage (torch._utils._rebuild_tensor_v2 / _rebuild_parameter, torch.*Storage,
 * torch.Size, collections.OrderedDict, numpy scalars). Any other opcode or global is refused with a message that
 * says how to convert the file (save it with safetensors). Nothing from the file is ever called or imported.
 * Example: `const { value } = readTorchBin(buf); (value as Map<string, unknown>).get('bert.encoder...')`.
 */
import type { DType, Tensor } from '../safetensors';
import { CONVERT_HINT, refuse } from './refuse';
import { readZip } from './zip';

export { CONVERT_HINT };

/** A Python tuple (kept apart from lists only where it matters: persistent ids and REDUCE arguments). */
class Tuple {
  constructor(readonly items: unknown[]) {}
}
class Global {
  constructor(readonly name: string) {}
}
/** A storage reference from a persistent id: ('storage', torch.FloatStorage, key, location, numel). */
class StorageRef {
  constructor(
    readonly dtype: DType,
    readonly key: string,
  ) {}
}
class NumpyDtype {
  constructor(readonly code: string) {}
}
const MARK = Symbol('mark');

const STORAGES: Record<string, DType> = {
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  DoubleStorage: 'F64',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};
const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** The only globals a state dict may name. */
const ALLOWED_GLOBALS = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  'torch.Size',
  'numpy.core.multiarray.scalar',
  'numpy._core.multiarray.scalar',
  'numpy.dtype',
  ...Object.keys(STORAGES).map((s) => `torch.${s}`),
]);

/** A tensor as the pickle describes it: a view into a storage. */
export interface TensorView {
  storage: StorageRef;
  offset: number;
  size: number[];
  stride: number[];
}

function isView(v: unknown): v is TensorView {
  return typeof v === 'object' && v !== null && (v as TensorView).storage instanceof StorageRef;
}

function intOf(v: unknown, what: string, file: string): number {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'bigint') return Number(v);
  return refuse(file, `${what} is not an integer`);
}

function intList(v: unknown, what: string, file: string): number[] {
  const items = v instanceof Tuple ? v.items : Array.isArray(v) ? v : refuse(file, `${what} is not a tuple`);
  return items.map((x) => intOf(x, what, file));
}

/** Applies an allowed global to its arguments (data constructors only; nothing from the file runs). */
function reduce(fn: unknown, args: unknown, file: string): unknown {
  if (!(fn instanceof Global)) return refuse(file, 'REDUCE on something that is not an allowed global');
  const a = args instanceof Tuple ? args.items : refuse(file, `arguments of ${fn.name} are not a tuple`);
  switch (fn.name) {
    case 'collections.OrderedDict':
      if (a.length !== 0) refuse(file, 'OrderedDict with constructor arguments');
      return new Map<unknown, unknown>();
    case 'torch._utils._rebuild_tensor_v2': {
      if (!(a[0] instanceof StorageRef)) refuse(file, '_rebuild_tensor_v2 without a storage');
      const view: TensorView = { storage: a[0] as StorageRef, offset: intOf(a[1], 'storage offset', file), size: intList(a[2], 'tensor size', file), stride: intList(a[3], 'tensor stride', file) };
      return view;
    }
    case 'torch._utils._rebuild_parameter':
      if (!isView(a[0])) refuse(file, '_rebuild_parameter without a tensor');
      return a[0];
    case 'torch.Size':
      return intList(a[0], 'torch.Size', file);
    case 'numpy.dtype':
      return new NumpyDtype(String(a[0]));
    case 'numpy.core.multiarray.scalar':
    case 'numpy._core.multiarray.scalar': {
      const dt = a[0];
      const bytes = a[1];
      if (!(dt instanceof NumpyDtype) || !Buffer.isBuffer(bytes)) refuse(file, 'numpy scalar without dtype and bytes');
      const b = bytes as Buffer;
      const code = (dt as NumpyDtype).code;
      if (code === 'i8' && b.length === 8) return Number(b.readBigInt64LE(0));
      if (code === 'i4' && b.length === 4) return b.readInt32LE(0);
      if (code === 'f8' && b.length === 8) return b.readDoubleLE(0);
      if (code === 'f4' && b.length === 4) return b.readFloatLE(0);
      return refuse(file, `numpy scalar of dtype '${code}'`);
    }
    default:
      return refuse(file, `global '${fn.name}' cannot be applied`);
  }
}

/**
 * Interprets pickle bytes with the restricted opcode set; `persistent` resolves BINPERSID ids. Returns the
 * unpickled value: Map (dict / OrderedDict), arrays (lists, tuples via Tuple), numbers, strings, TensorView.
 */
export function unpickle(data: Buffer, file = 'data.pkl'): unknown {
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let p = 0;
  const need = (n: number) => {
    if (p + n > data.length) refuse(file, 'the pickle ends early');
  };
  const popMark = (): unknown[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) refuse(file, 'pickle MARK missing');
    const items = stack.slice(i + 1);
    stack.length = i;
    return items;
  };
  const top = (): unknown => {
    if (stack.length === 0) refuse(file, 'pickle stack underflow');
    return stack[stack.length - 1];
  };
  const pop = (): unknown => {
    if (stack.length === 0) refuse(file, 'pickle stack underflow');
    return stack.pop();
  };
  const setItems = (target: unknown, items: unknown[]) => {
    if (!(target instanceof Map)) refuse(file, 'SETITEM on something that is not a dict');
    for (let i = 0; i + 1 < items.length; i += 2) (target as Map<unknown, unknown>).set(items[i], items[i + 1]);
  };
  const global = (name: string) => {
    if (!ALLOWED_GLOBALS.has(name)) refuse(file, `the pickle names the global '${name}', which is not tensor data (only torch tensor storage, OrderedDict and numpy scalars are read)`);
    stack.push(new Global(name));
  };
  for (;;) {
    need(1);
    const op = data[p++];
    switch (op) {
      case 0x80: // PROTO
        need(1);
        p += 1;
        break;
      case 0x95: // FRAME
        need(8);
        p += 8;
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new Tuple([]));
        break;
      case 0x74: // TUPLE
        stack.push(new Tuple(popMark()));
        break;
      case 0x85: // TUPLE1
        stack.push(new Tuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        stack.push(new Tuple([pop(), b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        stack.push(new Tuple([pop(), b, c]));
        break;
      }
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4b: // BININT1
        need(1);
        stack.push(data[p]);
        p += 1;
        break;
      case 0x4d: // BININT2
        need(2);
        stack.push(data.readUInt16LE(p));
        p += 2;
        break;
      case 0x4a: // BININT
        need(4);
        stack.push(data.readInt32LE(p));
        p += 4;
        break;
      case 0x8a: {
        // LONG1: little-endian two's complement of n bytes
        need(1);
        const n = data[p++];
        need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[p + i]);
        if (n > 0 && data[p + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        p += n;
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: // BINFLOAT (big-endian double)
        need(8);
        stack.push(data.readDoubleBE(p));
        p += 8;
        break;
      case 0x58: // BINUNICODE
      case 0x8c: // SHORT_BINUNICODE
      case 0x42: // BINBYTES
      case 0x43: {
        // SHORT_BINBYTES
        const short = op === 0x8c || op === 0x43;
        need(short ? 1 : 4);
        const n = short ? data[p] : data.readUInt32LE(p);
        p += short ? 1 : 4;
        need(n);
        const raw = data.subarray(p, p + n);
        p += n;
        stack.push(op === 0x58 || op === 0x8c ? raw.toString('utf8') : Buffer.from(raw));
        break;
      }
      case 0x63: {
        // GLOBAL: "module\nname\n"
        const e1 = data.indexOf(0x0a, p);
        const e2 = e1 < 0 ? -1 : data.indexOf(0x0a, e1 + 1);
        if (e2 < 0) refuse(file, 'malformed GLOBAL');
        const name = `${data.subarray(p, e1).toString('utf8')}.${data.subarray(e1 + 1, e2).toString('utf8')}`;
        p = e2 + 1;
        global(name);
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const mod = pop();
        if (typeof name !== 'string' || typeof mod !== 'string') refuse(file, 'malformed STACK_GLOBAL');
        global(`${mod}.${name}`);
        break;
      }
      case 0x51: {
        // BINPERSID: torch's ('storage', storage_type, key, location, numel)
        const pid = pop();
        const items = pid instanceof Tuple ? pid.items : [];
        const type = items[1];
        if (items[0] !== 'storage' || !(type instanceof Global) || typeof items[2] !== 'string') refuse(file, 'a persistent id that is not a torch storage');
        const dtype = STORAGES[(type as Global).name.replace(/^torch\./, '')];
        if (!dtype) refuse(file, `storage type '${(type as Global).name}'`);
        stack.push(new StorageRef(dtype, items[2] as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        stack.push(reduce(fn, args, file));
        break;
      }
      case 0x62: {
        // BUILD: only the state of an OrderedDict (torch's _metadata) or a numpy dtype, which we drop
        pop();
        const obj = top();
        if (!(obj instanceof Map) && !(obj instanceof NumpyDtype)) refuse(file, 'BUILD on an object that is not a dict');
        break;
      }
      case 0x71: // BINPUT
        need(1);
        memo.set(data[p++], top());
        break;
      case 0x72: // LONG_BINPUT
        need(4);
        memo.set(data.readUInt32LE(p), top());
        p += 4;
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const short = op === 0x68;
        need(short ? 1 : 4);
        const k = short ? data[p] : data.readUInt32LE(p);
        p += short ? 1 : 4;
        if (!memo.has(k)) refuse(file, `pickle memo ${k} is not set`);
        stack.push(memo.get(k));
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        const l = top();
        if (!Array.isArray(l)) refuse(file, 'APPEND to something that is not a list');
        (l as unknown[]).push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const l = top();
        if (!Array.isArray(l)) refuse(file, 'APPENDS to something that is not a list');
        (l as unknown[]).push(...items);
        break;
      }
      default:
        refuse(file, `pickle opcode 0x${op.toString(16).padStart(2, '0')} ('${String.fromCharCode(op)}') at byte ${p - 1} is not allowed in a tensor file`);
    }
  }
}

/** Copies a (possibly strided) view out of its storage bytes into a modhub tensor (floats widened to F32). */
function materialize(v: TensorView, storages: Map<string, Buffer>, file: string): Tensor {
  const bytes = storages.get(v.storage.key);
  if (!bytes) refuse(file, `storage '${v.storage.key}' is missing from the archive`);
  const size = DTYPE_BYTES[v.storage.dtype];
  const n = v.size.reduce((a, b) => a * b, 1);
  const src = bytes as Buffer;
  const contiguous = v.size.every((d, i) => d === 1 || v.stride[i] === v.size.slice(i + 1).reduce((a, b) => a * b, 1));
  if (contiguous && v.storage.dtype === 'F32') {
    // The common case (every state-dict tensor torch saves): one copy, no per-element offsets.
    if ((v.offset + n) * 4 > src.length) refuse(file, `a tensor reads past the end of storage '${v.storage.key}'`);
    const ab = new ArrayBuffer(n * 4);
    new Uint8Array(ab).set(src.subarray(v.offset * 4, (v.offset + n) * 4));
    return { dtype: 'F32', shape: [...v.size], data: new Float32Array(ab) };
  }
  const idx = new Array<number>(n);
  const dims = v.size.length;
  const pos = new Array<number>(dims).fill(0);
  for (let i = 0; i < n; i++) {
    let off = v.offset;
    for (let d = 0; d < dims; d++) off += pos[d] * v.stride[d];
    if ((off + 1) * size > src.length) refuse(file, `a tensor reads past the end of storage '${v.storage.key}'`);
    idx[i] = off;
    for (let d = dims - 1; d >= 0; d--) {
      if (++pos[d] < v.size[d]) break;
      pos[d] = 0;
    }
  }
  const shape = [...v.size];
  switch (v.storage.dtype) {
    case 'F32':
      return { dtype: 'F32', shape, data: Float32Array.from(idx, (o) => src.readFloatLE(o * 4)) };
    case 'F64':
      return { dtype: 'F32', shape, data: Float32Array.from(idx, (o) => src.readDoubleLE(o * 8)) };
    case 'F16':
      return { dtype: 'F32', shape, data: Float32Array.from(idx, (o) => f16(src.readUInt16LE(o * 2))) };
    case 'BF16':
      return { dtype: 'F32', shape, data: Float32Array.from(idx, (o) => new Float32Array(new Uint32Array([src.readUInt16LE(o * 2) << 16]).buffer)[0]) };
    case 'I64':
      return { dtype: 'I64', shape, data: BigInt64Array.from(idx, (o) => src.readBigInt64LE(o * 8)) };
    case 'I32':
      return { dtype: 'I32', shape, data: Int32Array.from(idx, (o) => src.readInt32LE(o * 4)) };
    case 'I16':
      return { dtype: 'I32', shape, data: Int32Array.from(idx, (o) => src.readInt16LE(o * 2)) };
    case 'I8':
      return { dtype: 'I8', shape, data: Int8Array.from(idx, (o) => src.readInt8(o)) };
    default:
      return { dtype: v.storage.dtype, shape, data: Uint8Array.from(idx, (o) => src[o]) };
  }
}

function f16(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  return e === 0 ? s * 2 ** -14 * (f / 1024) : e === 31 ? (f ? NaN : s * Infinity) : s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Replaces every TensorView in an unpickled value by a materialized tensor; tuples become arrays. */
function resolve(v: unknown, storages: Map<string, Buffer>, file: string): unknown {
  if (isView(v)) return materialize(v, storages, file);
  if (v instanceof Tuple) return v.items.map((x) => resolve(x, storages, file));
  if (Array.isArray(v)) return v.map((x) => resolve(x, storages, file));
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [k, resolve(x, storages, file)]));
  return v;
}

/**
 * Reads a `torch.save` zip file: the unpickled object with tensors materialised (dicts are Maps).
 * The legacy (pre-1.6, non-zip) format and anything beyond tensor data are refused with a conversion hint.
 */
export function readTorchBin(buf: Buffer, file = 'pytorch_model.bin'): { value: unknown } {
  if (buf.length >= 2 && buf[0] === 0x80) refuse(file, 'this is the legacy (pre-1.6) torch.save format, which is not read');
  if (buf.length < 4 || buf.readUInt32LE(0) !== 0x04034b50) refuse(file, 'not a torch.save zip archive');
  const entries = readZip(buf, file);
  const pkl = [...entries.keys()].find((n) => n === 'data.pkl' || n.endsWith('/data.pkl'));
  if (!pkl) refuse(file, 'the archive has no data.pkl');
  const prefix = pkl.slice(0, pkl.length - 'data.pkl'.length);
  const storages = new Map<string, Buffer>();
  for (const [name, bytes] of entries) if (name.startsWith(`${prefix}data/`)) storages.set(name.slice(prefix.length + 5), bytes);
  return { value: resolve(unpickle(entries.get(pkl)!, file), storages, file) };
}

/** A flat `name → tensor` state dict from a torch.save file; anything else in it is refused. */
export function readTorchStateDict(buf: Buffer, file: string): Map<string, Tensor> {
  const { value } = readTorchBin(buf, file);
  if (!(value instanceof Map)) refuse(file, 'the pickle is not a state dict (name → tensor)');
  const out = new Map<string, Tensor>();
  for (const [k, t] of value as Map<unknown, unknown>) {
    if (typeof k !== 'string' || !t || typeof t !== 'object' || !('shape' in t)) refuse(file, `entry '${String(k)}' is not a tensor`);
    out.set(k, t as Tensor);
  }
  return out;
}
