// The published JSON Schema is the one built from the loader's own tables, and accepts the examples.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import Ajv2020 from 'ajv/dist/2020';
import { buildSchema, schemaText } from '../../config/schema';
import { SERVICE_KEYS } from '../../config/service-settings';
import { DEVICE_MODEL } from '../../daemon/spec';

const CONFIG = path.resolve(__dirname, '..', '..', '..', 'config');

test('config/ublk-ts.schema.json is up to date (regenerate: npm run build:ts && npm run config-schema)', () => {
  assert.equal(fs.readFileSync(path.join(CONFIG, 'ublk-ts.schema.json'), 'utf8'), schemaText(DEVICE_MODEL));
});

test('the schema names every device and service setting, and forbids others', () => {
  const s = buildSchema(DEVICE_MODEL) as any;
  const device = s.$defs.device;
  assert.equal(device.unevaluatedProperties, false);
  const targetFields = device.allOf.flatMap((a: any) => Object.keys(a.then.properties));
  assert.deepEqual([...new Set([...Object.keys(device.properties), ...targetFields])].sort(), ['name', ...DEVICE_MODEL.fieldNames()].sort());
  assert.deepEqual(Object.keys(s.properties.service.properties).sort(), [...SERVICE_KEYS].sort());
  assert.equal(s.additionalProperties, false);
  assert.deepEqual(device.required, ['target']);
});

test('the schema (ajv, draft 2020-12) accepts the examples and refuses what the loader refuses', () => {
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  const validate = ajv.compile(JSON.parse(fs.readFileSync(path.join(CONFIG, 'ublk-ts.schema.json'), 'utf8')));
  for (const n of fs.readdirSync(path.join(CONFIG, 'examples')).filter((x) => x.endsWith('.json'))) {
    const ok = validate(JSON.parse(fs.readFileSync(path.join(CONFIG, 'examples', n), 'utf8')));
    assert.ok(ok, `${n}: ${JSON.stringify(validate.errors)}`);
  }
  const refused = (device: unknown) => !validate({ devices: [device] });
  assert.ok(refused({ target: 'loop', queues: 2 }), 'loop without file');
  assert.ok(refused({ target: 'null', queues: '4' }), 'a string where a number belongs');
  assert.ok(refused({ target: 'null', queues: 65 }), 'out of range');
  assert.ok(refused({ target: 'null', frob: 1 }), 'an unknown field');
  assert.ok(refused({ target: 'null', file: '/x' }), "another target's field");
  assert.ok(!refused({ target: 'loop', file: '/x', size: '1G', zeroCopy: 'explicit' }), 'a good loop device');
  assert.ok(!refused({ target: 'null', size: 4096 }), 'a good null device');
});

test('the examples and the schema are valid JSON Schema 2020-12 (python3 jsonschema, when installed)', (t) => {
  const probe = spawnSync('python3', ['-c', 'import jsonschema'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    t.skip('python3 with the jsonschema module is not available on this host');
    return;
  }
  const examples = fs.readdirSync(path.join(CONFIG, 'examples')).filter((n) => n.endsWith('.json')).map((n) => path.join(CONFIG, 'examples', n));
  const prog = `
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
bad = 0
for f in sys.argv[2:]:
    for e in v.iter_errors(json.load(open(f))):
        bad += 1
        print(f, list(e.absolute_path), e.message)
# a config the schema must refuse: unknown key, wrong type, loop without file
refused = list(v.iter_errors({"devices": [{"target": "loop", "queues": "4", "frob": 1}]}))
print("refused", len(refused))
sys.exit(1 if bad else 0)
`;
  const r = spawnSync('python3', ['-c', prog, path.join(CONFIG, 'ublk-ts.schema.json'), ...examples], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^refused 3$/m);
});
