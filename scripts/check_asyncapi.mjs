// Validates the AsyncAPI document with the AsyncAPI project's own parser
// (@asyncapi/parser), then checks every message example against its
// message's payload and headers schemas with Ajv (the v3 ruleset has no
// example rule). Before that it proves the example check can fail: a copy
// of the document with one broken example must be refused.
// Usage: node check_asyncapi.mjs FILE
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { readFileSync } from 'node:fs';

const parser = new Parser();

async function check(text) {
  const problems = [];
  const { document, diagnostics } = await parser.parse(text);
  for (const d of diagnostics) {
    if (d.severity === DiagnosticSeverity.Error) {
      problems.push(`${d.code} at ${d.path.join('.')}: ${d.message}`);
    }
  }
  if (!document) {
    problems.push('the parser returned no document');
    return { problems, examples: 0 };
  }
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  let examples = 0;
  for (const message of document.allMessages().all()) {
    const name = message.id();
    const payload = message.payload()?.json();
    const headers = message.headers()?.json();
    for (const example of message.examples().all()) {
      examples += 1;
      for (const [part, schema, value] of [
        ['payload', payload, example.payload()],
        ['headers', headers, example.headers()],
      ]) {
        if (schema === undefined || value === undefined) continue;
        const validate = ajv.compile(schema);
        if (!validate(value)) {
          problems.push(`${name}: example ${part} does not match its schema: ${ajv.errorsText(validate.errors)}`);
        }
      }
    }
  }
  return { problems, examples };
}

const file = process.argv[2];
const text = readFileSync(file, 'utf8');

// Self-test: a wrong type in one example (a number for an order id) must be caught.
const broken = JSON.parse(text);
const first = Object.values(broken.components.messages).find((m) => m.examples?.length);
first.examples[0].payload.orderId = 42;
const selfTest = await check(JSON.stringify(broken));
if (!selfTest.problems.some((p) => p.includes('example payload'))) {
  console.error('check_asyncapi: the example check did not catch a broken example');
  process.exit(2);
}

const { problems, examples } = await check(text);
if (problems.length > 0) {
  for (const p of problems) console.error(`check_asyncapi: ${p}`);
  process.exit(1);
}
console.log(`AsyncAPI document OK: parsed without errors, ${examples} examples match their schemas.`);
