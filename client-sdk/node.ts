/**
 * @modhub/client/node: the SDK's Node-only helpers. `NodeModhubClient` is a ModhubClient that also publishes a
 * package folder or archive from disk and downloads to files: each file goes to `<dest>.part` first, resumes from
 * there with a Range request (If-Range: the file's digest) after an interruption, is checked against its sha256
 * and only then renamed into place, so a reader never sees a half-written or corrupt file.
 * Example:
 *   const hub = new NodeModhubClient({ baseUrl: 'http://localhost:8080', token: process.env.MODHUB_TOKEN });
 *   await hub.publish('./my-module');
 *   await hub.pull('lang/de@1.0.0', './modules/lang-de', { onProgress: (p) => console.log(p.file, p.loaded) });
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp, openAsBlob } from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_RESUMABLE_ABOVE, ModhubClient, ModhubError, PACKAGE_FILES, tarBlob, type CallOptions, type Progress, type PublishOptions, type PublishResult, type PublishSource, type VersionInfo } from './index';

export * from './index';

/** sha256 hex of a file, streamed (weights can be large). */
export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** sha256 hex of a Blob, streamed (Web Crypto would need the whole archive in memory). */
export async function sha256Blob(blob: Blob): Promise<string> {
  const h = createHash('sha256');
  const reader = blob.stream().getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    h.update(value);
  }
  return h.digest('hex');
}

export interface FileDownloadOptions extends CallOptions {
  onProgress?: (p: Progress) => void;
}

export interface PullOptions extends CallOptions {
  /** Bytes per file (`loaded` counts a resumed file's earlier bytes too). */
  onProgress?: (p: Progress & { file: string }) => void;
}

const SAFE_NAME = /^[A-Za-z0-9._-]+$/;

export class NodeModhubClient extends ModhubClient {
  /**
   * Publishes a package: a folder (module.json, weights.safetensors, README.md), a .tar / .tar.gz path, or what
   * ModhubClient.publish takes. Files are sent from disk as Blobs, their digests streamed. A package above
   * `resumableAbove` (default 64 MiB) goes through a resumable upload: an archive file as it is, a folder as a
   * tar put together from the files on disk (nothing is copied), so a dropped connection resumes from the hub's
   * offset instead of starting over.
   */
  override async publish(source: string | PublishSource, opts: PublishOptions = {}): Promise<PublishResult> {
    if (typeof source !== 'string') return super.publish(source, opts);
    const st = await fsp.stat(source).catch(() => null);
    if (!st) throw new ModhubError(0, 'INVALID_PACKAGE', `'${source}' does not exist: give a package folder or a .tar / .tar.gz file`);
    if (!st.isDirectory()) {
      return super.publish({ archive: (await openAsBlob(source)) as Blob }, { ...opts, digests: { archive: await sha256File(source) } });
    }
    const files: Record<string, Blob> = {};
    for (const n of PACKAGE_FILES) {
      const p = path.join(source, n);
      if (!(await fsp.stat(p).catch(() => null))?.isFile()) continue;
      files[n] = (await openAsBlob(p)) as Blob;
    }
    if (!files['module.json']) throw new ModhubError(0, 'INVALID_PACKAGE', `'${source}' has no module.json: is it a module package folder?`);
    const size = Object.values(files).reduce((n, b) => n + b.size, 0);
    if (size > (opts.resumableAbove ?? DEFAULT_RESUMABLE_ABOVE)) {
      const tar = tarBlob(files);
      // The tar is bigger than its files, so ModhubClient.publish sends it resumably too.
      return super.publish({ archive: tar }, { ...opts, digests: { archive: await sha256Blob(tar) } });
    }
    const digests: Record<string, string> = {};
    for (const n of Object.keys(files)) digests[n] = await sha256File(path.join(source, n));
    return super.publish({ files }, { ...opts, digests });
  }

  /**
   * Downloads one file of a version to `dest`: resumable (`<dest>.part`), verified by sha256, renamed into place.
   * `expect` skips the version lookup when the caller already has the file's digest and size.
   */
  async downloadToFile(ref: string, file: string, dest: string, o: FileDownloadOptions & { expect?: { digest: string; size: number } } = {}): Promise<void> {
    let expect = o.expect;
    let exact = ref;
    if (!expect) {
      const v = await this.version(ref, o);
      const f = v.files.find((x) => x.name === file);
      if (!f) throw new ModhubError(404, 'FILE_NOT_FOUND', `${v.id}@${v.version} has no file '${file}' (it has ${v.files.map((x) => x.name).join(', ')})`);
      expect = { digest: f.digest, size: f.size };
      exact = `${v.id}@${v.version}`;
    }
    const hex = expect.digest.replace(/^sha256:/, '');
    const part = `${dest}.part`;
    let have = (await fsp.stat(part).catch(() => null))?.size ?? 0;
    if (have > expect.size) {
      await fsp.rm(part, { force: true });
      have = 0;
    }
    if (have < expect.size || expect.size === 0) {
      const headers: Record<string, string> = have > 0 ? { Range: `bytes=${have}-`, 'If-Range': `"${hex}"` } : {};
      await this.transport.send('GET', `${this.versionPath(exact)}/files/${encodeURIComponent(file)}`, { ...o, headers }, async (res) => {
        // 206: the rest of the file; 200: the whole file (the server ignored or refused the range).
        let loaded = res.status === 206 ? have : 0;
        const fh = await fsp.open(part, res.status === 206 ? 'a' : 'w');
        try {
          if (!res.body) throw new ModhubError(502, 'INVALID_RESPONSE', `GET ${file}: the answer has no body`);
          const reader = res.body.getReader();
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            await fh.write(value);
            loaded += value.byteLength;
            o.onProgress?.({ loaded, total: expect.size });
          }
        } finally {
          await fh.close();
        }
      });
    }
    const got = await sha256File(part);
    if (got !== hex) {
      await fsp.rm(part, { force: true });
      throw new ModhubError(502, 'DIGEST_MISMATCH', `downloaded '${file}' of ${exact} has sha256 ${got}, expected ${hex}; the partial file was removed, run again`);
    }
    await fsp.rename(part, dest);
  }

  /** Downloads every file of a version into `outDir` (created); see downloadToFile. Returns the resolved version. */
  async pull(ref: string, outDir: string, o: PullOptions = {}): Promise<VersionInfo> {
    const v = await this.version(ref, o);
    await fsp.mkdir(outDir, { recursive: true });
    for (const f of v.files) {
      if (!SAFE_NAME.test(f.name) || f.name.startsWith('.')) throw new ModhubError(502, 'INVALID_PACKAGE', `the server listed an unsafe file name '${f.name}'`);
      const onProgress = o.onProgress;
      await this.downloadToFile(`${v.id}@${v.version}`, f.name, path.join(outDir, f.name), {
        ...o,
        expect: { digest: f.digest, size: f.size },
        onProgress: onProgress && ((p) => onProgress({ ...p, file: f.name })),
      });
    }
    return v;
  }
}
