/**
 * Jest runs each test file in its own vm realm, so typed arrays made by native addons (onnxruntime-node) fail
 * `instanceof Float32Array` checks inside the test realm. This environment shares the host's typed-array and
 * buffer constructors with the test realm.
 */
const fs = require('fs');
const os = require('os');
const path = require('path');
const NodeEnvironment = require('jest-environment-node').TestEnvironment;

class SharedTypedArraysEnvironment extends NodeEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of [
      'ArrayBuffer', 'SharedArrayBuffer', 'Uint8Array', 'Int8Array', 'Uint16Array', 'Int16Array', 'Uint32Array', 'Int32Array',
      'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array', 'Uint8ClampedArray', 'DataView',
    ]) {
      this.global[name] = globalThis[name];
    }
    // `modhub login` writes under XDG_CONFIG_HOME (server/cli/config.ts): tests get an empty one of their own,
    // never the developer's token.
    this.global.process.env.XDG_CONFIG_HOME = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-config-'));
  }
}

module.exports = SharedTypedArraysEnvironment;
