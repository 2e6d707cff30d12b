/**
 * Two registries sharing one PostgreSQL catalog and one S3 bucket (two replicas, in one process here): blob
 * garbage collection on one must never delete a blob that the other's in-flight publish has uploaded (or found
 * already there) but not committed yet. The publish pins its digests in the catalog before it uploads; the
 * collector on the other replica holds the collection lock and treats pinned digests as referenced.
 */
import { Registry, sha256Digest } from '../../modules-store';
import { S3BlobStore } from '../../modules-store/blob-store-s3';
import { PgCatalog } from '../../modules-store/catalog-pg';
import { makePackageFiles, registerTestBase } from '../helpers/hub';
import { describeWithPg, startPg, type PgServer } from '../helpers/pg-server';
import { startS3, type S3Server } from '../helpers/s3-server';

describeWithPg('shared blob collection across replicas (PostgreSQL + S3)', () => {
  let pg: PgServer;
  let s3: S3Server;
  beforeAll(async () => {
    [pg, s3] = await Promise.all([startPg(), startS3()]);
  });
  afterAll(async () => {
    await s3?.stop();
    await pg?.stop();
  });

  async function replica(url: string, prefix: string): Promise<Registry> {
    return new Registry({ catalog: await PgCatalog.open(url), blobs: await S3BlobStore.open(s3.storeOptions(prefix)), allowUnknownBases: true });
  }

  it("keeps a blob that another replica's uncommitted publish shares, through a delete and a full sweep", async () => {
    const url = await pg.createDatabase();
    const a = await replica(url, 'gc/');
    const b = await replica(url, 'gc/');
    try {
      await registerTestBase(a);
      // Same weights (same seed), different modules: one shared weights blob.
      const first = makePackageFiles({ id: 'gc/one', version: '1.0.0', seed: 7 });
      const second = makePackageFiles({ id: 'gc/two', version: '1.0.0', seed: 7 });
      const weights = sha256Digest(first.get('weights.safetensors')!);
      expect(sha256Digest(second.get('weights.safetensors')!)).toBe(weights);
      await b.publish({ files: first });

      // Replica a's publish of gc/two stops right before its catalog commit (its blobs are in the bucket).
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let reached!: () => void;
      const atCommit = new Promise<void>((r) => (reached = r));
      const commit = a.catalog.publishVersion.bind(a.catalog);
      a.catalog.publishVersion = async (v) => {
        reached();
        await gate;
        return commit(v);
      };
      const publishing = a.publish({ files: second });
      await atCommit;

      // Replica b deletes the only committed reference and sweeps the whole bucket.
      await b.delete('gc', 'one');
      const swept = await b.sweep();
      expect(await b.blobs.stat(weights)).not.toBeNull();
      expect(swept.orphanBlobs).toBe(0); // gc/one's module.json went with the delete; nothing else is orphaned

      release();
      await publishing;
      const m = await b.resolve('gc/two');
      expect(sha256Digest(await m.readFile('weights.safetensors'))).toBe(weights);

      // Once committed the pin is gone: deleting gc/two now frees the blob.
      await a.delete('gc', 'two');
      expect(await b.blobs.stat(weights)).toBeNull();
      expect(await b.blobs.list()).toEqual([]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('sweeps blobs no version references or pins (a publish that died before its commit)', async () => {
    const url = await pg.createDatabase();
    const a = await replica(url, 'orphans/');
    try {
      await registerTestBase(a);
      await a.publish({ files: makePackageFiles({ id: 'o/kept', version: '1.0.0', seed: 1 }) });
      const orphan = await a.blobs.put(Buffer.from('left by a replica that died mid-publish'));
      const kept = new Set(await a.blobs.list());
      expect(kept.has(orphan.digest)).toBe(true);
      expect(await a.sweep()).toEqual({ tempFiles: 0, orphanBlobs: 1 });
      expect(await a.blobs.stat(orphan.digest)).toBeNull();
      expect((await a.resolve('o/kept')).files.length).toBeGreaterThan(0);
    } finally {
      await a.close();
    }
  });
});
