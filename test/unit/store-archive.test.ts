/** Archive unpacking safety (links, traversal, absolute paths, folders, bombs) and the deterministic packer. */
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import { archiveLayout, packArchive, StoreError, unpackArchive } from '../../modules-store';

/** A tar header as tar-stream's pack.entry() takes it (name required, the rest optional). */
type EntryHeader = Parameters<ReturnType<typeof tar.pack>["entry"]>[0];

const LIMITS = { maxFileBytes: 1 << 20, maxTotalBytes: 2 << 20 };

/** Builds a tar with tar-stream (an independent writer) from raw headers. */
async function tarOf(entries: { header: EntryHeader; body?: Buffer }[]): Promise<Buffer> {
  const p = tar.pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((r) => p.on('end', () => r()));
  for (const e of entries) {
    await new Promise<void>((res, rej) => p.entry(e.header, e.body ?? Buffer.alloc(0), (err) => (err ? rej(err) : res())));
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

async function failure(buf: Buffer, limits = LIMITS): Promise<string> {
  try {
    await unpackArchive(buf, limits);
  } catch (e) {
    if (e instanceof StoreError) return `${e.code}: ${e.message}`;
    throw e;
  }
  return 'no error';
}

describe('unpackArchive', () => {
  it('reads files at the root, with or without ./ and a root folder entry, tar and tar.gz', async () => {
    const buf = await tarOf([
      { header: { name: './', type: 'directory' } },
      { header: { name: './module.json', type: 'file' }, body: Buffer.from('{}') },
      { header: { name: 'README.md', type: 'file' }, body: Buffer.from('# hi') },
    ]);
    for (const b of [buf, gzipSync(buf)]) {
      const files = await unpackArchive(b, LIMITS);
      expect([...files.keys()].sort()).toEqual(['README.md', 'module.json']);
      expect(files.get('module.json')!.toString()).toBe('{}');
    }
  });
  it.each([
    ['a symlink', { name: 'module.json', type: 'symlink', linkname: '/etc/passwd' }, /is a symlink; only regular files/],
    ['a hard link', { name: 'module.json', type: 'link', linkname: 'x' }, /is a link/],
    ['an absolute path', { name: '/etc/cron.d/x', type: 'file' }, /absolute path/],
    ['traversal', { name: '../module.json', type: 'file' }, /contains '\.\.'/],
    ['nested traversal', { name: 'a/../../b', type: 'file' }, /contains '\.\.'/],
    ['a sub-folder file', { name: 'sub/module.json', type: 'file' }, /inside a folder/],
    ['a sub-folder', { name: 'sub/', type: 'directory' }, /is a folder/],
    ['a device', { name: 'dev', type: 'character-device' }, /only regular files/],
  ] as [string, EntryHeader, RegExp][])('refuses %s', async (_n, header, re) => {
    const buf = await tarOf([{ header }]);
    expect(await failure(buf)).toMatch(new RegExp(`^INVALID_ARCHIVE: .*${re.source}`));
  });
  it('refuses duplicates, oversize files, too many entries, and garbage', async () => {
    const dup = await tarOf([
      { header: { name: 'module.json' }, body: Buffer.from('1') },
      { header: { name: './module.json' }, body: Buffer.from('2') },
    ]);
    expect(await failure(dup)).toMatch(/holds 'module\.json' twice/);
    const big = await tarOf([{ header: { name: 'weights.safetensors' }, body: Buffer.alloc(2000) }]);
    expect(await failure(big, { maxFileBytes: 1000, maxTotalBytes: 5000 })).toMatch(/^TOO_LARGE: 'weights\.safetensors' is 2000 bytes/);
    const many = await tarOf(Array.from({ length: 20 }, (_, i) => ({ header: { name: `f${i}` }, body: Buffer.from('x') })));
    expect(await failure(many)).toMatch(/more than 16 entries/);
    expect(await failure(Buffer.from('this is not a tar archive at all'.repeat(40)))).toMatch(/^INVALID_ARCHIVE/);
    expect(await failure(Buffer.from([0x1f, 0x8b, 1, 2, 3]))).toMatch(/^INVALID_ARCHIVE/);
  });
  it('stops a gzip bomb at the size limit', async () => {
    const bomb = gzipSync(await tarOf([{ header: { name: 'weights.safetensors' }, body: Buffer.alloc(8 << 20) }]));
    expect(bomb.length).toBeLessThan(100_000);
    expect(await failure(bomb, { maxFileBytes: 16 << 20, maxTotalBytes: 1 << 20 })).toMatch(/^TOO_LARGE/);
  });
});

describe('packArchive', () => {
  it('writes a deterministic tar that tar-stream reads back, with the size archiveLayout predicts', async () => {
    const files = new Map([
      ['module.json', Buffer.from('{"a":1}')],
      ['weights.safetensors', Buffer.alloc(1500, 7)],
    ]);
    const a = packArchive(files);
    expect(a.equals(packArchive(files))).toBe(true);
    expect(a.length).toBe(archiveLayout([...files].map(([name, b]) => ({ name, size: b.length, file: b }))).size);
    const back = await unpackArchive(a, LIMITS);
    expect(back.get('weights.safetensors')!.equals(files.get('weights.safetensors')!)).toBe(true);
    const ex = tar.extract();
    const names: string[] = [];
    ex.on('entry', (h, s, next) => {
      names.push(`${h.name}:${h.size}:${h.type}`);
      s.resume();
      s.on('end', next);
    });
    await new Promise<void>((r, j) => {
      ex.on('finish', r);
      ex.on('error', j);
      ex.end(a);
    });
    expect(names).toEqual(['module.json:7:file', 'weights.safetensors:1500:file']);
  });
});
