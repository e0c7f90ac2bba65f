// Prints the Stripe-Signature header Stripe's own library computes for a payload, so the Rust
// tests check our verification against the vendor's signing rather than against our own.
// Input on stdin: {"payload": "...", "secret": "whsec_...", "timestamp": 1700000000}.
'use strict';

const Stripe = require('stripe');

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  input += chunk;
});
process.stdin.on('end', () => {
  const { payload, secret, timestamp } = JSON.parse(input);
  const stripe = new Stripe('sk_test_unused');
  process.stdout.write(
    stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp }),
  );
});
