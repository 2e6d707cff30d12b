/**
 * The zip container of torch.save files (PKWARE APPNOTE: end of central directory, central directory, local
 * headers), stored or deflated entries; zip64 is refused. Example: `readZip(buf, 'pytorch_adapter.bin').get('archive/data.pkl')`.
 */
import { inflateRawSync } from 'node:zlib';
import { refuse } from './refuse';

/** name → bytes of every entry of a zip archive (stored or deflated; zip64 is refused). */
export function readZip(buf: Buffer, file = 'file'): Map<string, Buffer> {
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 0xffff); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) refuse(file, 'not a zip archive (no end-of-central-directory record)');
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  if (p === 0xffffffff || count === 0xffff) refuse(file, 'zip64 archives (files over 4 GiB) are not read');
  const out = new Map<string, Buffer>();
  for (let n = 0; n < count; n++) {
    if (p + 46 > buf.length || buf.readUInt32LE(p) !== 0x02014b50) refuse(file, 'corrupt zip central directory');
    const method = buf.readUInt16LE(p + 10);
    const csize = buf.readUInt32LE(p + 20);
    const usize = buf.readUInt32LE(p + 24);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    const local = buf.readUInt32LE(p + 42);
    const name = buf.subarray(p + 46, p + 46 + nameLen).toString('utf8');
    p += 46 + nameLen + extraLen + commentLen;
    if (csize === 0xffffffff || usize === 0xffffffff || local === 0xffffffff) refuse(file, 'zip64 archives (files over 4 GiB) are not read');
    if (local + 30 > buf.length || buf.readUInt32LE(local) !== 0x04034b50) refuse(file, `corrupt zip entry '${name}'`);
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    if (start + csize > buf.length) refuse(file, `zip entry '${name}' runs past the end of the file`);
    const raw = buf.subarray(start, start + csize);
    if (method === 0) out.set(name, raw);
    else if (method === 8) out.set(name, inflateRawSync(raw, { maxOutputLength: Math.max(usize, 1) }));
    else refuse(file, `zip entry '${name}' uses compression method ${method}`);
  }
  return out;
}
