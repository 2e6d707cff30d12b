/**
 * sha256 over Web Crypto (globalThis.crypto.subtle: Node ≥ 20, browsers, Deno, Bun), so the SDK's core needs no
 * node:crypto. Example: `await sha256Hex(new TextEncoder().encode('abc'))` → 'ba7816bf…'.
 */
import { ModhubError } from './errors';

/** Bytes as the SDK takes them: any Uint8Array (a Node Buffer too) or a Blob. */
export type BytesLike = Uint8Array | Blob;

/**
 * A view the DOM's `BlobPart` / `BufferSource` types accept: Uint8Array<ArrayBuffer>. A view over a
 * SharedArrayBuffer is copied, any other is re-viewed without copying.
 */
export function arrayBufferView(b: Uint8Array): Uint8Array<ArrayBuffer> {
  if (b.buffer instanceof ArrayBuffer) return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  const copy = new Uint8Array(b.byteLength);
  copy.set(b);
  return copy;
}

/** Lower-case hex sha256 of `data`. */
export async function sha256Hex(data: BytesLike): Promise<string> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new ModhubError(0, 'UNSUPPORTED_RUNTIME', 'this runtime has no Web Crypto (globalThis.crypto.subtle); the SDK needs it to check sha256 digests (Node >= 20, a browser on https or localhost, Deno, Bun)');
  const buf = data instanceof Blob ? await data.arrayBuffer() : arrayBufferView(data);
  const d = new Uint8Array(await subtle.digest('SHA-256', buf));
  let hex = '';
  for (const x of d) hex += x.toString(16).padStart(2, '0');
  return hex;
}
