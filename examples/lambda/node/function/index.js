// A Node.js Lambda handler whose dependencies come from the coldboot bundle.
//
// The managed nodejs20.x runtime starts through AWS_LAMBDA_EXEC_WRAPPER=/opt/bin/coldboot, which
// puts the bundle's nodejs/node_modules/ on NODE_PATH. NODE_PATH is honoured by require(), not by
// ES-module imports, so this handler is CommonJS (index.js, exports.handler).
'use strict';

const cbgreet = require('cbgreet'); // from the bundle: bundle/nodejs/node_modules/cbgreet/

exports.handler = async (event, context) => ({
  greeting: cbgreet.greet((event && event.name) || 'world'),
  bundle: process.env.COLDBOOT_BUNDLE,
  requestId: context && context.awsRequestId,
});
