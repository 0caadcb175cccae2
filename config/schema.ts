// The JSON Schema of config files, built from the same tables the loader uses (device-fields.ts,
// service-fields.ts), so the published config/ublk-ts.schema.json cannot drift from what is
// accepted: test/unit/config-schema.test.ts compares the two. After changing a table:
//   npm run build:ts && node dist/config/schema.js > config/ublk-ts.schema.json
// The schema checks shapes and types (editors use it); the loader also checks values that depend
// on each other and on the system (a loop device needs its file, ids are unique...).

import { DEVICE_FIELDS, FIELD_KEYS, NAME_FIELD, describeField, type DeviceField } from './device-fields';
import { SERVICE_FIELDS, SERVICE_KEYS } from './service-fields';

type Schema = Record<string, unknown>;

function fieldSchema(f: DeviceField, description: string): Schema {
  const s: Schema = { description };
  switch (f.type) {
    case 'string':
      s.type = 'string';
      if (f.enum) s.enum = [...f.enum];
      else s.minLength = 1;
      break;
    case 'integer':
      s.type = 'integer';
      if (f.enum) s.enum = [...f.enum];
      if (f.minimum !== undefined) s.minimum = f.minimum;
      if (f.maximum !== undefined) s.maximum = f.maximum;
      break;
    case 'boolean':
      s.type = 'boolean';
      break;
    case 'bytes':
      s.type = ['integer', 'string'];
      s.minimum = 1;
      s.pattern = '^\\s*\\d+\\s*([kKmMgGtT]([iI]?[bB])?)?\\s*$';
      break;
    case 'zeroCopy':
      s.enum = [false, true, 'auto', 'explicit'];
      break;
  }
  return s;
}

export function buildSchema(): Schema {
  const deviceProps: Record<string, Schema> = {
    [NAME_FIELD]: {
      description:
        'unique name used in logs, STATUS= and metrics, and by SIGHUP to match devices; default: the file name without .json (with -INDEX when the file declares several devices)',
      type: 'string',
      pattern: '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$',
    },
  };
  for (const k of FIELD_KEYS) deviceProps[DEVICE_FIELDS[k].name] = fieldSchema(DEVICE_FIELDS[k], describeField(k));

  const serviceProps: Record<string, Schema> = {};
  for (const k of SERVICE_KEYS) {
    const f = SERVICE_FIELDS[k];
    const s: Schema = { description: `${f.description} (overridden by ${f.cli} and $${f.env})`, type: 'string', default: f.default };
    if (f.enum) s.enum = [...f.enum];
    if (k === 'metricsAddress') s.pattern = '^(off|\\[[0-9A-Fa-f:.]+\\]:\\d{1,5}|[^:\\[\\]]+:\\d{1,5})$';
    serviceProps[k] = s;
  }

  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'ublk-ts configuration',
    description:
      'Devices for `ublk-ts serve --config FILE|DIR` (every device) and `ublk-ts add --config FILE` (one device), and service settings. Precedence: command line > UBLK_TS_* environment > this file > defaults.',
    type: 'object',
    additionalProperties: false,
    properties: {
      $schema: { type: 'string', description: 'for editors' },
      service: { type: 'object', additionalProperties: false, properties: serviceProps },
      devices: { type: 'array', items: { $ref: '#/$defs/device' } },
    },
    $defs: {
      device: {
        type: 'object',
        additionalProperties: false,
        required: [DEVICE_FIELDS.type.name],
        properties: deviceProps,
        if: { properties: { [DEVICE_FIELDS.type.name]: { const: 'loop' } } },
        then: { required: [DEVICE_FIELDS.file.name] },
      },
    },
  };
}

export function schemaText(): string {
  return `${JSON.stringify(buildSchema(), null, 2)}\n`;
}

if (require.main === module) process.stdout.write(schemaText());
