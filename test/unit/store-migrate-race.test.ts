/**
 * Two processes opening a new data folder at once (the server and `modhub token create` next to it) both
 * migrate the catalog; the second must see the first's migration instead of failing on "table already exists", and
 * wait for the first's switch to WAL instead of failing with SQLITE_BUSY.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { SqliteCatalog } from '../../modules-store/catalog-sqlite';

it('concurrent opens of a fresh catalog all succeed, every time', async () => {
  // 40 fresh catalogs: switching a new file to WAL failed with SQLITE_BUSY in ~1 of 8 such rounds before it was retried
  for (let round = 0; round < 40; round++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-migrate-'));
    const file = path.join(dir, 'catalog.sqlite');
    const opened = await Promise.all(Array.from({ length: 4 }, () => SqliteCatalog.open(file)));
    for (const c of opened) await c.close();
    const again = await SqliteCatalog.open(file);
    await again.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
