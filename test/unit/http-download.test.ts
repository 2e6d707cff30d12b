/**
 * sendPayload's `onWhole` (what counts a download): it must fire exactly when a whole 200 body was handed to the
 * response, also when the client, holding all Content-Length bytes, closes the socket before the stream pipeline
 * has called end() — the case that listening for 'finish' missed (under load the hub lost download counts). The
 * blob stream here holds its end back so that ordering happens on every run.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import express from 'express';
import type { FileRow, Registry } from '../../modules-store';
import { filePayload, sendPayload } from '../../server/http/download';

const SIZE = 4096;
const DATA = Buffer.from(Array.from({ length: SIZE }, (_, i) => i % 251));
const FILE: FileRow = { name: 'weights.safetensors', digest: `sha256:${'ab'.repeat(32)}`, size: SIZE };

/** A blob stream that pushes the first `upTo` bytes of its range at once and the rest (and its end) 300 ms later. */
function heldBlob(upTo: number): Pick<Registry, 'openBlob'> {
  return {
    openBlob(_digest, range) {
      const bytes = DATA.subarray(range?.start ?? 0, (range?.end ?? SIZE - 1) + 1);
      let started = false;
      return new Readable({
        read() {
          if (started) return;
          started = true;
          this.push(bytes.subarray(0, Math.min(upTo, bytes.length)));
          setTimeout(() => {
            if (upTo < bytes.length) this.push(bytes.subarray(upTo));
            this.push(null);
          }, 300).unref();
        },
      });
    },
  };
}

interface Served {
  url: string;
  wholes: () => number;
  /** Resolves once the server saw the response close (and every 'close' listener ran). */
  closed: () => Promise<void>;
}

const servers: http.Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

async function serve(upTo: number): Promise<Served> {
  let wholes = 0;
  let onClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => (onClosed = resolve));
  const app = express();
  app.all('/f', (req, res) => {
    res.on('close', () => setImmediate(onClosed));
    sendPayload(req, res, heldBlob(upTo) as Registry, filePayload(FILE), () => wholes++).catch(() => undefined); // premature close is expected
  });
  const server = app.listen(0);
  servers.push(server);
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/f`,
    wholes: () => wholes,
    closed: () => closed,
  };
}

/** GETs `url` and destroys the socket as soon as `stopAfter` body bytes arrived; returns the bytes received. */
function fetchAndDrop(url: string, stopAfter: number, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      let bytes = 0;
      const done = () => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, bytes });
      };
      if (method === 'HEAD') return done();
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes >= stopAfter) done();
      });
      res.on('end', done);
    });
    req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
    req.end();
  });
}

describe('sendPayload onWhole', () => {
  it('fires when the client has every byte and closes before the server ended the response', async () => {
    const s = await serve(SIZE); // all bytes at once, end() only 300 ms later
    const got = await fetchAndDrop(s.url, SIZE);
    expect(got).toEqual({ status: 200, bytes: SIZE });
    await s.closed();
    expect(s.wholes()).toBe(1);
  });

  it('does not fire for a download the client abandons halfway', async () => {
    const s = await serve(SIZE / 2);
    const got = await fetchAndDrop(s.url, SIZE / 2);
    expect(got.bytes).toBe(SIZE / 2);
    await s.closed();
    expect(s.wholes()).toBe(0);
  });

  it('does not fire for a range request or HEAD, even when complete', async () => {
    const s = await serve(SIZE);
    const got = await fetchAndDrop(s.url, 10, { Range: 'bytes=0-9' });
    expect(got).toEqual({ status: 206, bytes: 10 });
    await s.closed();
    const head = await serve(SIZE);
    expect((await fetchAndDrop(head.url, 0, {}, 'HEAD')).status).toBe(200);
    await head.closed();
    expect(s.wholes() + head.wholes()).toBe(0);
  });

  it('fires once for a plain complete download', async () => {
    const s = await serve(SIZE);
    const got = await fetchAndDrop(s.url, Number.POSITIVE_INFINITY); // reads to the end
    expect(got).toEqual({ status: 200, bytes: SIZE });
    await s.closed();
    expect(s.wholes()).toBe(1);
  });
});
