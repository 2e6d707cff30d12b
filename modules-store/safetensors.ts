/**
 * safetensors codec (https://github.com/huggingface/safetensors format): 8-byte little-endian header length,
 * a JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then the bytes.
 * Reads F32, F16, BF16 (widened to F32), I64, I32, I8, U8, BOOL; writes F32, I32, I64, and F32 tensors as F16
 * on request (`floats: 'F16'`, round to nearest even).
 * Example: `const st = parseSafetensors(buf); st.tensors.get('head.out_proj.weight')!.data`.
 */
import { readSync } from 'node:fs';

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

/**
 * Names the top-level keys of a JSON object text in order (the parsed object keeps only the last of duplicates,
 * so duplicates must be found in the text). `text` is already known to be valid JSON with an object at the top.
 */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, j + 1)) as string);
      expectKey = false;
      i = j;
    } else if (ch === '{' || ch === '[') {
      depth++;
      expectKey = ch === '{' && depth === 1;
    } else if (ch === '}' || ch === ']') {
      depth--;
    } else if (ch === ',' && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

/**
 * Parses and validates the header only; `buf` must hold at least the header bytes, `fileSize` is the whole file's
 * size. Refuses what the reference reader (huggingface/safetensors) refuses: a header over 100 MB or beyond the
 * file, one that is not UTF-8 or does not start with '{', non-string metadata, unknown dtypes, negative or
 * non-integer dims, element counts that overflow, byte sizes that disagree with shape × dtype, and tensors that
 * overlap, leave gaps or do not end exactly at the end of the file; plus duplicate names (JSON keeps the last one,
 * so two readers could see different tensors).
 */
export function parseSafetensorsHeader(buf: Buffer, fileSize = buf.length): SafetensorsHeader {
  if (buf.length < 8) throw new TypeError(`safetensors: file is ${buf.length} bytes, shorter than the 8-byte header length`);
  const headerLen = Number(buf.readBigUInt64LE(0));
  if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > fileSize) {
    throw new RangeError(`safetensors: header length ${headerLen} exceeds the file (${fileSize} bytes) or the 100 MB limit`);
  }
  if (buf.length < 8 + headerLen) throw new RangeError('safetensors: buffer ends inside the header');
  const headerBytes = buf.subarray(8, 8 + headerLen);
  const text = headerBytes.toString('utf8');
  if (Buffer.byteLength(text) !== headerBytes.length || text.includes('\uFFFD')) throw new TypeError('safetensors: header is not valid UTF-8');
  if (!text.startsWith('{')) throw new TypeError("safetensors: header must start with '{'");
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new TypeError(`safetensors: header is not valid JSON (${(e as Error).message})`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new TypeError('safetensors: header must be a JSON object');
  const seen = new Set<string>();
  for (const k of topLevelKeys(text)) {
    if (seen.has(k)) throw new TypeError(`safetensors: header names '${k}' twice`);
    seen.add(k);
  }
  const entries = new Map<string, HeaderEntry>();
  let metadata: Record<string, string> = {};
  const dataLen = fileSize - 8 - headerLen;
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (value === null) continue;
      if (typeof value !== 'object' || Array.isArray(value) || !Object.values(value as object).every((x) => typeof x === 'string')) {
        throw new TypeError("safetensors: '__metadata__' must be an object of string values");
      }
      metadata = value as Record<string, string>;
      continue;
    }
    const v = value as Partial<HeaderEntry>;
    if (!v || typeof v !== 'object' || !(typeof v.dtype === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, v.dtype))) {
      throw new TypeError(`safetensors: tensor '${name}' has unknown dtype '${String(v?.dtype)}'`);
    }
    if (!Array.isArray(v.shape) || !v.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new TypeError(`safetensors: tensor '${name}' has an invalid shape`);
    }
    const offs = v.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0) || offs[0] > offs[1] || offs[1] > dataLen) {
      throw new RangeError(`safetensors: tensor '${name}' has data_offsets outside the data section`);
    }
    const expected = numel(v.shape) * DTYPE_BYTES[v.dtype as DType];
    if (!Number.isSafeInteger(expected)) throw new RangeError(`safetensors: tensor '${name}' shape [${v.shape}] overflows`);
    if (offs[1] - offs[0] !== expected) {
      throw new RangeError(`safetensors: tensor '${name}' holds ${offs[1] - offs[0]} bytes, shape [${v.shape}] ${v.dtype} needs ${expected}`);
    }
    entries.set(name, { dtype: v.dtype as DType, shape: v.shape, data_offsets: offs as [number, number] });
  }
  // Tensors must tile the data section: sorted by offset, each starts where the previous ended.
  const byOffset = [...entries].sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0] || a[1].data_offsets[1] - b[1].data_offsets[1]);
  let end = 0;
  let prev = '';
  for (const [name, e] of byOffset) {
    const [s, t] = e.data_offsets;
    if (s < end) throw new RangeError(`safetensors: tensor '${name}' (bytes ${s}-${t}) overlaps tensor '${prev}' (ends at ${end})`);
    if (s > end) throw new RangeError(`safetensors: bytes ${end}-${s} of the data section belong to no tensor (gap before '${name}')`);
    end = t;
    prev = name;
  }
  if (end !== dataLen) throw new RangeError(`safetensors: the tensors cover ${end} bytes, but the data section holds ${dataLen}`);
  return { entries, metadata, dataStart: 8 + headerLen };
}

/**
 * Random access to a safetensors file's bytes, so that large files are validated from disk in bounded memory
 * (a Buffer for packages already in memory, a file descriptor for uploads streamed to disk).
 */
export interface ByteSource {
  /** Total size in bytes. */
  readonly size: number;
  /** `length` bytes from `start` (fewer only at the end of the source); `into` (when given) is reused instead of allocating. */
  read(start: number, length: number, into?: Buffer): Buffer;
}

/** A ByteSource over bytes in memory. */
export function bufferSource(buf: Buffer): ByteSource {
  return { size: buf.length, read: (start, length) => buf.subarray(start, start + length) };
}

/** A ByteSource over an open file (synchronous reads: validation is CPU-bound work done in one go). */
export function fileSource(fd: number, size: number): ByteSource {
  return {
    size,
    read(start, length, into) {
      const n = Math.max(0, Math.min(length, size - start));
      const out = into && into.length >= n ? into.subarray(0, n) : Buffer.allocUnsafe(n);
      let off = 0;
      while (off < out.length) {
        const n = readSync(fd, out, off, out.length - off, start + off);
        if (n <= 0) break;
        off += n;
      }
      return out.subarray(0, off);
    },
  };
}

/** Parses the header of a safetensors source, reading only its first 8 + header-length bytes. */
export function readSafetensorsHeader(src: ByteSource): SafetensorsHeader {
  const lenBytes = src.read(0, 8);
  if (lenBytes.length < 8) throw new TypeError(`safetensors: file is ${src.size} bytes, shorter than the 8-byte header length`);
  const headerLen = Number(lenBytes.readBigUInt64LE(0));
  if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > src.size) {
    throw new RangeError(`safetensors: header length ${headerLen} exceeds the file (${src.size} bytes) or the 100 MB limit`);
  }
  return parseSafetensorsHeader(src.read(0, 8 + headerLen), src.size);
}

/** Bytes per element of each dtype. */
export function dtypeBytes(d: DType): number {
  return DTYPE_BYTES[d];
}

/**
 * Calls `fn` with consecutive pieces of one tensor's bytes (each a whole number of elements, at most about
 * `chunkBytes`), and the index of the piece's first element. Memory stays at one piece whatever the tensor size.
 */
export function forEachTensorChunk(src: ByteSource, h: SafetensorsHeader, name: string, fn: (bytes: Buffer, firstElement: number) => void, chunkBytes = 1 << 20): void {
  const e = h.entries.get(name);
  if (!e) throw new RangeError(`safetensors: no tensor named '${name}'`);
  const el = DTYPE_BYTES[e.dtype];
  const step = Math.max(el, chunkBytes - (chunkBytes % el));
  const [s, t] = e.data_offsets;
  // One scratch buffer for the whole walk: validating a 1 GB tensor allocates 1 MB, not 1 GB of garbage.
  const scratch = Buffer.allocUnsafe(Math.min(step, t - s));
  for (let off = s; off < t; off += step) {
    const len = Math.min(step, t - off);
    const bytes = src.read(h.dataStart + off, len, scratch);
    if (bytes.length !== len) throw new RangeError(`safetensors: file ends inside tensor '${name}'`);
    fn(bytes, (off - s) / el);
  }
}

/**
 * Index of the first NaN or ±Infinity among the elements in `bytes` of a float dtype, or -1 (also for integer
 * dtypes). Checks the exponent bits, so no element is converted.
 */
export function firstNonFinite(bytes: Buffer, dtype: DType): number {
  const n = bytes.length;
  switch (dtype) {
    case 'F32':
      if (bytes.byteOffset % 4 === 0) {
        const u = new Uint32Array(bytes.buffer, bytes.byteOffset, n >> 2);
        for (let i = 0; i < u.length; i++) if ((u[i] & 0x7f800000) === 0x7f800000) return i;
        return -1;
      }
      for (let i = 0; i + 4 <= n; i += 4) if ((bytes.readUInt32LE(i) & 0x7f800000) === 0x7f800000) return i / 4;
      return -1;
    case 'F64':
      for (let i = 0; i + 8 <= n; i += 8) if ((bytes.readUInt32LE(i + 4) & 0x7ff00000) === 0x7ff00000) return i / 8;
      return -1;
    case 'F16':
      for (let i = 0; i + 2 <= n; i += 2) if ((bytes.readUInt16LE(i) & 0x7c00) === 0x7c00) return i / 2;
      return -1;
    case 'BF16':
      for (let i = 0; i + 2 <= n; i += 2) if ((bytes.readUInt16LE(i) & 0x7f80) === 0x7f80) return i / 2;
      return -1;
    default:
      return -1;
  }
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

/** The dtypes a view reads as they are stored (the others are widened into new arrays). */
const VIEWABLE = new Set<DType>(['F32', 'I32', 'I64', 'I8', 'U8', 'BOOL']);

/**
 * Decodes one tensor; half precision is widened to F32 (the engine computes in F32). With `views`, a tensor stored
 * in its own dtype at an aligned offset is a view into `buf` (no copy; it keeps `buf` alive), else a copy.
 */
export function decodeTensor(buf: Buffer, header: SafetensorsHeader, name: string, views = false): Tensor {
  const e = header.entries.get(name);
  if (!e) throw new RangeError(`safetensors: no tensor named '${name}'`);
  const start = header.dataStart + e.data_offsets[0];
  const len = e.data_offsets[1] - e.data_offsets[0];
  const width = DTYPE_BYTES[e.dtype];
  const aligned = views && VIEWABLE.has(e.dtype) && (buf.byteOffset + start) % width === 0;
  const ab = aligned ? buf.buffer : alignedBytes(buf, start, len);
  const at = aligned ? buf.byteOffset + start : 0;
  const n = len / width;
  switch (e.dtype) {
    case 'F32':
      return { dtype: 'F32', shape: e.shape, data: new Float32Array(ab, at, n) };
    case 'F16':
      return { dtype: 'F32', shape: e.shape, data: f16ToF32(new Uint16Array(ab)) };
    case 'BF16':
      return { dtype: 'F32', shape: e.shape, data: bf16ToF32(new Uint16Array(ab)) };
    case 'F64':
      return { dtype: 'F32', shape: e.shape, data: Float32Array.from(new Float64Array(ab)) };
    case 'I64':
      return { dtype: 'I64', shape: e.shape, data: new BigInt64Array(ab, at, n) };
    case 'I32':
      return { dtype: 'I32', shape: e.shape, data: new Int32Array(ab, at, n) };
    case 'I16':
      return { dtype: 'I32', shape: e.shape, data: Int32Array.from(new Int16Array(ab)) };
    case 'I8':
      return { dtype: 'I8', shape: e.shape, data: new Int8Array(ab, at, n) };
    case 'U8':
    case 'BOOL':
      return { dtype: e.dtype, shape: e.shape, data: new Uint8Array(ab, at, n) };
  }
}

/**
 * Parses a whole safetensors buffer. Tensors are copies, unless `views` (the engine's module loads: a module kind
 * transposes or copies what it keeps, see TensorReader, so a copy here would only be copied again; a 30 MB MAD-X
 * language adapter spent 36 ms on it at BERT-base, most of it first touch of new memory).
 */
export function parseSafetensors(buf: Buffer, opts: { views?: boolean } = {}): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  const header = parseSafetensorsHeader(buf);
  const tensors = new Map<string, Tensor>();
  for (const name of header.entries.keys()) tensors.set(name, decodeTensor(buf, header, name, opts.views));
  return { tensors, metadata: header.metadata };
}

/** IEEE half-precision bits of each value, rounded to nearest even; a value beyond the F16 range is refused. */
export function f32ToF16Bits(values: Float32Array, what = 'tensor'): Uint16Array {
  const out = new Uint16Array(values.length);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < values.length; i++) {
    f[0] = values[i];
    const x = u[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 31) throw new RangeError(`safetensors: ${what} holds ${values[i]} at element ${i}, beyond the F16 range (±65504)`);
    let h: number;
    if (e <= 0) {
      // subnormal (or zero) in F16: shift the implicit-1 mantissa into place, round to nearest even
      if (e < -10) h = 0;
      else {
        const m = mant | 0x800000;
        const shift = 14 - e;
        h = m >>> shift;
        const rem = m & ((1 << shift) - 1);
        const half = 1 << (shift - 1);
        if (rem > half || (rem === half && h & 1)) h++;
      }
    } else {
      h = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry into the exponent is the right rounding
      if (h >= 0x7c00) throw new RangeError(`safetensors: ${what} holds ${values[i]} at element ${i}, beyond the F16 range (±65504)`);
    }
    out[i] = sign | h;
  }
  return out;
}

/** `values` rounded to the nearest F16 value (what writing them as F16 and reading them back gives). */
export function roundToF16(values: Float32Array, what?: string): Float32Array {
  return f16ToF32(f32ToF16Bits(values, what));
}

/** Serialises tensors (sorted by name, 8-byte aligned offsets) with optional string metadata; `floats: 'F16'`
 * writes the F32 tensors in half precision (the size of a shipped base halves; values round to nearest even). */
export function serializeSafetensors(tensors: Map<string, Tensor> | Record<string, Tensor>, metadata?: Record<string, string>, opts: { floats?: 'F32' | 'F16' } = {}): Buffer {
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
    const half = opts.floats === 'F16' && t.dtype === 'F32';
    const data = half ? f32ToF16Bits(t.data as Float32Array, `'${name}'`) : t.data;
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    header[name] = { dtype: half ? 'F16' : t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
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
