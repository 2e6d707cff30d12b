/**
 * safetensors codec (https://github.com/huggingface/safetensors format): 8-byte little-endian header length,
 * a JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then the bytes.
 * Reads F32, F16, BF16 (widened to F32), I64, I32, I8, U8, BOOL; writes F32, I32, I64.
 * Example: `const st = parseSafetensors(buf); st.tensors.get('head.out_proj.weight')!.data`.
 */

export type DType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';
export type TensorData = Float32Array | Int32Array | BigInt64Array | Uint8Array | Int8Array;

export interface Tensor {
  dtype: DType;
  shape: number[];
  data: TensorData;
}

export interface HeaderEntry {
  dtype: DType;
  shape: number[];
  data_offsets: [number, number];
}

export interface SafetensorsHeader {
  entries: Map<string, HeaderEntry>;
  metadata: Record<string, string>;
  /** Byte offset of the data section in the file. */
  dataStart: number;
}

const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
/** Headers larger than this are refused (the reference implementation uses the same 100 MB bound). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Parses and validates the header only; `buf` must hold at least the header bytes. `fileSize` checks offsets. */
export function parseSafetensorsHeader(buf: Buffer, fileSize = buf.length): SafetensorsHeader {
  if (buf.length < 8) throw new TypeError(`safetensors: file is ${buf.length} bytes, shorter than the 8-byte header length`);
  const headerLen = Number(buf.readBigUInt64LE(0));
  if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > fileSize) {
    throw new RangeError(`safetensors: header length ${headerLen} exceeds the file (${fileSize} bytes) or the 100 MB limit`);
  }
  if (buf.length < 8 + headerLen) throw new RangeError('safetensors: buffer ends inside the header');
  let raw: unknown;
  try {
    raw = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8'));
  } catch (e) {
    throw new TypeError(`safetensors: header is not valid JSON (${(e as Error).message})`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new TypeError('safetensors: header must be a JSON object');
  const entries = new Map<string, HeaderEntry>();
  let metadata: Record<string, string> = {};
  const dataLen = fileSize - 8 - headerLen;
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = (value ?? {}) as Record<string, string>;
      continue;
    }
    const v = value as Partial<HeaderEntry>;
    if (!v || typeof v !== 'object' || !(typeof v.dtype === 'string' && v.dtype in DTYPE_BYTES)) {
      throw new TypeError(`safetensors: tensor '${name}' has unknown dtype '${String(v?.dtype)}'`);
    }
    if (!Array.isArray(v.shape) || !v.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new TypeError(`safetensors: tensor '${name}' has an invalid shape`);
    }
    const offs = v.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o) && o >= 0) || offs[0] > offs[1] || offs[1] > dataLen) {
      throw new RangeError(`safetensors: tensor '${name}' has data_offsets outside the data section`);
    }
    const expected = numel(v.shape) * DTYPE_BYTES[v.dtype as DType];
    if (offs[1] - offs[0] !== expected) {
      throw new RangeError(`safetensors: tensor '${name}' holds ${offs[1] - offs[0]} bytes, shape [${v.shape}] ${v.dtype} needs ${expected}`);
    }
    entries.set(name, { dtype: v.dtype as DType, shape: v.shape, data_offsets: offs as [number, number] });
  }
  return { entries, metadata, dataStart: 8 + headerLen };
}

function f16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const f = h & 0x3ff;
    out[i] = e === 0 ? s * 2 ** -14 * (f / 1024) : e === 31 ? (f ? NaN : s * Infinity) : s * 2 ** (e - 15) * (1 + f / 1024);
  }
  return out;
}

function bf16ToF32(bits: Uint16Array): Float32Array {
  const wide = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) wide[i] = bits[i] << 16;
  return new Float32Array(wide.buffer);
}

/** Copies `len` bytes into a fresh, aligned ArrayBuffer (tensor views need alignment). */
function alignedBytes(buf: Buffer, start: number, len: number): ArrayBuffer {
  const ab = new ArrayBuffer(len);
  new Uint8Array(ab).set(buf.subarray(start, start + len));
  return ab;
}

/** Decodes one tensor; half precision is widened to F32 (the engine computes in F32). */
export function decodeTensor(buf: Buffer, header: SafetensorsHeader, name: string): Tensor {
  const e = header.entries.get(name);
  if (!e) throw new RangeError(`safetensors: no tensor named '${name}'`);
  const start = header.dataStart + e.data_offsets[0];
  const ab = alignedBytes(buf, start, e.data_offsets[1] - e.data_offsets[0]);
  switch (e.dtype) {
    case 'F32':
      return { dtype: 'F32', shape: e.shape, data: new Float32Array(ab) };
    case 'F16':
      return { dtype: 'F32', shape: e.shape, data: f16ToF32(new Uint16Array(ab)) };
    case 'BF16':
      return { dtype: 'F32', shape: e.shape, data: bf16ToF32(new Uint16Array(ab)) };
    case 'F64':
      return { dtype: 'F32', shape: e.shape, data: Float32Array.from(new Float64Array(ab)) };
    case 'I64':
      return { dtype: 'I64', shape: e.shape, data: new BigInt64Array(ab) };
    case 'I32':
      return { dtype: 'I32', shape: e.shape, data: new Int32Array(ab) };
    case 'I16':
      return { dtype: 'I32', shape: e.shape, data: Int32Array.from(new Int16Array(ab)) };
    case 'I8':
      return { dtype: 'I8', shape: e.shape, data: new Int8Array(ab) };
    case 'U8':
    case 'BOOL':
      return { dtype: e.dtype, shape: e.shape, data: new Uint8Array(ab) };
  }
}

/** Parses a whole safetensors buffer. */
export function parseSafetensors(buf: Buffer): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  const header = parseSafetensorsHeader(buf);
  const tensors = new Map<string, Tensor>();
  for (const name of header.entries.keys()) tensors.set(name, decodeTensor(buf, header, name));
  return { tensors, metadata: header.metadata };
}

/** Integer tensor data as a plain number array view (indices of sparse diffs). */
export function toIndexArray(t: Tensor): Int32Array | Float64Array {
  if (t.data instanceof Int32Array) return t.data;
  if (t.data instanceof BigInt64Array) {
    const out = new Float64Array(t.data.length);
    for (let i = 0; i < out.length; i++) out[i] = Number(t.data[i]);
    return out;
  }
  throw new TypeError(`expected an integer tensor, got ${t.dtype}`);
}

/** Serialises tensors (sorted by name, 8-byte aligned offsets) with optional string metadata. */
export function serializeSafetensors(tensors: Map<string, Tensor> | Record<string, Tensor>, metadata?: Record<string, string>): Buffer {
  const map = tensors instanceof Map ? tensors : new Map(Object.entries(tensors));
  const names = [...map.keys()].sort();
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  const parts: Buffer[] = [];
  for (const name of names) {
    const t = map.get(name)!;
    if (!(t.dtype === 'F32' || t.dtype === 'I32' || t.dtype === 'I64')) throw new TypeError(`safetensors: cannot write dtype ${t.dtype} ('${name}')`);
    const expected = numel(t.shape);
    if (t.data.length !== expected) throw new RangeError(`safetensors: '${name}' has ${t.data.length} elements, shape [${t.shape}] needs ${expected}`);
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json, 'utf8'), ...parts]);
}

/** Convenience constructor for F32 tensors. */
export function f32(shape: number[], data?: Float32Array | number[]): Tensor {
  const arr = data instanceof Float32Array ? data : data ? Float32Array.from(data) : new Float32Array(numel(shape));
  return { dtype: 'F32', shape, data: arr };
}
