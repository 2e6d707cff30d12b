/**
 * Packs package files into an uncompressed ustar archive as a Blob, without reading the files: the archive is the
 * headers and padding (small byte arrays) around the files' own Blobs, so a Node file Blob (`openAsBlob`) stays
 * on disk until the archive is sent. Used to send a package folder through a resumable upload (which takes one
 * archive). Runs wherever Blob runs (no Node imports).
 * Example: `const tar = tarBlob({ 'module.json': manifestBlob, 'weights.safetensors': weightsBlob })`.
 */
import { arrayBufferView, type BytesLike } from './sha256';

const MTIME = 0; // the same files give the same archive bytes, so a retried publish has the same digest

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

/** One 512-byte ustar header for a regular file at the archive root (names up to 100 bytes). */
export function ustarHeader(name: string, size: number): Uint8Array<ArrayBuffer> {
  const h = new Uint8Array(512);
  const ascii = (s: string, at: number) => {
    for (let i = 0; i < s.length; i++) h[at + i] = s.charCodeAt(i);
  };
  const nameBytes = new TextEncoder().encode(name);
  if (nameBytes.length > 100) throw new RangeError(`archive entry name '${name}' is longer than 100 bytes`);
  if (!Number.isSafeInteger(size) || size < 0 || size >= 8 ** 11) throw new RangeError(`archive entry '${name}' has size ${size}, which ustar cannot hold`);
  h.set(nameBytes, 0);
  ascii(octal(0o644, 8), 100);
  ascii(octal(0, 8), 108);
  ascii(octal(0, 8), 116);
  ascii(octal(size, 12), 124);
  ascii(octal(MTIME, 12), 136);
  ascii('        ', 148); // the checksum counts its own field as spaces
  ascii('0', 156);
  ascii('ustar\0', 257);
  ascii('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  ascii(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return h;
}

/** An uncompressed tar of `files` (name → bytes), in the given order, as one Blob. */
export function tarBlob(files: Record<string, BytesLike>): Blob {
  const parts: (Uint8Array<ArrayBuffer> | Blob)[] = [];
  for (const [name, data] of Object.entries(files)) {
    const blob = data instanceof Blob ? data : new Blob([arrayBufferView(data)]);
    parts.push(ustarHeader(name, blob.size), blob);
    const pad = (512 - (blob.size % 512)) % 512;
    if (pad) parts.push(new Uint8Array(pad));
  }
  parts.push(new Uint8Array(1024)); // two zero blocks end the archive
  return new Blob(parts);
}
