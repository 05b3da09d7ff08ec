#!/usr/bin/env node
// Fallback S3 peer for bench/run.py when tests/servers/s3rver.js is absent:
//   node s3rver_min.js DATA_DIR KEY_ID:SECRET BUCKET MAX_SECONDS
// @20minutes/s3rver (verifies SigV4) on 127.0.0.1, free port printed on the first stdout line;
// exits after MAX_SECONDS or on SIGTERM.
'use strict'
const path = require('node:path')
const mod = path.join(__dirname, '..', 'node_modules', '@20minutes', 's3rver')
const S3rver = require(mod)
const account = require(path.join(mod, 'lib', 'models', 'account')).DUMMY_ACCOUNT
const [dir, key, bucket, maxSeconds] = process.argv.slice(2)
const [id, secret] = key.split(':')
account.revokeAccessKey('S3RVER')
account.createKeyPair(id, secret)
const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: dir,
  configureBuckets: [{ name: bucket }], vhostBuckets: false })
server.run().then((addr) => {
  const stop = () => server.close().finally(() => process.exit(0))
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  setTimeout(stop, Number(maxSeconds) * 1000).unref()
  process.stdout.write(`${addr.port}\n`)
}, (e) => { process.stderr.write(`s3rver_min.js: ${e.stack || e}\n`); process.exit(1) })
