#!/usr/bin/env node
// A local S3 for coldboot's tests: @20minutes/s3rver 5.0.0 (see package.json at the
// repository root; `npm ci` installs it), which checks SigV4 header signatures and
// presigned URLs with their expiry.
//
//   node s3rver.js --dir DIR [--key ID:SECRET]... [--temp-key ID:SECRET:TOKEN]
//                  [--bucket NAME]... [--max-seconds N]
//
// It binds 127.0.0.1 on a free port, prints the port on the first line of stdout,
// and exits by itself after --max-seconds (default 300) or on SIGTERM. Objects are
// kept under DIR. --key adds an access key pair (the package's built-in S3RVER key
// is revoked). --temp-key adds temporary credentials: requests signed with that key
// must carry x-amz-security-token equal to TOKEN, and must sign it, as S3 requires;
// s3rver alone does not check session tokens.
'use strict'

const http = require('node:http')
const path = require('node:path')

const root = path.resolve(__dirname, '..', '..')
let S3rver
let AWSAccount
try {
  S3rver = require(path.join(root, 'node_modules', '@20minutes', 's3rver'))
  AWSAccount = require(path.join(root, 'node_modules', '@20minutes', 's3rver', 'lib', 'models', 'account'))
} catch (e) {
  process.stderr.write(`s3rver.js: @20minutes/s3rver is not installed (run npm ci in ${root}): ${e.message}\n`)
  process.exit(77)
}

function parseArgs(argv) {
  const args = { dir: null, keys: [], tempKeys: [], buckets: [], maxSeconds: 300 }
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1]
    switch (argv[i]) {
      case '--dir': args.dir = value; i++; break
      case '--key': args.keys.push(value.split(':')); i++; break
      case '--temp-key': args.tempKeys.push(value.split(':')); i++; break
      case '--bucket': args.buckets.push(value); i++; break
      case '--max-seconds': args.maxSeconds = Number(value); i++; break
      default:
        process.stderr.write(`s3rver.js: unknown argument ${argv[i]}\n`)
        process.exit(2)
    }
  }
  if (!args.dir) {
    process.stderr.write('s3rver.js: --dir is required\n')
    process.exit(2)
  }
  return args
}

function s3Error(res, status, code, message) {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>0</RequestId></Error>`
  res.writeHead(status, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body) })
  res.end(body)
}

// What s3rver leaves out: temporary credentials need their session token, signed.
function checkSessionToken(req, res, tokens) {
  const auth = req.headers.authorization || ''
  const credential = /Credential=([^/,\s]+)\//.exec(auth)
  const signed = /SignedHeaders=([^,\s]+)/.exec(auth)
  let key = credential ? credential[1] : null
  let signedHeaders = signed ? signed[1].split(';') : []
  let token = req.headers['x-amz-security-token']
  if (!credential) {
    // A presigned URL carries the same in its query string.
    const url = new URL(req.url, 'http://localhost')
    const queryCredential = url.searchParams.get('X-Amz-Credential')
    key = queryCredential ? queryCredential.split('/')[0] : null
    signedHeaders = ['x-amz-security-token'] // the query string itself is signed
    token = url.searchParams.get('X-Amz-Security-Token') || token
  }
  if (key === null || !tokens.has(key)) return true
  if (token === undefined || token === null) {
    s3Error(res, 403, 'InvalidToken', 'The provided token is malformed or otherwise invalid.')
    return false
  }
  if (token !== tokens.get(key)) {
    s3Error(res, 400, 'InvalidToken', 'The provided token is malformed or otherwise invalid.')
    return false
  }
  if (!signedHeaders.includes('x-amz-security-token')) {
    s3Error(res, 403, 'AccessDenied', 'There were headers present in the request which were not signed')
    return false
  }
  return true
}

async function main() {
  const args = parseArgs(process.argv.slice(2))
  AWSAccount.DUMMY_ACCOUNT.revokeAccessKey('S3RVER')
  for (const [id, secret] of args.keys) AWSAccount.DUMMY_ACCOUNT.createKeyPair(id, secret)
  const tokens = new Map()
  for (const [id, secret, token] of args.tempKeys) {
    AWSAccount.DUMMY_ACCOUNT.createKeyPair(id, secret)
    tokens.set(id, token)
  }

  const s3 = new S3rver({
    silent: true,
    directory: args.dir,
    configureBuckets: args.buckets.map((name) => ({ name })),
    vhostBuckets: false,
  })
  await s3.configureBuckets()
  const app = s3.callback()
  const server = http.createServer((req, res) => {
    if (checkSessionToken(req, res, tokens)) app(req, res)
  })
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })

  const stop = () => {
    server.close()
    server.closeAllConnections()
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  setTimeout(stop, args.maxSeconds * 1000).unref()
  process.stdout.write(`${server.address().port}\n`)
}

main().catch((e) => {
  process.stderr.write(`s3rver.js: ${e.stack || e}\n`)
  process.exit(1)
})
